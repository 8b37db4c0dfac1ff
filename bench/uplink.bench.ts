/**
 * Uplink throughput: events per second from a pre-filled agent outbox to the hub's
 * ack, on loopback. Real pieces end to end: the agent's LevelDB Outbox (signed
 * batches), its Uplink (ws, challenge-response, window of in-flight batches), and a
 * real hub (startHub, LevelDB store, gateway verify + durable sync append, no
 * destinations). The agent's key is registered in the hub registry the way
 * enrollment does it (token consumed + key stored), without the HTTP round trip.
 *
 * Two layouts:
 *   split  - the hub in its own process (as in production: its own event loop);
 *   inproc - hub and agent share one process and one event loop (worst case here).
 *
 * Timing starts at uplink.start() (connect + auth included) and stops when the
 * outbox recorded the ack of the last seq. Bounded by a deadline; stops by itself.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createLogger, encodeKey, keyId, keyPairFromSeed, packr, type KeyPair } from '@dovetail/shared';
import type { Hub } from '@dovetail/hub';
import { Outbox } from '@dovetail/agent';
import { Uplink } from '../agent/src/uplink/uplink.ts';
import { registerAgent, startBenchHub, type BenchAgent } from './hub-process.ts';
import { forkBenchChild, nowMs, prng, rate, sampleEvent, tempDir } from './lib.ts';

export interface UplinkBenchOptions {
  /** Events to send. Default 100 000. */
  events: number;
  /** Events per batch (agent default maxBatchEvents). Default 500. */
  batchEvents: number;
  /** Agent default maxInFlightBatches. Default 32. */
  maxInFlightBatches: number;
  mode: 'split' | 'inproc';
  /** Write V8 CPU profiles of both sides here (split: hub child gets --cpu-prof). */
  cpuProfDir?: string | undefined;
  /** Give up after this long, ms. Default 300 000. */
  deadlineMs: number;
  log?: (line: string) => void;
}

export interface UplinkBenchResult {
  mode: 'split' | 'inproc';
  events: number;
  batches: number;
  batchEvents: number;
  maxInFlightBatches: number;
  /** Average msgpack bytes per event, and total batch body bytes sent. */
  avgEventBytes: number;
  bodyBytes: number;
  /** Pre-fill: Outbox.commit (split, sign, one LevelDB write per batch). */
  prefillMs: number;
  prefillEventsPerSec: number;
  /** start() -> hub `ready` (connect + challenge + auth). */
  connectMs: number;
  /** start() -> ack of the last seq recorded in the outbox. */
  totalMs: number;
  eventsPerSec: number;
  batchesPerSec: number;
  mbPerSec: number;
  /** Events the hub log holds at the end (must equal events). */
  hubLogEvents: number;
  /** CPU time during the send phase, ms. */
  agentCpuMs: number;
  hubCpuMs: number | null;
  completed: boolean;
}

const HERE = fileURLToPath(new URL('.', import.meta.url));

interface HubHandle {
  url: string;
  hubKeyId: string;
  lastOffset(): Promise<number>;
  cpuMs(): Promise<number | null>;
  close(): Promise<void>;
}

async function inprocHub(dataDir: string, agent: BenchAgent): Promise<HubHandle> {
  const hub: Hub = await startBenchHub(dataDir);
  await registerAgent(hub, agent);
  return {
    url: hub.url, hubKeyId: hub.identity.keyId,
    lastOffset: () => hub.store.log.lastOffset(),
    cpuMs: async () => null,
    close: () => hub.close(),
  };
}

async function childHub(dataDir: string, agent: BenchAgent, cpuProfDir: string | undefined): Promise<HubHandle> {
  // No fixed file name: tsx's loader thread writes a profile too and would overwrite the main thread's.
  const execArgv = cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', join(cpuProfDir, 'hub')] : [];
  const { child, ask, exited } = forkBenchChild(join(HERE, 'hub-process.ts'), { name: 'bench hub', execArgv });
  try {
    const ready = await ask({ t: 'start', dataDir, agents: [agent] }, 'ready');
    const count = () => ask({ t: 'count' }, 'count');
    const startCpu = Number((await count()).cpuMs);
    return {
      url: String(ready.url), hubKeyId: String(ready.hubKeyId),
      lastOffset: async () => Number((await count()).lastOffset),
      cpuMs: async () => Number((await count()).cpuMs) - startCpu,
      close: async () => {
        await ask({ t: 'close' }, 'closed').catch(() => child.kill());
        await exited;
      },
    };
  } catch (err) {
    child.kill();
    throw err;
  }
}

