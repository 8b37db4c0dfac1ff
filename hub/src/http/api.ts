/**
 * Hub HTTP API (fastify). Errors are JSON {code, message}.
 *
 *   POST /v1/enroll                 agent enrollment with a one-time token (no bearer)
 *   GET  /v1/health                 liveness for load balancers (no bearer, no details)
 *   POST /v1/enrollment-tokens      operator: {name, ttlSeconds?, tenant?} -> {token, expiresAt}
 *   GET  /v1/agents, /v1/agents/:id operator: fleet and one agent's status
 *   GET  /v1/destinations           operator: cursor, pending, DLQ per destination
 *   GET  /v1/status                 operator: all of the above in one call (CLI `status`)
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import { DovetailError, decodeKey, encodeKey, isDovetailError, keyId, toHex, type ErrorCode, type Logger } from '@dovetail/shared';
import type { AgentRecord, HubStore } from '../store/types.ts';
import type { DestinationStatus } from '../delivery/router.ts';
import { hashToken, newToken, tokenMatches, type HubIdentity } from '../identity.ts';

export const ADMIN_TOKEN_SETTING = 'adminTokenHash';
/** Default enrollment token lifetime: long enough to walk to the ERP server, short enough to be useless if leaked later. */
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;
const MAX_TOKEN_TTL_SECONDS = 30 * 24 * 3600;

export interface ApiDeps {
  store: HubStore;
  identity: HubIdentity;
  logger: Logger;
  isOnline: (agentId: string) => boolean;
  destinations: () => DestinationStatus[];
  now?: () => Date;
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  HUB_BAD_REQUEST: 400,
  HUB_TOKEN_INVALID: 401,
  HUB_UNAUTHORIZED: 401,
  HUB_NOT_FOUND: 404,
  HUB_TOKEN_USED: 409,
  HUB_KEY_IN_USE: 409,
  HUB_TOKEN_EXPIRED: 410,
};

function bad(field: string, msg: string): never {
  throw new DovetailError('HUB_BAD_REQUEST', `${field}: ${msg}`, { field });
}

