/**
 * SQL Server driver at the driver-interface level, against a scripted FAKE of the
 * mssql API (test/helpers/mssql-fake.ts): no SQL Server can run here. Asserts the SQL
 * and parameter types we send and the exact values we hand on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDovetailError } from '@dovetail/shared';
import type { SourceConfig } from '../../agent/src/config/types.ts';
import {
  MssqlDriver, bindParam, hexToRowversion, mssqlDialect, parseMssqlUrl, rowversionToHex, selectList, type MssqlColumn,
} from '../../agent/src/sources/mssql/index.ts';
import { classifySourceError, isRetryable } from '../../agent/src/sources/errors.ts';
import { cursorParamExpr, cursorParamValue } from '../../agent/src/capture/cursor-values.ts';
import { createFakeMssql, describeRows, sqlError } from '../helpers/mssql-fake.ts';

const CONFIG: SourceConfig = {
  type: 'mssql', system: 'erp', url: 'Server=db,1433;Database=erp;User Id=agent;Password=s3cret!;Encrypt=true',
  timeZone: 'America/Chicago', maxConnections: 2, queryTimeoutMs: 15000,
};

const ITEMS: MssqlColumn[] = [
  { name: 'code', type: 'char', nullable: false, maxLength: 15 },
  { name: 'name', type: 'varchar', nullable: true, maxLength: 40 },
  { name: 'amount', type: 'money', nullable: true },
  { name: 'qty', type: 'decimal', nullable: true, precision: 19, scale: 5 },
  { name: 'big', type: 'bigint', nullable: true },
  { name: 'stamp', type: 'datetime2', nullable: true, scale: 7 },
  { name: 'at', type: 'datetimeoffset', nullable: true, scale: 7 },
  { name: 'rv', type: 'rowversion', nullable: false, maxLength: 8 },
];

async function connected(): Promise<{ driver: MssqlDriver; fake: ReturnType<typeof createFakeMssql> }> {
  const fake = createFakeMssql();
  const driver = new MssqlDriver(CONFIG, fake.api);
  await driver.connect();
  return { driver, fake };
}

test('selectList casts every inexact type to exact text on the server', () => {
  assert.equal(
    selectList(ITEMS, 't'),
    't.[code] AS [code], t.[name] AS [name], CONVERT(varchar(30), t.[amount], 2) AS [amount], '
    + 'CAST(t.[qty] AS varchar(42)) AS [qty], CAST(t.[big] AS varchar(20)) AS [big], '
    + 'CONVERT(varchar(27), t.[stamp], 121) AS [stamp], CONVERT(varchar(34), t.[at], 121) AS [at], t.[rv] AS [rv]',
  );
});

test('generic SELECT * becomes the exact select-list; values arrive exact (money, bigint, datetime2, offset, char padding, rowversion)', async () => {
  const { driver, fake } = await connected();
  fake.script(
    { match: /FROM sys\.columns/, reply: describeRows([['code', 'char', 15], ['amount', 'money', 8, 19, 4], ['big', 'bigint', 8], ['stamp', 'datetime2', 8, 27, 7], ['at', 'datetimeoffset', 10, 34, 7], ['rv', 'timestamp', 8], ['label', 'nvarchar', 80]]) },
    {
      match: /FROM \[dbo\]\.\[items\]/,
      // What SQL Server returns for the casts (and tedious for the raw rowversion bytes).
      reply: [{
        code: 'CODE1          ', amount: '-922337203685477.5808', big: '9223372036854775807',
        stamp: '2024-01-02 03:04:05.1234567', at: '2024-01-02 03:04:05.1234567 +05:30',
        rv: Buffer.from([0, 0, 0, 0, 0, 0, 0x07, 0xe7]), label: 'x',
      }],
    },
  );
  const rows = await driver.query('SELECT * FROM [dbo].[items] WHERE (([code] > @p1)) ORDER BY [code] OFFSET 0 ROWS FETCH NEXT 10 ROWS ONLY', ['A']);
  const sent = fake.calls.at(-1)!.sql;
  assert.equal(
    sent,
    'SELECT [code] AS [code], CONVERT(varchar(30), [amount], 2) AS [amount], CAST([big] AS varchar(20)) AS [big], '
    + 'CONVERT(varchar(27), [stamp], 121) AS [stamp], CONVERT(varchar(34), [at], 121) AS [at], [rv] AS [rv], [label] AS [label] '
    + 'FROM [dbo].[items] WHERE (([code] > @p1)) ORDER BY [code] OFFSET 0 ROWS FETCH NEXT 10 ROWS ONLY',
  );
  assert.deepEqual(rows, [{
    code: 'CODE1          ', amount: '-922337203685477.5808', big: '9223372036854775807',
    stamp: '2024-01-02 03:04:05.1234567', at: '2024-01-02T03:04:05.1234567+05:30', rv: '0x00000000000007E7', label: 'x',
  }]);
  assert.equal((rows[0]!.code as string).trimEnd(), 'CODE1', 'the mapping trims CHAR padding; the driver keeps it');
  // describe ran once: the next SELECT * on the same table reuses it.
  await driver.query('SELECT * FROM [dbo].[items] ORDER BY [code]');
  assert.equal(fake.calls.filter((c) => /sys\.columns/.test(c.sql)).length, 1);
});

test('rowversion: 8 bytes <-> "0x" + 16 hex, exact through JSON, bound as binary(8)', () => {
  const bytes = Buffer.from([0, 0, 0, 0, 0, 0, 0x07, 0xe7]);
  const hex = rowversionToHex(bytes);
  assert.equal(hex, '0x00000000000007E7');
  const stored = JSON.parse(JSON.stringify({ cursor: hex })) as { cursor: string };
  assert.equal(stored.cursor, '0x00000000000007E7');
  assert.deepEqual([...hexToRowversion(stored.cursor)], [...bytes]);
  const fake = createFakeMssql();
  const inputs: Array<[string, unknown, unknown]> = [];
  bindParam({ input: (n, t, v) => { inputs.push([n, t, v]); return null as never; }, query: async () => ({}) }, 'p1', stored.cursor, { type: 'rowversion' }, fake.api.TYPES, fake.api.MAX);
  assert.deepEqual(inputs[0]![1], { type: 'Binary', length: 8 });
  assert.deepEqual([...(inputs[0]![2] as Buffer)], [...bytes]);
  assert.throws(() => hexToRowversion('0x7E7'), TypeError);
  assert.throws(() => rowversionToHex(Buffer.alloc(7)), RangeError);
  // The generic cursor strategy compares the same text as binary through the dialect.
  assert.equal(mssqlDialect.typedParam(1, { name: 'rv', type: 'rowversion', nullable: false }), 'CONVERT(binary(8), @p1, 1)');
  assert.equal(cursorParamExpr(mssqlDialect, 'rowversion', '@p1'), 'CONVERT(binary(8), @p1, 1)');
  assert.equal(cursorParamValue(mssqlDialect, 'rowversion', hex), '0x00000000000007E7');
});

test('bindParam keeps the column type: VARCHAR vs NVARCHAR with length, exact decimals and bigints', () => {
  const fake = createFakeMssql();
  const got: Record<string, [unknown, unknown]> = {};
  const req = { input: (n: string, t: unknown, v: unknown) => { got[n] = [t, v]; return req as never; }, query: async () => ({}) };
  const T = fake.api.TYPES;
  bindParam(req, 'a', 'CODE1', { type: 'varchar', maxLength: 15 }, T, fake.api.MAX);
  bindParam(req, 'b', 'CODE1', { type: 'nvarchar', maxLength: 15 }, T, fake.api.MAX);
  bindParam(req, 'c', 'CODE1          ', { type: 'char', maxLength: 15 }, T, fake.api.MAX);
  bindParam(req, 'd', '-922337203685477.5808', { type: 'money' }, T, fake.api.MAX);
  bindParam(req, 'e', '9223372036854775807', { type: 'bigint' }, T, fake.api.MAX);
  bindParam(req, 'f', '2024-01-02 03:04:05.123', { type: 'datetime' }, T, fake.api.MAX);
  bindParam(req, 'g', 'x', { type: 'varchar', maxLength: -1 }, T, fake.api.MAX);
  assert.deepEqual(got.a, [{ type: 'VarChar', length: 15 }, 'CODE1']);
  assert.deepEqual(got.b, [{ type: 'NVarChar', length: 15 }, 'CODE1']);
  assert.deepEqual(got.c, [{ type: 'Char', length: 15 }, 'CODE1          ']);
  assert.deepEqual(got.d, [{ type: 'VarChar', length: 64 }, '-922337203685477.5808']);
  assert.deepEqual(got.e, [{ type: 'BigInt' }, '9223372036854775807']);
  // ISO "T" form: read the same under every SET DATEFORMAT / login language.
  assert.deepEqual(got.f, [{ type: 'VarChar', length: 40 }, '2024-01-02T03:04:05.123']);
  assert.deepEqual(got.g, [{ type: 'VarChar', length: 65535 }, 'x']);
  assert.equal(mssqlDialect.typedParam(2, { name: 'k', type: 'varchar', nullable: false, maxLength: 15 } as MssqlColumn), 'CAST(@p2 AS varchar(15))');
});

test('dialect: brackets, @p params, OFFSET/FETCH', () => {
  assert.equal(mssqlDialect.quoteTable('dbo.Order Details'), '[dbo].[Order Details]');
  assert.equal(mssqlDialect.quoteIdent('a]b'), '[a]]b]');
  assert.equal(mssqlDialect.param(3), '@p3');
  assert.equal(mssqlDialect.limit('SELECT 1 ORDER BY 1', 50), 'SELECT 1 ORDER BY 1 OFFSET 0 ROWS FETCH NEXT 50 ROWS ONLY');
  assert.throws(() => mssqlDialect.limit('x', 0), RangeError);
});

test('describe reads sys.columns: nvarchar length in characters, timestamp is rowversion; a missing table is AGENT_SOURCE_MISSING_OBJECT', async () => {
  const { driver, fake } = await connected();
  fake.script({ match: /FROM sys\.columns/, reply: (c) => (c.params[0]!.value === '[dbo].[nope]' ? [] : describeRows([['CustomerID', 'nchar', 10], ['rv', 'timestamp', 8], ['Notes', 'nvarchar', -1]])) });
  const cols = await driver.describe('dbo.Customers');
  assert.deepEqual(cols.map((c) => [c.name, c.type, c.maxLength]), [['CustomerID', 'nchar', 5], ['rv', 'rowversion', 8], ['Notes', 'nvarchar', -1]]);
  assert.deepEqual(fake.calls[0]!.params[0], { name: 'p1', type: { type: 'NVarChar', length: 776 }, value: '[dbo].[Customers]' });
  await assert.rejects(driver.describe('dbo.nope'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT'));
});

test('connection: pool size and timeout from config; mssql:// URLs; a bad string is reported without its password', async () => {
  const { fake } = await connected();
  const cfg = fake.poolConfigs[0]!;
  assert.equal(cfg.requestTimeout, 15000);
  assert.deepEqual(cfg.pool, { max: 2, min: 0 });
  assert.deepEqual(parseMssqlUrl('mssql://sa:p%40ss@localhost:1433/scratch?encrypt=true&trustServerCertificate=true'), {
    server: 'localhost', port: 1433, user: 'sa', password: 'p@ss', database: 'scratch', options: { encrypt: true, trustServerCertificate: true },
  });
  const bad = new MssqlDriver({ ...CONFIG, url: 'garbage-with-password-hunter2' }, createFakeMssql().api);
  await assert.rejects(bad.connect(), (e) => isDovetailError(e, 'CONFIG_INVALID') && !e.message.includes('hunter2'));
});

test('error classification: deadlock and timeouts retry; permission, missing objects and CT/snapshot configuration do not', async () => {
  const { driver, fake } = await connected();
  const cases: Array<[Error, string, boolean]> = [
    [sqlError(1205), 'AGENT_SOURCE_QUERY', true],
    [sqlError(229), 'AGENT_SOURCE_PERMISSION', false],
    [sqlError(262), 'AGENT_SOURCE_PERMISSION', false],
    [sqlError(297), 'AGENT_SOURCE_PERMISSION', false],
    [sqlError(208), 'AGENT_SOURCE_MISSING_OBJECT', false],
    [sqlError(207), 'AGENT_SOURCE_MISSING_OBJECT', false],
    [sqlError(3952), 'AGENT_SOURCE_NOT_CONFIGURED', false],
    [sqlError(22105), 'AGENT_SOURCE_NOT_CONFIGURED', false],
    [sqlError(4998), 'AGENT_SOURCE_NOT_CONFIGURED', false],
    [Object.assign(new Error('Timeout: Request failed to complete in 15000ms'), { name: 'RequestError', code: 'ETIMEOUT' }), 'AGENT_SOURCE_UNREACHABLE', true],
    [Object.assign(new Error('socket hang up'), { name: 'ConnectionError', code: 'ESOCKET' }), 'AGENT_SOURCE_UNREACHABLE', true],
    [Object.assign(new Error('Connection is closed.'), { name: 'ConnectionError', code: 'ECONNCLOSED' }), 'AGENT_SOURCE_UNREACHABLE', true],
  ];
  for (const [raw, code, retry] of cases) {
    fake.script({ match: /^SELECT 1/, reply: raw, times: 1 });
    await assert.rejects(driver.query('SELECT 1 AS one'), (e) => {
      assert.ok(isDovetailError(e), String(e));
      assert.equal(e.code, code, `${raw.message}`);
      assert.equal(isRetryable(e), retry, `${raw.message} retryable`);
      return true;
    });
  }
  const login = classifySourceError(Object.assign(new Error("Login failed for user 'agent'."), { name: 'ConnectionError', code: 'ELOGIN' }), { op: 'connect', source: 'mssql' }, { connectionLevel: true });
  assert.equal(login.code, 'AGENT_SOURCE_PERMISSION');
  assert.equal(isRetryable(login), false);
});

test('snapshot transactions commit on success and roll back on failure', async () => {
  const { driver, fake } = await connected();
  fake.script({ match: /^SELECT 1/, reply: [{ one: 1 }], times: 1 }, { match: /^SELECT 2/, reply: sqlError(1205) });
  assert.equal(await driver.transaction('snapshot', async (s) => (await s.query('SELECT 1 AS one'))[0]!.one), 1);
  await assert.rejects(driver.transaction('snapshot', (s) => s.query('SELECT 2 AS two')), (e) => isDovetailError(e, 'AGENT_SOURCE_QUERY'));
  assert.deepEqual(fake.events, ['begin:5', 'commit', 'begin:5', 'rollback']);
});
