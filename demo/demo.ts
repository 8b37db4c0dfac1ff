/**
 * `npm run demo`: the whole pipeline on one machine, nothing to install.
 *
 *   embedded ERP (PGlite over the pg wire protocol) + simulator making changes
 *     -> dovetail-agent (child process, postgres source, cursor + diff capture)
 *     -> dovetail-hub   (child process, embedded LevelDB)
 *     -> webhook -> demo CRM receiver (in this process, verifies signatures)
 *
 * With --duration S the simulator stops after S seconds, the pipeline drains, the
 * ERP's final state is compared with the receiver's, and the last line printed is
 *   demo: <n> changes made, <n> events captured, <n> delivered, <n> duplicates, <n> lost
 * Exit code 0 when nothing was lost or duplicated. Without --duration it runs until
 * Ctrl-C, then does the same.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, closeSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startErp, DEMO_TIME_ZONE, type Erp } from './erp.ts';
import { Simulator } from './simulator.ts';
import { startReceiver, newWebhookSecret, type Receiver } from './receiver.ts';
import { agentYaml, hubYaml } from './config.ts';
import { expectedFromErp, compareStates, type Comparison } from './compare.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const AGENT_BIN = join(REPO, 'agent', 'bin', 'dovetail-agent.js');
const HUB_BIN = join(REPO, 'hub', 'bin', 'dovetail-hub.js');

/** How long the pipeline may take to drain after the simulator stops. */
const DRAIN_TIMEOUT_MS = 30_000;
/** How long a child gets to exit after SIGTERM before SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;
/** How long the hub may take to start listening. */
const HUB_START_TIMEOUT_MS = 30_000;
const PROGRESS_EVERY_MS = 2000;

const HELP = `Usage: npm run demo -- [--duration S] [--rate N] [--seed N] [--work-dir DIR] [--keep]

Runs an embedded ERP, a simulator making changes, the hub and the agent as real
processes, and a webhook receiver standing in for a CRM. Prints one progress line
every ${PROGRESS_EVERY_MS / 1000} s. At the end (after --duration, or on Ctrl-C) it waits for the pipeline
to drain (at most ${DRAIN_TIMEOUT_MS / 1000} s), compares the ERP's final state with the receiver's, and
prints as its last line:

  demo: <n> changes made, <n> events captured, <n> delivered, <n> duplicates, <n> lost

Exit code 0 when nothing was lost or duplicated, 1 otherwise.

  --duration S    stop making changes after S seconds (default: run until Ctrl-C)
  --rate N        ERP changes per second (default 5)
  --seed N        seed of the generated ERP data and changes (default 42)
  --work-dir DIR  where configs, data and logs go (default: a new temp dir)
  --keep          keep the work dir afterwards (it is kept anyway when something is lost)

Logs: <work dir>/logs/hub.log, agent.log, enroll.log; configs: <work dir>/hub.yaml, agent.yaml.`;

interface Options { durationS: number | null; rate: number; seed: number; workDir: string | null; keep: boolean }

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      duration: { type: 'string' }, rate: { type: 'string' }, seed: { type: 'string' },
      'work-dir': { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const num = (name: string, v: string | undefined, dflt: number | null, min: number): number | null => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new UsageError(`--${name} must be a number >= ${min}, got "${v}"`);
    return n;
  };
  return {
    durationS: num('duration', values.duration, null, 1),
    rate: num('rate', values.rate, 5, 0.1)!,
    seed: num('seed', values.seed, 42, 0)!,
    workDir: values['work-dir'] ?? null,
    keep: values.keep === true,
  };
}

