/**
 * Real-process harness for end-to-end tests: runs `dovetail-hub` and `dovetail-agent`
 * as child processes (stdout/stderr to log files in a temp dir), waits on conditions
 * with deadlines (never fixed sleeps), talks to the hub's admin API, kills with any
 * signal and restarts, and reads the hub's event log after the hub stopped.
 *
 * Orphans are never left behind: every child is tracked, `Harness.cleanup()` (call it
 * from `after()`) SIGKILLs the live ones and removes the temp dir (DOVETAIL_KEEP_LOGS=1 keeps it), and a process 'exit' hook does the same if a
 * test runner dies first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { AGENT_BIN, HUB_BIN, REPO, tempDir } from './paths.ts';
import { openLevelStore } from '../../hub/src/store/level.ts';
import type { LogEntry } from '../../hub/src/store/types.ts';

export interface Exit { code: number | null; signal: NodeJS.Signals | null }

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly outPath: string;
  readonly errPath: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<Exit>;
  alive(): boolean;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Last resort when a test runner exits without running after() hooks.
    process.once('exit', () => { for (const c of live) c.kill('SIGKILL'); });
  }
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). For configs of child processes, which cannot report a port 0 back. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      if (addr === null || typeof addr === 'string') return reject(new Error('no TCP address'));
      s.close(() => resolve(addr.port));
    });
  });
}

export interface WaitOptions { timeoutMs?: number; intervalMs?: number }

/**
 * Polls `check` until it returns a value other than undefined/false, or throws after the
 * deadline with `what` and the last value/error seen, so a failure says what never happened.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, opts: WaitOptions = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  const interval = opts.intervalMs ?? 50;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
      last = v;
    } catch (err) {
      last = err instanceof Error ? err.message : err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs ?? 20_000} ms waiting for: ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export interface RunResult { code: number | null; stdout: string; stderr: string }

export interface HubInstance {
  proc: Proc;
  url: string;
  dataDir: string;
  configPath: string;
}

export interface HubConfigOptions {
  port: number;
  dataDir: string;
  webhooks?: { name: string; url: string; secret: string; entities?: string[]; concurrency?: number }[];
  logLevel?: string;
}

export function hubYaml(o: HubConfigOptions): string {
  const lines = [
    `listen: { host: 127.0.0.1, port: ${o.port} }`,
    `dataDir: ${JSON.stringify(o.dataDir)}`,
    `logLevel: ${o.logLevel ?? 'info'}`,
    'destinations:',
  ];
  if (!o.webhooks?.length) lines[lines.length - 1] = 'destinations: []';
  for (const w of o.webhooks ?? []) {
    lines.push(`  - name: ${w.name}`, '    type: webhook', `    url: ${JSON.stringify(w.url)}`, `    secret: ${JSON.stringify(w.secret)}`);
    if (w.entities) lines.push(`    entities: [${w.entities.join(', ')}]`);
    if (w.concurrency) lines.push(`    concurrency: ${w.concurrency}`);
  }
  return lines.join('\n') + '\n';
}

/** Owns the temp dir, the log files and every process of one test file. */
export class Harness {
  readonly dir: string;
  readonly logDir: string;
  readonly #procs: Proc[] = [];
  readonly #counts = new Map<string, number>();

  constructor(prefix = 'dovetail-e2e-') {
    this.dir = tempDir(prefix);
    this.logDir = join(this.dir, 'logs');
    mkdirSync(this.logDir, { recursive: true });
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  write(name: string, text: string): string {
    const p = join(this.dir, name);
    writeFileSync(p, text);
    return p;
  }

  /** Starts `node <args>` with stdout/stderr into <logDir>/<name>-<n>.out|err.log. */
  spawn(name: string, args: string[], opts: { env?: Record<string, string> } = {}): Proc {
    const n = (this.#counts.get(name) ?? 0) + 1;
    this.#counts.set(name, n);
    const outPath = join(this.logDir, `${name}-${n}.out.log`);
    const errPath = join(this.logDir, `${name}-${n}.err.log`);
    const out = openSync(outPath, 'a');
    const err = openSync(errPath, 'a');
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', out, err], env: { ...process.env, ...opts.env } });
    closeSync(out);
    closeSync(err);
    track(child);
    const exited = new Promise<Exit>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', () => resolve({ code: -1, signal: null }));
    });
    const proc: Proc = {
      name, child, pid: child.pid ?? -1, outPath, errPath, exited,
      alive: () => child.exitCode === null && child.signalCode === null,
    };
    this.#procs.push(proc);
    return proc;
  }

