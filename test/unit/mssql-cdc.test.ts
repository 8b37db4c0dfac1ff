/**
 * mssql-cdc state machine against a scripted FAKE of the mssql API (no SQL Server can
 * run here; test/integration/mssql.test.ts runs the real thing when MSSQL_URL is set).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDovetailError } from '@dovetail/shared';
import type { SourceConfig, TableConfig } from '../../agent/src/config/types.ts';
import { EMPTY_STATE, type CaptureContext, type StateReader } from '../../agent/src/capture/types.ts';
import { MssqlDriver } from '../../agent/src/sources/mssql/index.ts';
import { bigIntToLsn, createMssqlCdcStrategy, lsnToBigInt, type CdcPosition } from '../../agent/src/capture/mssql-cdc.ts';
import { createFakeMssql, describeRows, type FakeMssql } from '../helpers/mssql-fake.ts';

const SOURCE: SourceConfig = { type: 'mssql', system: 'erp', url: 'Server=db;Database=erp', timeZone: 'UTC', maxConnections: 1, queryTimeoutMs: 0 };
const TABLE: TableConfig = {
  name: 'customers', table: 'dbo.Customers', key: ['CustomerID'], entity: 'customer', strategy: 'mssql-cdc',
  schedule: { everyMs: 1000 }, pageSize: 3, map: {}, children: {}, onGap: 'resnapshot',
};
const state: StateReader = EMPTY_STATE;
const ctx = (driver: MssqlDriver, pageSize = 3): CaptureContext => ({ driver, state, pageSize, signal: new AbortController().signal, now: () => new Date(0) });

/** An LSN as tedious returns binary(10): a Buffer. */
const lsn = (n: number): Buffer => Buffer.from(bigIntToLsn(BigInt(n)).slice(2), 'hex');
const hex = (n: number): string => bigIntToLsn(BigInt(n));

interface Db { min: number; max: number | null; cdc?: number }

function setup(db: Db): { fake: FakeMssql; driver: MssqlDriver } {
  const fake = createFakeMssql([
    { match: /sys\.fn_cdc_get_min_lsn/, reply: () => [{ db_name: 'erp', db_cdc_enabled: db.cdc ?? 1, object_id: '1', min_lsn: db.min === 0 ? Buffer.alloc(10) : lsn(db.min), max_lsn: db.max === null ? null : lsn(db.max) }] },
    { match: /FROM sys\.columns/, reply: describeRows([['CustomerID', 'nchar', 10], ['CompanyName', 'nvarchar', 80], ['Balance', 'money', 8, 19, 4]]) },
    { match: /cdc\.captured_columns/, reply: [{ name: 'CustomerID' }, { name: 'CompanyName' }, { name: 'Balance' }] },
    { match: /FROM sys\.partitions/, reply: [{ object_id: '1', row_count: '91' }] },
  ]);
  return { fake, driver: new MssqlDriver(SOURCE, fake.api) };
}

const streaming = (n: number, page: CdcPosition['page'] = null): CdcPosition => ({ v: 1, phase: 'streaming', lsn: hex(n), snapshot: null, page });
const change = (l: number, seq: number, op: number, id: string, name: string | null) => ({
  __dovetail_cdc_lsn: lsn(l), __dovetail_cdc_seqval: lsn(seq), __dovetail_cdc_op: op, __dovetail_cdc_time: '2024-05-01 10:00:00.123',
  CustomerID: id, CompanyName: name, Balance: name === null ? null : '-922337203685477.5808',
});

test('LSN hex helpers are exact 80-bit arithmetic', () => {
  assert.equal(hex(0x4d2), '0x000000000000000004D2');
  assert.equal(lsnToBigInt('0x0000002A000001F00003'), 0x2a000001f00003n);
  assert.equal(bigIntToLsn(lsnToBigInt('0xFFFFFFFFFFFFFFFFFFFF')), '0xFFFFFFFFFFFFFFFFFFFF');
  assert.throws(() => lsnToBigInt('0x12'), TypeError);
});

