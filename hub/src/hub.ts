/**
 * Assembles a running hub: store -> identity files -> HTTP API + agent gateway on one
 * port -> delivery router. One shutdown path: stop accepting, close agent sockets
 * (1001), stop delivery, close the HTTP server, close the store, remove hub.json.
 */
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { CLOSE, DovetailError, type Logger } from '@dovetail/shared';
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
  // Before anything is created or opened: a busy port is the commonest first-run failure.
  if (config.listen.port !== 0) await probeListen(config.listen.host, config.listen.port);
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
        backoff: { initialMs: d.retryInitialDelayMs, maxMs: d.retryMaxDelayMs, factor: 2 },
        connector: createWebhookConnector({
          url: d.url, headers: d.headers, secret: (nowMs) => secrets.signing(d.name, nowMs), timeoutMs: d.timeoutMs,
          ...(opts.fetch ? { fetch: opts.fetch } : {}), ...(opts.timers ? { timers: opts.timers } : {}),
        }),
      })),
    });
    const app = await buildApi({
      store, identity, logger: log, isOnline: (a) => gateway.isOnline(a), destinations: () => router.status(), ...(opts.now ? { now: opts.now } : {}),
      fleet, disconnect: (agentId, code, reason) => gateway.disconnect(agentId, code, reason),
      hubKeys: id, announceHubKey: (chain) => gateway.announceHubKey(chain), agentKeyGraceMs: config.keys.agentKeyGraceMs,
      configs, offerConfig: (agentId) => gateway.offerConfig(agentId), secrets,
      replayQueued: (name) => router.replayQueued(name),
    });
    gateway.attach(app.server);
    await router.start();
    try {
      await app.listen({ host: config.listen.host, port: config.listen.port });
    } catch (err) {
      throw listenError(err, config.listen.host, config.listen.port);
    }
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

/** Binds and releases host:port, so a busy port fails before hub.key or the store are touched. */
async function probeListen(host: string, port: number): Promise<void> {
  const server = createServer();
  await new Promise<void>((done, fail) => {
    server.once('error', (err) => fail(listenError(err, host, port)));
    server.listen({ host, port, exclusive: true }, () => server.close(() => done()));
  });
}

const LISTEN_WHY: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (another hub or another program listens there); stop it, or choose another port with --port or listen.port in the config',
  EACCES: 'permission denied (ports below 1024 need privileges); choose a port above 1023 with --port or listen.port',
  EADDRNOTAVAIL: 'this machine has no such address; use 127.0.0.1, 0.0.0.0 or one of its own addresses in --host or listen.host',
  ENOTFOUND: 'the host name does not resolve; fix --host or listen.host',
};

function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return err;
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why = LISTEN_WHY[code] ?? `${code}`;
  return new DovetailError('HUB_LISTEN_FAILED', `cannot listen on ${where}: ${why}`, { host, port, cause: code }, { cause: err });
}