class UsageError extends Error {}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const c = createConnection({ host: '127.0.0.1', port });
    c.once('connect', () => { c.destroy(); res(true); });
    c.once('error', () => res(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Child processes with their output in log files; stopped on exit. */
class Children {
  readonly #live = new Set<ChildProcess>();
  constructor(readonly logDir: string) {}

  spawn(name: string, args: string[]): ChildProcess {
    const fd = openSync(join(this.logDir, `${name}.log`), 'a');
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.#live.add(child);
    child.once('exit', () => this.#live.delete(child));
    return child;
  }

  /** Run to completion; resolves with stdout (also appended to <name>.log). */
  run(name: string, args: string[]): Promise<string> {
    return new Promise((res, rej) => {
      const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      this.#live.add(child);
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
      child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
      child.once('exit', (code) => {
        this.#live.delete(child);
        writeFileSync(join(this.logDir, `${name}.log`), `$ ${args.slice(1).join(' ')}\n${out}${err}\n`, { flag: 'a' });
        if (code === 0) res(out);
        else rej(new Error(`${name} failed (exit ${code}): ${(err || out).trim().split('\n').slice(-3).join(' | ')}`));
      });
    });
  }

  async stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(t);
  }

  killAll(): void {
    for (const c of this.#live) c.kill('SIGKILL');
  }
}

/** Events the agent captured this run, from the status file it refreshes every 2 s. */
function agentCaptured(agentDataDir: string): number | null {
  try {
    const s = JSON.parse(readFileSync(join(agentDataDir, 'status.json'), 'utf8')) as { tables?: { eventsCaptured?: number }[] };
    if (!Array.isArray(s.tables)) return null;
    return s.tables.reduce((a, t) => a + (typeof t.eventsCaptured === 'number' ? t.eventsCaptured : 0), 0);
  } catch {
    return null;
  }
}

interface HubStatus { eventsStored: number; pending: number }

/** Events in the hub's log and deliveries still pending, from GET /v1/status (admin token from the hub's data dir). */
async function hubStatus(hubUrl: string, hubDataDir: string): Promise<HubStatus | null> {
  try {
    const token = readFileSync(join(hubDataDir, 'admin.token'), 'utf8').trim();
    const res = await fetch(`${hubUrl}/v1/status`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
    if (!res.ok) return null;
    const j = (await res.json()) as { eventsStored?: unknown; destinations?: { pending?: unknown }[] };
    if (typeof j.eventsStored !== 'number') return null;
    const pending = (j.destinations ?? []).reduce((a, d) => a + (typeof d.pending === 'number' ? d.pending : 0), 0);
    return { eventsStored: j.eventsStored, pending };
  } catch {
    return null;
  }
}

/** The enrollment token from `dovetail-hub agents enroll` output (JSON or text). */
export function parseToken(out: string): string | null {
  const dvt = /dvt_enroll_[A-Za-z0-9_-]+/.exec(out);
  if (dvt) return dvt[0];
  try {
    const j = JSON.parse(out) as { token?: unknown };
    if (typeof j.token === 'string') return j.token;
  } catch { /* text output */ }
  const labelled = /token[^A-Za-z0-9]*[:=]\s*(\S+)/i.exec(out);
  if (labelled) return labelled[1]!;
  const words = out.split(/\s+/).filter((w) => /^[A-Za-z0-9_\-.~]{20,}$/.test(w));
  return words.at(-1) ?? null;
}

/** A one-time enrollment token: `dovetail-hub agents enroll`, or the hub API when the CLI cannot give one. */
async function issueToken(children: Children, hubConfig: string, hubUrl: string, hubData: string): Promise<string | null> {
  try {
    const t = parseToken(await children.run('enroll', [HUB_BIN, 'agents', 'enroll', '--name', 'demo', '--config', hubConfig]));
    if (t) return t;
  } catch { /* logged in enroll.log; try the API */ }
  try {
    const admin = readFileSync(join(hubData, 'admin.token'), 'utf8').trim();
    const res = await fetch(`${hubUrl}/v1/enrollment-tokens`, {
      method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'demo' }),
    });
    const j = (await res.json()) as { token?: unknown };
    return typeof j.token === 'string' ? j.token : null;
  } catch {
    return null;
  }
}

export function summaryLine(n: { changes: number; captured: number; delivered: number; duplicates: number; lost: number }): string {
  return `demo: ${n.changes} changes made, ${n.captured} events captured, ${n.delivered} delivered, ${n.duplicates} duplicates, ${n.lost} lost`;
}

async function main(argv: string[]): Promise<number> {
  let opts: Options | 'help';
  try {
    opts = parseOptions(argv);
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  for (const [what, bin, src] of [['hub', HUB_BIN, 'hub/src/cli.ts'], ['agent', AGENT_BIN, 'agent/src/cli.ts']] as const) {
    if (!existsSync(bin) || !existsSync(join(REPO, src))) {
      process.stderr.write(`demo: the ${what} CLI is not there yet (${src}); nothing to run\n`);
      return 1;
    }
  }

  const workDir = opts.workDir ? resolve(opts.workDir) : mkdtempSync(join(tmpdir(), 'dovetail-demo-'));
  const logDir = join(workDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const children = new Children(logDir);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say(`demo: work dir ${workDir} (logs in ${logDir})`);

  let erp: Erp | null = null;
  let receiver: Receiver | null = null;
  let sim: Simulator | null = null;
  let hub: ChildProcess | null = null;
  let agent: ChildProcess | null = null;
  let progress: NodeJS.Timeout | null = null;
  /** Set before the demo stops its children, so their exit is not reported as a crash. */
  let stopping = false;
  const onExit = () => children.killAll();
  process.on('exit', onExit);

  try {
    erp = await startErp({ seed: opts.seed, timeZone: DEMO_TIME_ZONE });
    say(`demo: ERP (embedded PostgreSQL) on 127.0.0.1:${erp.port}: ${erp.seedData.customers.length} customers, ${erp.seedData.items.length} items, ${erp.seedData.orders.length} orders`);
    const secret = newWebhookSecret();
    receiver = await startReceiver({ secret });
    say(`demo: CRM webhook receiver on ${receiver.url}`);

    const hubPort = await freePort();
    const hubUrl = `http://127.0.0.1:${hubPort}`;
    const hubConfig = join(workDir, 'hub.yaml');
    const agentConfig = join(workDir, 'agent.yaml');
    const agentData = join(workDir, 'agent-data');
    const hubData = join(workDir, 'hub-data');
    writeFileSync(hubConfig, hubYaml({ port: hubPort, dataDir: hubData, webhookUrl: receiver.url, webhookSecret: secret }));
    writeFileSync(agentConfig, agentYaml({ erpUrl: erp.url, hubUrl, dataDir: agentData, timeZone: erp.timeZone }));

    hub = children.spawn('hub', [HUB_BIN, 'run', '--config', hubConfig]);
    const hubStarted = Date.now();
    while (!(await portOpen(hubPort))) {
      if (hub.exitCode !== null) throw new Error(`the hub exited with code ${hub.exitCode}; see ${join(logDir, 'hub.log')}`);
      if (Date.now() - hubStarted > HUB_START_TIMEOUT_MS) throw new Error(`the hub did not listen on ${hubPort} within ${HUB_START_TIMEOUT_MS / 1000} s; see ${join(logDir, 'hub.log')}`);
      await sleep(200);
    }
    say(`demo: hub on ${hubUrl}`);

    const token = await issueToken(children, hubConfig, hubUrl, hubData);
    if (!token) throw new Error(`no token from 'dovetail-hub agents enroll' nor from the hub API; see ${join(logDir, 'enroll.log')}`);
    await children.run('enroll', [AGENT_BIN, 'enroll', '--hub', hubUrl, '--token', token, '--config', agentConfig]);
    say('demo: agent enrolled');

    agent = children.spawn('agent', [AGENT_BIN, 'run', '--config', agentConfig]);
    sim = new Simulator(erp, { seed: opts.seed });
    let simErrors = 0;
    sim.start(opts.rate, (err) => {
      if (simErrors++ === 0) process.stderr.write(`demo: simulator: ${(err as Error).message}\n`);
    });
    const started = Date.now();
    say(`demo: agent running; making ${opts.rate} ERP changes a second${opts.durationS ? ` for ${opts.durationS} s` : ' until Ctrl-C'}`);

    let lastHub: HubStatus | null = null;
    const line = async (phase: string) => {
      const r = receiver!.stats();
      lastHub = (await hubStatus(hubUrl, hubData)) ?? lastHub;
      const captured = lastHub?.eventsStored ?? agentCaptured(agentData);
      const lag = r.lagMs === null ? '-' : `${(r.lagMs / 1000).toFixed(1)}s`;
      const secs = String(Math.round((Date.now() - started) / 1000)).padStart(4);
      say(`[${secs}s] ${phase} changes ${sim!.stats().changes} | captured ${captured ?? '-'} | delivered ${r.delivered} | dup ${r.duplicates} | lag ${lag}`);
    };
    let phase = 'run  ';
    progress = setInterval(() => void line(phase), PROGRESS_EVERY_MS);
    // A child that dies on its own ends the run: waiting longer cannot deliver anything.
    let died: string | null = null;
    const childDied = new Promise<void>((res) => {
      for (const [name, c] of [['agent', agent!], ['hub', hub!]] as const) {
        c.once('exit', (code, signal) => {
          if (died === null && !stopping) {
            died = `the ${name} exited on its own (${signal ?? `code ${code}`}); see ${join(logDir, `${name}.log`)}`;
            process.stderr.write(`demo: ${died}\n`);
          }
          res();
        });
      }
    });

    // Run for --duration, or until Ctrl-C (a second Ctrl-C aborts without the comparison).
    await Promise.race([childDied, new Promise<void>((res) => {
      const t = opts.durationS ? setTimeout(res, opts.durationS * 1000) : null;
      process.once('SIGINT', () => {
        if (t) clearTimeout(t);
        process.once('SIGINT', () => { children.killAll(); process.exit(130); });
        res();
      });
    })]);
    phase = 'drain';
    await sim.stop();
    say(`demo: simulator stopped after ${sim.stats().changes} changes; draining (at most ${DRAIN_TIMEOUT_MS / 1000} s)`);

    let cmp: Comparison = { checked: 0, lost: 0, mismatches: [] };
    const drainUntil = Date.now() + DRAIN_TIMEOUT_MS;
    for (;;) {
      cmp = compareStates(await expectedFromErp(erp), receiver.state());
      const h = await hubStatus(hubUrl, hubData);
      // Done when the receiver matches the ERP and the hub has nothing left to deliver.
      if ((cmp.lost === 0 && (h === null || h.pending === 0)) || died !== null || Date.now() > drainUntil) break;
      await sleep(500);
    }
    clearInterval(progress);
    progress = null;
    await line('final');
    const finalHub = await hubStatus(hubUrl, hubData);
    let captured = finalHub?.eventsStored ?? null;
    if (captured === null) {
      // No hub status: fall back to the agent's count (its status file is refreshed every 2 s).
      await sleep(2500);
      captured = agentCaptured(agentData) ?? 0;
    }
    stopping = true;
    await children.stop(agent);
    await children.stop(hub);
    // Deliveries that arrived while the processes stopped still count.
    cmp = compareStates(await expectedFromErp(erp), receiver.state());
    const r = receiver.stats();
    for (const m of cmp.mismatches.slice(0, 10)) say(`demo: lost ${m.kind} ${m.key}: ${m.detail}`);
    if (cmp.mismatches.length > 10) say(`demo: ... and ${cmp.mismatches.length - 10} more`);
    if (r.rejected > 0) say(`demo: ${r.rejected} deliveries had a bad signature and were refused`);
    const ok = cmp.lost === 0 && r.duplicates === 0;
    if (ok && !opts.keep && !opts.workDir) rmSync(workDir, { recursive: true, force: true });
    else say(`demo: work dir kept: ${workDir}`);
    say(summaryLine({ changes: sim.stats().changes, captured, delivered: r.delivered, duplicates: r.duplicates, lost: cmp.lost }));
    return ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    process.stderr.write(`demo: logs in ${logDir}\n`);
    return 1;
  } finally {
    stopping = true;
    if (progress) clearInterval(progress);
    await sim?.stop().catch(() => undefined);
    if (agent) await children.stop(agent).catch(() => undefined);
    if (hub) await children.stop(hub).catch(() => undefined);
    await receiver?.close().catch(() => undefined);
    await erp?.close().catch(() => undefined);
    process.off('exit', onExit);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