  /** A one-shot command (enroll, status, ...): its output is captured and also logged. */
  async run(name: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
    const proc = this.spawn(name, args, opts);
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    const exit = await proc.exited;
    clearTimeout(timer);
    return { code: exit.code, stdout: readFileSync(proc.outPath, 'utf8'), stderr: readFileSync(proc.errPath, 'utf8') };
  }

  /** Sends `signal` and waits for the exit. */
  async kill(proc: Proc, signal: NodeJS.Signals = 'SIGKILL'): Promise<Exit> {
    if (proc.alive()) proc.child.kill(signal);
    return proc.exited;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(proc: Proc, graceMs = 10_000): Promise<Exit> {
    if (!proc.alive()) return proc.exited;
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
    const exit = await proc.exited;
    clearTimeout(timer);
    return exit;
  }

  /**
   * Kills every live child of this harness, then removes the temp dir (kept when
   * DOVETAIL_KEEP_LOGS=1, to read the logs of a failure). Safe to call twice; call it from after().
   */
  async cleanup(): Promise<void> {
    await Promise.all(this.#procs.map((p) => this.kill(p, 'SIGKILL')));
    if (process.env.DOVETAIL_KEEP_LOGS !== '1') rmSync(this.dir, { recursive: true, force: true });
  }

  /** Every log file written so far: name -> text. */
  logs(): Map<string, string> {
    const out = new Map<string, string>();
    for (const f of readdirSync(this.logDir).sort()) out.set(f, readFileSync(join(this.logDir, f), 'utf8'));
    return out;
  }

  /** All log text of one process kind (all restarts), for failure messages and greps. */
  logText(name: string): string {
    return [...this.logs()].filter(([f]) => f.startsWith(`${name}-`)).map(([f, t]) => `--- ${f}\n${t}`).join('\n');
  }

  // ---- hub ----

  writeHubConfig(o: HubConfigOptions, file = 'hub.yaml'): string {
    return this.write(file, hubYaml(o));
  }

  /** Starts `dovetail-hub run --config` and waits until GET /v1/health answers. */
  async startHub(configPath: string, port: number, dataDir: string, opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<HubInstance> {
    const proc = this.spawn('hub', [HUB_BIN, 'run', '--config', configPath], opts);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(`hub health at ${url}`, async () => {
      if (!proc.alive()) throw new Error(`hub exited: ${readFileSync(proc.errPath, 'utf8')}`);
      const res = await fetch(`${url}/v1/health`, { signal: AbortSignal.timeout(1000) });
      return res.ok;
    }, { timeoutMs: opts.timeoutMs ?? 30_000, intervalMs: 100 });
    return { proc, url, dataDir, configPath };
  }

  // ---- agent ----

  startAgent(configPath: string, opts: { env?: Record<string, string> } = {}): Proc {
    return this.spawn('agent', [AGENT_BIN, 'run', '--config', configPath], opts);
  }

  /**
   * Issues a token with `dovetail-hub agents enroll --name N --data-dir D` (token on stdout
   * line 1) and enrolls with `dovetail-agent enroll --token T --config C`. Returns the
   * agent id and the token (so tests can check it never appears in logs).
   */
  async enrollAgent(hubDataDir: string, agentConfigPath: string, name: string, opts: { env?: Record<string, string> } = {}): Promise<{ agentId: string; token: string }> {
    const issued = await this.run('hub-enroll', [HUB_BIN, 'agents', 'enroll', '--name', name, '--data-dir', hubDataDir]);
    if (issued.code !== 0) throw new Error(`dovetail-hub agents enroll failed (${issued.code}): ${issued.stderr}`);
    const token = issued.stdout.split('\n')[0]!.trim();
    if (!/^dvt_enroll_/.test(token)) throw new Error(`no enrollment token on line 1: ${issued.stdout}`);
    const enrolled = await this.run('agent-enroll', [AGENT_BIN, 'enroll', '--token', token, '--config', agentConfigPath], opts);
    if (enrolled.code !== 0) throw new Error(`dovetail-agent enroll failed (${enrolled.code}): ${enrolled.stderr}`);
    const m = /enrolled as (\S+)/.exec(enrolled.stdout);
    if (!m) throw new Error(`no agent id in: ${enrolled.stdout}`);
    return { agentId: m[1]!, token };
  }
}

// ---- hub admin API ----

export function adminToken(hubDataDir: string): string {
  return readFileSync(join(hubDataDir, 'admin.token'), 'utf8').trim();
}

export async function hubApi<T>(hub: { url: string; dataDir: string }, path: string): Promise<T> {
  const res = await fetch(hub.url + path, { headers: { authorization: `Bearer ${adminToken(hub.dataDir)}` }, signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as T;
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body;
}

export interface AgentView { id: string; name: string; status: string; online: boolean; lastSeq: number; eventsStored: number }
export interface DestinationView { name: string; cursor: number; pending: number; inFlight: number; dlq: number; lastError: string | null }
export interface HubStatus { eventsStored: number; agents: { total: number; online: number; list: AgentView[] }; destinations: DestinationView[] }

export const hubStatus = (hub: { url: string; dataDir: string }) => hubApi<HubStatus>(hub, '/v1/status');
export const hubAgent = (hub: { url: string; dataDir: string }, agentId: string) => hubApi<AgentView>(hub, `/v1/agents/${agentId}`);

/** Waits until every destination's cursor reached the stored events (nothing pending, nothing in flight). */
export async function waitDelivered(hub: { url: string; dataDir: string }, atLeastEvents: number, opts: WaitOptions = {}): Promise<HubStatus> {
  return waitFor(`hub stores >= ${atLeastEvents} events and delivered them all`, async () => {
    const s = await hubStatus(hub);
    return s.eventsStored >= atLeastEvents && s.destinations.every((d) => d.pending === 0 && d.inFlight === 0) ? s : false;
  }, opts);
}

// ---- agent status file ----

export interface AgentStatusFile {
  pid: number;
  updatedAt: string;
  state?: string;
  uplink?: string;
  outbox: { depth: number; bytes: number; nextSeq: number; lastAckedSeq: number; lastAckAt: string | null };
  offsets: Record<string, string>;
  tables?: { table: string; phase: string; eventsCaptured: number; quarantined: number; lastPollAt: string | null; lastError: { code: string; message: string } | null }[];
}

/** `<agent dataDir>/status.json` as the running agent last wrote it (refreshed every 2 s), or undefined. */
export function agentStatusFile(agentDataDir: string): AgentStatusFile | undefined {
  const p = join(agentDataDir, 'status.json');
  if (!existsSync(p)) return undefined;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as AgentStatusFile;
  } catch {
    return undefined; // mid-rename on some filesystems; the next poll reads it
  }
}

// ---- hub event log (after the hub stopped: LevelDB allows one opener) ----

/** Every entry of the hub's LevelDB event log at <hubDataDir>/db, in offset order. */
export async function readHubLog(hubDataDir: string): Promise<LogEntry[]> {
  const store = await openLevelStore(join(hubDataDir, 'db'));
  try {
    const out: LogEntry[] = [];
    for (let from = 1; ;) {
      const page = await store.log.read(from, 1000);
      out.push(...page);
      if (page.length < 1000) break;
      from = page[page.length - 1]!.offset + 1;
    }
    return out;
  } finally {
    await store.close();
  }
}

/** JSON with object keys sorted, so equal data compares equal whatever the key order. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export interface ExactlyOnceReport {
  events: number;
  batches: number;
  /** Human-readable problems; empty when the log holds every change once. */
  problems: string[];
}

/**
 * Checks the hub log for duplicates:
 * - every event id appears once;
 * - per agent, batch seqs are 1..N, each stored once as one contiguous run of offsets;
 * - per (entity, key), no event repeats the previous one's op and data (a change
 *   captured and stored twice, e.g. re-sent after a crash under a new id).
 */
export function checkExactlyOnce(entries: LogEntry[]): ExactlyOnceReport {
  const problems: string[] = [];
  const ids = new Map<string, number>();
  const seqRuns = new Map<string, { seq: number; lastOffset: number }[]>();
  const lastByKey = new Map<string, { offset: number; sig: string }>();
  for (const e of entries) {
    const prevId = ids.get(e.event.id);
    if (prevId !== undefined) problems.push(`event id ${e.event.id} at offsets ${prevId} and ${e.offset}`);
    ids.set(e.event.id, e.offset);
    const runs = seqRuns.get(e.agentId) ?? [];
    const last = runs[runs.length - 1];
    if (last && last.seq === e.seq && last.lastOffset === e.offset - 1) last.lastOffset = e.offset;
    else runs.push({ seq: e.seq, lastOffset: e.offset });
    seqRuns.set(e.agentId, runs);
    const k = `${e.event.entity}:${e.event.key}`;
    const sig = `${e.event.op}:${stableJson(e.event.data)}`;
    const prev = lastByKey.get(k);
    if (prev && prev.sig === sig) problems.push(`${k}: the same ${e.event.op} stored twice (offsets ${prev.offset} and ${e.offset})`);
    lastByKey.set(k, { offset: e.offset, sig });
  }
  let batches = 0;
  for (const [agent, runs] of seqRuns) {
    // Empty batches store no events, so seqs may skip; they must still rise strictly, each once.
    for (let i = 1; i < runs.length; i++) {
      if (runs[i]!.seq <= runs[i - 1]!.seq) problems.push(`agent ${agent}: batch seq ${runs[i]!.seq} stored after seq ${runs[i - 1]!.seq}`);
    }
    batches += runs.length;
  }
  return { events: entries.length, batches, problems };
}

// ---- a recording webhook receiver ----

export interface Arrival { webhookId: string; event: { id: string; entity: string; op: 'upsert' | 'delete'; key: string; data: Record<string, unknown> | null } }

export interface Recorder {
  url: string;
  /** Every verified delivery, in arrival order, retries included. */
  arrivals: Arrival[];
  /** Deliveries whose signature did not verify (answered 401). */
  rejected: number;
  /** Arrivals for one (entity, key), retries included. */
  of(entity: string, key: string): Arrival[];
  close(): Promise<void>;
}

/**
 * A webhook receiver that keeps every arrival (the demo receiver keeps state and
 * counters only), verifying Standard Webhooks signatures like a real consumer.
 */
export function startRecorder(secret: string): Promise<Recorder> {
  const wh = new Webhook(secret);
  const arrivals: Arrival[] = [];
  let rejected = 0;
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      try {
        const event = wh.verify(Buffer.concat(chunks).toString('utf8'), headers) as Arrival['event'];
        arrivals.push({ webhookId: headers['webhook-id']!, event });
        res.writeHead(204).end();
      } catch {
        rejected++;
        res.writeHead(401).end();
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') return reject(new Error('no TCP address'));
      resolve({
        url: `http://127.0.0.1:${addr.port}/webhook`,
        arrivals,
        get rejected() { return rejected; },
        of: (entity, key) => arrivals.filter((a) => a.event.entity === entity && a.event.key === key),
        close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
      });
    });
  });
}

/** Seeded PRNG (the demo's mulberry32) for reproducible random kill points. */
export { prng as seededRandom } from '../../demo/erp.ts';

/** The seed for this run: DOVETAIL_E2E_SEED when set (to replay a failure), else random. */
export function runSeed(): number {
  const env = process.env.DOVETAIL_E2E_SEED;
  return env !== undefined && /^\d+$/.test(env) ? Number(env) : Math.floor(Math.random() * 2 ** 31);
}
