/**
 * dovetail-hub CLI. Exit codes: 0 ok, 1 operational error (printed with its code), 2 usage.
 * The only place in the hub that reads process.env/argv or calls process.exit.
 */
import { resolve } from 'node:path';
import { DovetailError, createLogger, isDovetailError } from '@dovetail/shared';
import { DEFAULT_PORT, defaultHubConfig, loadHubConfig, type HubConfig } from './config.ts';
import { startHub } from './hub.ts';
import { readAdminToken, readHubInfo } from './identity.ts';

class UsageError extends Error {}

const HELP: Record<string, string> = {
  main: `Usage: dovetail-hub <command> [options]

Commands:
  run                 start the hub (agent gateway, HTTP API, delivery)
  agents enroll       issue a one-time enrollment token for a new agent
  agents list         list registered agents
  status              agents, stored events, destination cursors and DLQ

Run "dovetail-hub <command> --help" for the options of a command.
Exit codes: 0 ok, 1 operational error, 2 usage error.`,
  run: `Usage: dovetail-hub run [--config hub.yaml] [--data-dir DIR] [--port PORT] [--host HOST]

Starts the hub in the foreground and logs JSON lines to stdout.
  --config FILE     hub YAML config (listen, dataDir, logLevel, destinations, maxHandshakes)
  --data-dir DIR    overrides dataDir (default ./hub-data, relative to the config file)
  --port PORT       overrides listen.port (default ${DEFAULT_PORT}; 0 picks a free port)
  --host HOST       overrides listen.host (default 127.0.0.1)
On first run creates <dataDir>/hub.key and <dataDir>/admin.token (mode 0600).
SIGINT/SIGTERM shut down gracefully (agent sockets closed with 1001).`,
  'agents enroll': `Usage: dovetail-hub agents enroll --name NAME [--ttl 1h] [--tenant T] [connection options]

Prints a one-time enrollment token. Give it to the agent:
  dovetail-agent enroll --hub <url> --token <token>
  --name NAME       agent name shown to operators (required)
  --ttl DURATION    token lifetime: 90s, 30m, 1h, 2d or seconds (default 1h)
  --tenant T        tenant of the agent (default "default")
  --json            print {token, expiresAt} as JSON
Connection options (a running hub is required):
  --data-dir DIR    find the hub via DIR/hub.json and DIR/admin.token (default ./hub-data)
  --config FILE     use the config's dataDir
  --hub URL --admin-token T   talk to a hub elsewhere`,
  'agents list': `Usage: dovetail-hub agents list [--json] [connection options]

Lists registered agents: id, name, status, online, last seq, events stored, last seen.
Connection options: --data-dir DIR | --config FILE | --hub URL --admin-token T`,
  status: `Usage: dovetail-hub status [--json] [connection options]

Shows agents (total/online), stored events, and per destination: cursor, pending, in flight, DLQ.
Connection options: --data-dir DIR | --config FILE | --hub URL --admin-token T`,
};

type Flags = Record<string, string | true>;

const KNOWN: Record<string, { value: string[]; bool: string[] }> = {
  run: { value: ['config', 'data-dir', 'port', 'host'], bool: ['help'] },
  'agents enroll': { value: ['name', 'ttl', 'tenant', 'data-dir', 'config', 'hub', 'admin-token'], bool: ['help', 'json'] },
  'agents list': { value: ['data-dir', 'config', 'hub', 'admin-token'], bool: ['help', 'json'] },
  status: { value: ['data-dir', 'config', 'hub', 'admin-token'], bool: ['help', 'json'] },
};

export function parseArgs(argv: string[]): { command: string; flags: Flags } {
  const words: string[] = [];
  let i = 0;
  while (i < argv.length && !argv[i]!.startsWith('-')) words.push(argv[i++]!);
  let command = words.join(' ');
  if (command === 'agents' || command === '') command = command || 'main';
  if (command !== 'main' && command !== 'agents' && !KNOWN[command]) throw new UsageError(`unknown command "${command}"`);
  const spec = KNOWN[command] ?? { value: [], bool: ['help'] };
  const flags: Flags = {};
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h') { flags.help = true; continue; }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new UsageError(`unexpected argument "${a}"`);
    const name = m[1]!;
    if (spec.bool.includes(name)) { flags[name] = true; continue; }
    if (!spec.value.includes(name)) throw new UsageError(`unknown option --${name} for "${command}"`);
    const v = m[2] ?? argv[++i];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`--${name} needs a value`);
    flags[name] = v;
  }
  return { command, flags };
}

export function parseDuration(text: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--ttl "${text}" is not a duration like 90s, 30m, 1h, 2d`);
  const mult = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * mult;
}

const str = (f: Flags, k: string): string | undefined => (typeof f[k] === 'string' ? (f[k] as string) : undefined);

function loadConfig(flags: Flags, env: Record<string, string | undefined>): HubConfig {
  const path = str(flags, 'config');
  return path ? loadHubConfig(path, env) : defaultHubConfig(process.cwd());
}

interface Target { url: string; token: string }

function target(flags: Flags, env: Record<string, string | undefined>): Target {
  const hub = str(flags, 'hub');
  if (hub) {
    const token = str(flags, 'admin-token');
    if (!token) throw new UsageError('--hub needs --admin-token');
    return { url: hub.replace(/\/+$/, ''), token };
  }
  const dataDir = str(flags, 'data-dir') ? resolve(str(flags, 'data-dir')!) : loadConfig(flags, env).dataDir;
  const info = readHubInfo(dataDir);
  const token = readAdminToken(dataDir);
  if (!info || !token) {
    throw new DovetailError('HUB_NOT_RUNNING', `no running hub found for data directory ${dataDir} (missing hub.json or admin.token); start it with "dovetail-hub run" or pass --hub URL --admin-token T`, { dataDir });
  }
  return { url: info.url, token };
}

async function call<T>(t: Target, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(t.url + path, {
      method,
      headers: { authorization: `Bearer ${t.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new DovetailError('HUB_NOT_RUNNING', `hub at ${t.url} is not reachable (${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message})`, { url: t.url }, { cause: err });
  }
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    const code = typeof json.code === 'string' ? json.code : 'HUB_INTERNAL';
    throw new DovetailError(code as 'HUB_INTERNAL', `${method} ${path}: ${String(json.message ?? `HTTP ${res.status}`)}`);
  }
  return json as T;
}

