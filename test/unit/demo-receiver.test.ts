import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { startReceiver, newWebhookSecret } from '../../demo/receiver.ts';
import { compareStates, normDecimal } from '../../demo/compare.ts';
import { REPO } from '../helpers/paths.ts';

function ev(id: string, op: 'upsert' | 'delete', key: string, data: unknown) {
  return { id, entity: 'customer', op, key, data, occurredAt: '2024-07-01T10:00:00-05:00', schema: 'customer/1' };
}

async function post(url: string, secret: string, msgId: string, body: unknown, badSig = false) {
  const payload = JSON.stringify(body);
  const ts = new Date();
  let sig = new Webhook(secret).sign(msgId, ts, payload);
  if (badSig) sig = new Webhook(newWebhookSecret()).sign(msgId, ts, payload);
  const res = await fetch(url, {
    method: 'POST', body: payload,
    headers: { 'content-type': 'application/json', 'webhook-id': msgId, 'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)), 'webhook-signature': sig },
  });
  await res.arrayBuffer();
  return res.status;
}

test('receiver: rejects a bad signature, counts a duplicate, applies upserts and deletes in order', async (t) => {
  const secret = newWebhookSecret();
  const r = await startReceiver({ secret });
  t.after(() => r.close());

  assert.equal(await post(r.url, secret, 'msg_1', ev('e1', 'upsert', 'C1', { customerId: 'C1', name: 'Acme' })), 200);
  assert.equal(await post(r.url, secret, 'msg_2', ev('e2', 'upsert', 'C2', { customerId: 'C2', name: 'Bolt' })), 200);
  assert.equal(await post(r.url, secret, 'msg_3', { events: [ev('e3', 'upsert', 'C1', { customerId: 'C1', name: 'Acme Supply' }), ev('e4', 'delete', 'C2', null)] }), 200);
  assert.equal(await post(r.url, secret, 'msg_1', ev('e1', 'upsert', 'C1', { customerId: 'C1', name: 'Acme' })), 200, 'a duplicate is acknowledged');
  assert.equal(await post(r.url, secret, 'msg_4', ev('e5', 'upsert', 'C9', { customerId: 'C9', name: 'Evil' }), true), 401);

  const s = r.stats();
  assert.equal(s.delivered, 3);
  assert.equal(s.duplicates, 1);
  assert.equal(s.rejected, 1);
  assert.equal(s.events, 4);
  assert.equal(s.records, 2);
  assert.equal(s.deleted, 1);
  const state = r.state();
  assert.deepEqual(state.get('customer:C1'), { customerId: 'C1', name: 'Acme Supply' }, 'the duplicate did not roll C1 back');
  assert.equal(state.get('customer:C2'), null, 'delete leaves a tombstone');
  assert.equal(state.has('customer:C9'), false, 'the forged delivery was not applied');

  const stats = (await (await fetch(`http://127.0.0.1:${r.port}/stats`)).json()) as { duplicates: number };
  assert.equal(stats.duplicates, 1);
});

test('receiver: runs as a process and prints its stats on SIGTERM', async () => {
  const secret = newWebhookSecret();
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'demo', 'receiver.ts'), '--port', '0', '--secret', secret], { cwd: REPO });
  let out = '';
  child.stdout.setEncoding('utf8');
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      out += d;
      const m = /receiver listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`receiver exited early: ${out}`)));
  });
  assert.equal(await post(url, secret, 'msg_a', ev('a', 'upsert', 'C1', { customerId: 'C1', name: 'A' })), 200);
  assert.equal(await post(url, secret, 'msg_a', ev('a', 'upsert', 'C1', { customerId: 'C1', name: 'A' })), 200);
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  const last = JSON.parse(out.trim().split('\n').at(-1)!);
  assert.equal(last.delivered, 1);
  assert.equal(last.duplicates, 1);
});

test('compareStates: missing, stale, present-but-deleted; decimals compare by value', () => {
  const expected = new Map<string, any>([
    ['product:A', { sku: 'A', listPrice: '12.5' }],
    ['product:B', { sku: 'B', listPrice: '3' }],
    ['product:C', { sku: 'C', listPrice: '1' }],
    ['sales_order:S1', { orderNumber: 'S1', lines: [{ lineNumber: '1', quantity: '2' }] }],
  ]);
  const received = new Map<string, unknown>([
    ['product:A', { sku: 'A', listPrice: '12.50000' }],
    ['product:B', { sku: 'B', listPrice: '3.10000' }],
    ['product:D', { sku: 'D' }],
    ['product:E', null],
    ['sales_order:S1', { orderNumber: 'S1', lines: [{ lineNumber: '1', quantity: '2.00000' }] }],
  ]);
  const c = compareStates(expected, received);
  assert.deepEqual(c.mismatches.map((m) => `${m.kind} ${m.key}`).sort(), ['missing product:C', 'present_but_deleted product:D', 'stale product:B']);
  assert.equal(c.lost, 3);
  assert.equal(normDecimal('-0.000'), '0');
  assert.equal(normDecimal('0012.34500'), '12.345');
});
