/**
 * Hub HTTP API (fastify). Errors are JSON {code, message}. Request and response
 * schemas live in ./schemas.ts; GET /v1/openapi.json is generated from them.
 *
 *   GET  /v1/health                       liveness (no token)
 *   GET  /v1/openapi.json                 this API's OpenAPI document (no token)
 *   POST /v1/enroll                       agent enrollment with a one-time enrollment token
 *   POST /v1/enrollment-tokens            operate: {name, ttlSeconds?, tenant?, site?} -> {token, expiresAt, tenant, site}
 *   GET  /v1/agents, /v1/agents/:id       read: fleet view (online, buffer, lag, tables, last error)
 *   POST /v1/agents/:id/disable|enable    operate
 *   POST /v1/agents/:id/revoke            admin (permanent; the agent must re-enroll)
 *   GET  /v1/destinations, /v1/status     read
 *   POST /v1/tokens, GET /v1/tokens, POST /v1/tokens/:id/revoke   admin: operator API tokens
 *   GET  /v1/audit?limit=N                read: audit log, newest first
 *   POST /v1/agents/:id/keys              signed by the agent's active key: announce its new key (rotation)
 *   GET  /v1/hub/keys, POST /v1/hub/keys/rotate        read / admin: the hub key and its rotations
 *   GET|POST /v1/agents/:id/config        read / operate: remote config (tables) for one agent
 *   POST /v1/destinations/:name/rotate-secret          admin: new webhook secret (shown once), overlap with the old
 *   GET  /v1/destinations/:name/dlq?limit=N            read: dead-lettered events, oldest first
 *   POST /v1/destinations/:name/dlq/replay             operate: {ids?} re-queue DLQ events (all when ids is absent)
 *
 * Every token belongs to one tenant or is global (tenant null). A tenant token sees
 * and acts on its tenant only; other tenants' agents answer 404, as if absent.
 * The bootstrap <dataDir>/admin.token is a global admin token.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import { CLOSE, DovetailError, decodeKey, encodeKey, isDovetailError, keyId, redactSecrets, toHex, type ErrorCode, type KeyAnnouncement, type Logger } from '@dovetail/shared';
import type { AgentRecord, ApiScope, ApiTokenRecord, AuditEntry, HubStore } from '../store/types.ts';
import type { DestinationStatus } from '../delivery/router.ts';
import type { FleetTracker } from '../fleet/fleet.ts';
import { AgentKeyRotation, agentKeys } from '../keys/agent-keys.ts';
import type { HubKeyring } from '../keys/hub-keys.ts';
import { RemoteConfigs, type RemoteConfigRecord } from '../remote/remote-config.ts';
import { DEFAULT_SECRET_OVERLAP_MS, type DestinationSecrets } from '../delivery/secrets.ts';
import { DEFAULT_AGENT_KEY_GRACE_MS } from '../config.ts';
import { hashToken, newToken, tokenMatches, type HubIdentity } from '../identity.ts';
import * as S from './schemas.ts';
import { buildOpenApi, collectRoutes, type RouteConfig } from './openapi.ts';

export const ADMIN_TOKEN_SETTING = 'adminTokenHash';
/** Default enrollment token lifetime: long enough to walk to the ERP server, short enough to be useless if leaked later. */
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;
export const API_VERSION = '0.1.0';

export interface ApiDeps {
  store: HubStore;
  identity: HubIdentity;
  logger: Logger;
  isOnline: (agentId: string) => boolean;
  destinations: () => DestinationStatus[];
  now?: () => Date;
  /** Live fleet state (heartbeats, status frames). Without it agent views show only registry data. */
  fleet?: FleetTracker;
  /** Closes the agent's live socket (disable/revoke take effect at once). */
  disconnect?: (agentId: string, code: number, reason: string) => void;
  /** The hub key ring; without it POST /v1/hub/keys/rotate answers HUB_CONFLICT. */
  hubKeys?: HubKeyring;
  /** Tells connected agents about a hub key rotation; returns how many were told. */
  announceHubKey?: (chain: KeyAnnouncement[]) => number;
  /** Longest grace an agent key rotation gets, ms. Default 24 h. */
  agentKeyGraceMs?: number;
  /** Remote config store. Default: one over store.registry. */
  configs?: RemoteConfigs;
  /** Sends an agent's pending config if it is connected; returns whether it was sent. */
  offerConfig?: (agentId: string) => Promise<boolean>;
  /** Destination secrets (rotation); without it destinations show their config secret and rotate-secret answers 404. */
  secrets?: DestinationSecrets;
  /** Tells delivery that DLQ entries of this destination were queued for replay (DeliveryRouter.replayQueued). */
  replayQueued?: (destination: string) => void;
}

