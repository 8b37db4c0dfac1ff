/**
 * Fleet: one hub node with N simulated agents connected and heartbeating.
 *
 * The hub is a real startHub (LevelDB store, gateway, HTTP API) in its own process
 * (hub-process.ts, run with --expose-gc); the agents live in `clients` other processes
 * (fleet-agents.ts), each agent a real ws client with its own Ed25519 key, registered in
 * the hub's registry the way enrollment does it, doing the real challenge-response
 * handshake, then sending `status` frames every statusMs and pinging every pingMs.
 *
 * Figures:
 *   memory per idle connection  hub RSS / heap / external after a full GC, with all N
 *                               connected and idle for idleMs, minus the same before any
 *                               connection (agents already registered), divided by N
 *   handshake rate              all N open their socket in the same tick; the hub admits
 *                               maxHandshakes at a time and closes the rest with CLOSE.BUSY
 *                               (4029); they retry with the agent's backoff (500 ms initial,
 *                               30 s cap, full jitter). Rate = N / time until the last
 *                               `ready`, plus the best 1-second window.
 * Loopback only; bounded by deadlineMs; stops by itself.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { encodeKey, keyId, keyPairFromSeed, toB64 } from '@dovetail/shared';
import type { BenchAgent, HubMemory } from './hub-process.ts';
import type { FleetClientStats, SimAgentSpec } from './fleet-agents.ts';
import { forkBenchChild, openFilesLimit, tempDir, type BenchChild } from './lib.ts';

export interface FleetBenchOptions {
  /** Simulated agents. Default 1000. */
  agents: number;
  /** Client processes the agents are spread over. Default 2. */
  clients?: number;
  /** Status frame interval per agent, ms. Default 5000. */
  statusMs?: number;
  /** Ping interval per agent, ms (the agent's heartbeatMs default). Default 15 000. */
  pingMs?: number;
  /** Idle time with everyone connected before memory is measured, ms. Default 20 000. */
  idleMs?: number;
  /** Give up connecting after this long, ms. Default 180 000. */
  deadlineMs?: number;
  /** hub.yaml maxHandshakes; default: the hub's own default. */
  maxHandshakes?: number;
  log?: (line: string) => void;
}

interface MemDelta { rss: number; heapUsed: number; heapTotal: number; external: number }

export interface FleetBenchResult {
  agents: number;
  clients: number;
  maxHandshakes: number;
  statusMs: number;
  pingMs: number;
  idleMs: number;
  /** Soft open-files limit of this shell, and what the children were given (null: not raised). */
  openFilesLimit: number;
  childOpenFiles: number | null;
  hubBefore: HubMemory;
  hubAfter: HubMemory;
  /** (after - before) / online agents, bytes. */
  perConnection: MemDelta;
  handshake: {
    completed: boolean;
    ready: number;
    allReadyMs: number;
    perSec: number;
    /** Most `ready`s in any 1-second window. */
    peakPerSec: number;
    firstTry: number;
    attempts: number;
    busyCloses: number;
    agentsBusied: number;
    maxAttempts: number;
    otherCloses: Record<string, number>;
    p50Ms: number;
    p95Ms: number;
    maxMs: number;
    /** CPU spent while connecting, ms. */
    hubCpuMs: number;
    clientCpuMs: number;
  };
  idle: { statusSent: number; pingsSent: number; pongs: number; dropped: Record<string, number>; online: number };
}

const HERE = fileURLToPath(new URL('.', import.meta.url));
/** Descriptors a child needs beyond its sockets: LevelDB files, pipes, tsx, stdio. */
const SPARE_FDS = 512;
const RSS_SETTLED_BYTES = 512 * 1024;
const SETTLE_MIN_MS = 10_000;
const SETTLE_MAX_MS = 30_000;

function quantile(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0;
}

function peakWindow(sorted: number[], windowMs: number): number {
  let best = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while (sorted[j]! - sorted[i]! > windowMs) i++;
    best = Math.max(best, j - i + 1);
  }
  return best;
}

