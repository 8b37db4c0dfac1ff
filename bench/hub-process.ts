/**
 * A real hub in its own process for the uplink benchmark (agent and hub run on
 * different machines in production; here they at least get their own event loops).
 * Driven over the fork IPC channel by uplink.bench.ts:
 *   parent -> {t:'start', dataDir, agent}  child -> {t:'ready', url, hubKeyId}
 *   parent -> {t:'count'}                  child -> {t:'count', lastOffset, cpuMs}
 *   parent -> {t:'close'}                  child -> {t:'closed'} and exits
 */
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { createLogger } from '@dovetail/shared';
import { parseHubConfig, startHub, type Hub } from '@dovetail/hub';

export interface BenchAgent {
  id: string;
  /** base64 Ed25519 public key */
  publicKey: string;
  keyId: string;
}

type ParentMsg = { t: 'start'; dataDir: string; agent: BenchAgent } | { t: 'count' } | { t: 'close' };

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

/** A hub on loopback port 0, LevelDB under dataDir, no destinations, silent logs. */
export async function startBenchHub(dataDir: string): Promise<Hub> {
  const config = parseHubConfig('listen: { host: 127.0.0.1, port: 0 }\nlogLevel: silent\n', { baseDir: dataDir });
  return startHub(config, { logger: createLogger({ name: 'bench-hub', level: 'silent' }) });
}

async function main(): Promise<void> {
  let hub: Hub | undefined;
  const send = (m: unknown) => process.send!(m);
  process.on('message', (m: ParentMsg) => {
    void (async () => {
      if (m.t === 'start') {
        hub = await startBenchHub(m.dataDir);
        await registerAgent(hub, m.agent);
        send({ t: 'ready', url: hub.url, hubKeyId: hub.identity.keyId });
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
