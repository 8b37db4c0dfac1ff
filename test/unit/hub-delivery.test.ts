/** Delivery router + webhook connector, driven by a manual clock (no sleeping). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Webhook } from 'standardwebhooks';
import { createLogger, type CanonicalEvent } from '@dovetail/shared';
import { DeliveryRouter, type DestinationSpec } from '../../hub/src/delivery/router.ts';
import { createWebhookConnector, isRetryableStatus } from '../../hub/src/delivery/webhook.ts';
import type { Connector, DeliveryResult, Timers } from '../../hub/src/delivery/types.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import type { HubStore } from '../../hub/src/store/types.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const silent = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

class ManualTimers implements Timers {
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
}

/** Lets promise chains and I/O settle, without a wall-clock sleep. */
async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Moves the manual clock in steps until cond holds: retries fire without wall-clock waits. */
async function drive(timers: ManualTimers, cond: () => boolean | Promise<boolean>, what: string, stepMs = 100): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return;
    await new Promise((r) => setImmediate(r));
    timers.advance(stepMs);
  }
  assert.fail(`timed out driving the clock until ${what}`);
}

async function append(store: HubStore, chain: BatchChain, events: CanonicalEvent[]): Promise<void> {
  await store.log.append(chain.agentId, chain.next(events), events, new Date().toISOString());
}

/** Scripted connector: per-event list of results, then success. Records every call. */
function scripted(script: Record<string, DeliveryResult[]> = {}): Connector & { calls: string[]; delivered: string[] } {
  const calls: string[] = [];
  const delivered: string[] = [];
  return {
    type: 'scripted', calls, delivered,
    async deliver(e) {
      calls.push(e.id);
      const r = script[e.id]?.shift() ?? { ok: true };
      if (r.ok) delivered.push(e.id);
      return r;
    },
  };
}

const fail503: DeliveryResult = { ok: false, retryable: true, status: 503, error: 'HTTP 503' };

function router(store: HubStore, timers: ManualTimers, dest: Partial<DestinationSpec> & { connector: Connector }): DeliveryRouter {
  return new DeliveryRouter({
    log: store.log, state: store.delivery, logger: silent, timers,
    backoff: { initialMs: 100, maxMs: 1000, random: () => 0.999 },
    destinations: [{ name: 'crm', ...dest }],
  });
}

test('events with the same entity+key keep log order under failures and retries; other keys do not wait', async () => {
  const store = createMemoryStore();
  const timers = new ManualTimers();
  const c = scripted({ a1: [fail503, fail503] });
  const r = router(store, timers, { connector: c, concurrency: 4 });
  await r.start();
  const chain = new BatchChain('agt_a', seedKey(1));
  await append(store, chain, [event('a1', 'customer', 'A'), event('b1', 'customer', 'B'), event('a2', 'customer', 'A'), event('b2', 'customer', 'B')]);
  await until(() => c.delivered.length === 2, 'b1, b2');
  assert.deepEqual(c.delivered, ['b1', 'b2']);
  assert.deepEqual(c.calls.filter((x) => x === 'a2'), [], 'a2 waits for a1');
  assert.equal(r.status()[0]!.cursor, 0, 'cursor waits behind the unfinished a1');
  timers.advance(99); // backoff(0) with random 0.999 -> 99 ms
  await until(() => c.calls.length === 4, 'a1 second try');
  timers.advance(199);
  await until(() => c.delivered.length === 4, 'all');
  assert.deepEqual(c.delivered, ['b1', 'b2', 'a1', 'a2']);
  assert.deepEqual(c.calls.filter((x) => x === 'a1').length, 3);
  await until(async () => (await store.delivery.getCursor('crm')) === 4, 'cursor 4');
  assert.equal(await store.delivery.getAttempt('crm', 1), undefined);
  await r.stop();
});

test('after maxAttempts the event goes to the DLQ with its last error and the key continues', async () => {
  const store = createMemoryStore();
  const timers = new ManualTimers();
  const c = scripted({ x1: [fail503, fail503, { ok: false, retryable: true, error: 'HTTP 502' }] });
  const r = router(store, timers, { connector: c, maxAttempts: 3 });
  await r.start();
  const chain = new BatchChain('agt_a', seedKey(1));
  await append(store, chain, [event('x1', 'customer', 'K'), event('x2', 'customer', 'K')]);
  await drive(timers, () => c.delivered.includes('x2'), 'x2 delivered');
  assert.deepEqual(c.calls, ['x1', 'x1', 'x1', 'x2']);
  const dlq = await store.delivery.listDlq('crm', 10);
  assert.equal(dlq.length, 1);
  assert.equal(dlq[0]!.eventId, 'x1');
  assert.equal(dlq[0]!.attempts, 3);
  assert.equal(dlq[0]!.lastError, 'HTTP 502');
  await until(async () => (await store.delivery.getCursor('crm')) === 2, 'cursor 2');
  await r.stop();
});

test('entities filter: only listed entities are delivered, the cursor passes over the rest', async () => {
  const store = createMemoryStore();
  const timers = new ManualTimers();
  const c = scripted();
  const r = router(store, timers, { connector: c, entities: ['sales_order'] });
  await r.start();
  await append(store, new BatchChain('agt_a', seedKey(1)), [event('c1'), event('o1', 'sales_order', 'SO-1'), event('p1', 'product', 'SKU')]);
  await until(async () => (await store.delivery.getCursor('crm')) === 3, 'cursor 3');
  assert.deepEqual(c.calls, ['o1']);
  await r.stop();
});

