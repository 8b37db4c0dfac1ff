/**
 * Destination tenancy and signing secret rotation: both Standard Webhooks signatures during
 * the overlap (verified with the `standardwebhooks` package), only the new one after; the
 * rotated secret survives a restart and beats the config file; the router delivers a
 * destination only its tenant's events.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Webhook } from 'standardwebhooks';
import { createLogger, type CanonicalEvent } from '@dovetail/shared';
import { DestinationSecrets } from '../../hub/src/delivery/secrets.ts';
import { createWebhookConnector } from '../../hub/src/delivery/webhook.ts';
import { DeliveryRouter } from '../../hub/src/delivery/router.ts';
import type { Connector, Timers } from '../../hub/src/delivery/types.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import { ADMIN_TOKEN_SETTING, buildApi } from '../../hub/src/http/api.ts';
import { hashToken } from '../../hub/src/identity.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const OLD = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const lines: string[] = [];
const logger = createLogger({ name: 'test', level: 'info', destination: new Writable({ write(c, _e, cb) { lines.push(String(c)); cb(); } }) });

/** A clock near real time: standardwebhooks refuses timestamps more than 5 minutes off. */
const clock = { t: Date.now() };
const timers: Timers = { now: () => clock.t, setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };

function capture(): { fetch: typeof fetch; sent: Array<{ body: string; headers: Record<string, string> }> } {
  const sent: Array<{ body: string; headers: Record<string, string> }> = [];
  const f = (async (_url: string, init: RequestInit) => {
    sent.push({ body: String(init.body), headers: init.headers as Record<string, string> });
    return new Response(null, { status: 204 });
  }) as unknown as typeof fetch;
  return { fetch: f, sent };
}

const verifies = (secret: string, m: { body: string; headers: Record<string, string> }): boolean => {
  try {
    new Webhook(secret).verify(m.body, m.headers);
    return true;
  } catch {
    return false;
  }
};

test('rotate-secret: both signatures during the overlap, either secret verifies; after it only the new one', async () => {
  const store = createMemoryStore();
  const secrets = await DestinationSecrets.load(store.registry, [{ name: 'crm', secret: OLD }]);
  const cap = capture();
  const connector = createWebhookConnector({ url: 'https://crm.example/hook', secret: (n) => secrets.signing('crm', n), fetch: cap.fetch, timers });
  const ctx = { attempt: 1, signal: new AbortController().signal };
  const ev = event('evt-1', 'customer', 'C1', 'agt_1');

  await connector.deliver(ev, ctx);
  assert.equal(cap.sent[0]!.headers['webhook-signature']!.split(' ').length, 1);
  assert.equal(verifies(OLD, cap.sent[0]!), true);

  const { secret: NEW, previousValidUntil } = await secrets.rotate('crm', 60_000, new Date(clock.t));
  assert.match(NEW, /^whsec_[A-Za-z0-9+/]{43}=$/);
  assert.equal(previousValidUntil, new Date(clock.t + 60_000).toISOString());
  await connector.deliver(ev, ctx);
  const during = cap.sent[1]!;
  assert.match(during.headers['webhook-signature']!, /^v1,[A-Za-z0-9+/=]{44} v1,[A-Za-z0-9+/=]{44}$/);
  assert.deepEqual([verifies(NEW, during), verifies(OLD, during)], [true, true]);
  assert.equal(verifies('whsec_' + Buffer.alloc(32, 7).toString('base64'), during), false, 'a third secret does not verify');

  clock.t += 60_001;
  await connector.deliver(ev, ctx);
  const after = cap.sent[2]!;
  assert.equal(after.headers['webhook-signature']!.split(' ').length, 1);
  assert.deepEqual([verifies(NEW, after), verifies(OLD, after)], [true, false]);

  // After a restart the stored secret takes precedence over the config file's.
  const reloaded = await DestinationSecrets.load(store.registry, [{ name: 'crm', secret: OLD }]);
  assert.deepEqual(reloaded.signing('crm', clock.t), [NEW]);
  assert.equal(reloaded.info('crm').source, 'store');
  // overlap 0: the previous secret stops signing at once.
  const { secret: NEWER } = await reloaded.rotate('crm', 0, new Date(clock.t));
  assert.deepEqual(reloaded.signing('crm', clock.t), [NEWER]);
  await assert.rejects(reloaded.rotate('nope', 0, new Date()), { code: 'HUB_NOT_FOUND' });
});