/** DLQ entries moved per replay request: one bounded store write; the reply says how many remain. */
export const MAX_REPLAY_PER_REQUEST = 10_000;

/** Who made a request. */
export interface Principal { id: string; name: string; scope: ApiScope; tenant: string | null }

export const BOOTSTRAP_ADMIN: Principal = Object.freeze({ id: 'admin', name: 'admin.token', scope: 'admin', tenant: null });
const RANK: Record<ApiScope, number> = { read: 1, operate: 2, admin: 3 };

const STATUS: Partial<Record<ErrorCode, number>> = {
  HUB_BAD_REQUEST: 400,
  HUB_AUTH_FAILED: 401,
  HUB_AGENT_DISABLED: 403,
  HUB_TOKEN_INVALID: 401,
  HUB_UNAUTHORIZED: 401,
  HUB_FORBIDDEN: 403,
  HUB_NOT_FOUND: 404,
  HUB_TOKEN_USED: 409,
  HUB_KEY_IN_USE: 409,
  HUB_CONFLICT: 409,
  HUB_TOKEN_EXPIRED: 410,
};

function bad(field: string, msg: string): never {
  throw new DovetailError('HUB_BAD_REQUEST', `${field}: ${msg}`, { field });
}

interface ValidationIssue { instancePath?: string; message?: string; params?: Record<string, unknown> }

