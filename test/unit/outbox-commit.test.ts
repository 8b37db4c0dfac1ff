import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeBatchBody, verifyBatchSignature, sha256, bytesEqual, GENESIS_HASH, packr, keyPairFromSeed, type CanonicalEvent,
} from '@dovetail/shared';
import { Outbox, readStatus, inspectOutbox, splitEvents } from '../../agent/src/outbox/outbox.ts';
import type { CommitInput } from '../../agent/src/outbox/types.ts';
import { tempDir } from '../helpers/paths.ts';

const kp = keyPairFromSeed(new Uint8Array(32).fill(7));
const FIXED = new Date('2024-05-01T12:00:00.000Z');

function event(i: number, pad = 0): CanonicalEvent {
  return {
    id: `ev-${i}`, entity: 'customer', op: 'upsert', key: `C${i}`,
    data: { customerId: `C${i}`, name: 'x'.repeat(pad), creditLimit: '1000.50' },
    source: { agent: 'agt_1', system: 'erp', table: 'customers', position: String(i) },
    occurredAt: '2024-05-01T12:00:00Z', capturedAt: '2024-05-01T12:00:00Z', correlationId: null, schema: 'customer/1',
  } as CanonicalEvent;
}

function input(table: string, events: CanonicalEvent[], position: string, extra: Partial<CommitInput> = {}): CommitInput {
  return { table, events, position, stateOps: [], quarantine: [], ...extra };
}

async function open(dir: string, maxBatchEvents = 3, maxBatchBytes = 1 << 20) {
  return Outbox.open(dir, { agentId: 'agt_1', secretKey: kp.secretKey, maxBatchEvents, maxBatchBytes, now: () => FIXED });
}

test('commit splits by event count, signs, chains and stores position + state in one write', async () => {
  const dir = tempDir();
  const ob = await open(dir, 3);
  const woke: number[][] = [];
  ob.onCommit((seqs) => woke.push(seqs));
  const events = Array.from({ length: 7 }, (_, i) => event(i + 1));
  const r = await ob.commit(input('customers', events, '{"v":7}', {
    stateOps: [{ type: 'put', key: 'h/C1', value: 'abc' }, { type: 'put', key: 'h/C2', value: 'def' }],
  }));
  assert.deepEqual(r.seqs, [1, 2, 3]);
  assert.deepEqual(woke, [[1, 2, 3]]);
  assert.equal(await ob.getPosition('customers'), '{"v":7}');
  assert.equal(await ob.getPosition('orders'), undefined);

  const pending = await ob.pending(0, 10);
  assert.deepEqual(pending.map((b) => [b.seq, b.eventCount]), [[1, 3], [2, 3], [3, 1]]);
  let prev: Uint8Array = GENESIS_HASH;
  for (const b of pending) {
    const body = decodeBatchBody(b.body);
    assert.equal(body.seq, b.seq);
    assert.equal(body.agent, 'agt_1');
    assert.equal(body.createdAt, '2024-05-01T12:00:00.000Z');
    assert.ok(bytesEqual(body.prev, prev), `batch ${b.seq} prev links to the previous body hash`);
    assert.ok(verifyBatchSignature(b.body, b.sig, kp.publicKey));
    prev = sha256(b.body);
  }
  assert.deepEqual(decodeBatchBody(pending[2]!.body).events.map((e) => e.id), ['ev-7']);

  const reader = ob.stateReader('customers');
  assert.equal(await reader.get('h/C1'), 'abc');
  const entries: [string, string][] = [];
  for await (const e of reader.entries('h/')) entries.push(e);
  assert.deepEqual(entries, [['h/C1', 'abc'], ['h/C2', 'def']]);
  assert.equal(await ob.stateReader('orders').get('h/C1'), undefined, 'state is namespaced per table');

  // The chain continues across commits and across a reopen.
  await ob.close();
  const ob2 = await open(dir, 3);
  const r2 = await ob2.commit(input('customers', [event(8)], '{"v":8}', { stateOps: [{ type: 'del', key: 'h/C1' }] }));
  assert.deepEqual(r2.seqs, [4]);
  const b4 = (await ob2.pending(3, 10))[0]!;
  assert.ok(bytesEqual(decodeBatchBody(b4.body).prev, prev));
  assert.equal(await ob2.stateReader('customers').get('h/C1'), undefined);
  await ob2.close();
});