test('snapshot starts from the max LSN read before the first page', async () => {
  const { fake, driver } = setup({ min: 100, max: 500 });
  await driver.connect();
  const cdc = createMssqlCdcStrategy(TABLE);
  fake.script({ match: /^SELECT TOP \(@p1\) t\./, reply: [{ CustomerID: 'ALFKI', CompanyName: 'Alfreds', Balance: '0.0000' }] });
  const r = await cdc.poll(null, ctx(driver));
  const order = fake.calls.map((c) => (/fn_cdc_get_min_lsn/.test(c.sql) ? 'lsns' : /^SELECT TOP/.test(c.sql) ? 'page' : 'meta'));
  assert.ok(order.indexOf('lsns') < order.indexOf('page'));
  assert.equal(r.phase, 'streaming');
  assert.deepEqual(r.position, streaming(500));
  assert.equal(r.changes[0]!.row!.Balance, '0.0000');
});

test('idle poll: nothing for this table still advances the position to the current max LSN', async () => {
  const { fake, driver } = setup({ min: 100, max: 900 });
  await driver.connect();
  const cdc = createMssqlCdcStrategy(TABLE);
  fake.script({ match: /fn_cdc_get_all_changes_dbo_Customers/, reply: [] });
  const r = await cdc.poll(streaming(500), ctx(driver));
  assert.deepEqual([r.phase, r.more, r.changes.length], ['streaming', false, 0]);
  assert.deepEqual(r.position, streaming(900));
  const q = fake.calls.find((c) => /fn_cdc_get_all_changes/.test(c.sql))!;
  assert.deepEqual(fake.param(q, 'p2').type, { type: 'Binary', length: 10 });
  assert.deepEqual(fake.param(q, 'p2').value, lsn(501), 'from = stored LSN + 1');
  assert.deepEqual(fake.param(q, 'p3').value, lsn(900), 'to = max LSN');
  // At max already: no change query at all, position unchanged.
  const before = fake.calls.length;
  const r2 = await cdc.poll(streaming(900), ctx(driver));
  assert.deepEqual(r2.position, streaming(900));
  assert.equal(fake.calls.slice(before).some((c) => /fn_cdc_get_all_changes/.test(c.sql)), false);
});

test('changes: 2 insert and 4 update-after are upserts, 1 delete is key only; paging inside one commit LSN by (seqval, operation)', async () => {
  const { fake, driver } = setup({ min: 100, max: 900 });
  await driver.connect();
  const cdc = createMssqlCdcStrategy(TABLE);
  fake.script({ match: /fn_cdc_get_all_changes/, times: 1, reply: [change(600, 1, 2, 'NEWCO', 'New Co'), change(600, 2, 4, 'ALFKI', 'Alfreds 2'), change(700, 1, 1, 'BONAP', null)] });
  const r1 = await cdc.poll(streaming(500), ctx(driver));
  const q1 = fake.calls.filter((c) => /fn_cdc_get_all_changes/.test(c.sql)).at(-1)!;
  assert.equal(
    q1.sql,
    'SELECT TOP (@p1) c.[__$start_lsn] AS [__dovetail_cdc_lsn], c.[__$seqval] AS [__dovetail_cdc_seqval], c.[__$operation] AS [__dovetail_cdc_op], '
    + 'CONVERT(varchar(23), sys.fn_cdc_map_lsn_to_time(c.[__$start_lsn]), 121) AS [__dovetail_cdc_time], '
    + 'c.[CustomerID] AS [CustomerID], c.[CompanyName] AS [CompanyName], CONVERT(varchar(30), c.[Balance], 2) AS [Balance] '
    + "FROM [cdc].[fn_cdc_get_all_changes_dbo_Customers](@p2, @p3, N'all') AS c "
    + 'WHERE c.[__$operation] IN (1, 2, 4) ORDER BY c.[__$start_lsn], c.[__$seqval], c.[__$operation]',
  );
  assert.deepEqual(r1.changes.map((c) => [c.op, c.key.CustomerID, c.row?.CompanyName ?? null, c.position]), [
    ['upsert', 'NEWCO', 'New Co', `${hex(600)}:${hex(1)}`],
    ['upsert', 'ALFKI', 'Alfreds 2', `${hex(600)}:${hex(2)}`],
    ['delete', 'BONAP', null, `${hex(700)}:${hex(1)}`],
  ]);
  assert.equal(r1.changes[0]!.row!.Balance, '-922337203685477.5808');
  assert.equal(r1.changes[0]!.occurredAt, '2024-05-01 10:00:00.123');
  // A full page: commits before the last one read are done; resume after (700, seq 1, op 1).
  assert.equal(r1.more, true);
  const p1 = cdc.decodePosition(cdc.encodePosition(r1.position)) as CdcPosition;
  assert.deepEqual(p1, streaming(699, { lsn: hex(700), seqval: hex(1), op: 1 }));

  fake.script({ match: /fn_cdc_get_all_changes/, times: 1, reply: [change(700, 2, 2, 'ZZZZZ', 'Last')] });
  const r2 = await cdc.poll(p1, ctx(driver));
  const q2 = fake.calls.filter((c) => /fn_cdc_get_all_changes/.test(c.sql)).at(-1)!;
  assert.match(q2.sql, /AND \(c\.\[__\$start_lsn\] > @p4 OR \(c\.\[__\$start_lsn\] = @p4 AND \(c\.\[__\$seqval\] > @p5 OR \(c\.\[__\$seqval\] = @p5 AND c\.\[__\$operation\] > @p6\)\)\)\)/);
  assert.deepEqual(q2.params.slice(3).map((p) => [p.type, p.value]), [[{ type: 'Binary', length: 10 }, lsn(700)], [{ type: 'Binary', length: 10 }, lsn(1)], [{ type: 'Int' }, 1]]);
  assert.deepEqual(fake.param(q2, 'p2').value, lsn(700));
  assert.deepEqual(r2.position, streaming(900));
  assert.equal(r2.more, false);
});

