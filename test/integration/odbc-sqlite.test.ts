/**
 * The ODBC source through the SQLite3 ODBC driver on a Northwind file built from the
 * shipped create.sql: values arrive as SQLite itself prints them (CAST AS TEXT).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { isDovetailError } from '@dovetail/shared';
import { DATA, tempDir, kitMissing } from '../helpers/paths.ts';
import type { SourceDriver } from '../../agent/src/sources/types.ts';
import { ODBC_LIBS, odbcAvailable, odbcConfig, openDriver, selectAll, BIG_TEXT } from './odbc-common.ts';

function sqlite3(file: string, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('sqlite3', [file], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += String(d); });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 && err === '' ? resolve() : reject(new Error(`sqlite3 exited ${code}: ${err}`))));
    p.stdin.end(sql);
  });
}

const skip = kitMissing() ?? await odbcAvailable(ODBC_LIBS.sqlite);
const dir = tempDir('dovetail-odbc-sqlite-');
const file = join(dir, 'northwind.db');
let driver: SourceDriver;

before(async () => {
  if (skip) return;
  // Without a journal and fsyncs the ~3,400 INSERTs load in a fraction of a second.
  await sqlite3(file, `PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;\n${readFileSync(join(DATA, 'northwind-sqlite', 'create.sql'), 'utf8')}
    CREATE TABLE odbc_exact (id INTEGER PRIMARY KEY, num NUMERIC, n42 DECIMAL(4,2), n30 DECIMAL(30,0), big INTEGER, r REAL,
      dt DATETIME, body TEXT, short VARCHAR(5), bin BLOB, untyped);
    INSERT INTO odbc_exact VALUES
      (1, -999.99, 10.22, 123456789012345678901234567890, 9223372036854775807, 0.1, '2024-01-02 03:04:05.123',
       'start-' || replace(hex(zeroblob(1048576)), '00', 'é') || replace(hex(zeroblob(1048576)), '00', 'x') || '-end',
       'abc', x'DEADBEEF', '0042'),
      (2, -12.5, -0.01, -5, -9223372036854775808, -1e300, '1999-12-31', '', '', x'', 7.25),
      (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (4, 0, 0, 0, 0, 0, NULL, NULL, replace(hex(zeroblob(3000)), '00', 'é'), NULL, NULL);`);
  driver = await openDriver(odbcConfig(`DRIVER={SQLite3};Database=${file};`, 'sqlite', { maxConnections: 1 }));
});

after(async () => {
  await driver?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('Northwind prices and dates arrive as SQLite prints them', { skip }, async () => {
  const products = await selectAll(driver, 'Products', 'ProductID', 'ProductID IN (1, 29, 38)');
  assert.deepEqual(products.map((p) => [p.ProductID, p.ProductName, p.UnitPrice]), [
    [1, 'Chai', '18'],
    [29, 'Thüringer Rostbratwurst', '123.79'],
    [38, 'Côte de Blaye', '263.5'],
  ]);
  const orders = await selectAll(driver, 'Orders', 'OrderID', 'OrderID BETWEEN ? AND ?', [10248, '10249']);
  assert.deepEqual(orders.map((o) => [o.OrderID, o.OrderDate, o.Freight, o.CustomerID]), [
    [10248, '1996-07-04 00:00:00.000', '32.38', 'VINET'],
    [10249, '1996-07-05 00:00:00.000', '11.61', 'TOMSP'],
  ]);
  const lines = await selectAll(driver, 'Order Details', 'ProductID', 'OrderID = ?', [10250]);
  assert.deepEqual(lines.map((l) => [l.ProductID, l.UnitPrice, l.Quantity, l.Discount]), [
    [41, '7.7', 10, '0.0'], [51, '42.4', 35, '0.15'], [65, '16.8', 15, '0.15'],
  ]);
  assert.equal(await driver.count('Order Details'), 2155);
});

test('the odbc package defect cases come back exact', { skip }, async () => {
  const [r1, r2, r3] = await selectAll(driver, 'odbc_exact', 'id', 'id < 4');
  assert.equal(r1!.num, '-999.99');
  assert.equal(r2!.num, '-12.5');
  assert.equal(r1!.n42, '10.22');
  assert.equal(r2!.n42, '-0.01');
  // NUMERIC affinity keeps 15 significant digits (SQLite's own rule); what it holds is what arrives.
  assert.equal(r1!.n30, '1.23456789012346e+29');
  // INTEGER is 64-bit in SQLite (the ODBC driver binds it as 32-bit): a number while it fits 2^53, text beyond.
  assert.equal(r1!.id, 1);
  assert.equal(r1!.big, '9223372036854775807');
  assert.equal(r2!.big, '-9223372036854775808');
  assert.equal(r1!.r, '0.1');
  assert.equal(r2!.r, '-1.0e+300');
  assert.equal(r1!.dt, '2024-01-02 03:04:05.123');
  assert.equal(r1!.body, BIG_TEXT);
  assert.equal(r1!.short, 'abc');
  assert.equal(r1!.bin, '0xDEADBEEF');
  assert.equal(r1!.untyped, '0042');
  assert.equal(r2!.untyped, '7.25');
  assert.deepEqual(Object.values(r3!).slice(1), new Array(10).fill(null));
});

test('a value longer than its declared VARCHAR size fails instead of arriving cut', { skip }, async () => {
  await assert.rejects(selectAll(driver, 'odbc_exact', 'id', 'id = 4'), (e) => isDovetailError(e, 'AGENT_SOURCE_QUERY') && e.context.column === 'short');
});

test('describe reads declared types; a missing table is AGENT_SOURCE_MISSING_OBJECT', { skip }, async () => {
  const cols = await driver.describe('odbc_exact');
  assert.deepEqual(cols.slice(0, 5).map((c) => [c.name, c.type]), [
    ['id', 'integer'], ['num', 'numeric'], ['n42', 'decimal(4,2)'], ['n30', 'decimal(30,0)'], ['big', 'integer'],
  ]);
  await assert.rejects(driver.describe('no_such_table'), (e) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT'));
});
