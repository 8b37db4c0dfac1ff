/**
 * Delivery retries over hours and the DLQ: the default schedule (driven by a manual clock),
 * a 90 s receiver outage that loses nothing, replay through the router (log order, same ids,
 * per-key order, back to the DLQ, after a restart), and the HTTP API + CLI for `dlq list` and
 * `dlq replay` against a running hub with a real HTTP receiver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { backoffDelay, createLogger, isDovetailError, type CanonicalEvent } from '@dovetail/shared';
import { DeliveryRouter, type DestinationSpec } from '../../hub/src/delivery/router.ts';
import { DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BACKOFF } from '../../hub/src/delivery/retry.ts';
import type { Connector, DeliveryResult, Timers } from '../../hub/src/delivery/types.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import type { HubStore } from '../../hub/src/store/types.ts';
import { parseHubConfig } from '../../hub/src/config.ts';
import { startHub } from '../../hub/src/hub.ts';
import { main } from '../../hub/src/cli.ts';
import { tempDir } from '../helpers/paths.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const silent = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const HOUR = 3_600_000;

/** Manual clock that can jump straight to the next due timer (hours of retries in milliseconds). */
class JumpTimers implements Timers {
  t = 1_700_000_000_000;
  private q: Array<{ at: number; fn: () => void; id: number }> = [];
  private ids = 0;
  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): unknown { const id = ++this.ids; this.q.push({ at: this.t + ms, fn, id }); return id; }
  clearTimeout(h: unknown): void { this.q = this.q.filter((x) => x.id !== h); }
  advance(ms: number): void {
    this.t += ms;
    const due = this.q.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at);
    this.q = this.q.filter((x) => x.at > this.t);
    for (const d of due) d.fn();
  }
  /** Jumps to the earliest pending timer and fires it; false when none is pending. */
  next(): boolean {
    if (this.q.length === 0) return false;
    const at = Math.min(...this.q.map((x) => x.at));
    this.advance(Math.max(0, at - this.t));
    return true;
  }
}

const settle = () => new Promise((r) => setImmediate(r));

async function until(cond: () => boolean | Promise<boolean>, what: string, timers?: JumpTimers, stepMs?: number): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (await cond()) return;
    for (let j = 0; j < 3; j++) await settle();
    if (timers && i % 3 === 2) {
      if (stepMs === undefined) timers.next();
      else timers.advance(stepMs);
    }
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function append(store: HubStore, chain: BatchChain, events: CanonicalEvent[]): Promise<void> {
  await store.log.append(chain.agentId, chain.next(events), events, new Date().toISOString());
}

/** Connector whose answer per call comes from `answer`; records calls with the clock time. */
function connector(timers: Timers, answer: (id: string, n: number) => DeliveryResult): Connector & { calls: Array<{ id: string; at: number }>; delivered: string[] } {
  const calls: Array<{ id: string; at: number }> = [];
  const delivered: string[] = [];
  const seen = new Map<string, number>();
  return {
    type: 'test', calls, delivered,
    async deliver(e) {
      const n = (seen.get(e.id) ?? 0) + 1;
      seen.set(e.id, n);
      calls.push({ id: e.id, at: timers.now() });
      const r = answer(e.id, n);
      if (r.ok) delivered.push(e.id);
      return r;
    },
  };
}

const fail503: DeliveryResult = { ok: false, retryable: true, status: 503, error: 'HTTP 503' };
const reject422: DeliveryResult = { ok: false, retryable: false, status: 422, error: 'HTTP 422' };
const ok: DeliveryResult = { ok: true, status: 204 };

function router(store: HubStore, timers: Timers, dest: Partial<DestinationSpec> & { connector: Connector }, backoff = { initialMs: 100, maxMs: 1000, random: () => 0.999 }): DeliveryRouter {
  return new DeliveryRouter({ log: store.log, state: store.delivery, logger: silent, timers, backoff, tickMs: 1000 * HOUR, destinations: [{ name: 'crm', ...dest }] });
}