export async function runUplinkBench(o: UplinkBenchOptions): Promise<UplinkBenchResult> {
  const log = o.log ?? ((l: string) => console.log(l));
  const tmp = tempDir('dovetail-bench-uplink-');
  const silent = createLogger({ name: 'bench', level: 'silent' });
  const kp: KeyPair = keyPairFromSeed(new Uint8Array(randomBytes(32)));
  const agent: BenchAgent = { id: 'agt_bench', publicKey: encodeKey(kp.publicKey), keyId: keyId(kp.publicKey) };
  let hub: HubHandle | undefined;
  let outbox: Outbox | undefined;
  let uplink: Uplink | undefined;
  try {
    outbox = await Outbox.open(join(tmp.path, 'agent'), {
      agentId: agent.id, secretKey: kp.secretKey, maxBatchEvents: o.batchEvents, maxBatchBytes: 1024 * 1024,
    });

    // Pre-fill, one commit per batch as the table runner would do for a page of rows.
    const r = prng(42);
    let eventBytes = 0;
    const t0 = nowMs();
    for (let i = 0; i < o.events; i += o.batchEvents) {
      const events = [];
      for (let j = i; j < Math.min(o.events, i + o.batchEvents); j++) {
        const ev = sampleEvent(j, agent.id, r);
        if (j < 2000) eventBytes += packr.pack(ev).byteLength;
        events.push(ev);
      }
      await outbox.commit({ table: 'bench', events, position: String(i), stateOps: [], quarantine: [] });
    }
    const prefillMs = nowMs() - t0;
    const stats = await outbox.stats();
    const lastSeq = stats.nextSeq - 1;
    log(`  prefill: ${o.events} events in ${lastSeq} batches, ${(stats.bytes / 1e6).toFixed(1)} MB of bodies, ${(prefillMs / 1000).toFixed(1)} s`);

    hub = o.mode === 'split'
      ? await childHub(join(tmp.path, 'hub'), agent, o.cpuProfDir)
      : await inprocHub(join(tmp.path, 'hub'), agent);

    uplink = new Uplink({
      hubUrl: hub.url,
      identity: { agentId: agent.id, keyPair: kp, keyId: agent.keyId, hubKeyId: hub.hubKeyId },
      outbox, version: 'bench', host: 'bench',
      maxInFlightBatches: o.maxInFlightBatches, reconnectInitialMs: 200, reconnectMaxMs: 2000, heartbeatMs: 30_000,
      logger: silent,
    });
    let connectMs = 0;
    let done: () => void = () => {};
    const finished = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), o.deadlineMs);
      done = () => { clearTimeout(timer); resolve(true); };
    });
    const startCpu = process.cpuUsage();
    const t1 = nowMs();
    uplink.on('ready', () => { connectMs = nowMs() - t1; });
    // 'ack' fires after the outbox recorded the ack, so the last one means the outbox is empty.
    uplink.on('ack', (seq: number) => { if (seq >= lastSeq) done(); });
    uplink.on('nack', (n: unknown) => log(`  NACK ${JSON.stringify(n)}`));
    uplink.start();
    const completed = await finished;
    const totalMs = nowMs() - t1;
    const cpu = process.cpuUsage(startCpu);
    const hubCpuMs = await hub.cpuMs();
    const hubLogEvents = await hub.lastOffset();
    const end = await outbox.stats();
    if (!completed) log(`  DEADLINE: ${o.deadlineMs} ms passed with outbox depth ${end.depth} (last acked seq ${end.lastAckedSeq} of ${lastSeq})`);
    const sentEvents = completed ? o.events : hubLogEvents;
    return {
      mode: o.mode, events: o.events, batches: lastSeq, batchEvents: o.batchEvents, maxInFlightBatches: o.maxInFlightBatches,
      avgEventBytes: Math.round(eventBytes / Math.min(o.events, 2000)), bodyBytes: stats.bytes,
      prefillMs, prefillEventsPerSec: rate(o.events, prefillMs),
      connectMs, totalMs,
      eventsPerSec: rate(sentEvents, totalMs),
      batchesPerSec: rate(completed ? lastSeq : end.lastAckedSeq, totalMs),
      mbPerSec: rate(completed ? stats.bytes : (stats.bytes * hubLogEvents) / o.events, totalMs) / 1e6,
      hubLogEvents, agentCpuMs: (cpu.user + cpu.system) / 1000, hubCpuMs, completed,
    };
  } finally {
    await uplink?.stop().catch(() => undefined);
    await hub?.close().catch(() => undefined);
    await outbox?.close().catch(() => undefined);
    tmp.remove();
  }
}
