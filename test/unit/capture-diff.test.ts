/**
 * Diff strategy against embedded PostgreSQL: changes from hashes, deletes from the
 * sweep, crash mid-scan and mid-sweep, resync, and keys whose SQL order differs from
 * LevelDB byte order.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPgliteSource, type PgliteSource } from '../helpers/pglite-source.ts';
import { Harness, summary } from '../helpers/capture-state.ts';
import { table } from '../contract/source-contract.ts';
import { DiffStrategy, type DiffPosition } from '../../agent/src/capture/diff.ts';

let src: PgliteSource;
before(async () => { src = await startPgliteSource(); });
after(async () => { await src?.teardown(); });

let n = 0;
async function fresh(pageSize = 2) {
  const name = `diff_${++n}`;
  await src.exec(`CREATE TABLE ${name} (id integer PRIMARY KEY, v text)`);
  const strategy = new DiffStrategy(table({ name, table: name, key: ['id'], strategy: 'diff' }));
  return { name, strategy, h: new Harness<DiffPosition>(strategy, src.driver, pageSize) };
}

describe('diff strategy', () => {
  it('emits inserts, updates and deletes exactly once and stores one hash per row', async () => {
    const { name, strategy, h } = await fresh();
    await src.exec(`INSERT INTO ${name} SELECT g, 'v' || g FROM generate_series(1, 5) g`);
    assert.deepEqual(summary((await h.drain()).changes), [1, 2, 3, 4, 5].map((i) => `upsert [${i}]`));
    assert.equal([...h.state.map.keys()].filter((k) => k.startsWith(strategy.prefix)).length, 5);
    await src.exec(`UPDATE ${name} SET v = 'changed' WHERE id = 3; DELETE FROM ${name} WHERE id IN (1, 5); INSERT INTO ${name} VALUES (6, 'v6')`);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes), ['upsert [3]', 'upsert [6]', 'delete [1]', 'delete [5]']);
    assert.equal(r.changes[0]!.row!.v, 'changed');
    assert.equal(h.state.map.size, 4);
    assert.deepEqual(summary((await h.drain()).changes), []);
  });

  it('resumes a scan after a crash mid-way without losing or duplicating', async () => {
    const { name, h } = await fresh();
    await src.exec(`INSERT INTO ${name} SELECT g, 'v' || g FROM generate_series(1, 5) g`);
    const p1 = await h.poll();
    h.commit(p1);
    const lost = await h.poll(); // rows 3,4 computed, crash before commit
    assert.deepEqual(summary(lost.changes), ['upsert [3]', 'upsert [4]']);
    const rest = await h.drain();
    const all = [...summary(p1.changes), ...summary(rest.changes)];
    assert.deepEqual(all, [1, 2, 3, 4, 5].map((i) => `upsert [${i}]`));
  });

  it('resumes a sweep after a crash: each delete once', async () => {
    const { name, h } = await fresh(1);
    await src.exec(`INSERT INTO ${name} SELECT g, 'v' FROM generate_series(1, 4) g`);
    await h.drain();
    await src.exec(`DELETE FROM ${name} WHERE id IN (2, 3, 4)`);
    const polls = [];
    for (;;) {
      const r = await h.poll();
      if (r.changes.some((c) => c.op === 'delete')) {
        await h.poll(); // a duplicate computation of the same step, dropped
      }
      h.commit(r);
      polls.push(...summary(r.changes));
      if (!r.more) break;
    }
    assert.deepEqual(polls, ['delete [2]', 'delete [3]', 'delete [4]']);
    assert.equal(h.state.map.size, 1);
  });

  it('detects deletes whatever the key collation (text keys, SQL order != byte order)', async () => {
    const name = `diff_${++n}`;
    await src.exec(`CREATE TABLE ${name} (code varchar(10) PRIMARY KEY, v text)`);
    await src.exec(`INSERT INTO ${name} VALUES ('a1','x'), ('A-1','x'), ('B','x'), ('b','x'), ('Ä','x')`);
    const h = new Harness<DiffPosition>(new DiffStrategy(table({ name, table: name, key: ['code'], strategy: 'diff' })), src.driver, 2);
    assert.equal((await h.drain()).changes.length, 5);
    await src.exec(`DELETE FROM ${name} WHERE code IN ('A-1', 'b')`);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes).sort(), ['delete ["A-1"]', 'delete ["b"]']);
  });

  it('resync re-emits every row as a snapshot', async () => {
    const { name, strategy, h } = await fresh();
    await src.exec(`INSERT INTO ${name} VALUES (1, 'a'), (2, 'b')`);
    await h.drain();
    h.position = strategy.encodePosition(strategy.resyncPosition(strategy.decodePosition(h.position!))!);
    const r = await h.drain();
    assert.deepEqual(summary(r.changes), ['upsert [1]', 'upsert [2]']);
    assert.equal(r.polls[0]!.phase, 'snapshotting');
    assert.deepEqual(summary((await h.drain()).changes), []);
  });

  it('rejects a malformed stored position with AGENT_POSITION_INVALID', () => {
    const s = new DiffStrategy(table({ name: 'x', table: 'x', key: ['id'], strategy: 'diff' }));
    assert.throws(() => s.decodePosition('{"v":9}'), { code: 'AGENT_POSITION_INVALID' });
    assert.throws(() => s.decodePosition('not json'), { code: 'AGENT_POSITION_INVALID' });
  });
});
