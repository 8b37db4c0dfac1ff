/**
 * mssql-ct state machine against a scripted FAKE of the mssql API (no SQL Server can
 * run here; test/integration/mssql.test.ts runs the real thing when MSSQL_URL is set).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDovetailError } from '@dovetail/shared';
import type { SourceConfig, TableConfig } from '../../agent/src/config/types.ts';
import { EMPTY_STATE, type CaptureContext, type StateReader } from '../../agent/src/capture/types.ts';
import { MssqlDriver } from '../../agent/src/sources/mssql/index.ts';
import { isRetryable } from '../../agent/src/sources/errors.ts';
import { createMssqlCtStrategy, type CtPosition } from '../../agent/src/capture/mssql-ct.ts';
import { SNAPSHOT, createFakeMssql, describeRows, sqlError, type FakeMssql, type Rule } from '../helpers/mssql-fake.ts';

const SOURCE: SourceConfig = { type: 'mssql', system: 'erp', url: 'Server=db;Database=erp', timeZone: 'UTC', maxConnections: 1, queryTimeoutMs: 0 };

function table(name: string, over: Partial<TableConfig> = {}): TableConfig {
  return {
    name, table: `dbo.${name}`, key: ['code'], entity: 'product', strategy: 'mssql-ct', schedule: { everyMs: 1000 },
    pageSize: 2, map: {}, children: {}, onGap: 'resnapshot', ...over,
  };
}

const state: StateReader = EMPTY_STATE;

function ctx(driver: MssqlDriver, pageSize = 2): CaptureContext {
  return { driver, state, pageSize, signal: new AbortController().signal, now: () => new Date('2024-05-01T00:00:00Z') };
}

interface Db { current: string; min: Record<string, string>; snapshotIsolation?: number }

/** Preflight, describe, count and version reads for tables Items and Orders. */
function base(db: Db): Rule[] {
  const tableOf = (v: unknown) => String(v).replace(/^\[dbo\]\.\[(.*)\]$/, '$1');
  return [
    {
      match: /CHANGE_TRACKING_CURRENT_VERSION\(\)[\s\S]*snapshot_isolation_state/,
      reply: (c) => [{ db_name: 'erp', object_id: '581577110', current_version: db.current, min_valid_version: db.min[tableOf(c.params[0]!.value)] ?? null, snapshot_isolation_state: db.snapshotIsolation ?? 1 }],
    },
    { match: /^SELECT CAST\(CHANGE_TRACKING_CURRENT_VERSION/, reply: (c) => [{ current_version: db.current, min_valid_version: db.min[tableOf(c.params[0]!.value)] ?? null }] },
    { match: /FROM sys\.columns/, reply: describeRows([['code', 'char', 15], ['price', 'money', 8, 19, 4], ['name', 'varchar', 40]]) },
    { match: /FROM sys\.partitions/, reply: [{ object_id: '581577110', row_count: '3' }] },
  ];
}

function setup(db: Db): { fake: FakeMssql; driver: MssqlDriver } {
  const fake = createFakeMssql(base(db));
  return { fake, driver: new MssqlDriver(SOURCE, fake.api) };
}

const P = (s: string): CtPosition => JSON.parse(s) as CtPosition;

test('first run: version read BEFORE the snapshot, inside the same SNAPSHOT transaction, becomes the streaming start', async () => {
  const db = { current: '250', min: { Items: '1' } };
  const { fake, driver } = setup(db);
  await driver.connect();
  const ct = createMssqlCtStrategy(table('Items'));
  fake.script({ match: /^SELECT TOP \(@p1\) t\.\[code\]/, reply: [{ code: 'CODE1          ', price: '-922337203685477.5808', name: 'a' }, { code: 'CODE2          ', price: '1.5000', name: 'b' }], times: 1 });
  const r1 = await ct.poll(null, ctx(driver));
  assert.equal(r1.phase, 'snapshotting');
  assert.equal(r1.more, true);
  assert.deepEqual(r1.progress, { done: 2, total: 3 });
  assert.deepEqual(r1.changes.map((c) => [c.op, c.key.code, c.row?.price]), [['upsert', 'CODE1          ', '-922337203685477.5808'], ['upsert', 'CODE2          ', '1.5000']]);
  const pos1 = P(ct.encodePosition(r1.position));
  assert.equal(pos1.version, '250');
  const inTx = fake.calls.filter((c) => c.tx !== null);
  assert.deepEqual(inTx.map((c) => [c.isolation, /CHANGE_TRACKING_CURRENT_VERSION/.test(c.sql) ? 'version' : 'page']), [[SNAPSHOT, 'version'], [SNAPSHOT, 'page']]);
  assert.equal(inTx[0]!.tx, inTx[1]!.tx, 'one transaction');

  // The version moves on while the snapshot runs; the position keeps the one read first.
  db.current = '260';
  fake.script({ match: /^SELECT TOP \(@p1\) t\.\[code\]/, reply: [{ code: 'CODE3          ', price: '0.0000', name: 'c' }] });
  const r2 = await ct.poll(ct.decodePosition(ct.encodePosition(r1.position)), ctx(driver));
  const page2 = fake.calls.at(-1)!;
  assert.match(page2.sql, /WHERE t\.\[code\] > @p2 ORDER BY t\.\[code\]$/);
  assert.deepEqual(fake.param(page2, 'p2'), { name: 'p2', type: { type: 'Char', length: 15 }, value: 'CODE2          ' });
  assert.equal(r2.phase, 'streaming');
  assert.deepEqual(P(ct.encodePosition(r2.position)), { v: 1, phase: 'streaming', version: '250', snapshot: null, page: null });
  assert.deepEqual(fake.events, ['begin:5', 'commit', 'begin:5', 'commit']);
});

test('streaming: CHANGETABLE LEFT JOIN in one SNAPSHOT transaction, paging by (version, key) inside one large version, deletes by key', async () => {
  const db = { current: '310', min: { Items: '100' } };
  const { fake, driver } = setup(db);
  await driver.connect();
  const ct = createMssqlCtStrategy(table('Items'));
  const start: CtPosition = { v: 1, phase: 'streaming', version: '300', snapshot: null, page: null };
  // One transaction at version 305 touched three rows; page size 2.
  fake.script({
    match: /FROM CHANGETABLE/, times: 1,
    reply: [
      { __dovetail_ct_version: '305', __dovetail_ct_op: 'U', __dovetail_ct_key_0: 'CODE1          ', __dovetail_ct_present: 1, code: 'CODE1          ', price: '2.0000', name: 'a' },
      { __dovetail_ct_version: '305', __dovetail_ct_op: 'I', __dovetail_ct_key_0: 'CODE2          ', __dovetail_ct_present: 1, code: 'CODE2          ', price: '3.0000', name: 'b' },
    ],
  });
  const r1 = await ct.poll(start, ctx(driver));
  const q1 = fake.calls.find((c) => /CHANGETABLE/.test(c.sql))!;
  assert.equal(q1.isolation, SNAPSHOT);
  assert.equal(
    q1.sql,
    'SELECT TOP (@p1) CAST(ct.SYS_CHANGE_VERSION AS varchar(20)) AS [__dovetail_ct_version], ct.SYS_CHANGE_OPERATION AS [__dovetail_ct_op], '
    + 'ct.[code] AS [__dovetail_ct_key_0], CASE WHEN t.[code] IS NULL THEN 0 ELSE 1 END AS [__dovetail_ct_present], '
    + 't.[code] AS [code], CONVERT(varchar(30), t.[price], 2) AS [price], t.[name] AS [name] '
    + 'FROM CHANGETABLE(CHANGES [dbo].[Items], @p2) AS ct LEFT JOIN [dbo].[Items] AS t ON t.[code] = ct.[code] '
    + 'WHERE ct.SYS_CHANGE_VERSION <= @p3 ORDER BY ct.SYS_CHANGE_VERSION, ct.[code]',
  );
  assert.deepEqual(q1.params.map((p) => [p.name, p.type, p.value]), [['p1', { type: 'Int' }, 2], ['p2', { type: 'BigInt' }, '300'], ['p3', { type: 'BigInt' }, '310']]);
  // Versions read in the same transaction as CHANGETABLE.
  const versions = fake.calls.find((c) => c.tx === q1.tx && /^SELECT CAST\(CHANGE_TRACKING_CURRENT_VERSION/.test(c.sql));
  assert.ok(versions);
  assert.equal(r1.more, true);
  assert.deepEqual(r1.changes.map((c) => [c.op, c.key.code, c.position]), [['upsert', 'CODE1          ', '305'], ['upsert', 'CODE2          ', '305']]);
  assert.deepEqual(r1.changes[0]!.row, { code: 'CODE1          ', price: '2.0000', name: 'a' });
  const pos1 = ct.decodePosition(ct.encodePosition(r1.position)) as CtPosition;
  assert.deepEqual(pos1, { v: 1, phase: 'streaming', version: '300', snapshot: null, page: { version: '305', key: ['CODE2          '] } });

  fake.script({
    match: /FROM CHANGETABLE/, times: 1,
    reply: [{ __dovetail_ct_version: '305', __dovetail_ct_op: 'D', __dovetail_ct_key_0: 'CODE3          ', __dovetail_ct_present: 0, code: null, price: null, name: null }],
  });
  const r2 = await ct.poll(pos1, ctx(driver));
  const q2 = fake.calls.filter((c) => /CHANGETABLE/.test(c.sql)).at(-1)!;
  assert.match(q2.sql, /WHERE ct\.SYS_CHANGE_VERSION <= @p3 AND \(ct\.SYS_CHANGE_VERSION > @p4 OR \(ct\.SYS_CHANGE_VERSION = @p4 AND ct\.\[code\] > @p5\)\) ORDER BY/);
  assert.deepEqual(fake.param(q2, 'p4').value, '305');
  assert.deepEqual(fake.param(q2, 'p5'), { name: 'p5', type: { type: 'Char', length: 15 }, value: 'CODE2          ' });
  assert.deepEqual(r2.changes, [{ op: 'delete', key: { code: 'CODE3          ' }, row: null, position: '305' }]);
  assert.equal(r2.more, false);
  assert.deepEqual(r2.position, { v: 1, phase: 'streaming', version: '310', snapshot: null, page: null });
  assert.ok(fake.events.every((e) => e === 'begin:5' || e === 'commit'), fake.events.join());
});

test('min valid version passed (stored 2, minimum 238): phase gap, only that table re-snapshots, new position is the version read before the snapshot', async () => {
  const db = { current: '250', min: { Items: '238', Orders: '1' } };
  const { fake, driver } = setup(db);
  await driver.connect();
  const items = createMssqlCtStrategy(table('Items'));
  const orders = createMssqlCtStrategy(table('Orders'));
  const stale: CtPosition = { v: 1, phase: 'streaming', version: '2', snapshot: null, page: null };
  const r1 = await items.poll(stale, ctx(driver));
  assert.equal(r1.phase, 'gap');
  assert.equal(r1.more, true);
  assert.deepEqual(r1.changes, []);
  assert.equal(fake.calls.some((c) => /CHANGETABLE/.test(c.sql)), false, 'nothing read past a gap');
  const fresh = items.decodePosition(items.encodePosition(r1.position)) as CtPosition;
  assert.equal(fresh.phase, 'snapshot');
  assert.equal(fresh.version, null);

  fake.script({ match: /^SELECT TOP \(@p1\) t\.\[code\]/, reply: [{ code: 'CODE1          ', price: '1.0000', name: 'a' }] });
  const r2 = await items.poll(fresh, ctx(driver));
  assert.equal(r2.phase, 'streaming');
  assert.equal((r2.position as CtPosition).version, '250');
  assert.equal(r2.changes[0]!.position, '250');

  // Orders, with a valid position, streams on untouched.
  fake.script({ match: /FROM CHANGETABLE\(CHANGES \[dbo\]\.\[Orders\]/, reply: [] });
  const r3 = await orders.poll({ v: 1, phase: 'streaming', version: '200', snapshot: null, page: null }, ctx(driver));
  assert.equal(r3.phase, 'streaming');
  assert.deepEqual(r3.position, { v: 1, phase: 'streaming', version: '250', snapshot: null, page: null });
});

test('onGap stop: phase gap, position unchanged, no more polling', async () => {
  const { driver } = setup({ current: '250', min: { Items: '238' } });
  await driver.connect();
  const ct = createMssqlCtStrategy(table('Items', { onGap: 'stop' }));
  const stale: CtPosition = { v: 1, phase: 'streaming', version: '2', snapshot: null, page: null };
  const r = await ct.poll(stale, ctx(driver));
  assert.deepEqual([r.phase, r.more, r.position], ['gap', false, stale]);
});

test('clear configuration errors: CT off on the table or database, snapshot isolation off, missing VIEW CHANGE TRACKING', async () => {
  const t = table('Items');
  {
    const { driver } = setup({ current: '250', min: {} });
    await driver.connect();
    await assert.rejects(createMssqlCtStrategy(t).poll(null, ctx(driver)), (e) => isDovetailError(e, 'AGENT_SOURCE_NOT_CONFIGURED') && e.message.includes('ALTER TABLE [dbo].[Items] ENABLE CHANGE_TRACKING') && !isRetryable(e));
  }
  {
    const fake = createFakeMssql([{ match: /snapshot_isolation_state/, reply: [{ db_name: 'erp', object_id: '1', current_version: null, min_valid_version: null, snapshot_isolation_state: 1 }] }]);
    const driver = new MssqlDriver(SOURCE, fake.api);
    await driver.connect();
    await assert.rejects(createMssqlCtStrategy(t).poll(null, ctx(driver)), (e) => isDovetailError(e, 'AGENT_SOURCE_NOT_CONFIGURED') && e.message.includes('ALTER DATABASE [erp] SET CHANGE_TRACKING = ON'));
  }
  {
    const { driver } = setup({ current: '250', min: { Items: '1' }, snapshotIsolation: 0 });
    await driver.connect();
    await assert.rejects(createMssqlCtStrategy(t).poll(null, ctx(driver)), (e) => isDovetailError(e, 'AGENT_SOURCE_NOT_CONFIGURED') && e.message.includes('ALTER DATABASE [erp] SET ALLOW_SNAPSHOT_ISOLATION ON'));
  }
  {
    const { fake, driver } = setup({ current: '250', min: { Items: '1' } });
    await driver.connect();
    fake.script({ match: /FROM CHANGETABLE/, reply: sqlError(229, 'The SELECT permission was denied on the object') });
    await assert.rejects(
      createMssqlCtStrategy(t).poll({ v: 1, phase: 'streaming', version: '5', snapshot: null, page: null }, ctx(driver)),
      (e) => isDovetailError(e, 'AGENT_SOURCE_PERMISSION') && e.message.includes('VIEW CHANGE TRACKING') && !isRetryable(e),
    );
    assert.deepEqual(fake.events.slice(-1), ['rollback']);
  }
});

test('a version below the stored one (database restored from an older backup) is a gap too', async () => {
  const { driver } = setup({ current: '40', min: { Items: '1' } });
  await driver.connect();
  const r = await createMssqlCtStrategy(table('Items')).poll({ v: 1, phase: 'streaming', version: '90', snapshot: null, page: null }, ctx(driver));
  assert.equal(r.phase, 'gap');
});

test('positions round-trip exactly and a corrupt one is AGENT_POSITION_INVALID', () => {
  const ct = createMssqlCtStrategy(table('Items'));
  const p: CtPosition = { v: 1, phase: 'streaming', version: '9223372036854775807', snapshot: null, page: { version: '9223372036854775806', key: ['CODE1          '] } };
  assert.deepEqual(ct.decodePosition(ct.encodePosition(p)), p);
  assert.throws(() => ct.decodePosition('{"v":1,"phase":"streaming","version":12}'), (e) => isDovetailError(e, 'AGENT_POSITION_INVALID'));
});