test('default retry policy: 70 attempts, delays up to 5 s doubling to a 1 h cap, at least 24 h before the DLQ', async () => {
  assert.equal(DEFAULT_MAX_ATTEMPTS, 70);
  // Upper bounds of the first retries and the cap (random just below 1 gives the bound).
  const bound = (n: number) => backoffDelay(n - 1, { ...DEFAULT_RETRY_BACKOFF, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 10, 11, 69].map(bound), [4999, 9999, 19999, 2_559_997, 3_599_996, 3_599_996]);

  const store = createMemoryStore();
  const timers = new JumpTimers();
  const c = connector(timers, () => fail503);
  // Mean jitter: the expected schedule. No maxAttempts and no backoff override other than random: the defaults.
  const r = new DeliveryRouter({
    log: store.log, state: store.delivery, logger: silent, timers, tickMs: 1000 * HOUR,
    backoff: { ...DEFAULT_RETRY_BACKOFF, random: () => 0.5 }, destinations: [{ name: 'crm', connector: c }],
  });
  await r.start();
  await append(store, new BatchChain('agt_a', seedKey(1)), [event('e1', 'customer', 'A')]);
  await until(async () => (await store.delivery.dlqCount('crm')) === 1, 'the DLQ entry', timers);
  await r.stop();
  assert.equal(c.calls.length, 70);
  const gaps = c.calls.slice(1).map((x, i) => x.at - c.calls[i]!.at);
  assert.deepEqual(gaps.slice(0, 4), [2500, 5000, 10_000, 20_000]);
  assert.equal(gaps.at(-1), HOUR / 2);
  const windowMs = c.calls.at(-1)!.at - c.calls[0]!.at;
  assert.equal(windowMs, 2500 * 1023 + 59 * (HOUR / 2));
  assert.ok(windowMs >= 24 * HOUR, `retry window ${windowMs / HOUR} h`);
  const [dlq] = await store.delivery.listDlq('crm', 10);
  assert.deepEqual([dlq!.eventId, dlq!.attempts, dlq!.lastError], ['e1', 70, 'HTTP 503']);
});

test('a 90 s receiver outage loses nothing with the default policy; the key keeps its order', async () => {
  const store = createMemoryStore();
  const timers = new JumpTimers();
  const downUntil = timers.t + 90_000;
  const c = connector(timers, () => (timers.now() < downUntil ? { ok: false, retryable: true, error: 'network error: ECONNREFUSED' } : ok));
  const r = new DeliveryRouter({ log: store.log, state: store.delivery, logger: silent, timers, tickMs: 1000 * HOUR, destinations: [{ name: 'crm', connector: c }] });
  await r.start();
  const chain = new BatchChain('agt_a', seedKey(1));
  await append(store, chain, [event('a1', 'customer', 'A'), event('b1', 'customer', 'B'), event('a2', 'customer', 'A')]);
  await until(() => c.delivered.length === 3, 'all three delivered', timers, 1000);
  await r.stop();
  assert.equal(await store.delivery.dlqCount('crm'), 0);
  assert.deepEqual(c.delivered.filter((id) => id.startsWith('a')), ['a1', 'a2']);
  assert.equal(c.calls.filter((x) => x.id === 'a2' && x.at < downUntil).length, 0, 'a2 waited behind the retrying a1');
  assert.equal(await store.delivery.getCursor('crm'), 3);
});

test('replay: chosen DLQ events are sent again in log order with the same ids; a replay that fails for good returns to the DLQ', async () => {
  const store = createMemoryStore();
  const timers = new JumpTimers();
  let x2Answer: DeliveryResult = reject422;
  const c = connector(timers, (id, n) => (id === 'x3' ? ok : id === 'x2' ? x2Answer : n === 1 ? reject422 : ok));
  const r = router(store, timers, { connector: c });
  await r.start();
  await append(store, new BatchChain('agt_a', seedKey(1)), [event('x1', 'customer', 'A'), event('x2', 'customer', 'B'), event('x3', 'customer', 'A'), event('x4', 'customer', 'C')]);
  await until(async () => (await store.delivery.dlqCount('crm')) === 3 && (await store.delivery.getCursor('crm')) === 4, 'three in the DLQ');
  assert.deepEqual((await store.delivery.listDlq('crm', 10)).map((e) => e.eventId), ['x1', 'x2', 'x4']);
  assert.deepEqual(c.delivered, ['x3']);

  const moved = await store.delivery.replayDlq('crm', { eventIds: ['x4', 'x1'], limit: 100 });
  assert.deepEqual(moved.map((e) => e.eventId), ['x1', 'x4'], 'log order, not request order');
  assert.equal(r.replayQueued('crm'), true);
  assert.equal(r.replayQueued('nope'), false);
  await until(() => c.delivered.length === 3, 'x1 and x4 delivered');
  assert.deepEqual(c.delivered, ['x3', 'x1', 'x4']);
  assert.deepEqual((await store.delivery.listDlq('crm', 10)).map((e) => e.eventId), ['x2']);
  assert.deepEqual(await store.delivery.listReplay('crm', 10), []);

  // Still rejected: back to the DLQ, with the attempts of this replay only.
  await store.delivery.replayDlq('crm', { limit: 100 });
  r.replayQueued('crm');
  await until(async () => c.calls.filter((x) => x.id === 'x2').length === 2 && (await store.delivery.dlqCount('crm')) === 1, 'x2 back in the DLQ');
  const [x2] = await store.delivery.listDlq('crm', 10);
  assert.deepEqual([x2!.eventId, x2!.attempts, x2!.offset], ['x2', 1, 2]);
  assert.deepEqual(await store.delivery.listReplay('crm', 10), []);
  x2Answer = ok;
  await store.delivery.replayDlq('crm', { eventIds: ['x2'], limit: 100 });
  r.replayQueued('crm');
  await until(() => c.delivered.includes('x2'), 'x2 delivered');
  await r.stop();
  assert.equal(await store.delivery.dlqCount('crm'), 0);
  assert.equal(r.status()[0]!.replaying, 0);
});

