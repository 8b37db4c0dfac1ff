/** Operator API (fastify inject): token scopes, tenant isolation, audit log, fleet view, OpenAPI document. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { CLOSE, createLogger, encodeKey, keyId } from '@dovetail/shared';
import { buildApi, ADMIN_TOKEN_SETTING } from '../../hub/src/http/api.ts';
import { FleetTracker } from '../../hub/src/fleet/fleet.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import { hashToken } from '../../hub/src/identity.ts';
import type { HubStore } from '../../hub/src/store/types.ts';
import { seedKey } from '../helpers/hub-fixtures.ts';

const ADMIN = 'dvt_admin_bootstrap-token-for-tests-0000000000000000000';
const logLines: string[] = [];
const logger = createLogger({ name: 'test', level: 'debug', destination: new Writable({ write(c, _e, cb) { logLines.push(String(c)); cb(); } }) });

let clock = new Date('2030-01-01T00:00:00.000Z');
let store: HubStore;
let app: FastifyInstance;
let fleet: FleetTracker;
const disconnects: Array<[string, number]> = [];
const secrets: string[] = [ADMIN];

async function call(method: 'GET' | 'POST', url: string, token: string | null, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await app.inject({
    method, url,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
  });
  return { status: res.statusCode, json: res.json() as Record<string, unknown> };
}
const ok = async (method: 'GET' | 'POST', url: string, token: string | null, body?: unknown) => {
  const r = await call(method, url, token, body);
  assert.equal(r.status, 200, `${method} ${url}: ${JSON.stringify(r.json)}`);
  return r.json;
};
const refused = async (method: 'GET' | 'POST', url: string, token: string | null, status: number, code: string, body?: unknown) => {
  const r = await call(method, url, token, body);
  assert.deepEqual([r.status, r.json.code], [status, code], `${method} ${url}: ${JSON.stringify(r.json)}`);
  return String(r.json.message);
};

async function apiToken(scope: string, tenant?: string, by = ADMIN): Promise<{ id: string; token: string }> {
  const r = await ok('POST', '/v1/tokens', by, { scope, ...(tenant ? { tenant } : {}), name: `${scope}-${tenant ?? 'all'}` });
  secrets.push(String(r.token));
  return { id: String(r.id), token: String(r.token) };
}

async function enrollAgent(tenant: string, seed: number, site?: string): Promise<string> {
  const t = await ok('POST', '/v1/enrollment-tokens', ADMIN, { name: `plant-${seed}`, tenant, ...(site ? { site } : {}) });
  secrets.push(String(t.token));
  const pk = seedKey(seed).publicKey;
  const r = await ok('POST', '/v1/enroll', null, { token: t.token, publicKey: encodeKey(pk), host: `erp-${seed}`, version: '0.1.0' });
  assert.equal(r.tenant, tenant);
  assert.equal((await store.registry.getAgent(String(r.agentId)))?.keyId, keyId(pk));
  return String(r.agentId);
}

let acmeAgent: string;
let betaAgent: string;
let acmeRead: { id: string; token: string };
let acmeOperate: { id: string; token: string };
let betaRead: { id: string; token: string };
let globalRead: { id: string; token: string };

before(async () => {
  store = createMemoryStore();
  await store.registry.putSetting(ADMIN_TOKEN_SETTING, hashToken(ADMIN));
  fleet = new FleetTracker({ now: () => clock, offlineAfterMs: 60_000 });
  app = await buildApi({
    store, logger, identity: { keyPair: seedKey(99), keyId: keyId(seedKey(99).publicKey) }, now: () => clock,
    isOnline: (id) => fleet.isOnline(id), destinations: () => [{ name: 'crm', type: 'webhook', cursor: 0, inFlight: 0, lastError: null } as never],
    fleet, disconnect: (id, code) => { disconnects.push([id, code]); },
  });
  acmeAgent = await enrollAgent('acme', 1, 'dallas');
  betaAgent = await enrollAgent('beta', 2);
  acmeRead = await apiToken('read', 'acme');
  acmeOperate = await apiToken('operate', 'acme');
  betaRead = await apiToken('read', 'beta');
  globalRead = await apiToken('read');
});

test('tokens: shown once, stored as sha256 only, listed without secrets', async () => {
  assert.match(acmeRead.token, /^dvt_api_[A-Za-z0-9_-]{43}$/);
  const rec = await store.registry.getApiTokenByHash(hashToken(acmeRead.token));
  assert.equal(rec?.id, acmeRead.id);
  assert.equal(rec?.hash, hashToken(acmeRead.token));
  assert.ok(!JSON.stringify(await store.registry.listApiTokens()).includes(acmeRead.token), 'the token itself is not stored');
  const list = (await ok('GET', '/v1/tokens', ADMIN)).tokens as Array<Record<string, unknown>>;
  const byId = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
  assert.deepEqual(list.map((t) => [t.id, t.scope, t.tenant, t.revokedAt]).sort(byId), [
    [acmeRead.id, 'read', 'acme', null], [acmeOperate.id, 'operate', 'acme', null], [betaRead.id, 'read', 'beta', null], [globalRead.id, 'read', null, null],
  ].sort(byId));
  assert.deepEqual(Object.keys(list[0]!).sort(), ['createdAt', 'createdBy', 'id', 'name', 'revokedAt', 'scope', 'tenant']);
});

test('scopes: read may only GET, operate may disable/enable and issue enrollment tokens, admin may revoke and manage tokens', async () => {
  await ok('GET', '/v1/agents', acmeRead.token);
  await ok('GET', '/v1/status', acmeRead.token);
  await ok('GET', '/v1/audit', acmeRead.token);
  assert.equal(await refused('POST', `/v1/agents/${acmeAgent}/disable`, acmeRead.token, 403, 'HUB_FORBIDDEN'),
    `token ${acmeRead.id} ("read-acme") has scope read; POST /v1/agents/:id/disable needs operate`);
  await refused('POST', '/v1/enrollment-tokens', acmeRead.token, 403, 'HUB_FORBIDDEN', { name: 'x' });
  await refused('POST', `/v1/agents/${acmeAgent}/revoke`, acmeOperate.token, 403, 'HUB_FORBIDDEN');
  await refused('POST', '/v1/tokens', acmeOperate.token, 403, 'HUB_FORBIDDEN', { scope: 'read' });
  await refused('GET', '/v1/tokens', globalRead.token, 403, 'HUB_FORBIDDEN');
  await refused('GET', '/v1/agents', null, 401, 'HUB_UNAUTHORIZED');
  await refused('GET', '/v1/agents', 'dvt_api_not-a-real-token', 401, 'HUB_UNAUTHORIZED');
  assert.equal((await store.registry.getAgent(acmeAgent))?.status, 'active', 'refused requests changed nothing');

  const r = await ok('POST', `/v1/agents/${acmeAgent}/disable`, acmeOperate.token);
  assert.equal(r.status, 'disabled');
  assert.deepEqual(disconnects.at(-1), [acmeAgent, CLOSE.REVOKED], 'the socket is closed with 4003 at once');
  assert.equal((await ok('POST', `/v1/agents/${acmeAgent}/enable`, acmeOperate.token)).status, 'active');

  const temp = await apiToken('operate', 'acme');
  await ok('POST', `/v1/tokens/${temp.id}/revoke`, ADMIN);
  assert.match(await refused('GET', '/v1/agents', temp.token, 401, 'HUB_UNAUTHORIZED'), /was revoked at 2030-01-01T00:00:00.000Z/);
  await refused('POST', `/v1/tokens/${temp.id}/revoke`, ADMIN, 409, 'HUB_CONFLICT');
});

test('tenancy: a tenant token sees and acts on its own tenant only; other tenants look absent', async () => {
  const acmeList = (await ok('GET', '/v1/agents', acmeRead.token)).agents as Array<Record<string, unknown>>;
  assert.deepEqual(acmeList.map((a) => [a.id, a.tenant, a.site]), [[acmeAgent, 'acme', 'dallas']]);
  assert.deepEqual(((await ok('GET', '/v1/agents', betaRead.token)).agents as Array<{ id: string }>).map((a) => a.id), [betaAgent]);
  assert.deepEqual(((await ok('GET', '/v1/agents', globalRead.token)).agents as Array<{ id: string }>).map((a) => a.id).sort(), [acmeAgent, betaAgent].sort());
  assert.equal(await refused('GET', `/v1/agents/${betaAgent}`, acmeRead.token, 404, 'HUB_NOT_FOUND'), `agent ${betaAgent} is not registered`);
  await refused('POST', `/v1/agents/${betaAgent}/disable`, acmeOperate.token, 404, 'HUB_NOT_FOUND');
  assert.equal((await store.registry.getAgent(betaAgent))?.status, 'active');
  // Enrollment tokens land in the caller's tenant; another tenant is refused.
  assert.equal((await ok('POST', '/v1/enrollment-tokens', acmeOperate.token, { name: 'plant-7' })).tenant, 'acme');
  assert.match(await refused('POST', '/v1/enrollment-tokens', acmeOperate.token, 403, 'HUB_FORBIDDEN', { name: 'x', tenant: 'beta' }), /tenant "acme" and cannot enroll agents into tenant "beta"/);
  const status = await ok('GET', '/v1/status', acmeRead.token);
  assert.deepEqual([(status.agents as { total: number }).total, (status.destinations as unknown[]).length], [1, 0], 'hub-wide destinations are for global tokens');
  assert.equal(((await ok('GET', '/v1/status', globalRead.token)).destinations as unknown[]).length, 1);
  // A tenant admin cannot mint a global token or one for another tenant.
  const acmeAdmin = await apiToken('admin', 'acme');
  const made = await ok('POST', '/v1/tokens', acmeAdmin.token, { scope: 'read' });
  secrets.push(String(made.token));
  assert.equal(made.tenant, 'acme');
  await refused('POST', '/v1/tokens', acmeAdmin.token, 403, 'HUB_FORBIDDEN', { scope: 'read', tenant: 'beta' });
  assert.ok(((await ok('GET', '/v1/tokens', acmeAdmin.token)).tokens as Array<{ tenant: string }>).every((t) => t.tenant === 'acme'));
  await refused('POST', `/v1/tokens/${betaRead.id}/revoke`, acmeAdmin.token, 404, 'HUB_NOT_FOUND');
});

test('revocation is final: enable and disable of a revoked agent are conflicts', async () => {
  const id = await enrollAgent('acme', 3);
  const r = await ok('POST', `/v1/agents/${id}/revoke`, ADMIN);
  assert.equal(r.status, 'revoked');
  assert.deepEqual(disconnects.at(-1), [id, CLOSE.REVOKED]);
  assert.match(await refused('POST', `/v1/agents/${id}/enable`, ADMIN, 409, 'HUB_CONFLICT'), /is revoked; it cannot be enabled \(re-enroll it with a new token\)/);
  await refused('POST', `/v1/agents/${id}/revoke`, ADMIN, 409, 'HUB_CONFLICT');
});

test('audit: every action with who, what, target, tenant and remote address; tenant tokens see their tenant', async () => {
  const all = (await ok('GET', '/v1/audit?limit=1000', ADMIN)).entries as Array<Record<string, unknown>>;
  const seqs = all.map((e) => e.seq as number);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'newest first');
  const actions = all.map((e) => e.action).reverse();
  assert.deepEqual(actions.slice(0, 8), [
    'enroll-token.issued', 'agent.enrolled', 'enroll-token.issued', 'agent.enrolled',
    'api-token.created', 'api-token.created', 'api-token.created', 'api-token.created',
  ]);
  const disabled = all.find((e) => e.action === 'agent.disabled')!;
  assert.deepEqual({ ...disabled, seq: 0, at: '' }, {
    seq: 0, at: '', actor: acmeOperate.id, actorName: 'operate-acme', action: 'agent.disabled', target: acmeAgent, tenant: 'acme', remote: '127.0.0.1',
    detail: { from: 'active', to: 'disabled' },
  });
  const enrolled = all.find((e) => e.action === 'agent.enrolled' && e.target === acmeAgent)!;
  assert.match(String(enrolled.actor), /^enroll-token:[0-9a-f]{12}$/);
  assert.equal(enrolled.actorName, 'plant-1');
  for (const a of ['agent.enabled', 'agent.revoked', 'api-token.revoked']) assert.ok(actions.includes(a), a);
  assert.equal([...all].reverse().find((e) => e.action === 'api-token.created')!.actor, 'admin', 'the first token was made with admin.token');
  const acme = (await ok('GET', '/v1/audit', acmeRead.token)).entries as Array<{ tenant: string }>;
  assert.ok(acme.length >= 5 && acme.every((e) => e.tenant === 'acme'));
  assert.equal(((await ok('GET', '/v1/audit?limit=2', ADMIN)).entries as unknown[]).length, 2);
  await refused('GET', '/v1/audit?limit=0', ADMIN, 400, 'HUB_BAD_REQUEST');
  const text = JSON.stringify(all);
  for (const s of secrets) assert.ok(!text.includes(s), 'no token in the audit log');
});

test('fleet view: status heartbeats give buffer depth, lag and table state; silence past 60 s means offline', async () => {
  fleet.connected(betaAgent, '10.0.0.9');
  fleet.status(betaAgent, {
    state: 'running', uplink: 'streaming',
    outbox: { depth: 3, bytes: 2048, nextSeq: 10, lastAckedSeq: 6, lastAckAt: '2029-12-31T23:59:00.000Z', oldestPendingAt: '2029-12-31T23:59:30.000Z' },
    tables: [
      { table: 'customers', phase: 'snapshotting', progress: { done: 40, total: 100 }, eventsCaptured: 40, quarantined: 1, lastPollAt: '2029-12-31T23:59:59.000Z', lastError: null, lastCommitAt: null },
      { table: 'orders', phase: 'error', eventsCaptured: 0, quarantined: 0, lastPollAt: null, lastCommitAt: null,
        lastError: { code: 'AGENT_SOURCE_UNREACHABLE', message: 'connect postgres://erp:hunter2@db/erp failed', at: '2029-12-31T23:59:58.000Z' } },
    ],
  });
  const a = await ok('GET', `/v1/agents/${betaAgent}`, betaRead.token);
  assert.equal(a.online, true);
  assert.equal(a.remote, '10.0.0.9');
  assert.deepEqual(a.buffer, { depth: 3, bytes: 2048, nextSeq: 10, lastAckedSeq: 6, lastAckAt: '2029-12-31T23:59:00.000Z', oldestPendingAt: '2029-12-31T23:59:30.000Z' });
  assert.equal(a.lagMs, 30_000);
  assert.deepEqual((a.tables as Array<Record<string, unknown>>).map((t) => [t.table, t.phase, t.progress]), [['customers', 'snapshotting', { done: 40, total: 100 }], ['orders', 'error', null]]);
  assert.deepEqual(a.lastError, { code: 'AGENT_SOURCE_UNREACHABLE', message: 'connect postgres://erp:***@db/erp failed', at: '2029-12-31T23:59:58.000Z', table: 'orders' }, 'passwords never reach operators');
  assert.equal(a.lastSeenAt, '2030-01-01T00:00:00.000Z');
  clock = new Date(clock.getTime() + 59_999);
  assert.equal((await ok('GET', `/v1/agents/${betaAgent}`, betaRead.token)).online, true);
  clock = new Date(clock.getTime() + 1);
  const later = await ok('GET', `/v1/agents/${betaAgent}`, betaRead.token);
  assert.equal(later.online, false, 'offline after 60 s of silence');
  assert.equal(later.lagMs, 90_000);
});

test('validation comes from the route schemas and names the field', async () => {
  assert.equal(await refused('POST', '/v1/tokens', ADMIN, 400, 'HUB_BAD_REQUEST', { scope: 'root' }), 'scope: must be equal to one of the allowed values (read, operate, admin)');
  assert.equal(await refused('POST', '/v1/tokens', ADMIN, 400, 'HUB_BAD_REQUEST', { scope: 'read', bogus: 1 }), 'bogus: unknown field');
  assert.equal(await refused('POST', '/v1/enrollment-tokens', ADMIN, 400, 'HUB_BAD_REQUEST', { ttlSeconds: 60 }), 'name: is required');
  // Authentication comes first: without a token the schema is not even looked at.
  await refused('POST', '/v1/tokens', null, 401, 'HUB_UNAUTHORIZED', { scope: 'root' });
});

test('GET /v1/openapi.json documents every route with its scope, and every $ref resolves', async () => {
  const doc = await ok('GET', '/v1/openapi.json', null);
  assert.equal(doc.openapi, '3.1.0');
  const paths = doc.paths as Record<string, Record<string, Record<string, unknown>>>;
  const ops = Object.entries(paths).flatMap(([p, m]) => Object.entries(m).map(([method, op]) => `${method.toUpperCase()} ${p} ${String(op['x-dovetail-scope'])}`)).sort();
  assert.deepEqual(ops, [
    'GET /v1/agents read', 'GET /v1/agents/{id} read', 'GET /v1/agents/{id}/config read', 'GET /v1/audit read', 'GET /v1/destinations read', 'GET /v1/destinations/{name}/dlq read', 'GET /v1/health none',
    'GET /v1/hub/keys read', 'GET /v1/openapi.json none', 'GET /v1/status read', 'GET /v1/tokens admin',
    'POST /v1/agents/{id}/config operate', 'POST /v1/agents/{id}/disable operate', 'POST /v1/agents/{id}/enable operate', 'POST /v1/agents/{id}/keys agent-key',
    'POST /v1/agents/{id}/revoke admin', 'POST /v1/destinations/{name}/dlq/replay operate', 'POST /v1/destinations/{name}/rotate-secret admin',
    'POST /v1/enroll enrollment-token', 'POST /v1/enrollment-tokens operate', 'POST /v1/hub/keys/rotate admin', 'POST /v1/tokens admin', 'POST /v1/tokens/{id}/revoke admin',
  ]);
  const tokenBody = (paths['/v1/tokens']!.post!.requestBody as { content: Record<string, { schema: { required: string[]; properties: Record<string, unknown> } }> }).content['application/json']!.schema;
  assert.deepEqual(tokenBody.required, ['scope']);
  assert.deepEqual(Object.keys(tokenBody.properties), ['scope', 'tenant', 'name']);
  assert.deepEqual(paths['/v1/audit']!.get!.parameters, [{ name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }]);
  const schemas = (doc.components as { schemas: Record<string, unknown> }).schemas;
  assert.deepEqual(Object.keys(schemas).sort(), ['Agent', 'ApiToken', 'AuditEntry', 'Destination', 'Error']);
  const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]!);
  assert.ok(refs.length > 5);
  for (const r of refs) assert.ok(r.startsWith('#/components/schemas/') && r.slice(21) in schemas, r);
});

test('no token appears in any log line', () => {
  const text = logLines.join('');
  assert.ok(logLines.length > 10, 'the API logged its actions');
  for (const s of secrets) assert.ok(!text.includes(s), `a secret leaked into the log: ${s.slice(0, 12)}...`);
});