test('commit splits by msgpack bytes and an empty commit still moves the position', async () => {
  const dir = tempDir();
  const size = packr.pack(event(0, 500)).byteLength;
  // Three events fit exactly; the fourth starts a new batch.
  const ob = await open(dir, 100, 3 * size + 1);
  const r = await ob.commit(input('customers', Array.from({ length: 5 }, (_, i) => event(i, 500)), 'p1'));
  assert.deepEqual(r.seqs, [1, 2]);
  assert.deepEqual((await ob.pending(0, 10)).map((b) => b.eventCount), [3, 2]);
  const woke: number[][] = [];
  ob.onCommit((s) => woke.push(s));
  const empty = await ob.commit(input('customers', [], 'p2', { stateOps: [{ type: 'put', key: 'snap', value: '42' }] }));
  assert.deepEqual(empty.seqs, []);
  assert.deepEqual(woke, [], 'no batch, no wake-up');
  assert.equal(await ob.getPosition('customers'), 'p2');
  assert.equal(await ob.stateReader('customers').get('snap'), '42');
  assert.equal((await ob.stats()).nextSeq, 3);
  await ob.close();
});

test('splitEvents keeps one oversized-for-maxBytes event alone rather than dropping it', () => {
  const { groups, oversized } = splitEvents([event(1), event(2, 5000), event(3)], 10, 1000);
  assert.deepEqual(groups.map((g) => g.map((e) => (packr.unpack(e) as { id: string }).id)), [['ev-1'], ['ev-2'], ['ev-3']]);
  assert.deepEqual(oversized, []);
});

test('concurrent commits stay gapless and ordered', async () => {
  const ob = await open(tempDir(), 2);
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => ob.commit(input('t', [event(i * 2), event(i * 2 + 1), event(99)], String(i)))));
  assert.deepEqual(results.flatMap((r) => r.seqs), Array.from({ length: 20 }, (_, i) => i + 1));
  const all = await ob.pending(0, 100);
  assert.deepEqual(all.map((b) => b.seq), Array.from({ length: 20 }, (_, i) => i + 1));
  let prev: Uint8Array = GENESIS_HASH;
  for (const b of all) {
    assert.ok(bytesEqual(decodeBatchBody(b.body).prev, prev));
    prev = sha256(b.body);
  }
  await ob.close();
});

test('ack is cumulative, idempotent, harmless beyond the head, and stats follow', async () => {
  let now = FIXED;
  const ob = await Outbox.open(tempDir(), { agentId: 'agt_1', secretKey: kp.secretKey, maxBatchEvents: 1, maxBatchBytes: 1 << 20, now: () => now });
  await ob.commit(input('t', [event(1), event(2), event(3), event(4), event(5)], 'p'));
  const before = await ob.stats();
  assert.equal(before.depth, 5);
  assert.equal(before.bytes, (await ob.pending(0, 10)).reduce((n, b) => n + b.bytes, 0));
  assert.equal(before.lastAckedSeq, 0);
  assert.equal(before.lastAckAt, null);

  now = new Date('2024-05-01T12:00:05.000Z');
  await ob.ack(3);
  assert.deepEqual((await ob.pending(0, 10)).map((b) => b.seq), [4, 5]);
  assert.deepEqual((await ob.pending(4, 10)).map((b) => b.seq), [5]);
  assert.deepEqual((await ob.pending(0, 1)).map((b) => b.seq), [4], 'limit caps the window');
  const after = await ob.stats();
  assert.equal(after.depth, 2);
  assert.equal(after.bytes, (await ob.pending(0, 10)).reduce((n, b) => n + b.bytes, 0));
  assert.equal(after.lastAckedSeq, 3);
  assert.equal(after.lastAckAt, '2024-05-01T12:00:05.000Z');

  await ob.ack(3);
  await ob.ack(1);
  assert.equal((await ob.stats()).depth, 2);
  await ob.ack(1000); // the hub can never ack what was not committed; must not delete future batches
  assert.deepEqual(await ob.pending(0, 10), []);
  const s = await ob.stats();
  assert.deepEqual([s.depth, s.bytes, s.lastAckedSeq, s.nextSeq], [0, 0, 5, 6]);
  const r = await ob.commit(input('t', [event(6)], 'p6'));
  assert.deepEqual(r.seqs, [6]);
  assert.deepEqual((await ob.pending(0, 10)).map((b) => b.seq), [6]);
  await ob.close();
});

test('stats survive a reopen without a scan', async () => {
  const dir = tempDir();
  const ob = await open(dir, 1);
  await ob.commit(input('t', [event(1), event(2), event(3)], 'p'));
  await ob.ack(1);
  const s = await ob.stats();
  await ob.close();
  const ob2 = await open(dir, 1);
  assert.deepEqual(await ob2.stats(), s);
  assert.equal(s.depth, 2);
  await ob2.close();
});

