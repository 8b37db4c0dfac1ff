/**
 * Cursor strategy edge cases against embedded PostgreSQL (PGlite over its socket, one
 * connection): equal cursor values at the boundary and across page breaks, late
 * commits inside the overlap window, crash-and-repoll, integer and rowversion cursors.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPgliteSource, type PgliteSource } from '../helpers/pglite-source.ts';
import { Harness, summary } from '../helpers/capture-state.ts';
import { table } from '../contract/source-contract.ts';
import { CursorStrategy, type CursorPosition } from '../../agent/src/capture/cursor.ts';
import type { CursorConfig } from '../../agent/src/config/types.ts';

let src: PgliteSource;
before(async () => { src = await startPgliteSource(); });
after(async () => { await src?.teardown(); });

let n = 0;
async function fresh(type: CursorConfig['type'], colType: string, over: Partial<CursorConfig> = {}, pageSize = 2) {
  const name = `cur_${++n}`;
  await src.exec(`CREATE TABLE ${name} (id integer PRIMARY KEY, v text, c ${colType})`);
  const strategy = new CursorStrategy(table({ name, table: name, key: ['id'], strategy: 'cursor',
    cursor: { column: 'c', type, overlapMs: 5000, overlapUnits: 10, ...over } }));
  return { name, h: new Harness<CursorPosition>(strategy, src.driver, pageSize) };
}

describe('cursor strategy (timestamp)', () => {
  it('captures a row committed later with the SAME timestamp as the boundary exactly once', async () => {
    const { name, h } = await fresh('timestamp', 'timestamp(6)');
    await src.exec(`INSERT INTO ${name} VALUES (1, 'a', '2024-05-01 10:00:00.123456'), (2, 'b', '2024-05-01 10:00:00.123456')`);
    assert.deepEqual(summary((await h.drain()).changes), ['upsert [1]', 'upsert [2]']);
    assert.equal(h.strategy.decodePosition(h.position!).boundary, '2024-05-01 10:00:00.123456');
    await src.exec(`INSERT INTO ${name} VALUES (3, 'c', '2024-05-01 10:00:00.123456')`);
    assert.deepEqual(summary((await h.drain()).changes), ['upsert [3]']);
    assert.deepEqual(summary((await h.drain()).changes), [], 'second sweep of the window emits nothing');
    assert.deepEqual(summary((await h.drain()).changes), []);
  });

  it('captures a late commit inside the overlap window, not one older than the window', async () => {
    const { name, h } = await fresh('timestamp', 'timestamp(6)');
    await src.exec(`INSERT INTO ${name} VALUES (1, 'a', '2024-05-01 10:00:10')`);
    await h.drain();
    // 4 s behind the boundary (overlap 5 s): a transaction that committed late.
    await src.exec(`INSERT INTO ${name} VALUES (2, 'late', '2024-05-01 10:00:06.000001')`);
    // 10 s behind: outside the window, documented as missed.
    await src.exec(`INSERT INTO ${name} VALUES (3, 'too late', '2024-05-01 10:00:00')`);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes), ['upsert [2]']);
    assert.equal(r.changes[0]!.position, '2024-05-01 10:00:06.000001');
    assert.deepEqual(summary((await h.drain()).changes), []);
  });

  it('re-emits a row updated inside the window without moving its timestamp', async () => {
    const { name, h } = await fresh('timestamp', 'timestamp(6)');
    await src.exec(`INSERT INTO ${name} VALUES (1, 'a', '2024-05-01 10:00:00')`);
    await h.drain();
    await src.exec(`UPDATE ${name} SET v = 'a2' WHERE id = 1`);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes), ['upsert [1]']);
    assert.equal(r.changes[0]!.row!.v, 'a2');
  });

  it('pages through a run of equal cursor values larger than a page, each row once', async () => {
    const { name, h } = await fresh('timestamp', 'timestamp(6)');
    await h.drain(); // empty snapshot: streaming starts with no boundary
    await src.exec(`INSERT INTO ${name} SELECT g, 'x', '2024-05-01 10:00:00' FROM generate_series(1, 7) g`);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes), [1, 2, 3, 4, 5, 6, 7].map((i) => `upsert [${i}]`));
    assert.equal(r.polls.length, 4, '7 rows in pages of 2: 3 full pages and a last one');
    assert.deepEqual(r.polls.map((p) => p.more), [true, true, true, false]);
    assert.deepEqual(summary((await h.drain()).changes), []);
  });

  it('a poll that was never committed (crash) is repeated with the same changes and no duplicates', async () => {
    const { name, h } = await fresh('timestamp', 'timestamp(6)');
    await src.exec(`INSERT INTO ${name} VALUES (1, 'a', '2024-05-01 10:00:00')`);
    await h.drain();
    await src.exec(`INSERT INTO ${name} VALUES (2, 'b', '2024-05-01 10:00:01'), (3, 'c', '2024-05-01 10:00:01'), (4, 'd', '2024-05-01 10:00:02')`);
    const lost = await h.poll(); // computed, never committed
    const again = await h.poll();
    assert.deepEqual(summary(again.changes), summary(lost.changes));
    h.commit(again);
    const rest = await h.drain();
    const all = [...summary(again.changes), ...summary(rest.changes)];
    assert.deepEqual(all.sort(), ['upsert [2]', 'upsert [3]', 'upsert [4]']);
  });

  it('snapshot is chunked and resumable, with progress', async () => {
    const { name, h } = await fresh('timestamp', 'timestamp(6)');
    await src.exec(`INSERT INTO ${name} SELECT g, 'x', '2024-05-01 09:00:00'::timestamp + g * interval '1 minute' FROM generate_series(1, 5) g`);
    const p1 = await h.poll();
    h.commit(p1);
    assert.equal(p1.phase, 'snapshotting');
    assert.deepEqual(p1.progress, { done: 2, total: 5 });
    await h.poll(); // crash: dropped
    const p2 = await h.poll();
    assert.deepEqual(summary(p2.changes), ['upsert [3]', 'upsert [4]']);
    assert.match(p2.changes[0]!.position, /^snapshot:snap-2024-05-01T12:00:00.000Z$/);
    h.commit(p2);
    const rest = await h.drain();
    assert.deepEqual(summary(rest.changes), ['upsert [5]'], 'rows inside the first window are not re-emitted by streaming');
    assert.equal(rest.polls.at(-1)!.phase, 'streaming');
  });

  it('keeps the dedupe set to the overlap window', async () => {
    const { name, h } = await fresh('timestamp', 'timestamp(6)', {}, 100);
    await src.exec(`INSERT INTO ${name} SELECT g, 'x', '2024-05-01 10:00:00'::timestamp + g * interval '1 second' FROM generate_series(1, 30) g`);
    await h.drain();
    const pos = h.strategy.decodePosition(h.position!);
    assert.equal(pos.boundary, '2024-05-01 10:00:30');
    // Window [10:00:25, 10:00:30]: rows 25..30.
    assert.deepEqual(pos.seen.map((e) => e[0]), ['[25]', '[26]', '[27]', '[28]', '[29]', '[30]']);
  });

  it('timestamptz cursor: offset values, occurredAt, exact round trip', async () => {
    const { name, h } = await fresh('timestamp', 'timestamptz');
    await h.drain();
    await src.exec(`INSERT INTO ${name} VALUES (1, 'a', '2024-05-01 10:00:00.5+02'), (2, 'b', '2024-05-01 08:00:00.5+00')`);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes), ['upsert [1]', 'upsert [2]']);
    assert.equal(r.changes[0]!.occurredAt, '2024-05-01T08:00:00.5+00:00');
    assert.deepEqual(summary((await h.drain()).changes), []);
  });
});

describe('cursor strategy (integer, rowversion)', () => {
  it('integer cursor beyond 2^53 with an overlap in units', async () => {
    const { name, h } = await fresh('integer', 'bigint');
    await src.exec(`INSERT INTO ${name} VALUES (1, 'a', 9007199254740993)`);
    await h.drain();
    assert.equal(h.strategy.decodePosition(h.position!).boundary, '9007199254740993');
    await src.exec(`INSERT INTO ${name} VALUES (2, 'late', 9007199254740990), (3, 'next', 9007199254740994)`);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes), ['upsert [2]', 'upsert [3]']);
    assert.deepEqual(summary((await h.drain()).changes), []);
  });

  it('rowversion cursor compared as binary (0x + 16 hex)', async () => {
    const { name, h } = await fresh('rowversion', 'bytea');
    await src.exec(`INSERT INTO ${name} VALUES (1, 'a', '\\x00000000000007d0'), (2, 'b', '\\x00000000000000ff')`);
    const snap = await h.drain();
    assert.deepEqual(summary(snap.changes), ['upsert [1]', 'upsert [2]']);
    assert.equal(h.strategy.decodePosition(h.position!).boundary, '0x00000000000007D0');
    await src.exec(`UPDATE ${name} SET v = 'b2', c = '\\x0000000000000800' WHERE id = 2`);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes), ['upsert [2]']);
    assert.equal(r.changes[0]!.position, '0x0000000000000800');
    assert.deepEqual(summary((await h.drain()).changes), []);
  });
});
