/**
 * dovetail-agent: the command line. The only place that calls process.exit.
 * Exit codes: 0 ok, 1 operational error (message carries the error code), 2 usage.
 */
import { parseArgs } from 'node:util';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger, isDovetailError, type Logger } from '@dovetail/shared';
import { loadAgentConfig, loadAgentLocation } from './config/load.ts';
import type { AgentConfig } from './config/types.ts';
import { Agent, RESYNC_DIR } from './agent.ts';
import { AGENT_VERSION } from './version.ts';

const HELP: Record<string, string> = {
  main: `dovetail-agent ${AGENT_VERSION}: captures ERP database changes and pushes them to a Dovetail hub.

Usage: dovetail-agent <command> --config agent.yaml [options]

Commands:
  enroll    register this agent with a hub using a one-time token
  run       capture and push changes until stopped (SIGINT/SIGTERM stop it cleanly)
  preview   print the canonical events the next capture would send, as JSON lines; changes nothing
  status    show capture positions, buffer depth and bytes, last ack
  resync    re-snapshot one table on the next capture
  keys rotate  replace this agent's key (announced to the hub under the old one)

Run 'dovetail-agent <command> --help' for a command's options.`,
  enroll: `Usage: dovetail-agent enroll --hub URL --token TOKEN --config agent.yaml [--name NAME] [--force]

Generates this agent's Ed25519 key pair locally (the private key never leaves this machine;
it is written to <dataDir>/agent.key with mode 0600), registers the public key with the hub
using the one-time TOKEN from 'dovetail-hub agents enroll', and pins the hub's public key.

  --hub URL      hub base URL, e.g. https://hub.example.com (default: hub.url from the config)
  --token T      one-time enrollment token
  --name NAME    agent name shown to operators (default: agent.name from the config)
  --force        replace an existing enrollment in the data directory`,
  run: `Usage: dovetail-agent run --config agent.yaml

Captures every configured table on its schedule and pushes signed batches to the hub.
Works offline: batches wait in the local buffer (<dataDir>/db) until the hub acknowledges them.`,
  preview: `Usage: dovetail-agent preview --config agent.yaml [--table NAME] [--limit N]

Prints, as JSON lines on stdout, the canonical events the next capture would send, starting
from the committed positions (or from a full snapshot if the agent never ran). Rows that would be
quarantined are printed on stderr with their reason. Changes no state.

  --table NAME   only this table (its 'name' in the config)
  --limit N      stop after N events per table (default 100; 0 = no limit)`,
  status: `Usage: dovetail-agent status --config agent.yaml [--json]

Shows per-table capture positions, buffer depth and bytes, and the last hub acknowledgement.
Works while the agent runs (reads the status file it refreshes every 2 s).`,
  keys: `Usage: dovetail-agent keys rotate --config agent.yaml [--grace 24h]

Generates a new Ed25519 key pair locally (<dataDir>/agent.key.next, mode 0600), announces it
to the hub signed by the current key (with proof of possession of the new one), and once the
hub confirms, makes it this agent's key (agent.key). Works whether or not the agent runs: a
running agent signs new batches and connections with the new key within a few seconds.
Batches already buffered keep their old signature; the hub accepts them until the old key's
grace ends. Interrupted (hub unreachable, crash), the old key stays in use and running the
command again finishes the same rotation.

  --grace DURATION   how long the hub keeps accepting the old key: 90s, 30m, 24h, 2d
                     (default and maximum: the hub's keys.agentKeyGraceMs, 24 h)`,
  resync: `Usage: dovetail-agent resync --config agent.yaml --table NAME

Re-snapshots one table: its capture position and diff state are dropped on the next capture
cycle (the running agent picks the request up within one schedule tick).`,
};

class UsageError extends Error {}

function fail(err: unknown, log?: Logger): never {
  if (err instanceof UsageError) {
    process.stderr.write(`dovetail-agent: ${err.message}\n`);
    process.exit(2);
  }
  const msg = isDovetailError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  log?.error({ err }, 'fatal');
  process.stderr.write(`dovetail-agent: ${msg}\n`);
  process.exit(1);
}

async function config(values: { config?: string | undefined }): Promise<AgentConfig> {
  if (!values.config) throw new UsageError('--config agent.yaml is required');
  return loadAgentConfig(values.config);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  let rest = args;
  if (command === 'keys' && rest[0] === 'rotate') rest = rest.slice(1);
  else if (command === 'keys' && rest[0] !== undefined && !rest[0].startsWith('-')) throw new UsageError(`unknown command "keys ${rest[0]}"\n\n${HELP.keys}`);
  if (!command) throw new UsageError(`a command is required\n\n${HELP.main}`);
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP.main + '\n');
    return;
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(AGENT_VERSION + '\n');
    return;
  }
  if (!(command in HELP) || command === 'main') throw new UsageError(`unknown command "${command}"\n\n${HELP.main}`);
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      hub: { type: 'string' },
      token: { type: 'string' },
      name: { type: 'string' },
      force: { type: 'boolean' },
      table: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      grace: { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP[command] + '\n');
    return;
  }
  switch (command) {
    case 'enroll': return cmdEnroll(values);
    case 'run': return cmdRun(values);
    case 'preview': return cmdPreview(values);
    case 'status': return cmdStatus(values);
    case 'resync': return cmdResync(values);
    case 'keys':
      if (args[0] !== 'rotate') throw new UsageError(`"keys" needs a subcommand\n\n${HELP.keys}`);
      return cmdKeysRotate(values);
  }
}

