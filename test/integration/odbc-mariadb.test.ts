/**
 * The ODBC source through MariaDB Connector/ODBC against a real MariaDB loaded with
 * Northwind (MyWind): DECIMAL, BIGINT UNSIGNED and DATETIME(6) arrive exact.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { isDovetailError } from '@dovetail/shared';
import { DATA, kitMissing } from '../helpers/paths.ts';
import { MARIADB, service } from '../helpers/services.ts';
import type { SourceDriver } from '../../agent/src/sources/types.ts';
import { ODBC_LIBS, odbcAvailable, odbcConfig, openDriver, selectAll, BIG_TEXT } from './odbc-common.ts';

const db = `dovetail_odbc_${process.pid}`;
const url = `DRIVER={MariaDB Unicode};Server=${MARIADB.host};Port=${MARIADB.port};Database=${db};Uid=${MARIADB.user};`;

function mariadb(sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('mariadb', [`-u${MARIADB.user}`, `-h${MARIADB.host}`, `-P${MARIADB.port}`], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += String(d); });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mariadb exited ${code}: ${err}`))));
    p.stdin.end(sql);
  });
}

const skip = kitMissing() ?? (await service('mariadb', MARIADB.host, MARIADB.port)) ?? (await odbcAvailable(ODBC_LIBS.mysql));
let driver: SourceDriver;

before(async () => {
  if (skip) return;
  // The MyWind scripts name their schema `northwind`; load them into a fresh database instead.
  const nw = ['northwind.sql', 'northwind-data.sql']
    .map((f) => readFileSync(join(DATA, 'northwind-mysql', f), 'utf8').replaceAll('`northwind`', `\`${db}\``))
    .join('\n');
  await mariadb(`DROP DATABASE IF EXISTS \`${db}\`;\n${nw}
    USE \`${db}\`;
    CREATE TABLE odbc_exact (id INT PRIMARY KEY, num DECIMAL(30,2), n42 DECIMAL(4,2), n30 DECIMAL(30,0),
      ubig BIGINT UNSIGNED, big BIGINT, uint INT UNSIGNED, usmall SMALLINT UNSIGNED, dt DATETIME(6), ts TIMESTAMP(3) NULL,
      tm TIME(3), d DATE, f8 DOUBLE, f4 FLOAT, body LONGTEXT, flag TINYINT(1), bin VARBINARY(8), code CHAR(5), yr YEAR)
      DEFAULT CHARSET utf8mb4;
    INSERT INTO odbc_exact VALUES
      (1, -999.99, 10.22, 123456789012345678901234567890, 18446744073709551615, 9223372036854775807, 4294967295, 65535,
       '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.120', '12:34:56.789', '2024-02-29', 0.1, 0.1,
       CONCAT('start-', REPEAT('é', 1048576), REPEAT('x', 1048576), '-end'), 1, x'DEADBEEF', 'AB', 2024),
      (2, -12.5, -0.01, -99999999999999999999999999999, 0, -9223372036854775808, 0, 0,
       '1999-12-31 23:59:59', NULL, '-838:59:59', '1000-01-01', -1e300, -3.5, '', 0, x'', 'ABCDE', 1999),
      (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);`);
  driver = await openDriver(odbcConfig(url, 'mysql'));
});

after(async () => {
  if (skip) return;
  await driver?.close();
  await mariadb(`DROP DATABASE IF EXISTS \`${db}\`;`);
});

test('Northwind (MyWind) prices and dates arrive as MariaDB prints them', { skip }, async () => {
  const products = await selectAll(driver, 'products', 'id', 'id IN (1, 80)');
  assert.deepEqual(products.map((p) => [p.id, p.product_name, p.standard_cost, p.list_price, p.discontinued]), [
    [1, 'Northwind Traders Chai', '13.5000', '18.0000', 0],
    [80, 'Northwind Traders Dried Plums', '3.0000', '3.5000', 0],
  ]);
  const orders = await selectAll(driver, `${db}.orders`, 'id', 'id <= ?', [31]);
  assert.deepEqual(orders.map((o) => [o.id, o.order_date, o.shipping_fee, o.tax_rate]), [
    [30, '2006-01-15 00:00:00', '200.0000', '0'],
    [31, '2006-01-20 00:00:00', '5.0000', '0'],
  ]);
  const lines = await selectAll(driver, 'order_details', 'id', 'order_id = ?', [30]);
  assert.deepEqual(lines.map((l) => [l.id, l.quantity, l.unit_price]), [[27, '100.0000', '14.0000'], [28, '30.0000', '3.5000']]);
  assert.equal(await driver.count('order_details'), 58);
});

test('the odbc package defect cases come back exact', { skip }, async () => {
  const [r1, r2, r3] = await selectAll(driver, 'odbc_exact', 'id');
  assert.equal(r1!.num, '-999.99');
  assert.equal(r2!.num, '-12.50');
  assert.equal(r1!.n42, '10.22');
  assert.equal(r2!.n42, '-0.01');
  assert.equal(r1!.n30, '123456789012345678901234567890');
  assert.equal(r2!.n30, '-99999999999999999999999999999');
  assert.equal(r1!.ubig, '18446744073709551615');
  assert.equal(r1!.big, '9223372036854775807');
  assert.equal(r2!.big, '-9223372036854775808');
  assert.equal(r1!.uint, 4294967295);
  assert.equal(r1!.usmall, 65535);
  assert.equal(r1!.dt, '2024-01-02 03:04:05.123456');
  assert.equal(r2!.dt, '1999-12-31 23:59:59', 'an all-zero fraction is dropped, as PostgreSQL prints it');
  assert.equal(r1!.ts, '2024-01-02 03:04:05.120');
  assert.equal(r1!.tm, '12:34:56.789');
  assert.equal(r2!.tm, '-838:59:59');
  assert.equal(r1!.d, '2024-02-29');
  assert.equal(r1!.f8, '0.1');
  assert.equal(r2!.f8, '-1e300');
  assert.equal(r1!.f4, '0.1');
  assert.equal(r2!.f4, '-3.5');
  assert.equal(r1!.body, BIG_TEXT);
  assert.equal(r2!.body, '');
  assert.equal(r1!.flag, 1);
  assert.equal(r1!.bin, '0xDEADBEEF');
  assert.equal(r1!.code, 'AB   ', 'CHAR padding kept (PAD_CHAR_TO_FULL_LENGTH); the mapping trims');
  assert.equal(r1!.yr, '2024');
  assert.deepEqual(Object.values(r3!).slice(1), new Array(18).fill(null));
});

test('describe marks unsigned types; a BIGINT UNSIGNED parameter compares exactly', { skip }, async () => {
  const cols = await driver.describe('odbc_exact');
  assert.deepEqual(cols.filter((c) => c.name.startsWith('u')).map((c) => c.type), ['bigint unsigned', 'int unsigned', 'smallint unsigned']);
  const rows = await driver.query('SELECT id, `ubig` FROM odbc_exact WHERE ubig >= ? ORDER BY id', ['18446744073709551615']);
  assert.deepEqual(rows, [{ id: 1, ubig: '18446744073709551615' }]);
});

test('a DECIMAL expression the driver cannot rewrite is refused instead of returning a float', { skip }, async () => {
  await assert.rejects(driver.query('SELECT num + 0 AS num FROM odbc_exact WHERE id = 1'), (e: Error) => e instanceof TypeError && /selectList/.test(e.message));
});

test('a missing table is AGENT_SOURCE_MISSING_OBJECT', { skip }, async () => {
  await assert.rejects(driver.describe('no_such_table'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT'));
  await assert.rejects(driver.query('SELECT * FROM no_such_table'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT'));
  // A statement the driver does not rewrite reaches the database; its SQLSTATE decides the code.
  await assert.rejects(driver.query('SELECT count(*) AS n FROM no_such_table'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT') && e.context.driverCode === '42S02');
});
