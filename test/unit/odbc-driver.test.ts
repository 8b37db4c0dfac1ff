/**
 * ODBC driver logic without a database: SQL casts per dialect, value conversion,
 * concurrency cap, error classification and the missing-package error, against a
 * fake `odbc` module.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDovetailError } from '@dovetail/shared';
import type { SourceConfig } from '../../agent/src/config/types.ts';
import type { ColumnInfo } from '../../agent/src/sources/types.ts';
import { isRetryable } from '../../agent/src/sources/errors.ts';
import {
  createOdbcDriver, convertValue, inferDialect, loadOdbc, selectList, ODBC_DIALECTS, LONG_DATA_INITIAL_BYTES,
  type OdbcConnection, type OdbcModule, type OdbcResult,
} from '../../agent/src/sources/odbc/index.ts';

const config = (over: Partial<SourceConfig> = {}): SourceConfig => ({
  type: 'odbc', system: 'erp', url: 'DRIVER={PostgreSQL Unicode};Server=db;Uid=erp;Pwd=s3cret;', timeZone: 'UTC',
  maxConnections: 8, queryTimeoutMs: 30_000, ...over,
});

function result(rows: Record<string, unknown>[], columns: OdbcResult['columns'] = []): OdbcResult {
  return Object.assign([...rows], { columns });
}

function odbcError(state: string): Error {
  return Object.assign(new Error('[odbc] Error connecting to the database'), { odbcErrors: [{ state, code: 0, message: `native message for ${state}` }] });
}

interface Fake extends OdbcModule {
  opened: string[];
  closed: number;
  calls: Array<{ sql: string; params: unknown[]; options: unknown }>;
}

function fakeOdbc(onQuery: (sql: string, params: unknown[]) => Promise<OdbcResult>, onConnect?: () => Promise<void>): Fake {
  const fake: Fake = {
    opened: [], closed: 0, calls: [],
    async connect(p) {
      await onConnect?.();
      fake.opened.push(p.connectionString);
      const conn: OdbcConnection = {
        async query(sql, params, options) {
          fake.calls.push({ sql, params, options });
          return onQuery(sql, params);
        },
        async columns() { return result([]); },
        async close() { fake.closed++; },
      };
      return conn;
    },
  };
  return fake;
}

test('selectList casts exactly the columns the odbc package would mangle, per dialect', () => {
  const cols: ColumnInfo[] = [
    { name: 'id', type: 'integer', nullable: false },
    { name: 'price', type: 'numeric', nullable: true },
    { name: 'big', type: 'bigint', nullable: true },
    { name: 'at', type: 'timestamptz', nullable: true },
    { name: 'amt', type: 'money', nullable: true },
    { name: 'code', type: 'character', nullable: true },
    { name: 'name', type: 'varchar', nullable: true },
  ];
  assert.equal(selectList(cols, ODBC_DIALECTS.postgres),
    `"id", ("price")::text AS "price~dv", ("big")::text AS "big~dv", ` +
    `regexp_replace(replace(("at")::text, ' ', 'T'), '([+-][0-9]{2})$', '\\1:00') AS "at~dv", ` +
    `("amt")::numeric::text AS "amt~dv", "code", ("name")::text AS "name~dv"`);
  assert.equal(selectList([
    { name: 'id', type: 'int', nullable: false },
    { name: 'u', type: 'bigint unsigned', nullable: true },
    { name: 'p', type: 'decimal', nullable: true },
    { name: 'd', type: 'datetime', nullable: true },
    { name: 'n`x', type: 'longtext', nullable: true },
    { name: 'w', type: 'smallint unsigned', nullable: true },
  ], ODBC_DIALECTS.mysql), "`id`, CAST(`u` AS CHAR) AS `u~dv`, CAST(`p` AS CHAR) AS `p~dv`, " +
    "REGEXP_REPLACE(CAST(`d` AS CHAR), '[.]0+$', '') AS `d~dv`, `n``x`, CAST(`w` AS CHAR) AS `w~di`");
  assert.equal(selectList([
    { name: 'ProductID', type: 'integer', nullable: false },
    { name: 'ProductName', type: 'text', nullable: true },
    { name: 'Short', type: 'varchar(5)', nullable: true },
    { name: 'Pic', type: 'blob', nullable: true },
    { name: 'Any', type: '', nullable: true },
    { name: 'Big', type: 'bigint', nullable: true },
  ], ODBC_DIALECTS.sqlite), 'CAST("ProductID" AS TEXT) AS "ProductID~di", "ProductName", "Short", "Pic", CAST("Any" AS TEXT) AS "Any~dv", ' +
    'CAST("Big" AS TEXT) AS "Big~dv"');
  assert.equal(selectList([
    { name: 'CRLMTAMT', type: 'numeric', nullable: false },
    { name: 'DEX_ROW_TS', type: 'datetime', nullable: false },
    { name: 'CUSTNMBR', type: 'char', nullable: false },
  ], ODBC_DIALECTS.mssql), 'CAST([CRLMTAMT] AS varchar(100)) AS [CRLMTAMT~dv], CONVERT(varchar(40), [DEX_ROW_TS], 121) AS [DEX_ROW_TS~dv], [CUSTNMBR]');
  assert.throws(() => selectList([], ODBC_DIALECTS.mysql), RangeError);
});

test('dialects use ? placeholders and their own row limits', () => {
  assert.equal(ODBC_DIALECTS.postgres.param(3), '?');
  assert.equal(ODBC_DIALECTS.mysql.limit('SELECT 1 ORDER BY 1', 50), 'SELECT 1 ORDER BY 1 LIMIT 50');
  assert.equal(ODBC_DIALECTS.mssql.limit('SELECT 1 ORDER BY 1', 50), 'SELECT 1 ORDER BY 1 OFFSET 0 ROWS FETCH NEXT 50 ROWS ONLY');
  assert.equal(ODBC_DIALECTS.generic.limit('SELECT 1 ORDER BY 1', 5), 'SELECT 1 ORDER BY 1 FETCH FIRST 5 ROWS ONLY');
  assert.equal(ODBC_DIALECTS.mssql.quoteTable('dbo.RM00101'), '[dbo].[RM00101]');
  assert.throws(() => ODBC_DIALECTS.postgres.limit('SELECT 1', 0), RangeError);
  assert.throws(() => ODBC_DIALECTS.postgres.quoteIdent(''), TypeError);
});

test('the dialect is inferred from DRIVER= when source.dialect is absent', () => {
  assert.equal(inferDialect('DRIVER={PostgreSQL Unicode};Server=x'), 'postgres');
  assert.equal(inferDialect('Driver=/usr/lib/x86_64-linux-gnu/odbc/libmaodbc.so;Server=x'), 'mysql');
  assert.equal(inferDialect('driver={SQLite3};Database=/tmp/x.db'), 'sqlite');
  assert.equal(inferDialect('Driver={ODBC Driver 18 for SQL Server};Server=x'), 'mssql');
  assert.equal(inferDialect('DSN=erp'), 'generic');
});

test('values follow the Row conventions; floats from NUMERIC are refused', () => {
  assert.equal(convertValue(18446744073709551615n, { name: 'u', dataType: -5 }), '18446744073709551615');
  assert.equal(convertValue(42, { name: 'i', dataType: 4 }), 42);
  assert.equal(convertValue('1', { name: 'b', dataType: -7 }), true);
  assert.equal(convertValue('0', { name: 'b', dataType: -7 }), false);
  assert.equal(convertValue(new Uint8Array([0xde, 0xad, 0x0f]).buffer, { name: 'bin', dataType: -3 }), '0xDEAD0F');
  assert.equal(convertValue(null, undefined), null);
  assert.equal(convertValue('abc', { name: 'v', dataType: 12, columnSize: 5 }), 'abc');
  assert.throws(() => convertValue(-999.9, { name: 'price', dataType: 2, dataTypeName: 'SQL_NUMERIC' }), /price is SQL_NUMERIC.*selectList/);
  assert.throws(() => convertValue(0.1, { name: 'f', dataType: 8 }), TypeError);
  // 10 characters in a column the driver reports as 5 wide filled the 21-byte buffer: it was cut.
  assert.throws(() => convertValue('éééééééééé', { name: 'short', dataType: 12, columnSize: 5 }), (e) => isDovetailError(e, 'AGENT_SOURCE_QUERY'));
  // Five 4-byte characters fit VARCHAR(5) exactly: not a truncation.
  assert.equal(convertValue('😀😀😀😀😀', { name: 'emoji', dataType: 12, columnSize: 5 }), '😀😀😀😀😀');
});

test('at most 2 ODBC calls run at once whatever maxConnections says, and connections are reused', async () => {
  let running = 0;
  let peak = 0;
  const gates: Array<() => void> = [];
  const fake = fakeOdbc(async (sql) => {
    if (sql.startsWith('SET ')) return result([]);
    running++;
    peak = Math.max(peak, running);
    await new Promise<void>((r) => gates.push(r));
    running--;
    return result([{ n: 1 }], [{ name: 'n', dataType: 4 }]);
  });
  const d = await createOdbcDriver(config({ maxConnections: 8, dialect: 'mysql' }), { loadOdbc: async () => fake });
  const all = Promise.all(Array.from({ length: 6 }, () => d.query('SELECT 1 AS n')));
  for (let released = 0; released < 6;) {
    await new Promise((r) => setImmediate(r));
    const g = gates.shift();
    if (g) { g(); released++; }
  }
  const rows = await all;
  assert.equal(rows.length, 6);
  assert.equal(peak, 2);
  assert.equal(fake.opened.length, 2);
  assert.deepEqual(fake.calls.find((c) => !c.sql.startsWith('SET'))!.options, { timeout: 30, initialBufferSize: LONG_DATA_INITIAL_BYTES });
  await d.close();
  assert.equal(fake.closed, 2);
});

test('postgres connections get BoolsAsChar=0 unless set, and an ISO DateStyle per session', async () => {
  const fake = fakeOdbc(async () => result([]));
  const d = await createOdbcDriver(config(), { loadOdbc: async () => fake });
  await d.connect();
  assert.equal(fake.opened[0], 'DRIVER={PostgreSQL Unicode};Server=db;Uid=erp;Pwd=s3cret;BoolsAsChar=0;');
  assert.deepEqual(fake.calls.map((c) => c.sql), ["SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'iso_8601'"]);
  await d.close();
});

test('parameters: booleans and big integers bind safely; floats are refused', async () => {
  const fake = fakeOdbc(async () => result([]));
  const d = await createOdbcDriver(config({ dialect: 'mysql' }), { loadOdbc: async () => fake });
  await d.query('SELECT ?, ?, ?, ?', [true, '18446744073709551615', null, 7]);
  assert.deepEqual(fake.calls.find((c) => !c.sql.startsWith('SET'))!.params, [1, '18446744073709551615', null, 7]);
  await assert.rejects(d.query('SELECT ?', [0.1]), TypeError);
  await d.close();
});

test('connection failures are UNREACHABLE and retryable, name no secret, and the broken connection is dropped', async () => {
  let fail: string | null = '08001';
  const fake = fakeOdbc(async (sql) => {
    if (sql === 'BROKEN') throw odbcError('08S01');
    if (sql === 'MISSING') throw odbcError('42S02');
    return result([]);
  }, async () => { if (fail) throw odbcError(fail); });
  const d = await createOdbcDriver(config({ dialect: 'mysql' }), { loadOdbc: async () => fake });
  await assert.rejects(d.connect(), (e) => isDovetailError(e, 'AGENT_SOURCE_UNREACHABLE') && isRetryable(e) && !e.message.includes('s3cret'));
  fail = 'IM002';
  await assert.rejects(d.connect(), (e) => isDovetailError(e, 'AGENT_SOURCE_DRIVER_MISSING') && !isRetryable(e));
  fail = null;
  await d.connect();
  await assert.rejects(d.query('MISSING'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT') && e.message.includes('native message for 42S02'));
  assert.equal(fake.opened.length, 1, 'a query error keeps the connection');
  await assert.rejects(d.query('BROKEN'), (e) => isDovetailError(e, 'AGENT_SOURCE_UNREACHABLE') && isRetryable(e));
  await d.query('SELECT 1');
  assert.equal(fake.opened.length, 2, 'a link failure drops the connection');
  await d.close();
});

test('without the odbc package, type odbc says what to install', async () => {
  await assert.rejects(
    loadOdbc(async () => { throw new Error('libodbc.so.2: cannot open shared object file'); }),
    (e) => isDovetailError(e, 'AGENT_SOURCE_DRIVER_MISSING') && /apt-get install unixodbc odbc-postgresql/.test(e.message) && /npm install odbc/.test(e.message) && /Windows/.test(e.message),
  );
  await assert.rejects(loadOdbc(async () => ({ default: {} })), (e) => isDovetailError(e, 'AGENT_SOURCE_DRIVER_MISSING'));
});

test('simple SELECTs are rewritten to exact casts and the cast columns come back under their own names', async () => {
  const fake = fakeOdbc(async (sql) => {
    if (sql.includes('information_schema')) {
      return result([
        { name: 'id', type: 'int', ctype: 'int(11)', nullable: 'NO' },
        { name: 'price', type: 'decimal', ctype: 'decimal(19,4)', nullable: 'YES' },
        { name: 'qty', type: 'smallint', ctype: 'smallint(5) unsigned', nullable: 'YES' },
      ]);
    }
    if (sql.startsWith('SELECT `id`')) {
      return result([{ id: 7, 'price~dv': '18.0000', 'qty~di': '65535' }],
        [{ name: 'id', dataType: 4 }, { name: 'price~dv', dataType: 12, columnSize: 42 }, { name: 'qty~di', dataType: 12, columnSize: 8 }]);
    }
    return result([]);
  });
  const d = await createOdbcDriver(config({ dialect: 'mysql' }), { loadOdbc: async () => fake });
  const rows = await d.query('SELECT * FROM `products` WHERE id > ? ORDER BY `id` LIMIT 2', [5]);
  assert.deepEqual(rows, [{ id: 7, price: '18.0000', qty: 65535 }]);
  const sent = fake.calls.map((c) => c.sql).filter((s) => !s.startsWith('SET') && !s.includes('information_schema'));
  assert.deepEqual(sent, ['SELECT `id`, CAST(`price` AS CHAR) AS `price~dv`, CAST(`qty` AS CHAR) AS `qty~di` FROM `products` WHERE id > ? ORDER BY `id` LIMIT 2']);
  await d.query('SELECT price FROM products');
  assert.equal(fake.calls.at(-1)!.sql, 'SELECT CAST(`price` AS CHAR) AS `price~dv` FROM products');
  assert.equal(fake.calls.filter((c) => c.sql.includes('information_schema')).length, 1, 'describe is cached');
  // Joins and expressions run as written.
  await d.query('SELECT a.id FROM products a JOIN x ON x.id = a.id');
  assert.equal(fake.calls.at(-1)!.sql, 'SELECT a.id FROM products a JOIN x ON x.id = a.id');
  await d.close();
});