function field(body: unknown, name: string, opts: { optional?: boolean; max?: number } = {}): string | undefined {
  const v = (body as Record<string, unknown> | null)?.[name];
  if (v === undefined && opts.optional) return undefined;
  if (typeof v !== 'string' || v.length === 0) bad(name, 'must be a non-empty string');
  if (v.length > (opts.max ?? 200)) bad(name, `must be at most ${opts.max ?? 200} characters`);
  return v;
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const now = deps.now ?? (() => new Date());
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });

  app.setErrorHandler((err: unknown, _req, reply) => {
    if (isDovetailError(err)) {
      return reply.code(STATUS[err.code] ?? 500).send({ code: err.code, message: err.message });
    }
    const e = err as { statusCode?: number; message?: string };
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.code(e.statusCode).send({ code: 'HUB_BAD_REQUEST', message: e.message ?? 'bad request' });
    }
    deps.logger.error({ err }, 'HTTP API internal error');
    return reply.code(500).send({ code: 'HUB_INTERNAL', message: 'internal error; see the hub log' });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'HUB_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  const requireAdmin = async (req: FastifyRequest, _reply: FastifyReply) => {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const expected = await deps.store.registry.getSetting(ADMIN_TOKEN_SETTING);
    if (!m || !expected || !tokenMatches(m[1]!, expected)) {
      throw new DovetailError('HUB_UNAUTHORIZED', 'missing or wrong admin bearer token (see <dataDir>/admin.token)');
    }
  };

  app.get('/v1/health', async () => ({ status: 'ok' }));

  app.post('/v1/enroll', async (req) => {
    const token = field(req.body, 'token')!;
    const pkText = field(req.body, 'publicKey', { max: 100 })!;
    const name = field(req.body, 'name', { optional: true });
    const host = field(req.body, 'host', { optional: true }) ?? null;
    const version = field(req.body, 'version', { optional: true, max: 50 }) ?? null;
    const pk = decodeKey(pkText);
    if (pk.byteLength !== 32 || encodeKey(pk) !== pkText) bad('publicKey', 'must be the base64 of a 32-byte Ed25519 public key');
    const tokenHash = hashToken(token);
    const tok = await deps.store.registry.getToken(tokenHash);
    const at = now();
    const agent = await deps.store.registry.enroll(tokenHash, {
      id: `agt_${toHex(randomBytes(8))}`,
      // The operator named the agent when issuing the token; the agent's own name is a fallback.
      name: tok?.name ?? name ?? 'agent',
      publicKey: pkText, keyId: keyId(pk), status: 'active', createdAt: at.toISOString(), lastSeenAt: null, version, host,
    }, at);
    deps.logger.info({ agentId: agent.id, agentName: agent.name, tenant: agent.tenant }, 'agent enrolled');
    return { agentId: agent.id, tenant: agent.tenant, hubPublicKey: encodeKey(deps.identity.keyPair.publicKey), hubKeyId: deps.identity.keyId };
  });

  app.post('/v1/enrollment-tokens', { preHandler: requireAdmin }, async (req) => {
    const name = field(req.body, 'name', { max: 100 })!;
    const tenant = field(req.body, 'tenant', { optional: true, max: 100 }) ?? 'default';
    const ttlRaw = (req.body as Record<string, unknown>).ttlSeconds;
    const ttl = ttlRaw === undefined ? DEFAULT_TOKEN_TTL_SECONDS : ttlRaw;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) bad('ttlSeconds', `must be an integer from 1 to ${MAX_TOKEN_TTL_SECONDS}`);
    const at = now();
    const token = newToken('enroll');
    const expiresAt = new Date(at.getTime() + (ttl as number) * 1000).toISOString();
    await deps.store.registry.putToken({ hash: hashToken(token), name, tenant, createdAt: at.toISOString(), expiresAt, usedAt: null, agentId: null });
    deps.logger.info({ agentName: name, tenant, expiresAt }, 'enrollment token issued');
    return { token, expiresAt };
  });

  const agentView = async (a: AgentRecord) => {
    const cur = await deps.store.log.agentCursor(a.id);
    return { ...a, lastSeq: cur.lastSeq, eventsStored: cur.events, online: deps.isOnline(a.id) };
  };

  app.get('/v1/agents', { preHandler: requireAdmin }, async () => {
    const agents = await deps.store.registry.listAgents();
    return { agents: await Promise.all(agents.map(agentView)) };
  });

  app.get<{ Params: { id: string } }>('/v1/agents/:id', { preHandler: requireAdmin }, async (req) => {
    const a = await deps.store.registry.getAgent(req.params.id);
    if (!a) throw new DovetailError('HUB_NOT_FOUND', `agent ${req.params.id} is not registered`);
    return agentView(a);
  });

  const destinationsView = async () => {
    const last = await deps.store.log.lastOffset();
    return Promise.all(deps.destinations().map(async (d) => ({
      name: d.name, type: d.type, cursor: d.cursor, pending: last - d.cursor, inFlight: d.inFlight,
      dlq: await deps.store.delivery.dlqCount(d.name), lastError: d.lastError,
    })));
  };

  app.get('/v1/destinations', { preHandler: requireAdmin }, async () => ({ destinations: await destinationsView() }));

  app.get('/v1/status', { preHandler: requireAdmin }, async () => {
    const agents = await Promise.all((await deps.store.registry.listAgents()).map(agentView));
    return {
      hubKeyId: deps.identity.keyId,
      eventsStored: await deps.store.log.lastOffset(),
      agents: { total: agents.length, online: agents.filter((a) => a.online).length, list: agents },
      destinations: await destinationsView(),
    };
  });

  return app;
}