test('replay: a queue longer than the window is delivered in full, in log order, holding at most windowSize in memory', async () => {
  const store = createMemoryStore();
  const timers = new JumpTimers();
  let reject = true;
  const c = connector(timers, () => (reject ? reject422 : ok));
  const r = new DeliveryRouter({ log: store.log, state: store.delivery, logger: silent, timers, windowSize: 2, tickMs: 1000 * HOUR, destinations: [{ name: 'crm', connector: c, concurrency: 1 }] });
  await r.start();
  const ids = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7'];
  await append(store, new BatchChain('agt_a', seedKey(1)), ids.map((id, i) => event(id, 'customer', `K${i}`)));
  await until(async () => (await store.delivery.dlqCount('crm')) === 7, 'all seven in the DLQ');
  reject = false;
  await store.delivery.replayDlq('crm', { limit: 100 });
  r.replayQueued('crm');
  let most = 0;
  await until(() => { most = Math.max(most, r.status()[0]!.replaying ?? 0); return c.delivered.length === 7; }, 'all seven replayed');
  await r.stop();
  assert.deepEqual(c.delivered, ids);
  assert.ok(most <= 2, `held ${most} replays at once`);
  assert.deepEqual(await store.delivery.listReplay('crm', 10), []);
});

test('replay: a retrying replayed event holds back later events of its key; the replay queue survives a restart', async () => {
  const store = createMemoryStore();
  const timers = new JumpTimers();
  const chain = new BatchChain('agt_a', seedKey(1));
  let phase = 'reject';
  const c = connector(timers, (id, n) => {
    if (id === 'k1' && phase === 'reject') return reject422;
    if (id === 'k1' && n === 2) return fail503;
    return ok;
  });
  let r = router(store, timers, { connector: c });
  await r.start();
  await append(store, chain, [event('k1', 'customer', 'K')]);
  await until(async () => (await store.delivery.dlqCount('crm')) === 1, 'k1 in the DLQ');
  await r.stop();

  // Queued while no router runs (hub down): the next one picks it up at start.
  phase = 'replay';
  await store.delivery.replayDlq('crm', { limit: 100 });
  r = router(store, timers, { connector: c });
  await r.start();
  await until(() => c.calls.length === 2, 'the replay attempted once (503)');
  await append(store, chain, [event('k2', 'customer', 'K'), event('z1', 'customer', 'Z')]);
  await until(() => c.delivered.includes('z1'), 'another key is not held back');
  assert.equal(c.delivered.includes('k2'), false, 'k2 waits behind the retrying replay of k1');
  await until(() => c.delivered.includes('k2'), 'k1 then k2', timers);
  await r.stop();
  assert.deepEqual(c.delivered.filter((id) => id.startsWith('k')), ['k1', 'k2']);
  assert.equal(await store.delivery.dlqCount('crm'), 0);
});