test('cleanup gap: stored LSN below the capture instance minimum is phase gap and a re-snapshot, never skipped', async () => {
  const { fake, driver } = setup({ min: 5000, max: 9000 });
  await driver.connect();
  const cdc = createMssqlCdcStrategy(TABLE);
  const r = await cdc.poll(streaming(1200), ctx(driver));
  assert.deepEqual([r.phase, r.more, r.changes.length], ['gap', true, 0]);
  assert.equal((r.position as CdcPosition).phase, 'snapshot');
  assert.equal((r.position as CdcPosition).lsn, null);
  assert.equal(fake.calls.some((c) => /fn_cdc_get_all_changes/.test(c.sql)), false);
  // The re-snapshot starts from the max LSN at that time.
  fake.script({ match: /^SELECT TOP \(@p1\) t\./, reply: [] });
  const r2 = await cdc.poll(r.position as CdcPosition, ctx(driver));
  assert.deepEqual(r2.position, streaming(9000));
  // Exactly at the minimum is not a gap: min_lsn itself is still readable.
  fake.script({ match: /fn_cdc_get_all_changes/, reply: [] });
  assert.equal((await cdc.poll(streaming(4999), ctx(driver))).phase, 'streaming');

  const stop = createMssqlCdcStrategy({ ...TABLE, onGap: 'stop' });
  const s = await stop.poll(streaming(1200), ctx(driver));
  assert.deepEqual([s.phase, s.more, s.position], ['gap', false, streaming(1200)]);
});

test('clear errors: CDC off on the database, capture instance missing', async () => {
  {
    const { driver } = setup({ min: 100, max: 200, cdc: 0 });
    await driver.connect();
    await assert.rejects(createMssqlCdcStrategy(TABLE).poll(null, ctx(driver)), (e) => isDovetailError(e, 'AGENT_SOURCE_NOT_CONFIGURED') && e.message.includes('sys.sp_cdc_enable_db'));
  }
  {
    const { driver } = setup({ min: 0, max: 200 });
    await driver.connect();
    await assert.rejects(
      createMssqlCdcStrategy({ ...TABLE, captureInstance: 'cust_v2' }).poll(null, ctx(driver)),
      (e) => isDovetailError(e, 'AGENT_SOURCE_NOT_CONFIGURED') && e.message.includes("sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'Customers'") && e.message.includes('cust_v2'),
    );
  }
});