test('POST /v1/destinations/:name/rotate-secret shows the secret once, lists tenant and overlap, audits without the secret', async () => {
  const store = createMemoryStore();
  await store.registry.putSetting(ADMIN_TOKEN_SETTING, hashToken('dvt_admin_t'));
  const secrets = await DestinationSecrets.load(store.registry, [{ name: 'crm', secret: OLD }]);
  const api = await buildApi({
    store, identity: { keyPair: seedKey(1), keyId: 'k' }, logger, isOnline: () => false, secrets, now: () => new Date('2026-05-01T00:00:00.000Z'),
    destinations: () => [{ name: 'crm', type: 'webhook', tenant: 'acme', cursor: 0, inFlight: 0, waiting: 0, lastError: null }],
  });
  const auth = { authorization: 'Bearer dvt_admin_t' };
  const r = await api.inject({ method: 'POST', url: '/v1/destinations/crm/rotate-secret', headers: auth, payload: { overlapSeconds: 3600 } });
  assert.equal(r.statusCode, 200);
  const body = r.json() as { name: string; secret: string; previousValidUntil: string };
  assert.deepEqual([body.name, body.previousValidUntil], ['crm', '2026-05-01T01:00:00.000Z']);
  const list = (await api.inject({ method: 'GET', url: '/v1/destinations', headers: auth })).json() as { destinations: Array<Record<string, unknown>> };
  assert.deepEqual(list.destinations[0], {
    name: 'crm', type: 'webhook', cursor: 0, pending: 0, inFlight: 0, dlq: 0, lastError: null, tenant: 'acme',
    secretSource: 'store', secretRotatedAt: '2026-05-01T00:00:00.000Z', previousSecretValidUntil: '2026-05-01T01:00:00.000Z',
  });
  assert.ok(!JSON.stringify(list).includes(body.secret), 'the secret is never listed');
  const missing = await api.inject({ method: 'POST', url: '/v1/destinations/nope/rotate-secret', headers: auth, payload: {} });
  assert.deepEqual([missing.statusCode, missing.json().code], [404, 'HUB_NOT_FOUND']);
  const audit = await store.audit.list({ limit: 5 });
  assert.deepEqual([audit[0]?.action, audit[0]?.target], ['destination.secret-rotated', 'crm']);
  assert.ok(!JSON.stringify(audit).includes(body.secret));
  assert.ok(lines.some((l) => l.includes('destination secret rotated')));
  assert.ok(!lines.join('').includes(body.secret.slice(6)), 'no secret in any log line');
  await api.close();
});

test('the router delivers a destination only the events of its tenant\'s agents, looking each agent up once', async () => {
  const store = createMemoryStore();
  const tenants: Record<string, string> = { agt_a: 'acme', agt_b: 'beta' };
  let lookups = 0;
  const got: Record<string, string[]> = { acme: [], beta: [], all: [] };
  const sink = (name: string): Connector => ({ type: 'test', async deliver(e: CanonicalEvent) { got[name]!.push(e.id); return { ok: true }; } });
  const router = new DeliveryRouter({
    log: store.log, state: store.delivery, logger,
    tenantOf: async (id) => { lookups++; return tenants[id]; },
    destinations: [
      { name: 'acme-crm', connector: sink('acme'), tenant: 'acme' },
      { name: 'beta-crm', connector: sink('beta'), tenant: 'beta' },
      { name: 'audit-all', connector: sink('all') },
    ],
  });
  const a = new BatchChain('agt_a', seedKey(1));
  const b = new BatchChain('agt_b', seedKey(2));
  const x = new BatchChain('agt_unknown', seedKey(3));
  const put = (c: BatchChain, ids: string[]) => { const evs = ids.map((id) => event(id, 'customer', id, c.agentId)); return store.log.append(c.agentId, c.next(evs), evs, 'x'); };
  await put(a, ['a1', 'a2']);
  await put(b, ['b1']);
  await put(x, ['x1']);
  await put(a, ['a3']);
  await router.start();
  for (let i = 0; i < 2000 && got.all!.length < 5; i++) await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r));
  await router.stop();
  assert.deepEqual(got, { acme: ['a1', 'a2', 'a3'], beta: ['b1'], all: ['a1', 'a2', 'b1', 'x1', 'a3'] });
  assert.deepEqual(router.status().map((s) => [s.name, s.tenant, s.cursor]), [['acme-crm', 'acme', 5], ['beta-crm', 'beta', 5], ['audit-all', null, 5]]);
  // agt_a and agt_b cached after their first lookup; the unknown agent is asked again by each destination.
  assert.ok(lookups <= 2 + 4, `tenant lookups: ${lookups}`);
});