/** "ttlSeconds: must be integer" — the field path first, like the hand-written checks. */
function validationMessage(context: string | undefined, issues: ValidationIssue[]): string {
  const v = issues[0] ?? {};
  const path = (v.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
  const missing = typeof v.params?.missingProperty === 'string' ? v.params.missingProperty : undefined;
  const extra = typeof v.params?.additionalProperty === 'string' ? v.params.additionalProperty : undefined;
  if (missing) return `${path ? `${path}.` : ''}${missing}: is required`;
  if (extra) return `${path ? `${path}.` : ''}${extra}: unknown field`;
  const allowed = Array.isArray(v.params?.allowedValues) ? ` (${v.params.allowedValues.join(', ')})` : '';
  return `${path || context || 'request'}: ${v.message ?? 'is invalid'}${allowed}`;
}

const ERR = { response: { 400: S.ErrorBody } };

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const now = deps.now ?? (() => new Date());
  const { store } = deps;
  const log = deps.logger.child({ component: 'api' });
  // removeAdditional off: a misspelt field is an error, not silently dropped.
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024, ajv: { customOptions: { removeAdditional: false } } });
  const routes = collectRoutes(app);
  for (const s of S.SHARED_SCHEMAS) app.addSchema(s);
  const principals = new WeakMap<FastifyRequest, Principal>();

  app.setErrorHandler((err: unknown, _req, reply) => {
    if (isDovetailError(err)) {
      return reply.code(STATUS[err.code] ?? 500).send({ code: err.code, message: err.message });
    }
    const e = err as { statusCode?: number; message?: string; validation?: ValidationIssue[]; validationContext?: string };
    if (e.validation) return reply.code(400).send({ code: 'HUB_BAD_REQUEST', message: validationMessage(e.validationContext, e.validation) });
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.code(e.statusCode).send({ code: 'HUB_BAD_REQUEST', message: e.message ?? 'bad request' });
    }
    log.error({ err }, 'HTTP API internal error');
    return reply.code(500).send({ code: 'HUB_INTERNAL', message: 'internal error; see the hub log' });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'HUB_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  const authenticate = async (req: FastifyRequest): Promise<Principal> => {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!m) throw new DovetailError('HUB_UNAUTHORIZED', 'missing bearer token (use <dataDir>/admin.token or a token from `dovetail-hub tokens create`)');
    const token = m[1]!;
    const adminHash = await store.registry.getSetting(ADMIN_TOKEN_SETTING);
    if (adminHash && tokenMatches(token, adminHash)) return BOOTSTRAP_ADMIN;
    const rec = await store.registry.getApiTokenByHash(hashToken(token));
    if (!rec) throw new DovetailError('HUB_UNAUTHORIZED', 'wrong bearer token (not the admin token nor a known API token)');
    if (rec.revokedAt !== null) throw new DovetailError('HUB_UNAUTHORIZED', `API token ${rec.id} was revoked at ${rec.revokedAt}`);
    return { id: rec.id, name: rec.name, scope: rec.scope, tenant: rec.tenant };
  };

  // Authentication and scope run before body validation: an unauthenticated caller learns nothing about the schema.
  app.addHook('onRequest', async (req) => {
    const scope = (req.routeOptions.config as RouteConfig | undefined)?.scope;
    if (scope !== 'read' && scope !== 'operate' && scope !== 'admin') return;
    const p = await authenticate(req);
    if (RANK[p.scope] < RANK[scope]) {
      throw new DovetailError('HUB_FORBIDDEN', `token ${p.id} ("${p.name}") has scope ${p.scope}; ${req.method} ${req.routeOptions.url} needs ${scope}`);
    }
    principals.set(req, p);
  });
  const who = (req: FastifyRequest): Principal => {
    const p = principals.get(req);
    if (!p) throw new TypeError('route without a scope asked for its principal');
    return p;
  };
  const sees = (p: Principal, tenant: string | null): boolean => p.tenant === null || p.tenant === tenant;

  const audit = (req: FastifyRequest, actor: { id: string; name: string }, action: string, target: string, tenant: string | null, detail?: AuditEntry['detail']) =>
    store.audit.append({ at: now().toISOString(), actor: actor.id, actorName: actor.name, action, target, tenant, remote: req.ip ?? null, ...(detail ? { detail } : {}) });

  const cfg = (scope: RouteConfig['scope'], summary: string): { config: RouteConfig } => ({ config: { scope, summary } });

  app.get('/v1/health', { ...cfg('none', 'Liveness'), schema: { response: { 200: { type: 'object', properties: { status: { type: 'string' } } } } } }, async () => ({ status: 'ok' }));

  let openapi: Record<string, unknown> | undefined;
  app.get('/v1/openapi.json', cfg('none', 'This OpenAPI document'), async () => {
    openapi ??= buildOpenApi(routes, S.SHARED_SCHEMAS, { title: 'Dovetail hub operator API', version: API_VERSION });
    return openapi;
  });

  app.post<{ Body: typeof S.EnrollBody.static }>('/v1/enroll', {
    ...cfg('enrollment-token', 'Agent enrollment: register a public key with a one-time token'),
    schema: { body: S.EnrollBody, response: { 200: S.EnrollReply } },
  }, async (req) => {
    const { token, publicKey: pkText } = req.body;
    const pk = decodeKey(pkText);
    if (pk.byteLength !== 32 || encodeKey(pk) !== pkText) bad('publicKey', 'must be the base64 of a 32-byte Ed25519 public key');
    const tokenHash = hashToken(token);
    const tok = await store.registry.getToken(tokenHash);
    const at = now();
    const agent = await store.registry.enroll(tokenHash, {
      id: `agt_${toHex(randomBytes(8))}`,
      // The operator's label (the token's name) is what lists show; the agent's own name is kept
      // beside it (agentName), and stands in for the label only if a token ever had none.
      name: tok?.name ?? req.body.name ?? 'agent',
      agentName: req.body.name ?? null,
      publicKey: pkText, keyId: keyId(pk), status: 'active', createdAt: at.toISOString(), lastSeenAt: null,
      version: req.body.version ?? null, host: req.body.host ?? null,
    }, at);
    // The hash prefix names the token in the audit log without being usable as the token.
    await audit(req, { id: `enroll-token:${tokenHash.slice(0, 12)}`, name: agent.name }, 'agent.enrolled', agent.id, agent.tenant,
      { keyId: agent.keyId, host: agent.host, site: agent.site ?? null, agentName: agent.agentName ?? null });
    log.info({ agentId: agent.id, agentLabel: agent.name, agentName: agent.agentName, tenant: agent.tenant }, 'agent enrolled');
    return { agentId: agent.id, tenant: agent.tenant, hubPublicKey: encodeKey(deps.identity.keyPair.publicKey), hubKeyId: deps.identity.keyId };
  });

  app.post<{ Body: typeof S.EnrollTokenBody.static }>('/v1/enrollment-tokens', {
    ...cfg('operate', 'Issue a one-time, expiring enrollment token for a new agent'),
    schema: { body: S.EnrollTokenBody, response: { 200: S.EnrollTokenReply, ...ERR.response } },
  }, async (req) => {
    const p = who(req);
    const tenant = req.body.tenant ?? p.tenant ?? 'default';
    if (!sees(p, tenant)) throw new DovetailError('HUB_FORBIDDEN', `token ${p.id} belongs to tenant "${p.tenant}" and cannot enroll agents into tenant "${tenant}"`);
    const site = req.body.site ?? null;
    const at = now();
    const token = newToken('enroll');
    const expiresAt = new Date(at.getTime() + (req.body.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS) * 1000).toISOString();
    await store.registry.putToken({ hash: hashToken(token), name: req.body.name, tenant, site, createdAt: at.toISOString(), expiresAt, usedAt: null, agentId: null });
    await audit(req, p, 'enroll-token.issued', req.body.name, tenant, { expiresAt, site });
    log.info({ agentName: req.body.name, tenant, site, expiresAt, by: p.id }, 'enrollment token issued');
    return { token, expiresAt, tenant, site };
  });

  const configs = deps.configs ?? new RemoteConfigs(store.registry);
  const keyRotation = new AgentKeyRotation(store.registry, deps.agentKeyGraceMs ?? DEFAULT_AGENT_KEY_GRACE_MS);
  const configSummary = (c: RemoteConfigRecord) => ({
    version: c.version, status: c.status, reason: c.reason, sha256: c.sha256, pushedAt: c.pushedAt, pushedBy: c.pushedBy, resultAt: c.resultAt,
  });

  const agentView = async (a: AgentRecord): Promise<S.AgentViewT> => {
    const cur = await store.log.agentCursor(a.id);
    const live = deps.fleet?.view(a.id);
    const at = now();
    const config = await configs.get(a.id);
    return {
      id: a.id, tenant: a.tenant, name: a.name, agentName: a.agentName ?? null, site: a.site ?? null, publicKey: a.publicKey, keyId: a.keyId, status: a.status,
      createdAt: a.createdAt, lastSeenAt: live?.lastHeardAt ?? a.lastSeenAt, version: a.version, host: a.host,
      lastSeq: cur.lastSeq, eventsStored: cur.events, online: deps.isOnline(a.id),
      connectedAt: live?.connectedAt ?? null, statusAt: live?.statusAt ?? null, remote: live?.remote ?? null,
      agentState: live?.agentState ?? null, uplinkState: live?.uplinkState ?? null, buffer: live?.buffer ?? null,
      lagMs: live?.lagMs ?? null, tables: live?.tables ?? [], lastError: live?.lastError ?? null,
      previousKeys: agentKeys(a, at).slice(1).map((k, i) => ({ keyId: k.keyId, rotatedAt: a.previousKeys![i]!.rotatedAt, retiresAt: k.retiresAt!, retired: k.retired })),
      configVersion: live?.configVersion ?? null,
      config: config ? configSummary(config) : null,
    };
  };
  const visibleAgents = async (p: Principal) => (await store.registry.listAgents()).filter((a) => sees(p, a.tenant));
  /** Another tenant's agent answers exactly like a missing one. */
  const findAgent = async (p: Principal, id: string): Promise<AgentRecord> => {
    const a = await store.registry.getAgent(id);
    if (!a || !sees(p, a.tenant)) throw new DovetailError('HUB_NOT_FOUND', `agent ${id} is not registered`, { agentId: id });
    return a;
  };

  app.get('/v1/agents', { ...cfg('read', 'Fleet: every agent visible to the token'), schema: { response: { 200: S.AgentList } } }, async (req) => {
    return { agents: await Promise.all((await visibleAgents(who(req))).map(agentView)) };
  });

  app.get<{ Params: typeof S.IdParams.static }>('/v1/agents/:id', {
    ...cfg('read', 'One agent: status, health, buffer, lag, per-table capture state'),
    schema: { params: S.IdParams, response: { 200: S.AgentView } },
  }, async (req) => agentView(await findAgent(who(req), req.params.id)));

  const transition = (action: 'disable' | 'enable' | 'revoke', scope: ApiScope, summary: string) =>
    app.post<{ Params: typeof S.IdParams.static }>(`/v1/agents/:id/${action}`, {
      ...cfg(scope, summary), schema: { params: S.IdParams, response: { 200: S.AgentView } },
    }, async (req) => {
      const p = who(req);
      const a = await findAgent(p, req.params.id);
      if (a.status === 'revoked') throw new DovetailError('HUB_CONFLICT', `agent ${a.id} is revoked; it cannot be ${action}d (re-enroll it with a new token)`, { agentId: a.id });
      const status = action === 'enable' ? 'active' : action === 'disable' ? 'disabled' : 'revoked';
      const updated = await store.registry.updateAgent(a.id, { status });
      if (status !== 'active') {
        // Takes effect now: the socket closes with 4003, which tells the agent to stop retrying.
        deps.fleet?.error(a.id, 'HUB_AGENT_DISABLED', `${status} by ${p.id}`);
        deps.disconnect?.(a.id, CLOSE.REVOKED, `agent ${status} by operator`);
      }
      await audit(req, p, `agent.${status === 'active' ? 'enabled' : status}`, a.id, a.tenant, { from: a.status, to: status });
      log.info({ agentId: a.id, from: a.status, to: status, by: p.id }, `agent ${status === 'active' ? 'enabled' : status}`);
      return agentView(updated);
    });
  transition('disable', 'operate', 'Disable an agent: its socket closes with 4003 and it is refused until enabled');
  transition('enable', 'operate', 'Enable a disabled agent (it reconnects when restarted)');
  transition('revoke', 'admin', 'Revoke an agent for good: its socket closes with 4003; it must re-enroll');

  const destinationsView = async (p: Principal) => {
    // Destinations are hub-wide config; tenant tokens do not see them.
    if (p.tenant !== null) return [];
    const last = await store.log.lastOffset();
    return Promise.all(deps.destinations().map(async (d) => {
      const secret = deps.secrets?.info(d.name);
      return {
        name: d.name, type: d.type, cursor: d.cursor, pending: last - d.cursor, inFlight: d.inFlight,
        dlq: await store.delivery.dlqCount(d.name), lastError: d.lastError === null ? null : redactSecrets(d.lastError),
        tenant: d.tenant ?? null, secretSource: secret?.source ?? 'config', secretRotatedAt: secret?.rotatedAt ?? null,
        previousSecretValidUntil: secret?.previousValidUntil ?? null,
      };
    }));
  };

  app.get('/v1/destinations', { ...cfg('read', 'Delivery state per destination'), schema: { response: { 200: S.DestinationList } } }, async (req) => ({ destinations: await destinationsView(who(req)) }));

  app.get('/v1/status', { ...cfg('read', 'Agents, stored events and destinations in one call'), schema: { response: { 200: S.StatusReply } } }, async (req) => {
    const p = who(req);
    const agents = await Promise.all((await visibleAgents(p)).map(agentView));
    return {
      hubKeyId: deps.identity.keyId,
      eventsStored: p.tenant === null ? await store.log.lastOffset() : agents.reduce((n, a) => n + a.eventsStored, 0),
      agents: { total: agents.length, online: agents.filter((a) => a.online).length, list: agents },
      destinations: await destinationsView(p),
    };
  });

  const tokenView = (t: ApiTokenRecord) => ({ id: t.id, name: t.name, scope: t.scope, tenant: t.tenant, createdAt: t.createdAt, createdBy: t.createdBy, revokedAt: t.revokedAt });

  app.post<{ Body: typeof S.TokenCreateBody.static }>('/v1/tokens', {
    ...cfg('admin', 'Create an operator API token (the token is shown once)'),
    schema: { body: S.TokenCreateBody, response: { 200: S.TokenCreated } },
  }, async (req) => {
    const p = who(req);
    const tenant = req.body.tenant ?? p.tenant;
    if (p.tenant !== null && tenant !== p.tenant) throw new DovetailError('HUB_FORBIDDEN', `token ${p.id} belongs to tenant "${p.tenant}" and cannot create tokens for ${tenant === null ? 'all tenants' : `tenant "${tenant}"`}`);
    const token = newToken('api');
    const id = `tok_${toHex(randomBytes(6))}`;
    const rec: ApiTokenRecord = {
      id, name: req.body.name ?? `${req.body.scope}-${id.slice(4)}`, scope: req.body.scope, tenant, hash: hashToken(token),
      createdAt: now().toISOString(), createdBy: p.id, revokedAt: null,
    };
    await store.registry.putApiToken(rec);
    await audit(req, p, 'api-token.created', id, tenant, { scope: rec.scope, name: rec.name });
    log.info({ tokenId: id, scope: rec.scope, tenant, by: p.id }, 'API token created');
    return { ...tokenView(rec), token };
  });

  app.get('/v1/tokens', { ...cfg('admin', 'List operator API tokens (never the tokens themselves)'), schema: { response: { 200: S.TokenList } } }, async (req) => {
    const p = who(req);
    return { tokens: (await store.registry.listApiTokens()).filter((t) => p.tenant === null || t.tenant === p.tenant).map(tokenView) };
  });

  app.post<{ Params: typeof S.IdParams.static }>('/v1/tokens/:id/revoke', {
    ...cfg('admin', 'Revoke an operator API token; it is refused from the next request'),
    schema: { params: S.IdParams, response: { 200: S.TokenView } },
  }, async (req) => {
    const p = who(req);
    const t = await store.registry.getApiToken(req.params.id);
    if (!t || (p.tenant !== null && t.tenant !== p.tenant)) throw new DovetailError('HUB_NOT_FOUND', `API token ${req.params.id} does not exist`);
    const r = await store.registry.revokeApiToken(t.id, now());
    await audit(req, p, 'api-token.revoked', t.id, t.tenant, { name: t.name });
    log.info({ tokenId: t.id, by: p.id }, 'API token revoked');
    return tokenView(r);
  });

  app.get<{ Querystring: typeof S.AuditQuery.static }>('/v1/audit', {
    ...cfg('read', 'Audit log of operator and admin actions, newest first'),
    schema: { querystring: S.AuditQuery, response: { 200: S.AuditList } },
  }, async (req) => {
    const p = who(req);
    return { entries: await store.audit.list({ limit: req.query.limit ?? 100, ...(p.tenant !== null ? { tenant: p.tenant } : {}) }) };
  });

  // ---- keys, remote config, destination secrets (issue 4) ----

  app.post<{ Params: typeof S.IdParams.static; Body: typeof S.AgentKeyBody.static }>('/v1/agents/:id/keys', {
    ...cfg('agent-key', "Agent key rotation: announce the agent's new key, signed by its active key, with proof of possession"),
    schema: { params: S.IdParams, body: S.AgentKeyBody, response: { 200: S.AgentKeyReply } },
  }, async (req) => {
    const at = now();
    const graceMs = req.body.graceSeconds === undefined ? undefined : req.body.graceSeconds * 1000;
    const r = await keyRotation.rotate(req.params.id, req.body.announcement, graceMs, at);
    if (r.changed) {
      await audit(req, { id: `agent:${r.agent.id}`, name: r.agent.name }, 'agent.key-rotated', r.agent.id, r.agent.tenant,
        { keyId: r.agent.keyId, previousKeyId: r.previousKeyId, retiresAt: r.retiresAt });
      log.info({ agentId: r.agent.id, keyId: r.agent.keyId, previousKeyId: r.previousKeyId, retiresAt: r.retiresAt }, 'agent key rotated');
    }
    return { agentId: r.agent.id, keyId: r.agent.keyId, previousKeyId: r.previousKeyId, retiresAt: r.retiresAt, changed: r.changed };
  });

  app.get('/v1/hub/keys', { ...cfg('read', 'The hub key id and public key, and every hub key rotation'), schema: { response: { 200: S.HubKeysReply } } }, async () => ({
    keyId: deps.identity.keyId, publicKey: encodeKey(deps.identity.keyPair.publicKey),
    rotations: (deps.hubKeys?.history() ?? []).map((a) => ({ oldKeyId: a.oldKeyId, newKeyId: a.newKeyId, at: a.at })),
  }));

  app.post('/v1/hub/keys/rotate', {
    ...cfg('admin', 'Rotate the hub key: the new key is announced to every agent under the old one; the hub signs with the new key from now on'),
    schema: { response: { 200: S.HubKeyRotateReply } },
  }, async (req) => {
    const p = who(req);
    if (!deps.hubKeys) throw new DovetailError('HUB_CONFLICT', 'this hub was started without a key ring; its key cannot be rotated');
    const ann = deps.hubKeys.rotate(now());
    const agentsNotified = deps.announceHubKey?.([ann]) ?? 0;
    await audit(req, p, 'hub.key-rotated', ann.newKeyId, null, { keyId: ann.newKeyId, previousKeyId: ann.oldKeyId, agentsNotified });
    log.info({ keyId: ann.newKeyId, previousKeyId: ann.oldKeyId, agentsNotified, by: p.id }, 'hub key rotated');
    return { keyId: ann.newKeyId, previousKeyId: ann.oldKeyId, at: ann.at, agentsNotified };
  });

  app.get<{ Params: typeof S.IdParams.static }>('/v1/agents/:id/config', {
    ...cfg('read', 'The latest remote config pushed to an agent and its verdict'),
    schema: { params: S.IdParams, response: { 200: S.ConfigView } },
  }, async (req) => {
    const a = await findAgent(who(req), req.params.id);
    const c = await configs.get(a.id);
    if (!c) throw new DovetailError('HUB_NOT_FOUND', `no remote config was pushed to agent ${a.id}`, { agentId: a.id });
    return { agentId: a.id, ...configSummary(c), sent: false };
  });

  app.post<{ Params: typeof S.IdParams.static; Body: typeof S.ConfigPushBody.static }>('/v1/agents/:id/config', {
    ...cfg('operate', "Push a remote config (the `tables` section) to an agent: signed with the hub key, sent now or on its next connect"),
    schema: { params: S.IdParams, body: S.ConfigPushBody, response: { 200: S.ConfigView } },
  }, async (req) => {
    const p = who(req);
    const a = await findAgent(p, req.params.id);
    if (a.status === 'revoked') throw new DovetailError('HUB_CONFLICT', `agent ${a.id} is revoked; it gets no config`, { agentId: a.id });
    const c = await configs.push(a.id, req.body.document, p.id, now());
    await audit(req, p, 'agent.config-pushed', a.id, a.tenant, { version: c.version, sha256: c.sha256 });
    const sent = (await deps.offerConfig?.(a.id)) ?? false;
    log.info({ agentId: a.id, version: c.version, sent, by: p.id }, 'remote config pushed');
    return { agentId: a.id, ...configSummary(c), sent };
  });

  app.post<{ Params: typeof S.NameParams.static; Body: typeof S.RotateSecretBody.static }>('/v1/destinations/:name/rotate-secret', {
    ...cfg('admin', 'Rotate a destination signing secret: the new secret is returned once; both signatures are sent during the overlap'),
    schema: { params: S.NameParams, body: S.RotateSecretBody, response: { 200: S.RotateSecretReply } },
  }, async (req) => {
    const p = who(req);
    const name = req.params.name;
    if (!deps.secrets?.has(name)) throw new DovetailError('HUB_NOT_FOUND', `destination ${name} is not configured`, { destination: name });
    const overlapMs = req.body?.overlapSeconds === undefined ? DEFAULT_SECRET_OVERLAP_MS : req.body.overlapSeconds * 1000;
    const r = await deps.secrets.rotate(name, overlapMs, now());
    await audit(req, p, 'destination.secret-rotated', name, null, { previousValidUntil: r.previousValidUntil });
    log.info({ destination: name, previousValidUntil: r.previousValidUntil, by: p.id }, 'destination secret rotated');
    return { name, secret: r.secret, previousValidUntil: r.previousValidUntil };
  });

  /** Destinations are hub-wide: a tenant token gets the same 404 as for an unknown name. */
  const findDestination = (p: Principal, name: string): string => {
    if (p.tenant !== null || !deps.destinations().some((d) => d.name === name)) {
      throw new DovetailError('HUB_NOT_FOUND', `destination ${name} is not configured`, { destination: name });
    }
    return name;
  };

  app.get<{ Params: typeof S.NameParams.static; Querystring: typeof S.DlqQuery.static }>('/v1/destinations/:name/dlq', {
    ...cfg('read', 'Dead-lettered events of a destination, oldest (lowest log offset) first, with their last error'),
    schema: { params: S.NameParams, querystring: S.DlqQuery, response: { 200: S.DlqList } },
  }, async (req) => {
    const name = findDestination(who(req), req.params.name);
    const entries = await store.delivery.listDlq(name, req.query.limit ?? 100);
    return {
      destination: name, total: await store.delivery.dlqCount(name),
      // Entries written before redaction existed, or by a connector quoting a URL, are redacted on the way out too.
      entries: entries.map((e) => ({ ...e, lastError: redactSecrets(e.lastError) })),
    };
  });

  app.post<{ Params: typeof S.NameParams.static; Body: typeof S.DlqReplayBody.static | undefined }>('/v1/destinations/:name/dlq/replay', {
    ...cfg('operate', 'Re-queue dead-lettered events for delivery (all, or {ids}); sent again with the same event id, in log order'),
    schema: { params: S.NameParams, body: S.DlqReplayBody, response: { 200: S.DlqReplayReply } },
    // A bare POST (curl -X POST, no body) means "replay all", like {}.
    preValidation: async (req) => { if (req.body === undefined || req.body === null) req.body = {}; },
  }, async (req) => {
    const p = who(req);
    const name = findDestination(p, req.params.name);
    const ids = req.body?.ids;
    const moved = await store.delivery.replayDlq(name, { ...(ids ? { eventIds: ids } : {}), limit: MAX_REPLAY_PER_REQUEST });
    const found = new Set(moved.map((e) => e.eventId));
    const notFound = ids ? [...new Set(ids)].filter((id) => !found.has(id)) : [];
    if (moved.length > 0) deps.replayQueued?.(name);
    const remaining = await store.delivery.dlqCount(name);
    await audit(req, p, 'destination.dlq-replayed', name, null, { replayed: moved.length, selection: ids ? 'ids' : 'all', notFound: notFound.length, remaining });
    log.info({ destination: name, replayed: moved.length, notFound: notFound.length, remaining, by: p.id }, 'DLQ events queued for replay');
    return {
      destination: name, replayed: moved.length, notFound, remaining,
      entries: moved.map((e) => ({ eventId: e.eventId, offset: e.offset, entity: e.entity, key: e.key })),
    };
  });

  return app;
}