test('quarantine entries are committed with the position and listed in order', async () => {
  const ob = await open(tempDir());
  const q = (key: string) => ({ table: 'customers', key, reason: `credit_limit "abc" is not a decimal`, code: 'AGENT_MAPPING', row: { id: key }, at: FIXED.toISOString() });
  await ob.commit(input('customers', [event(1)], 'p1', { quarantine: [q('A'), q('B')] }));
  await ob.commit(input('customers', [], 'p2', { quarantine: [q('C')] }));
  const got = [];
  for await (const e of ob.quarantine()) got.push(e);
  assert.deepEqual(got.map((e) => e.key), ['A', 'B', 'C']);
  assert.deepEqual(got[0], q('A'));
  await ob.close();
});

test('resetTable drops that table position and state only', async () => {
  const ob = await open(tempDir());
  await ob.commit(input('a', [], 'pa', { stateOps: [{ type: 'put', key: 'k1', value: '1' }, { type: 'put', key: 'k2', value: '2' }] }));
  await ob.commit(input('ab', [], 'pab', { stateOps: [{ type: 'put', key: 'k1', value: 'x' }] }));
  await ob.resetTable('a');
  assert.equal(await ob.getPosition('a'), undefined);
  assert.equal(await ob.stateReader('a').get('k1'), undefined);
  assert.equal(await ob.stateReader('a').get('k2'), undefined);
  assert.equal(await ob.getPosition('ab'), 'pab');
  assert.equal(await ob.stateReader('ab').get('k1'), 'x');
  await ob.close();
});

test('read-only open refuses commit; status file round-trips; inspectOutbox reads a closed DB', async () => {
  const dir = tempDir();
  const ob = await open(dir);
  await ob.commit(input('customers', [event(1)], 'p1'));
  const snap = await ob.writeStatusFile({ state: 'streaming' });
  assert.deepEqual(await readStatus(dir), snap);
  assert.equal(snap.state, 'streaming');
  assert.deepEqual(snap.offsets, { customers: 'p1' });
  assert.equal(snap.outbox.depth, 1);
  await ob.close();

  const ro = await Outbox.open(dir, { readOnly: true });
  assert.throws(() => ro.commit(input('customers', [], 'x')), TypeError);
  assert.equal(await ro.getPosition('customers'), 'p1');
  await ro.close();

  const info = await inspectOutbox(dir);
  assert.equal(info.live, false);
  assert.equal(info.snapshot?.outbox.depth, 1);
  assert.equal(await readStatus(tempDir()), undefined);
});

test('opening under a new agent id (re-enrollment) starts a fresh chain and re-snapshots every table; the same id changes nothing', async () => {
  const dir = tempDir();
  const first = await open(dir, 2);
  await first.commit(input('customers', [event(1), event(2), event(3)], '{"v":3}', {
    stateOps: [{ type: 'put', key: 'h/C1', value: 'abc' }],
    quarantine: [{ table: 'customers', key: 'C9', reason: 'bad', code: 'AGENT_MAPPING', row: null, at: FIXED.toISOString() }],
  }));
  await first.close();

  const same = await open(dir, 2);
  assert.equal(same.identityChange, undefined);
  assert.equal((await same.stats()).depth, 2);
  await same.close();

  const other = await Outbox.open(dir, { agentId: 'agt_2', secretKey: kp.secretKey, maxBatchEvents: 2, maxBatchBytes: 1 << 20, now: () => FIXED });
  assert.deepEqual(other.identityChange, { previousAgentId: 'agt_1', droppedBatches: 2, resetTables: ['customers'] });
  const stats = await other.stats();
  assert.equal(stats.depth, 0);
  assert.equal(stats.nextSeq, 1);
  assert.equal(await other.getPosition('customers'), undefined, 'the table is captured again from a snapshot');
  assert.equal(await other.stateReader('customers').get('h/C1'), undefined);
  const kept = [];
  for await (const q of other.quarantine()) kept.push(q.key);
  assert.deepEqual(kept, ['C9'], 'quarantine is kept');
  const r = await other.commit(input('customers', [event(4)], '{"v":1}'));
  assert.deepEqual(r.seqs, [1]);
  const [b] = await other.pending(0, 10);
  const body = decodeBatchBody(b!.body);
  assert.equal(body.agent, 'agt_2');
  assert.ok(bytesEqual(body.prev, GENESIS_HASH), 'the new chain starts at genesis');
  await other.close();
});
