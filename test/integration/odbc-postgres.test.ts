/**
 * The ODBC source through psqlODBC against a real PostgreSQL loaded with Northwind:
 * values arrive exactly as PostgreSQL prints them, including the cases the `odbc`
 * package gets wrong on its own.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isDovetailError } from '@dovetail/shared';
import { DATA, kitMissing } from '../helpers/paths.ts';
import { PG, service } from '../helpers/services.ts';
import type { SourceDriver } from '../../agent/src/sources/types.ts';
import { ODBC_LIBS, odbcAvailable, odbcConfig, openDriver, run, selectAll, BIG_TEXT } from './odbc-common.ts';

const db = `dovetail_odbc_${process.pid}`;
const psql = (args: string[]) => run('psql', ['-h', PG.host, '-p', String(PG.port), '-U', PG.user, '-v', 'ON_ERROR_STOP=1', '-q', ...args], { maxBuffer: 1 << 24 });
const url = (database: string, port = PG.port) =>
  `DRIVER={PostgreSQL Unicode};Server=${PG.host};Port=${port};Database=${database};Uid=${PG.user};`;

const skip = kitMissing() ?? (await service('postgresql', PG.host, PG.port)) ?? (await odbcAvailable(ODBC_LIBS.postgres));
let driver: SourceDriver;

before(async () => {
  if (skip) return;
  await psql(['-d', 'postgres', '-c', `DROP DATABASE IF EXISTS ${db}`, '-c', `CREATE DATABASE ${db}`]);
  await psql(['-d', db, '-f', join(DATA, 'northwind-postgres', 'northwind.sql')]);
  await psql(['-d', db, '-c', `
    CREATE TABLE odbc_exact (id int PRIMARY KEY, num numeric, n42 numeric(4,2), big bigint, tstz timestamptz, ts timestamp,
      d date, body text, vc varchar, amount money, f8 float8, f4 real, flag boolean, bin bytea, code char(5));
    INSERT INTO odbc_exact VALUES
      (1, -999.99, 10.22, 9223372036854775807, '2024-01-02 03:04:05.123456+05:30', '2024-01-02 03:04:05.5',
       '2024-02-29', 'start-' || repeat('é', 1048576) || repeat('x', 1048576) || '-end', repeat('v', 3000), 12.50, 0.1, 0.1, true, '\\xdeadbeef', 'AB'),
      (2, -12.5, -0.01, -9223372036854775808, '1999-12-31 23:59:59+00', '1999-12-31 23:59:59', '1999-12-31', '', '', -3, -1e300, 3.4e38, false, '\\x', 'ABCDE'),
      (3, 123456789012345678901234567890, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);`]);
  driver = await openDriver(odbcConfig(url(db), 'postgres'));
});

after(async () => {
  if (skip) return;
  await driver?.close();
  await psql(['-d', 'postgres', '-c', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`]);
});

test('Northwind prices, freight and dates arrive as PostgreSQL prints them', { skip }, async () => {
  const products = await selectAll(driver, 'products', 'product_id', 'product_id IN (1, 29, 38)');
  assert.deepEqual(products.map((p) => [p.product_id, p.product_name, p.unit_price]), [
    [1, 'Chai', '18'],
    [29, 'Thüringer Rostbratwurst', '123.79'],
    [38, 'Côte de Blaye', '263.5'],
  ]);
  const orders = await selectAll(driver, 'public.orders', 'order_id', 'order_id BETWEEN ? AND ?', [10248, '10250']);
  assert.deepEqual(orders.map((o) => [o.order_id, o.freight, o.order_date, o.customer_id]), [
    [10248, '32.38', '1996-07-04', 'VINET'],
    [10249, '11.61', '1996-07-05', 'TOMSP'],
    [10250, '65.83', '1996-07-08', 'HANAR'],
  ]);
  const lines = await selectAll(driver, 'order_details', 'product_id', 'order_id = ?', [10250]);
  assert.deepEqual(lines.map((l) => [l.product_id, l.unit_price, l.quantity, l.discount]), [
    [41, '7.7', 10, '0'], [51, '42.4', 35, '0.15'], [65, '16.8', 15, '0.15'],
  ]);
  assert.equal(await driver.count('order_details'), 2155);
});

test('the odbc package defect cases come back exact', { skip }, async () => {
  const rows = await selectAll(driver, 'odbc_exact', 'id');
  const [r1, r2, r3] = rows;
  assert.equal(r1!.num, '-999.99');
  assert.equal(r2!.num, '-12.5');
  assert.equal(r3!.num, '123456789012345678901234567890');
  assert.equal(r1!.n42, '10.22');
  assert.equal(r2!.n42, '-0.01');
  assert.equal(r1!.big, '9223372036854775807');
  assert.equal(r2!.big, '-9223372036854775808');
  // The server's session zone is UTC; the instant and its offset survive as ISO 8601.
  assert.equal(r1!.tstz, '2024-01-01T21:34:05.123456+00:00');
  assert.equal(r2!.tstz, '1999-12-31T23:59:59+00:00');
  assert.equal(r1!.ts, '2024-01-02 03:04:05.5');
  assert.equal(r1!.d, '2024-02-29');
  assert.equal(r1!.body, BIG_TEXT);
  assert.equal(r1!.vc, 'v'.repeat(3000));
  assert.equal(r2!.body, '');
  assert.equal(r1!.amount, '12.50');
  assert.equal(r2!.amount, '-3.00');
  assert.equal(r1!.f8, '0.1');
  assert.equal(r2!.f8, '-1e+300');
  assert.equal(r1!.f4, '0.1');
  assert.equal(r1!.flag, true);
  assert.equal(r2!.flag, false);
  assert.equal(r1!.bin, '0xDEADBEEF');
  assert.equal(r1!.code, 'AB   ');
  assert.deepEqual(Object.values(r3!).slice(2), new Array(13).fill(null));
});

test('describe reports types; named columns read exactly and ORDER BY sorts by the column, not its text', { skip }, async () => {
  const cols = await driver.describe('odbc_exact');
  assert.deepEqual(cols.slice(0, 6).map((c) => [c.name, c.type, c.nullable]), [
    ['id', 'integer', false], ['num', 'numeric', true], ['n42', 'numeric', true],
    ['big', 'bigint', true], ['tstz', 'timestamptz', true], ['ts', 'timestamp', true],
  ]);
  const rows = await driver.query(driver.dialect.limit('SELECT num FROM odbc_exact ORDER BY num DESC', 1));
  assert.deepEqual(rows, [{ num: '123456789012345678901234567890' }]);
  // As text, '-12.5' < '-999.99'; as numeric, -999.99 comes first.
  const ordered = await driver.query('SELECT "id", "num" FROM "public"."odbc_exact" WHERE num IS NOT NULL ORDER BY "num"');
  assert.deepEqual(ordered, [{ id: 1, num: '-999.99' }, { id: 2, num: '-12.5' }, { id: 3, num: '123456789012345678901234567890' }]);
});

test('a numeric expression the driver cannot rewrite is refused instead of returning a float', { skip }, async () => {
  await assert.rejects(driver.query('SELECT num + 0 AS num FROM odbc_exact WHERE id = 1'), (e: Error) => e instanceof TypeError && /selectList/.test(e.message));
});

test('errors carry stable codes', { skip }, async () => {
  await assert.rejects(driver.describe('no_such_table'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT'));
  await assert.rejects(driver.query('SELECT * FROM no_such_table'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT'));
  // A statement the driver does not rewrite reaches the database; its SQLSTATE decides the code.
  await assert.rejects(driver.query('SELECT count(*) AS n FROM no_such_table'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT') && e.context.driverCode === '42P01');
  const down = await import('../../agent/src/sources/odbc/index.ts').then((m) => m.createOdbcDriver(odbcConfig(url(db, 1), 'postgres')));
  await assert.rejects(down.connect(), (e) => isDovetailError(e, 'AGENT_SOURCE_UNREACHABLE') && e.context.retryable === true && !e.message.includes('Uid='));
  await down.close();
});