async function cmdEnroll(v: Record<string, string | boolean | undefined>): Promise<void> {
  const cfg = await config(v as { config?: string });
  if (typeof v.token !== 'string') throw new UsageError('--token is required (get one with `dovetail-hub agents enroll --name NAME`)');
  const { enroll } = await import('./identity/identity.ts');
  const id = await enroll({
    hubUrl: typeof v.hub === 'string' ? v.hub : cfg.hub.url, token: v.token,
    name: typeof v.name === 'string' ? v.name : cfg.agent.name, dataDir: cfg.agent.dataDir, force: v.force === true,
  });
  process.stdout.write(`enrolled as ${id.agentId} (tenant ${id.tenant}); hub key ${id.hubKeyId} pinned; key pair in ${cfg.agent.dataDir}\n`);
}

async function cmdRun(v: Record<string, string | boolean | undefined>): Promise<void> {
  const cfg = await config(v as { config?: string });
  const logger = createLogger({ name: 'dovetail-agent', level: cfg.agent.logLevel });
  const agent = new Agent(cfg, { logger });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    agent.stop().then(() => { logger.flush(); process.exit(0); }, (err) => fail(err, logger));
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  try {
    await agent.start();
  } catch (err) {
    fail(err, logger);
  }
}

async function cmdPreview(v: Record<string, string | boolean | undefined>): Promise<void> {
  const cfg = await config(v as { config?: string });
  const { runPreview } = await import('./preview.ts');
  const limit = v.limit === undefined ? 100 : Number(v.limit);
  if (!Number.isSafeInteger(limit) || limit < 0) throw new UsageError(`--limit must be a whole number >= 0, got "${String(v.limit)}"`);
  const r = await runPreview(cfg, { table: typeof v.table === 'string' ? v.table : undefined, limit, out: process.stdout, err: process.stderr });
  // A table that could not be read is a failure a script must see.
  if (r.failedTables.length > 0) process.exitCode = 1;
}

async function cmdStatus(v: Record<string, string | boolean | undefined>): Promise<void> {
  if (typeof v.config !== 'string') throw new UsageError('--config agent.yaml is required');
  const { collectStatus, formatStatus } = await import('./status.ts');
  const status = await collectStatus((await loadAgentLocation(v.config)).dataDir);
  process.stdout.write(v.json ? JSON.stringify(status, null, 2) + '\n' : formatStatus(status));
}

function graceSeconds(text: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--grace "${text}" is not a duration like 90s, 30m, 24h, 2d`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
}

async function cmdKeysRotate(v: Record<string, string | boolean | undefined>): Promise<void> {
  if (typeof v.config !== 'string') throw new UsageError('--config agent.yaml is required');
  // The hub URL comes from the enrollment (identity.json): only the data directory is read here.
  const { dataDir } = await loadAgentLocation(v.config);
  const grace = typeof v.grace === 'string' ? graceSeconds(v.grace) : undefined;
  const { rotateAgentKey } = await import('./identity/identity.ts');
  const r = (await rotateAgentKey({ dataDir, ...(grace === undefined ? {} : { graceSeconds: grace }) }))!;
  process.stdout.write(`agent ${r.agentId} key rotated: ${r.oldKeyId} -> ${r.newKeyId}${r.resumed ? ' (finished an interrupted rotation)' : ''}; the hub accepts the old key until ${r.retiresAt}\n`);
}

async function cmdResync(v: Record<string, string | boolean | undefined>): Promise<void> {
  if (typeof v.config !== 'string') throw new UsageError('--config agent.yaml is required');
  if (typeof v.table !== 'string') throw new UsageError('--table NAME is required');
  const { dataDir, tables: names } = await loadAgentLocation(v.config);
  if (!names.includes(v.table)) throw new UsageError(`table "${v.table}" is not in the configuration (known: ${names.join(', ')})`);
  const dir = join(dataDir, RESYNC_DIR);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, v.table), new Date().toISOString());
  process.stdout.write(`resync of "${v.table}" requested: it is re-snapshotted on the agent's next capture cycle\n`);
}

main(process.argv.slice(2)).catch((err) => {
  if (err && (err as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS')) fail(new UsageError((err as Error).message));
  fail(err);
});