interface AgentView { id: string; name: string; tenant: string; status: string; online: boolean; lastSeq: number; eventsStored: number; lastSeenAt: string | null; host: string | null; version: string | null }
interface DestView { name: string; type: string; cursor: number; pending: number; inFlight: number; dlq: number; lastError: string | null }

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((v, c) => v.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

function agentsTable(agents: AgentView[]): string {
  if (agents.length === 0) return 'no agents registered';
  return table([
    ['ID', 'NAME', 'TENANT', 'STATUS', 'ONLINE', 'LAST SEQ', 'EVENTS', 'LAST SEEN', 'HOST', 'VERSION'],
    ...agents.map((a) => [a.id, a.name, a.tenant, a.status, a.online ? 'yes' : 'no', String(a.lastSeq), String(a.eventsStored), a.lastSeenAt ?? '-', a.host ?? '-', a.version ?? '-']),
  ]);
}

async function run(flags: Flags, env: Record<string, string | undefined>): Promise<void> {
  const base = loadConfig(flags, env);
  const port = str(flags, 'port');
  if (port !== undefined && !/^\d+$/.test(port)) throw new UsageError(`--port "${port}" is not a port number`);
  const config: HubConfig = {
    ...base,
    listen: { host: str(flags, 'host') ?? base.listen.host, port: port === undefined ? base.listen.port : Number(port) },
    dataDir: str(flags, 'data-dir') ? resolve(str(flags, 'data-dir')!) : base.dataDir,
  };
  const logger = createLogger({ name: 'dovetail-hub', level: config.logLevel });
  const hub = await startHub(config, { logger });
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      hub.close().then(done, (err) => {
        logger.error({ err }, 'shutdown failed');
        done();
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  logger.flush?.();
}

export async function main(argv: string[], env: Record<string, string | undefined>, out: (s: string) => void): Promise<number> {
  const { command, flags } = parseArgs(argv);
  if (flags.help || command === 'main' || command === 'agents') {
    out(HELP[command === 'agents' ? 'main' : command] ?? HELP.main!);
    return command === 'main' || command === 'agents' ? (flags.help ? 0 : 2) : 0;
  }
  switch (command) {
    case 'run':
      await run(flags, env);
      return 0;
    case 'agents enroll': {
      const name = str(flags, 'name');
      if (!name) throw new UsageError('--name is required');
      const ttlSeconds = parseDuration(str(flags, 'ttl') ?? '1h');
      const tenant = str(flags, 'tenant');
      const r = await call<{ token: string; expiresAt: string }>(target(flags, env), 'POST', '/v1/enrollment-tokens', { name, ttlSeconds, ...(tenant ? { tenant } : {}) });
      out(flags.json ? JSON.stringify(r) : `${r.token}\n# one-time token for "${name}", expires ${r.expiresAt}`);
      return 0;
    }
    case 'agents list': {
      const r = await call<{ agents: AgentView[] }>(target(flags, env), 'GET', '/v1/agents');
      out(flags.json ? JSON.stringify(r.agents, null, 2) : agentsTable(r.agents));
      return 0;
    }
    case 'status': {
      const s = await call<{ hubKeyId: string; eventsStored: number; agents: { total: number; online: number; list: AgentView[] }; destinations: DestView[] }>(target(flags, env), 'GET', '/v1/status');
      if (flags.json) {
        out(JSON.stringify(s, null, 2));
        return 0;
      }
      const lines = [`hub key: ${s.hubKeyId}`, `agents: ${s.agents.total} registered, ${s.agents.online} online`, `events stored: ${s.eventsStored}`, ''];
      lines.push(s.destinations.length === 0 ? 'no destinations configured' : table([
        ['DESTINATION', 'TYPE', 'CURSOR', 'PENDING', 'IN FLIGHT', 'DLQ', 'LAST ERROR'],
        ...s.destinations.map((d) => [d.name, d.type, String(d.cursor), String(d.pending), String(d.inFlight), String(d.dlq), d.lastError ?? '-']),
      ]));
      out(lines.join('\n'));
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

const isEntry = process.argv[1] !== undefined && /dovetail-hub(\.js)?$|cli\.ts$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2), process.env, (s) => process.stdout.write(`${s}\n`)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      if (err instanceof UsageError) {
        process.stderr.write(`dovetail-hub: ${err.message}\nRun "dovetail-hub --help" for usage.\n`);
        process.exit(2);
      }
      if (isDovetailError(err)) {
        process.stderr.write(`dovetail-hub: ${err.code}: ${err.message}\n`);
        process.exit(1);
      }
      process.stderr.write(`dovetail-hub: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
