/**
 * Assembles a running hub: store -> identity files -> HTTP API + agent gateway on one
 * port -> delivery router. One shutdown path: stop accepting, close agent sockets
 * (1001), stop delivery, close the HTTP server, close the store, remove hub.json.
 */
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { CLOSE, type Logger } from '@dovetail/shared';
import type { FastifyInstance } from 'fastify';
import type { HubConfig } from './config.ts';
import { openLevelStore } from './store/level.ts';
import type { HubStore } from './store/types.ts';
import { AgentGateway } from './gateway/gateway.ts';
import { FleetTracker } from './fleet/fleet.ts';
import { DeliveryRouter } from './delivery/router.ts';
import { createWebhookConnector } from './delivery/webhook.ts';
import type { Timers } from './delivery/types.ts';
import { ADMIN_TOKEN_SETTING, buildApi } from './http/api.ts';
import {
  ensureDataDir, hashToken, loadOrCreateAdminToken, removeHubInfo, writeHubInfo, type HubIdentity,
} from './identity.ts';
import { HubKeyring } from './keys/hub-keys.ts';
import { RemoteConfigs } from './remote/remote-config.ts';
import { DestinationSecrets } from './delivery/secrets.ts';

export type HubState = 'starting' | 'running' | 'stopping' | 'stopped';

export interface StartHubOptions {
  logger: Logger;
  /** Default: LevelDB at <dataDir>/db. Tests pass createMemoryStore(). */
  store?: HubStore;
  timers?: Timers;
  now?: () => Date;
  fetch?: typeof fetch;
}

export interface Hub {
  readonly url: string;
  /** The current hub key (a rotation replaces it in place). */
  readonly identity: HubIdentity;
  readonly keys: HubKeyring;
  readonly store: HubStore;
  readonly gateway: AgentGateway;
  readonly router: DeliveryRouter;
  readonly app: FastifyInstance;
  state(): HubState;
  close(): Promise<void>;
}

export async function startHub(config: HubConfig, opts: StartHubOptions): Promise<Hub> {
  let state: HubState = 'starting';
  const log = opts.logger;
  ensureDataDir(config.dataDir);
  const store = opts.store ?? (await openLevelStore(join(config.dataDir, 'db')));
  try {
    const id = new HubKeyring(config.dataDir);
    if (id.created) log.info({ keyId: id.keyId }, 'created hub key');
    if (id.recovered) log.warn({ keyId: id.keyId, outcome: id.recovered }, 'found an interrupted hub key rotation and completed it (finished: the new key was announced; discarded: it never was)');
    if (id.looseMode) log.warn({ file: join(config.dataDir, 'hub.key') }, 'hub key file is readable by other users; chmod 600 it');
    const admin = loadOrCreateAdminToken(config.dataDir);
    if (admin.created) log.info({ file: join(config.dataDir, 'admin.token') }, 'created admin token');
    // The file is the operator's copy; the registry holds only its hash for request checks.
    await store.registry.putSetting(ADMIN_TOKEN_SETTING, hashToken(admin.token));
    // The key ring is the identity: its getters always give the current key.
    const identity: HubIdentity = id;
    const now = opts.now ?? (() => new Date());
    const configs = new RemoteConfigs(store.registry);
    const secrets = await DestinationSecrets.load(store.registry, config.destinations);

    const fleet = new FleetTracker({ offlineAfterMs: config.fleet.offlineAfterMs, ...(opts.now ? { now: opts.now } : {}) });
    const gateway = new AgentGateway({
      store, fleet, hubKey: id, configs, logger: log, maxHandshakes: config.maxHandshakes, ...(opts.now ? { now: opts.now } : {}),
      onConfigResult: (agent, rec) => {
        store.audit.append({
          at: now().toISOString(), actor: `agent:${agent.id}`, actorName: agent.name, action: rec.status === 'applied' ? 'agent.config-applied' : 'agent.config-refused',
          target: agent.id, tenant: agent.tenant, remote: null, detail: { version: rec.version, reason: rec.reason },
        }).catch((err) => log.error({ err, agentId: agent.id }, 'could not audit a config result'));
      },
    });
    const router = new DeliveryRouter({
      log: store.log, state: store.delivery, logger: log, ...(opts.timers ? { timers: opts.timers } : {}),
      tenantOf: async (agentId) => (await store.registry.getAgent(agentId))?.tenant,
      destinations: config.destinations.map((d) => ({
        name: d.name, entities: d.entities, maxAttempts: d.maxAttempts, concurrency: d.concurrency, tenant: d.tenant,
        connector: createWebhookConnector({ url: d.url, secret: (nowMs) => secrets.signing(d.name, nowMs), timeoutMs: d.timeoutMs, ...(opts.fetch ? { fetch: opts.fetch } : {}), ...(opts.timers ? { timers: opts.timers } : {}) }),
      })),
    });
    const app = await buildApi({
      store, identity, logger: log, isOnline: (a) => gateway.isOnline(a), destinations: () => router.status(), ...(opts.now ? { now: opts.now } : {}),
      fleet, disconnect: (agentId, code, reason) => gateway.disconnect(agentId, code, reason),
      hubKeys: id, announceHubKey: (chain) => gateway.announceHubKey(chain), agentKeyGraceMs: config.keys.agentKeyGraceMs,
      configs, offerConfig: (agentId) => gateway.offerConfig(agentId), secrets,
    });
    gateway.attach(app.server);
    await router.start();
    await app.listen({ host: config.listen.host, port: config.listen.port });
    const port = (app.server.address() as AddressInfo).port;
    // A wildcard listen address is not connectable; the CLI on this machine uses loopback.
    const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    writeHubInfo(config.dataDir, { url, pid: process.pid });
    state = 'running';
    log.info({ url, hubKeyId: identity.keyId, destinations: config.destinations.map((d) => d.name) }, 'hub listening');

    let closing: Promise<void> | null = null;
    return {
      url, identity, keys: id, store, gateway, router, app,
      state: () => state,
      close() {
        closing ??= (async () => {
          state = 'stopping';
          removeHubInfo(config.dataDir);
          await gateway.close(CLOSE.GOING_AWAY);
          await router.stop();
          await app.close();
          await store.close();
          state = 'stopped';
          log.info('hub stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
}