test('dlq commands have --help naming the retry schedule and the replay rules', async () => {
  const help = async (...args: string[]) => {
    const out: string[] = [];
    assert.equal(await main([...args, '--help'], {}, (s) => out.push(s)), 0);
    return out.join('\n');
  };
  assert.match(await help('dlq', 'list'), /^Usage: dovetail-hub dlq list DESTINATION \[--limit N\][\s\S]*70 attempts = about 30 h \(at least 24 h\) before the DLQ/);
  assert.match(await help('dlq', 'replay'), /^Usage: dovetail-hub dlq replay DESTINATION \[--id EVENT_ID \.\.\.\][\s\S]*same event id \(webhook-id\)/);
  assert.match(await help('run'), /up to 5 s, 10 s, 20 s, \.\.\. 42 min 40 s, then 1 h each/);
});

test('API and CLI: dlq list and dlq replay against a running hub and a real receiver', async () => {
  const dir = tempDir('dovetail-hub-dlq-');
  let accept = false;
  const received: Array<{ id: string; auth: string | undefined; status: number }> = [];
  const rx = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const status = accept ? 204 : 422;
      received.push({ id: String(req.headers['webhook-id']), auth: req.headers.authorization, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(rx.address() as AddressInfo).port}/hook?apikey=K3Y`;
  const store = createMemoryStore();
  const hub = await startHub(parseHubConfig(`
listen: { port: 0 }
dataDir: ./data
destinations:
  - name: crm
    type: webhook
    url: "${hookUrl}"
    secret: "${SECRET}"
    headers: { Authorization: "Bearer \${env:CRM_TOKEN}" }
`, { baseDir: dir, env: { CRM_TOKEN: 'tok-s3cret' } }), { logger: silent, store });
  const dataDir = join(dir, 'data');
  const admin = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const inject = async (method: 'GET' | 'POST', url: string, token = admin, payload?: unknown) => {
    const r = await hub.app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload === undefined ? {} : { payload: payload as object }) });
    return { status: r.statusCode, json: r.json() as Record<string, unknown> };
  };
  const cli = async (...args: string[]) => {
    const out: string[] = [];
    const code = await main([...args, '--data-dir', dataDir], {}, (s) => out.push(s));
    return { code, out: out.join('\n') };
  };
  try {
    await store.registry.putToken({ hash: 'h1', name: 'plant-1', tenant: 'default', createdAt: new Date().toISOString(), expiresAt: '2099-01-01T00:00:00.000Z', usedAt: null, agentId: null });
    await store.registry.enroll('h1', { id: 'agt_a', name: 'plant-1', publicKey: 'pk', keyId: 'kid', status: 'active', createdAt: new Date().toISOString(), lastSeenAt: null, version: null, host: null }, new Date());
    await append(store, new BatchChain('agt_a', seedKey(1)), [event('e1', 'customer', 'A', 'agt_a'), event('e2', 'product', 'P', 'agt_a'), event('e3', 'customer', 'B', 'agt_a')]);
    await until(async () => (await store.delivery.dlqCount('crm')) === 3, 'three 422s in the DLQ');
    assert.deepEqual(received.map((r) => [r.id, r.auth]).sort(), [['e1', 'Bearer tok-s3cret'], ['e2', 'Bearer tok-s3cret'], ['e3', 'Bearer tok-s3cret']], 'the configured header is sent');

    const list = await inject('GET', '/v1/destinations/crm/dlq?limit=2');
    assert.equal(list.status, 200);
    assert.equal(list.json.total, 3);
    const entries = list.json.entries as Array<Record<string, unknown>>;
    assert.deepEqual(entries.map((e) => [e.eventId, e.offset, e.entity, e.key, e.attempts, e.agentId]), [['e1', 1, 'customer', 'A', 1, 'agt_a'], ['e2', 2, 'product', 'P', 1, 'agt_a']]);
    assert.equal(entries[0]!.lastError, `HTTP 422 from http://127.0.0.1:${(rx.address() as AddressInfo).port}/hook`);
    assert.match(String(entries[0]!.failedAt), /^\d{4}-\d\d-\d\dT/);
    assert.equal((await inject('GET', '/v1/destinations/nope/dlq')).json.code, 'HUB_NOT_FOUND');
    assert.equal((await inject('GET', '/v1/destinations/crm/dlq?limit=0')).json.code, 'HUB_BAD_REQUEST');

    const read = (await inject('POST', '/v1/tokens', admin, { scope: 'read' })).json.token as string;
    const tenant = (await inject('POST', '/v1/tokens', admin, { scope: 'operate', tenant: 'acme' })).json.token as string;
    assert.deepEqual([(await inject('POST', '/v1/destinations/crm/dlq/replay', read, {})).status, (await inject('POST', '/v1/destinations/crm/dlq/replay', read, {})).json.code], [403, 'HUB_FORBIDDEN']);
    assert.deepEqual([(await inject('GET', '/v1/destinations/crm/dlq', tenant)).status, (await inject('POST', '/v1/destinations/crm/dlq/replay', tenant, {})).status], [404, 404], 'destinations are hub-wide');
    assert.equal((await inject('POST', '/v1/destinations/crm/dlq/replay', admin, { ids: [] })).json.code, 'HUB_BAD_REQUEST');

    // CLI list: a table, then a summary; --json has the same entries.
    const l = await cli('dlq', 'list', 'crm');
    assert.equal(l.code, 0);
    const rows = l.out.split('\n');
    assert.match(rows[0]!, /^EVENT ID\s+OFFSET\s+ENTITY\s+KEY\s+ATTEMPTS\s+FAILED AT\s+LAST ERROR$/);
    assert.match(rows[1]!, /^e1\s+1\s+customer\s+A\s+1\s+\S+\s+HTTP 422 from http:\/\/127\.0\.0\.1:\d+\/hook$/);
    assert.equal(rows.length, 5);
    assert.equal(rows[4], '3 event(s) in the DLQ of "crm"; resend with "dovetail-hub dlq replay crm" (all) or --id EVENT_ID');
    assert.equal((await cli('dlq', 'list', 'crm', '--limit', '1')).out.split('\n').at(-1), '3 event(s) in the DLQ of "crm", 1 shown (--limit); resend with "dovetail-hub dlq replay crm" (all) or --id EVENT_ID');
    assert.deepEqual((JSON.parse((await cli('dlq', 'list', 'crm', '--json')).out) as { entries: Array<{ eventId: string }> }).entries.map((e) => e.eventId), ['e1', 'e2', 'e3']);
    assert.doesNotMatch(l.out, /K3Y|tok-s3cret/);

    // CLI replay of chosen ids: an unknown id is reported and exits 1; the known one is sent with its id.
    accept = true;
    const r1 = await cli('dlq', 'replay', 'crm', '--id', 'e3', '--id', 'nope');
    assert.equal(r1.code, 1);
    assert.equal(r1.out, '1 event(s) from the DLQ of "crm" queued for delivery (same event ids, original log order); 2 remain in the DLQ\nnot in the DLQ: nope');
    await until(() => received.some((x) => x.id === 'e3' && x.status === 204), 'e3 re-delivered');
    const r2 = await cli('dlq', 'replay', 'crm');
    assert.deepEqual([r2.code, r2.out], [0, '2 event(s) from the DLQ of "crm" queued for delivery (same event ids, original log order); 0 remain in the DLQ']);
    await until(() => received.filter((x) => x.status === 204).length === 3, 'all re-delivered');
    assert.deepEqual(received.filter((x) => x.status === 204).map((x) => x.id), ['e3', 'e1', 'e2'], 'the second replay in log order');
    assert.equal((await inject('GET', '/v1/destinations/crm/dlq')).json.total, 0);
    assert.equal((await cli('dlq', 'list', 'crm')).out, 'the DLQ of destination "crm" is empty');

    const audit = (await inject('GET', '/v1/audit?limit=10')).json.entries as Array<{ action: string; target: string; actor: string; detail?: Record<string, unknown> }>;
    const replays = audit.filter((e) => e.action === 'destination.dlq-replayed');
    assert.deepEqual(replays.map((e) => [e.target, e.actor, e.detail]), [
      ['crm', 'admin', { replayed: 2, selection: 'all', notFound: 0, remaining: 0 }],
      ['crm', 'admin', { replayed: 1, selection: 'ids', notFound: 1, remaining: 2 }],
    ]);
    const bare = await hub.app.inject({ method: 'POST', url: '/v1/destinations/crm/dlq/replay', headers: { authorization: `Bearer ${admin}` } });
    assert.deepEqual([bare.statusCode, bare.json()], [200, { destination: 'crm', replayed: 0, entries: [], notFound: [], remaining: 0 }], 'a POST without a body replays all');
    await assert.rejects(cli('dlq', 'replay'), /destination ID is required/);
    await assert.rejects(cli('dlq', 'list', 'nope'), (e: unknown) => isDovetailError(e, 'HUB_NOT_FOUND'));
  } finally {
    await hub.close();
    await new Promise<void>((r) => rx.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});
