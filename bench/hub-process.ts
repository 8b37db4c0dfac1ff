/**
 * A real hub in its own process for the uplink benchmark (agent and hub run on
 * different machines in production; here they at least get their own event loops).
 * Driven over the fork IPC channel by uplink.bench.ts and fleet.bench.ts:
 *   parent -> {t:'start', dataDir, agents, config?}  child -> {t:'ready', url, hubKeyId, maxHandshakes}
 *   parent -> {t:'count'}                  child -> {t:'count', lastOffset, cpuMs}
 *   parent -> {t:'mem'}                    child -> {t:'mem', ...HubMemory} (after a full GC when run with --expose-gc)
 *   parent -> {t:'close'}                  child -> {t:'closed'} and exits
 */
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { createLogger } from '@dovetail/shared';
import { parseHubConfig, startHub, type Hub, type HubConfig } from '@dovetail/hub';

export interface BenchAgent {
  id: string;
  /** base64 Ed25519 public key */
  publicKey: string;
  keyId: string;
}

type ParentMsg =
  | { t: 'start'; dataDir: string; agents: BenchAgent[]; config?: string }
  | { t: 'count' } | { t: 'mem' } | { t: 'close' };

/** Hub process memory and what the gateway holds, for the fleet benchmark. Bytes. */
export interface HubMemory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** Whether a full GC ran first (child started with --expose-gc). */
  gc: boolean;
  /** Agents the gateway holds a live authenticated connection for. */
  online: number;
  cpuMs: number;
}

/** Registers the agent the way enrollment does (token consumed + key registered in one step), without HTTP. */
export async function registerAgent(hub: Hub, agent: BenchAgent, now = new Date()): Promise<void> {
  const hash = createHash('sha256').update(`bench-token-${agent.id}`).digest('hex');
  await hub.store.registry.putToken({
    hash, name: 'bench', tenant: 'bench', createdAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + 3_600_000).toISOString(), usedAt: null, agentId: null,
  });
  await hub.store.registry.enroll(hash, {
    id: agent.id, name: 'bench-agent', publicKey: agent.publicKey, keyId: agent.keyId, status: 'active',
    createdAt: now.toISOString(), lastSeenAt: null, version: null, host: null,
  }, now);
}

export function benchHubConfig(dataDir: string, extra = ''): HubConfig {
  return parseHubConfig(`listen: { host: 127.0.0.1, port: 0 }\nlogLevel: silent\n${extra}`, { baseDir: dataDir });
}

/** A hub on loopback port 0, LevelDB under dataDir, no destinations, silent logs; `extra` adds hub.yaml lines. */
export async function startBenchHub(dataDir: string, extra = ''): Promise<Hub> {
  return startHub(benchHubConfig(dataDir, extra), { logger: createLogger({ name: 'bench-hub', level: 'silent' }) });
}

function memory(hub: Hub): HubMemory {
  const gc = (globalThis as { gc?: () => void }).gc;
  // Twice: the first pass may only queue finalizers (ws sockets, KeyObjects) whose memory the second frees.
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  const u = process.cpuUsage();
  return {
    rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers,
    gc: gc !== undefined, online: hub.gateway.onlineAgents().length, cpuMs: (u.user + u.system) / 1000,
  };
}

async function main(): Promise<void> {
  let hub: Hub | undefined;
  const send = (m: unknown) => process.send!(m);
  process.on('message', (m: ParentMsg) => {
    void (async () => {
      if (m.t === 'start') {
        hub = await startBenchHub(m.dataDir, m.config);
        for (const a of m.agents) await registerAgent(hub, a);
        send({ t: 'ready', url: hub.url, hubKeyId: hub.identity.keyId, maxHandshakes: benchHubConfig(m.dataDir, m.config).maxHandshakes });
      } else if (m.t === 'mem') {
        send({ t: 'mem', ...memory(hub!) });
      } else if (m.t === 'count') {
        const u = process.cpuUsage();
        send({ t: 'count', lastOffset: await hub!.store.log.lastOffset(), cpuMs: (u.user + u.system) / 1000 });
      } else if (m.t === 'close') {
        await hub?.close();
        send({ t: 'closed' });
        // Entry point of a bench child: exiting flushes the --cpu-prof profile.
        process.exit(0);
      }
    })().catch((err: unknown) => {
      send({ t: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err) });
      process.exit(1);
    });
  });
  process.on('disconnect', () => process.exit(0));
}

// Only as the forked child, not when uplink.bench.ts imports the helpers above.
if (process.send && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
