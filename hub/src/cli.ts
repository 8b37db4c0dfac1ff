/**
 * dovetail-hub CLI. Exit codes: 0 ok, 1 operational error (printed with its code), 2 usage.
 * The only place in the hub that reads process.env/argv or calls process.exit.
 */
import { resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { DovetailError, createLogger, isDovetailError, redactSecrets } from '@dovetail/shared';
import { DEFAULT_PORT, defaultHubConfig, loadHubConfig, loadHubLocation, type HubConfig } from './config.ts';
import { startHub } from './hub.ts';
import { ADMIN_TOKEN_FILE, HUB_INFO_FILE, readAdminToken, readHubInfo } from './identity.ts';
import { HUB_VERSION } from './version.ts';
import { RETRY_SCHEDULE_TEXT } from './delivery/retry.ts';

class UsageError extends Error {}

const CONN = 'Connection options: --data-dir DIR | --config FILE | --hub URL --admin-token T (T: admin.token or an API token)';

const HELP: Record<string, string> = {
  main: `Usage: dovetail-hub <command> [options]

Commands:
  run                 start the hub (agent gateway, HTTP API, delivery)
  agents enroll       issue a one-time enrollment token for a new agent
  agents list         list registered agents
  agents show ID      one agent: health, buffer, lag, per-table capture state
  agents disable ID   refuse the agent until enabled (its socket closes at once)
  agents enable ID    allow a disabled agent again
  agents revoke ID    refuse the agent for good (it must re-enroll)
  agents push-config ID --file tables.yaml   send a tables section to an agent (signed)
  keys rotate         replace the hub key; agents are told under the old key
  destinations list   destinations: tenant, cursor, pending, DLQ, secret rotation
  destinations rotate-secret NAME   new webhook secret (printed once), both signatures during --overlap
  dlq list DESTINATION      events a destination gave up on (after all retries), oldest first
  dlq replay DESTINATION    send DLQ events again (all, or --id EVENT_ID ...), same event ids, log order
  tokens create       create an operator API token (--scope read|operate|admin)
  tokens list         list operator API tokens
  tokens revoke ID    revoke an operator API token
  audit               operator and admin actions, newest first
  status              agents, stored events, destination cursors and DLQ

Run "dovetail-hub <command> --help" for the options of a command; "dovetail-hub --version" prints the version.
Exit codes: 0 ok, 1 operational error, 2 usage error.`,
  run: `Usage: dovetail-hub run [--config hub.yaml] [--data-dir DIR] [--port PORT] [--host HOST]

Starts the hub in the foreground and logs JSON lines to stdout.
  --config FILE     hub YAML config (listen, dataDir, logLevel, destinations, maxHandshakes)
  --data-dir DIR    overrides dataDir (default ./hub-data, relative to the config file)
  --port PORT       overrides listen.port (default ${DEFAULT_PORT}; 0 picks a free port)
  --host HOST       overrides listen.host (default 127.0.0.1)
On first run creates <dataDir>/hub.key and <dataDir>/admin.token (mode 0600).
SIGINT/SIGTERM shut down gracefully (agent sockets closed with 1001).
Webhook retries (per destination; maxAttempts, retryInitialDelayMs, retryMaxDelayMs in the config):
  ${RETRY_SCHEDULE_TEXT}.
  Events of the same entity key wait behind a retrying one. See "dovetail-hub dlq list --help" for the DLQ.
Only "run" needs the destinations' \${env:...} variables; the other commands read just listen and dataDir.`,
  'agents enroll': `Usage: dovetail-hub agents enroll --name NAME [--ttl 1h] [--tenant T] [--site S] [connection options]

Prints a one-time enrollment token. Give it to the agent:
  dovetail-agent enroll --hub <url> --token <token>
  --name NAME       agent name shown to operators (required)
  --ttl DURATION    token lifetime: 90s, 30m, 1h, 2d or seconds (default 1h)
  --tenant T        tenant of the agent (default "default", or the API token's tenant)
  --site S          site name the agent is tied to (optional)
  --json            print {token, expiresAt, tenant, site} as JSON
Connection options (a running hub is required):
  --data-dir DIR    find the hub via DIR/hub.json and DIR/admin.token (default ./hub-data)
  --config FILE     use the config's dataDir
  --hub URL --admin-token T   talk to a hub elsewhere (T: admin.token or an API token with scope operate)`,
  'agents list': `Usage: dovetail-hub agents list [--json] [connection options]

Lists registered agents: id, name (the enrollment token's label), status, online, last seq, events
stored, last seen, host, version, and the agent's own name (agent.name in its config, reported at enrollment).
Connection options: --data-dir DIR | --config FILE | --hub URL --admin-token T`,
  'agents show': `Usage: dovetail-hub agents show ID [--json] [connection options]

One agent: status, online (heard from within the offline threshold), version, host, last seen,
buffer depth and bytes, lag (age of the oldest unsent change), per-table capture state, last error,
and the agent's own name (its config's agent.name; "name" stays the enrollment token's label).
${CONN}`,
  'agents disable': `Usage: dovetail-hub agents disable ID [--json] [connection options]

Disables the agent (scope operate): its socket is closed at once with 4003 and every later
connection is refused until "agents enable". The agent stops retrying and logs why.
${CONN}`,
  'agents enable': `Usage: dovetail-hub agents enable ID [--json] [connection options]

Re-enables a disabled agent (scope operate). Restart the agent process to reconnect.
${CONN}`,
  'agents revoke': `Usage: dovetail-hub agents revoke ID [--json] [connection options]

Revokes the agent for good (scope admin): its socket is closed at once with 4003 and it is
refused from then on. To bring the machine back, issue a new token and re-enroll it.
${CONN}`,
  'tokens create': `Usage: dovetail-hub tokens create --scope read|operate|admin [--tenant T] [--name N] [--json] [connection options]

Creates an operator API token and prints it ONCE on the first line (only its sha256 is stored).
  --scope S     read: GET routes; operate: + disable/enable agents, enrollment tokens; admin: + revoke, tokens
  --tenant T    the token sees only tenant T (default: all tenants)
  --name N      label shown in lists and the audit log
${CONN}`,
  'tokens list': `Usage: dovetail-hub tokens list [--json] [connection options]

Lists operator API tokens: id, name, scope, tenant, created, revoked (never the tokens).
${CONN}`,
  'tokens revoke': `Usage: dovetail-hub tokens revoke ID [--json] [connection options]

Revokes an operator API token; requests with it are refused from then on.
${CONN}`,
  audit: `Usage: dovetail-hub audit [--json] [--limit N] [connection options]

Operator and admin actions, newest first: when, who (token id and name), what, target, tenant, from where.
  --limit N     entries to show, 1 to 1000 (default 50)
${CONN}`,
  'agents push-config': `Usage: dovetail-hub agents push-config ID --file tables.yaml [--json] [connection options]

Pushes a remote config to the agent (scope operate): a YAML file with a "tables:" list only
(mappings and schedules; the agent keeps its own source, hub and agent settings). The hub
stores it with the next version number, signs it with the hub key and sends it now if the
agent is connected, otherwise on its next connect. The agent checks the signature and
validates it like its local config; it applies it or refuses it with the reason.
"agents show ID" shows the version the agent runs and the verdict.
${CONN}`,
  'keys rotate': `Usage: dovetail-hub keys rotate [--json] [connection options]

Replaces the hub's signing key (scope admin). The new public key is announced under the old
key to every connected agent at once; agents that are offline pick the announcement up when
they reconnect. The hub signs with the new key from now on.
${CONN}`,
  'destinations list': `Usage: dovetail-hub destinations list [--json] [connection options]

Lists destinations: name, tenant (only its agents' events are delivered), cursor, pending, DLQ,
and the signing secret's state (from the config file, or rotated with the overlap end).
${CONN}`,
  'destinations rotate-secret': `Usage: dovetail-hub destinations rotate-secret NAME [--overlap 24h] [--json] [connection options]

Generates a new whsec_ signing secret for the destination (scope admin), stores it in the hub
(it takes precedence over the config file) and prints it ONCE on the first line. During the
overlap every webhook carries two signatures (new and old) in webhook-signature; after it,
only the new one. Give the new secret to the receiver before the overlap ends.
  --overlap DURATION   90s, 30m, 24h, 2d or seconds; 0 = no overlap (default 24h)
${CONN}`,
  'dlq list': `Usage: dovetail-hub dlq list DESTINATION [--limit N] [--json] [connection options]

Events the destination gave up on, oldest (lowest hub log offset) first: event id, offset, entity,
key, attempts, when it failed and the last error (secrets redacted). An event lands here after its
last retry (${RETRY_SCHEDULE_TEXT}),
or at once when the receiver rejects it (3xx, 4xx other than 408/429). Later events of the same key
are not held back by a DLQ entry.
  --limit N     entries to show, 1 to 1000 (default 100)
${CONN}`,
  'dlq replay': `Usage: dovetail-hub dlq replay DESTINATION [--id EVENT_ID ...] [--json] [connection options]

Re-queues DLQ events for delivery (scope operate; audited): all of them, or only the given ids
(repeat --id). They are sent again with the same event id (webhook-id), so the receiver can drop
copies it already has, in their original log order, with a fresh set of retries; one that fails for
good returns to the DLQ. Up to 10000 entries per call; the output says how many remain.
Exit 1 if an --id is not in the DLQ (the others are still replayed).
${CONN}`,
  status: `Usage: dovetail-hub status [--json] [connection options]

Shows agents (total/online), stored events, and per destination: cursor, pending, in flight, DLQ.
Connection options: --data-dir DIR | --config FILE | --hub URL --admin-token T`,
};

/** Values of repeatable options are kept under "<name>[]". */
type Flags = Record<string, string | true | string[]>;

const CONNECT = ['data-dir', 'config', 'hub', 'admin-token'];
/** `id`: the command takes one positional ID, stored as flags.id. */
const KNOWN: Record<string, { value: string[]; bool: string[]; id?: true; multi?: string[] }> = {
  run: { value: ['config', 'data-dir', 'port', 'host'], bool: ['help'] },
  'agents enroll': { value: ['name', 'ttl', 'tenant', 'site', ...CONNECT], bool: ['help', 'json'] },
  'agents list': { value: CONNECT, bool: ['help', 'json'] },
  'agents show': { value: CONNECT, bool: ['help', 'json'], id: true },
  'agents disable': { value: CONNECT, bool: ['help', 'json'], id: true },
  'agents enable': { value: CONNECT, bool: ['help', 'json'], id: true },
  'agents revoke': { value: CONNECT, bool: ['help', 'json'], id: true },
  'tokens create': { value: ['scope', 'tenant', 'name', ...CONNECT], bool: ['help', 'json'] },
  'tokens list': { value: CONNECT, bool: ['help', 'json'] },
  'tokens revoke': { value: CONNECT, bool: ['help', 'json'], id: true },
  audit: { value: ['limit', ...CONNECT], bool: ['help', 'json'] },
  'agents push-config': { value: ['file', ...CONNECT], bool: ['help', 'json'], id: true },
  'keys rotate': { value: CONNECT, bool: ['help', 'json'] },
  'destinations list': { value: CONNECT, bool: ['help', 'json'] },
  'destinations rotate-secret': { value: ['overlap', ...CONNECT], bool: ['help', 'json'], id: true },
  status: { value: CONNECT, bool: ['help', 'json'] },
  'dlq list': { value: ['limit', ...CONNECT], bool: ['help', 'json'], id: true },
  'dlq replay': { value: CONNECT, bool: ['help', 'json'], id: true, multi: ['id'] },
};
/** Command groups: alone they print the main help. */
const GROUPS = ['agents', 'tokens', 'keys', 'destinations', 'dlq'];

export function parseArgs(argv: string[]): { command: string; flags: Flags } {
  const words: string[] = [];
  let i = 0;
  while (i < argv.length && !argv[i]!.startsWith('-')) words.push(argv[i++]!);
  let command = words.join(' ');
  let positional: string | undefined;
  if (!KNOWN[command] && words.length >= 2 && KNOWN[words.slice(0, -1).join(' ')]?.id) {
    positional = words.at(-1);
    command = words.slice(0, -1).join(' ');
  }
  if (command === '') command = 'main';
  if (command !== 'main' && !GROUPS.includes(command) && !KNOWN[command]) throw new UsageError(`unknown command "${command}"`);
  const spec = KNOWN[command] ?? { value: [], bool: ['help'] };
  const flags: Flags = {};
  if (positional !== undefined) flags.id = positional;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h') { flags.help = true; continue; }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new UsageError(`unexpected argument "${a}"`);
    const name = m[1]!;
    if (spec.bool.includes(name)) { flags[name] = true; continue; }
    const multi = spec.multi?.includes(name) ?? false;
    if (!multi && !spec.value.includes(name)) throw new UsageError(`unknown option --${name} for "${command}"`);
    const v = m[2] ?? argv[++i];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`--${name} needs a value`);
    if (multi) {
      const list = flags[`${name}[]`];
      flags[`${name}[]`] = [...(Array.isArray(list) ? list : []), v];
    } else {
      flags[name] = v;
    }
  }
  return { command, flags };
}