function sumCounts(parts: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/**
 * Hub memory once RSS stops moving. Right after start-up the process still holds tsx's
 * compile work (its loader thread, whose heap a GC here does not reach) and LevelDB's
 * registration writes; about 30 MiB go back some 5 s later. Readings 1 s apart (each
 * after a full GC) for at least SETTLE_MIN_MS, until three in a row lie within
 * RSS_SETTLED_BYTES; at most SETTLE_MAX_MS.
 */
async function settledMemory(hub: BenchChild): Promise<HubMemory> {
  const started = Date.now();
  const last: HubMemory[] = [];
  for (;;) {
    last.push((await hub.ask({ t: 'mem' }, 'mem')) as unknown as HubMemory);
    if (last.length > 3) last.shift();
    const elapsed = Date.now() - started;
    const spread = Math.max(...last.map((m) => m.rss)) - Math.min(...last.map((m) => m.rss));
    if ((elapsed >= SETTLE_MIN_MS && last.length === 3 && spread < RSS_SETTLED_BYTES) || elapsed > SETTLE_MAX_MS) return last[last.length - 1]!;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export async function runFleetBench(o: FleetBenchOptions): Promise<FleetBenchResult> {
  const log = o.log ?? ((l: string) => console.log(l));
  const n = o.agents;
  const clients = Math.max(1, Math.min(o.clients ?? 2, n));
  const statusMs = o.statusMs ?? 5000;
  const pingMs = o.pingMs ?? 15_000;
  const idleMs = o.idleMs ?? 20_000;
  const deadlineMs = o.deadlineMs ?? 180_000;
  const limit = openFilesLimit();
  const need = Math.ceil(n / clients) + SPARE_FDS;
  const hubNeed = n + SPARE_FDS;
  log(`  open files: soft limit ${limit}; hub needs ~${hubNeed}, each client ~${need}${limit < hubNeed ? ' (children raise it with ulimit -n)' : ''}`);

  const tmp = tempDir('dovetail-bench-fleet-');
  const specs: SimAgentSpec[] = [];
  const registered: BenchAgent[] = [];
  for (let i = 0; i < n; i++) {
    const kp = keyPairFromSeed(new Uint8Array(randomBytes(32)));
    const id = `agt_fleet_${String(i).padStart(5, '0')}`;
    specs.push({ id, keyId: keyId(kp.publicKey), secretKey: toB64(kp.secretKey) });
    registered.push({ id, publicKey: encodeKey(kp.publicKey), keyId: keyId(kp.publicKey) });
  }

  const children: BenchChild[] = [];
  try {
    const hub = forkBenchChild(join(HERE, 'hub-process.ts'), { name: 'bench hub', execArgv: ['--expose-gc'], minOpenFiles: hubNeed });
    children.push(hub);
    const extra = o.maxHandshakes !== undefined ? `maxHandshakes: ${o.maxHandshakes}\n` : '';
    const ready = await hub.ask({ t: 'start', dataDir: join(tmp.path, 'hub'), agents: registered, config: extra }, 'ready', 120_000);
    const url = `${String(ready.url).replace(/^http/, 'ws')}/v1/agents/connect`;
    const maxHandshakes = Number(ready.maxHandshakes);
    const hubBefore = await settledMemory(hub);
    log(`  hub before: rss ${(hubBefore.rss / 2 ** 20).toFixed(1)} MiB, heap ${(hubBefore.heapUsed / 2 ** 20).toFixed(1)} MiB, external ${(hubBefore.external / 2 ** 20).toFixed(1)} MiB (${n} agents registered, none connected${hubBefore.gc ? ', after GC' : ''})`);

    const clientProcs: BenchChild[] = [];
    for (let c = 0; c < clients; c++) {
      const part = specs.filter((_, i) => i % clients === c);
      const child = forkBenchChild(join(HERE, 'fleet-agents.ts'), { name: `bench fleet client ${c}`, minOpenFiles: need });
      children.push(child);
      clientProcs.push(child);
      await child.ask({ t: 'start', url, hubKeyId: String(ready.hubKeyId), agents: part, statusMs, pingMs, backoff: { initialMs: 500, maxMs: 30_000 } }, 'prepared', 60_000);
    }

    log(`  connecting ${n} agents at once from ${clients} process(es); hub maxHandshakes ${maxHandshakes}`);
    const cpuBefore = hubBefore.cpuMs;
    const connected = (await Promise.all(clientProcs.map((c) => c.ask({ t: 'go', deadlineMs }, 'connected', deadlineMs + 30_000)))) as unknown as FleetClientStats[];
    const hubConnected = (await hub.ask({ t: 'mem' }, 'mem')) as unknown as HubMemory;
    const goAt = Math.min(...connected.map((s) => s.goAt));
    const times = connected.flatMap((s) => s.readyAt).filter((t): t is number => t !== null).map((t) => t - goAt).sort((a, b) => a - b);
    const readyCount = times.length;
    const allReadyMs = times[times.length - 1] ?? deadlineMs;
    const sum = (f: (s: FleetClientStats) => number) => connected.reduce((acc, s) => acc + f(s), 0);
    const handshake = {
      completed: readyCount === n,
      ready: readyCount,
      allReadyMs,
      perSec: readyCount / (allReadyMs / 1000),
      peakPerSec: peakWindow(times, 1000),
      firstTry: sum((s) => s.firstTry),
      attempts: sum((s) => s.attempts),
      busyCloses: sum((s) => s.busyCloses),
      agentsBusied: sum((s) => s.agentsBusied),
      maxAttempts: Math.max(...connected.map((s) => s.maxAttempts)),
      otherCloses: sumCounts(connected.map((s) => s.otherCloses)),
      p50Ms: quantile(times, 0.5),
      p95Ms: quantile(times, 0.95),
      maxMs: allReadyMs,
      // Includes the two GCs of the memory probe (tens of ms).
      hubCpuMs: hubConnected.cpuMs - cpuBefore,
      clientCpuMs: sum((s) => s.cpuMs),
    };
    log(`  ${readyCount}/${n} ready in ${(allReadyMs / 1000).toFixed(2)} s: ${handshake.perSec.toFixed(0)} handshakes/s overall, best 1 s window ${handshake.peakPerSec}; ` +
      `p50 ${handshake.p50Ms.toFixed(0)} ms, p95 ${handshake.p95Ms.toFixed(0)} ms`);
    log(`  ${handshake.firstTry} ready on the first try; ${handshake.busyCloses} BUSY (4029) closes hit ${handshake.agentsBusied} agents, who retried (${handshake.attempts} attempts, at most ${handshake.maxAttempts} for one agent)` +
      `${Object.keys(handshake.otherCloses).length ? `; other closes before ready: ${JSON.stringify(handshake.otherCloses)}` : ''}`);
    log(`  CPU while connecting: hub ${handshake.hubCpuMs.toFixed(0)} ms (${(handshake.hubCpuMs / Math.max(1, readyCount)).toFixed(2)} ms per handshake, BUSY refusals included: at most ~${Math.round(1000 / (handshake.hubCpuMs / Math.max(1, readyCount)))}/s on one core), clients ${handshake.clientCpuMs.toFixed(0)} ms`);

    log(`  idle ${idleMs / 1000} s (status every ${statusMs / 1000} s, ping every ${pingMs / 1000} s) ...`);
    await new Promise((r) => setTimeout(r, idleMs));
    const idleStats = (await Promise.all(clientProcs.map((c) => c.ask({ t: 'stats' }, 'stats')))) as unknown as FleetClientStats[];
    const hubAfter = (await hub.ask({ t: 'mem' }, 'mem')) as unknown as HubMemory;
    const online = hubAfter.online;
    const per = (k: keyof MemDelta) => (online > 0 ? (hubAfter[k] - hubBefore[k]) / online : 0);
    const perConnection: MemDelta = { rss: per('rss'), heapUsed: per('heapUsed'), heapTotal: per('heapTotal'), external: per('external') };
    const idle = {
      statusSent: idleStats.reduce((a, s) => a + s.statusSent, 0),
      pingsSent: idleStats.reduce((a, s) => a + s.pingsSent, 0),
      pongs: idleStats.reduce((a, s) => a + s.pongs, 0),
      dropped: sumCounts(idleStats.map((s) => s.dropped)),
      online,
    };
    log(`  hub after:  rss ${(hubAfter.rss / 2 ** 20).toFixed(1)} MiB, heap ${(hubAfter.heapUsed / 2 ** 20).toFixed(1)} MiB, external ${(hubAfter.external / 2 ** 20).toFixed(1)} MiB, ${online} agents online`);
    log(`  per idle connection: rss ${(perConnection.rss / 1024).toFixed(1)} KiB, heap used ${(perConnection.heapUsed / 1024).toFixed(1)} KiB (heap reserved ${(perConnection.heapTotal / 1024).toFixed(1)} KiB), external ${(perConnection.external / 1024).toFixed(1)} KiB`);
    log(`  while idle: ${idle.statusSent} status frames, ${idle.pingsSent} pings / ${idle.pongs} pongs${Object.keys(idle.dropped).length ? `, dropped after ready: ${JSON.stringify(idle.dropped)}` : ''}`);

    for (const c of clientProcs) await c.ask({ t: 'close' }, 'closed', 60_000).catch(() => c.child.kill());
    await hub.ask({ t: 'close' }, 'closed', 60_000).catch(() => hub.child.kill());
    return {
      agents: n, clients, maxHandshakes, statusMs, pingMs, idleMs,
      openFilesLimit: limit, childOpenFiles: limit < hubNeed ? hubNeed : null,
      hubBefore, hubAfter, perConnection, handshake, idle,
    };
  } finally {
    for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill();
    await Promise.all(children.map((c) => c.exited));
    tmp.remove();
  }
}