test('a restarted router resumes from the committed cursor and keeps attempt counts', async () => {
  const store = createMemoryStore();
  const timers = new ManualTimers();
  const chain = new BatchChain('agt_a', seedKey(1));
  await append(store, chain, [event('r1'), event('r2', 'customer', 'OTHER')]);
  await store.delivery.commit('crm', 1);
  await store.delivery.recordAttempt('crm', { offset: 2, eventId: 'r2', attempts: 2, lastError: 'HTTP 500', lastAttemptAt: 'x' });
  const c = scripted({ r2: [fail503] });
  const r = router(store, timers, { connector: c, maxAttempts: 3 });
  await r.start();
  await until(async () => (await store.delivery.dlqCount('crm')) === 1, 'DLQ after the third attempt overall');
  assert.deepEqual(c.calls, ['r2']);
  await r.stop();
});

interface Received { headers: IncomingMessage['headers']; body: string }

async function receiver(statuses: Record<string, number[]>): Promise<{ url: string; got: Received[]; close: () => Promise<void> }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.statusCode = statuses[String(req.headers['webhook-id'])]?.shift() ?? 200;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/erp?token=abc`;
  return { url, got, close: () => new Promise((r) => server.close(() => r())) };
}

test('webhook: standardwebhooks verifies our signature over the exact body; id is the event id', async () => {
  const rx = await receiver({});
  try {
    const conn = createWebhookConnector({ url: rx.url, secret: SECRET });
    const e = event('evt-123', 'customer', 'ALFKI');
    const res = await conn.deliver(e, { attempt: 1, signal: new AbortController().signal });
    assert.deepEqual(res, { ok: true, status: 200 });
    const req = rx.got[0]!;
    assert.equal(req.headers['webhook-id'], 'evt-123');
    assert.equal(req.headers['content-type'], 'application/json');
    assert.match(String(req.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]+=*$/);
    const payload = new Webhook(SECRET).verify(req.body, {
      'webhook-id': String(req.headers['webhook-id']),
      'webhook-timestamp': String(req.headers['webhook-timestamp']),
      'webhook-signature': String(req.headers['webhook-signature']),
    });
    assert.deepEqual(payload, e);
    assert.equal(JSON.parse(req.body).data.balance, '12.50000');
    // One changed byte fails the independent check.
    assert.throws(() => new Webhook(SECRET).verify(req.body.replace('ALFKI', 'ALFKJ'), {
      'webhook-id': String(req.headers['webhook-id']),
      'webhook-timestamp': String(req.headers['webhook-timestamp']),
      'webhook-signature': String(req.headers['webhook-signature']),
    }));
  } finally {
    await rx.close();
  }
});

test('webhook: status classification (2xx ok; 408/429/5xx retry; other 4xx DLQ)', () => {
  assert.deepEqual([408, 429, 500, 503, 599].map(isRetryableStatus), [true, true, true, true, true]);
  assert.deepEqual([400, 401, 404, 409, 422, 301].map(isRetryableStatus), [false, false, false, false, false, false]);
});

test('webhook through the router: 503 retried then success; 422 to the DLQ at once, key continues', async () => {
  const rx = await receiver({ w1: [503], w2: [422] });
  const store = createMemoryStore();
  const timers = new ManualTimers();
  timers.t = Date.now();
  try {
    const conn = createWebhookConnector({ url: rx.url, secret: SECRET, timers });
    const r = router(store, timers, { connector: conn, concurrency: 1 });
    await r.start();
    const chain = new BatchChain('agt_a', seedKey(1));
    await append(store, chain, [event('w1', 'customer', 'A'), event('w2', 'customer', 'B'), event('w3', 'customer', 'B')]);
    await drive(timers, () => rx.got.length === 4, 'all requests');
    const ids = rx.got.map((g) => String(g.headers['webhook-id']));
    assert.deepEqual(ids.filter((i) => i === 'w1'), ['w1', 'w1'], '503 retried once, then 200');
    // Key B: w3 follows w2 although w2 was rejected.
    assert.deepEqual(ids.filter((i) => i !== 'w1'), ['w2', 'w3']);
    await until(async () => (await store.delivery.getCursor('crm')) === 3, 'cursor 3');
    const dlq = await store.delivery.listDlq('crm', 10);
    assert.deepEqual(dlq.map((d) => [d.eventId, d.attempts, d.lastError]), [['w2', 1, `HTTP 422 from ${rx.url.split('?')[0]}`]]);
    await r.stop();
  } finally {
    await rx.close();
  }
});

test('webhook: a request that does not answer times out (retryable) on the injected clock', async () => {
  const timers = new ManualTimers();
  const hanging: typeof fetch = (_u, init) => new Promise((_res, rej) => init!.signal!.addEventListener('abort', () => rej(new Error('aborted'))));
  const conn = createWebhookConnector({ url: 'http://example.invalid/x', secret: SECRET, timers, fetch: hanging, timeoutMs: 10_000 });
  const p = conn.deliver(event('t1'), { attempt: 1, signal: new AbortController().signal });
  timers.advance(10_000);
  assert.deepEqual(await p, { ok: false, retryable: true, error: 'timeout after 10000 ms (http://example.invalid/x)' });
});