export function parseDuration(text: string): number {
  return durationOf(text, 'ttl');
}

function durationOf(text: string, flag: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--${flag} "${text}" is not a duration like 90s, 30m, 1h, 2d`);
  const mult = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * mult;
}

const str = (f: Flags, k: string): string | undefined => (typeof f[k] === 'string' ? (f[k] as string) : undefined);

/** The full config, destinations and their ${env:...} included: for `run` only. */
function loadConfig(flags: Flags, env: Record<string, string | undefined>): HubConfig {
  const path = str(flags, 'config');
  return path ? loadHubConfig(path, env) : defaultHubConfig(process.cwd());
}

/** The data directory of the hub to talk to: listen/dataDir only, so a missing ${env:...} of a destination does not matter. */
function dataDirOf(flags: Flags): string {
  const dir = str(flags, 'data-dir');
  if (dir) return resolve(dir);
  const path = str(flags, 'config');
  return path ? loadHubLocation(path).dataDir : defaultHubConfig(process.cwd()).dataDir;
}

interface Target { url: string; token: string }

function target(flags: Flags, env: Record<string, string | undefined>): Target {
  const hub = str(flags, 'hub');
  if (hub) {
    const token = str(flags, 'admin-token');
    if (!token) throw new UsageError('--hub needs --admin-token');
    return { url: hub.replace(/\/+$/, ''), token };
  }
  const dataDir = dataDirOf(flags);
  const info = readHubInfo(dataDir);
  const token = readAdminToken(dataDir);
  if (!info || !token) {
    const missing = [!info ? HUB_INFO_FILE : null, !token ? ADMIN_TOKEN_FILE : null].filter((x) => x !== null).join(' and ');
    const how = str(flags, 'config') ? `dovetail-hub run --config ${str(flags, 'config')}` : `dovetail-hub run --data-dir ${dataDir}`;
    // hub.json exists only while a hub listens; admin.token from its first run on.
    const why = !info ? 'the hub is probably not running' : `the hub's ${ADMIN_TOKEN_FILE} is gone (it is created on the first run)`;
    throw new DovetailError('HUB_NOT_RUNNING', `no running hub found for data directory ${dataDir}: missing ${missing}, so ${why}; start it with "${how}", or pass --hub URL --admin-token T`, { dataDir, missing });
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

interface ErrorView { code: string; message: string; at: string | null; table?: string }
interface AgentView {
  id: string; name: string; tenant: string; status: string; online: boolean; lastSeq: number; eventsStored: number; lastSeenAt: string | null; host: string | null; version: string | null;
  site?: string | null; connectedAt?: string | null; statusAt?: string | null; remote?: string | null; agentState?: string | null; uplinkState?: string | null;
  buffer?: { depth: number; bytes: number; lastAckedSeq: number | null; lastAckAt: string | null; oldestPendingAt: string | null } | null;
  lagMs?: number | null; lastError?: ErrorView | null; agentName?: string | null;
  previousKeys?: Array<{ keyId: string; rotatedAt: string; retiresAt: string; retired: boolean }>;
  keyId?: string;
  configVersion?: number | null;
  config?: { version: number; status: string; reason: string | null; pushedAt: string; resultAt: string | null } | null;
  tables?: Array<{ table: string; phase: string; progress: { done: number; total: number } | null; eventsCaptured: number; quarantined: number; lastPollAt: string | null; lastError: ErrorView | null }>;
}
interface TokenView { id: string; name: string; scope: string; tenant: string | null; createdAt: string; createdBy: string; revokedAt: string | null }
interface AuditView { seq: number; at: string; actor: string; actorName: string; action: string; target: string; tenant: string | null; remote: string | null; detail?: Record<string, unknown> }
interface DestView {
  name: string; type: string; cursor: number; pending: number; inFlight: number; dlq: number; lastError: string | null;
  tenant?: string | null; secretSource?: string; secretRotatedAt?: string | null; previousSecretValidUntil?: string | null;
}
interface DlqView { eventId: string; offset: number; agentId: string; entity: string; key: string; attempts: number; lastError: string; failedAt: string }
/** Hubs of any version: an error text is redacted again before it reaches the terminal. */
const shownError = (e: string | null | undefined): string => (e ? redactSecrets(e) : '-');
interface ConfigView { agentId: string; version: number; status: string; reason: string | null; sha256: string; pushedAt: string; sent: boolean }

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((v, c) => v.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

function agentsTable(agents: AgentView[]): string {
  if (agents.length === 0) return 'no agents registered';
  return table([
    ['ID', 'NAME', 'TENANT', 'STATUS', 'ONLINE', 'LAST SEQ', 'EVENTS', 'LAST SEEN', 'HOST', 'VERSION', 'AGENT NAME'],
    ...agents.map((a) => [a.id, a.name, a.tenant, a.status, a.online ? 'yes' : 'no', String(a.lastSeq), String(a.eventsStored), a.lastSeenAt ?? '-', a.host ?? '-', a.version ?? '-', a.agentName ?? '-']),
  ]);
}

const fmtBytes = (n: number) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);

function agentDetail(a: AgentView): string {
  const lines = [
    `agent ${a.id} "${a.name}" (tenant ${a.tenant}${a.site ? `, site ${a.site}` : ''})`,
    `status: ${a.status}, ${a.online ? 'online' : 'offline'}${a.connectedAt && a.online ? ` since ${a.connectedAt}` : ''}; last seen ${a.lastSeenAt ?? 'never'}`,
    `version ${a.version ?? '-'} on host ${a.host ?? '-'}${a.remote ? ` from ${a.remote}` : ''}${a.agentState ? `; agent ${a.agentState}, uplink ${a.uplinkState ?? '-'}` : ''}`,
    `hub log: last seq ${a.lastSeq}, ${a.eventsStored} events stored`,
    a.buffer
      ? `buffer: ${a.buffer.depth} batches, ${fmtBytes(a.buffer.bytes)} waiting; lag ${a.lagMs ?? '-'} ms (as of ${a.statusAt ?? '-'})`
      : 'buffer: not reported yet',
    `last error: ${a.lastError ? `${a.lastError.code}: ${a.lastError.message}${a.lastError.table ? ` (table ${a.lastError.table})` : ''}${a.lastError.at ? ` at ${a.lastError.at}` : ''}` : '-'}`,
    `agent's own name: ${a.agentName ?? '-'} (from its config at enrollment; "${a.name}" is the enrollment token's label)`,
  ];
  if (a.keyId) {
    const prev = (a.previousKeys ?? []).map((k) => `${k.keyId} ${k.retired ? 'retired' : 'valid until'} ${k.retiresAt}`);
    lines.push(`key: ${a.keyId}${prev.length ? `; previous: ${prev.join(', ')}` : ''}`);
  }
  if (a.config || (a.configVersion ?? 0) > 0) {
    const c = a.config;
    lines.push(`config: running version ${a.configVersion ?? '-'}${c ? `; latest pushed version ${c.version} ${c.status}${c.reason ? `: ${c.reason}` : ''}` : ''}`);
  }
  const tables = a.tables ?? [];
  if (tables.length) {
    lines.push('', table([
      ['TABLE', 'PHASE', 'PROGRESS', 'EVENTS', 'QUARANTINED', 'LAST POLL', 'LAST ERROR'],
      ...tables.map((t) => [t.table, t.phase, t.progress ? `${t.progress.done}/${t.progress.total}` : '-', String(t.eventsCaptured), String(t.quarantined), t.lastPollAt ?? '-', t.lastError ? t.lastError.code : '-']),
    ]));
  }
  return lines.join('\n');
}

function tokensTable(tokens: TokenView[]): string {
  if (tokens.length === 0) return 'no API tokens';
  return table([
    ['ID', 'NAME', 'SCOPE', 'TENANT', 'CREATED', 'CREATED BY', 'REVOKED'],
    ...tokens.map((t) => [t.id, t.name, t.scope, t.tenant ?? '(all)', t.createdAt, t.createdBy, t.revokedAt ?? '-']),
  ]);
}

function auditTable(entries: AuditView[]): string {
  if (entries.length === 0) return 'no audit entries';
  return table([
    ['SEQ', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'TENANT', 'FROM'],
    ...entries.map((e) => [String(e.seq), e.at, `${e.actor} (${e.actorName})`, e.action, e.target, e.tenant ?? '-', e.remote ?? '-']),
  ]);
}

function requireId(flags: Flags, what: string): string {
  const id = str(flags, 'id');
  if (!id) throw new UsageError(`${what} ID is required`);
  return encodeURIComponent(id);
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

const writeStderr = (s: string): void => { process.stderr.write(`${s}\n`); };

export async function main(argv: string[], env: Record<string, string | undefined>, out: (s: string) => void, err: (s: string) => void = writeStderr): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version')) {
    out(HUB_VERSION);
    return 0;
  }
  // No command at all is a usage error: help goes to stderr so scripts do not mistake it for output.
  if (argv.length === 0) {
    err(HELP.main!);
    return 2;
  }
  const { command, flags } = parseArgs(argv);
  const group = command === 'main' || GROUPS.includes(command);
  if (flags.help || group) {
    if (group && command !== 'main') {
      // `dovetail-hub agents --help`: the group's subcommands, each with its usage line.
      const lines = HELP.main!.split('\n').filter((l) => l.trimStart().startsWith(`${command} `));
      out(`Commands of "dovetail-hub ${command}":\n\n${lines.join('\n')}\n\nRun "dovetail-hub ${command} <command> --help" for the options of one.`);
    } else {
      out(HELP[group ? 'main' : command] ?? HELP.main!);
    }
    return group ? (flags.help ? 0 : 2) : 0;
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
      const site = str(flags, 'site');
      const r = await call<{ token: string; expiresAt: string }>(target(flags, env), 'POST', '/v1/enrollment-tokens', { name, ttlSeconds, ...(tenant ? { tenant } : {}), ...(site ? { site } : {}) });
      out(flags.json ? JSON.stringify(r) : `${r.token}\n# one-time token for "${name}", expires ${r.expiresAt}`);
      return 0;
    }
    case 'agents list': {
      const r = await call<{ agents: AgentView[] }>(target(flags, env), 'GET', '/v1/agents');
      out(flags.json ? JSON.stringify(r.agents, null, 2) : agentsTable(r.agents));
      return 0;
    }
    case 'agents show': {
      const id = requireId(flags, 'agent');
      const a = await call<AgentView>(target(flags, env), 'GET', `/v1/agents/${id}`);
      out(flags.json ? JSON.stringify(a, null, 2) : agentDetail(a));
      return 0;
    }
    case 'agents disable':
    case 'agents enable':
    case 'agents revoke': {
      const action = command.split(' ')[1]!;
      const id = requireId(flags, 'agent');
      const a = await call<AgentView>(target(flags, env), 'POST', `/v1/agents/${id}/${action}`);
      out(flags.json ? JSON.stringify(a, null, 2) : `agent ${a.id} ("${a.name}") is now ${a.status}${action === 'enable' ? '; restart the agent process (it stopped reconnecting when it was disabled)' : '; its connection was closed'}`);
      return 0;
    }
    case 'tokens create': {
      const scope = str(flags, 'scope');
      if (scope !== 'read' && scope !== 'operate' && scope !== 'admin') throw new UsageError('--scope must be read, operate or admin');
      const tenant = str(flags, 'tenant');
      const name = str(flags, 'name');
      const r = await call<TokenView & { token: string }>(target(flags, env), 'POST', '/v1/tokens', { scope, ...(tenant ? { tenant } : {}), ...(name ? { name } : {}) });
      out(flags.json ? JSON.stringify(r) : `${r.token}\n# API token ${r.id} "${r.name}", scope ${r.scope}, ${r.tenant === null ? 'all tenants' : `tenant ${r.tenant}`}; shown once, store it now`);
      return 0;
    }
    case 'tokens list': {
      const r = await call<{ tokens: TokenView[] }>(target(flags, env), 'GET', '/v1/tokens');
      out(flags.json ? JSON.stringify(r.tokens, null, 2) : tokensTable(r.tokens));
      return 0;
    }
    case 'tokens revoke': {
      const id = requireId(flags, 'token');
      const r = await call<TokenView>(target(flags, env), 'POST', `/v1/tokens/${id}/revoke`);
      out(flags.json ? JSON.stringify(r, null, 2) : `API token ${r.id} ("${r.name}") revoked at ${r.revokedAt ?? '-'}`);
      return 0;
    }
    case 'audit': {
      const limitText = str(flags, 'limit') ?? '50';
      if (!/^\d+$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 1000) throw new UsageError(`--limit "${limitText}" must be a whole number from 1 to 1000`);
      const r = await call<{ entries: AuditView[] }>(target(flags, env), 'GET', `/v1/audit?limit=${limitText}`);
      out(flags.json ? JSON.stringify(r.entries, null, 2) : auditTable(r.entries));
      return 0;
    }
    case 'agents push-config': {
      const id = requireId(flags, 'agent');
      const file = str(flags, 'file');
      if (!file) throw new UsageError('--file tables.yaml is required');
      let document: string;
      try {
        document = readFileSync(file, 'utf8');
      } catch (err) {
        throw new DovetailError('CONFIG_NOT_FOUND', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file });
      }
      const r = await call<ConfigView>(target(flags, env), 'POST', `/v1/agents/${id}/config`, { document });
      out(flags.json ? JSON.stringify(r, null, 2) : `config version ${r.version} for agent ${r.agentId} stored and signed; ${r.sent ? 'sent to the agent now' : 'the agent gets it on its next connect'} (see "agents show ${r.agentId}")`);
      return 0;
    }
    case 'keys rotate': {
      const r = await call<{ keyId: string; previousKeyId: string; at: string; agentsNotified: number }>(target(flags, env), 'POST', '/v1/hub/keys/rotate');
      out(flags.json ? JSON.stringify(r, null, 2) : `hub key rotated: ${r.previousKeyId} -> ${r.keyId}; announced to ${r.agentsNotified} connected agent(s), the others on their next connect`);
      return 0;
    }
    case 'destinations list': {
      const r = await call<{ destinations: DestView[] }>(target(flags, env), 'GET', '/v1/destinations');
      if (flags.json) {
        out(JSON.stringify(r.destinations, null, 2));
        return 0;
      }
      out(r.destinations.length === 0 ? 'no destinations configured' : table([
        ['NAME', 'TYPE', 'TENANT', 'CURSOR', 'PENDING', 'DLQ', 'SECRET', 'PREVIOUS SECRET UNTIL', 'LAST ERROR'],
        ...r.destinations.map((d) => [d.name, d.type, d.tenant ?? '(all)', String(d.cursor), String(d.pending), String(d.dlq),
          d.secretSource === 'store' ? `rotated ${d.secretRotatedAt ?? '-'}` : 'config', d.previousSecretValidUntil ?? '-', shownError(d.lastError)]),
      ]));
      return 0;
    }
    case 'destinations rotate-secret': {
      const name = requireId(flags, 'destination');
      const overlapSeconds = durationOf(str(flags, 'overlap') ?? '24h', 'overlap');
      const r = await call<{ name: string; secret: string; previousValidUntil: string | null }>(target(flags, env), 'POST', `/v1/destinations/${name}/rotate-secret`, { overlapSeconds });
      out(flags.json ? JSON.stringify(r) : `${r.secret}\n# new signing secret for destination "${r.name}"; shown once, give it to the receiver now. ${r.previousValidUntil ? `Webhooks carry both signatures until ${r.previousValidUntil}.` : 'The previous secret no longer signs.'}`);
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
        ...s.destinations.map((d) => [d.name, d.type, String(d.cursor), String(d.pending), String(d.inFlight), String(d.dlq), shownError(d.lastError)]),
      ]));
      out(lines.join('\n'));
      return 0;
    }
    case 'dlq list': {
      const name = requireId(flags, 'destination');
      const limitText = str(flags, 'limit') ?? '100';
      if (!/^\d+$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 1000) throw new UsageError(`--limit "${limitText}" must be a whole number from 1 to 1000`);
      const r = await call<{ destination: string; total: number; entries: DlqView[] }>(target(flags, env), 'GET', `/v1/destinations/${name}/dlq?limit=${limitText}`);
      const entries = r.entries.map((e) => ({ ...e, lastError: redactSecrets(e.lastError) }));
      if (flags.json) {
        out(JSON.stringify({ ...r, entries }, null, 2));
        return 0;
      }
      if (r.total === 0) {
        out(`the DLQ of destination "${r.destination}" is empty`);
        return 0;
      }
      out([
        table([
          ['EVENT ID', 'OFFSET', 'ENTITY', 'KEY', 'ATTEMPTS', 'FAILED AT', 'LAST ERROR'],
          ...entries.map((e) => [e.eventId, String(e.offset), e.entity, e.key, String(e.attempts), e.failedAt, e.lastError]),
        ]),
        `${r.total} event(s) in the DLQ of "${r.destination}"${r.total > entries.length ? `, ${entries.length} shown (--limit)` : ''}; resend with "dovetail-hub dlq replay ${r.destination}" (all) or --id EVENT_ID`,
      ].join('\n'));
      return 0;
    }
    case 'dlq replay': {
      const name = requireId(flags, 'destination');
      const ids = flags['id[]'];
      const body = Array.isArray(ids) ? { ids } : {};
      const r = await call<{ destination: string; replayed: number; entries: Array<{ eventId: string; offset: number }>; notFound: string[]; remaining: number }>(
        target(flags, env), 'POST', `/v1/destinations/${name}/dlq/replay`, body);
      if (flags.json) {
        out(JSON.stringify(r, null, 2));
      } else {
        const lines = [`${r.replayed} event(s) from the DLQ of "${r.destination}" queued for delivery (same event ids, original log order); ${r.remaining} remain in the DLQ`];
        if (r.notFound.length) lines.push(`not in the DLQ: ${r.notFound.join(', ')}`);
        out(lines.join('\n'));
      }
      return r.notFound.length ? 1 : 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

const isEntry = process.argv[1] !== undefined && /dovetail-hub(\.js)?$|cli\.ts$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2), process.env, (s) => process.stdout.write(`${s}\n`), writeStderr).then(
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
