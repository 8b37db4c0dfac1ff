/**
 * Dynamics GP presets end to end on GP-shaped tables in PostgreSQL (native pg source):
 * upper-case quoted GP names, char(n) padding, numeric(19,5). Real loader, cursor/diff
 * capture and mapper; the same exact events as MariaDB over ODBC.
 * A fresh database per run, dropped afterwards.
 */
import { kitMissing } from '../helpers/paths.ts';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PG, service } from '../helpers/services.ts';
import { createDriver } from '../../agent/src/sources/registry.ts';
import type { SourceDriver } from '../../agent/src/sources/types.ts';
import { GpRun, assertFirstCapture, assertSecondCapture, createTablesSql, fixtureSql, loadGpConfig, updateSql } from './gp-common.ts';

const skip = kitMissing() ?? await service('PostgreSQL', PG.host, PG.port);
const dbName = `dovetail_gp_${process.pid}_${Date.now()}`;
const base = `postgres://${PG.user}@${PG.host}:${PG.port}`;
let root: pg.Client;
let direct: pg.Client;
let driver: SourceDriver;
let run: GpRun;

before(async () => {
  if (skip) return;
  root = new pg.Client({ connectionString: `${base}/postgres` });
  await root.connect();
  await root.query(`CREATE DATABASE ${dbName}`);
  direct = new pg.Client({ connectionString: `${base}/${dbName}` });
  await direct.connect();
  await direct.query([...createTablesSql('postgres'), ...fixtureSql('postgres')].join(';\n'));
  const config = loadGpConfig(`  type: postgres\n  url: ${base}/${dbName}`);
  driver = await createDriver(config.source);
  await driver.connect();
  run = new GpRun(config, driver);
});

after(async () => {
  if (skip) return;
  await driver?.close();
  await direct?.end();
  await root?.query(`DROP DATABASE IF EXISTS ${dbName}`);
  await root?.end();
});

test('the generated tables are GP-shaped: padded char keys, numeric(19,5), 1900-01-01 defaults', { skip }, async () => {
  const [row] = await driver.query(`SELECT * FROM "SOP30300" WHERE "SOPTYPE" = 4`);
  assert.equal(row!.SOPNUMBE, 'RTN00001'.padEnd(22));
  assert.equal(row!.QUANTITY, '0.00001');
  assert.equal(row!.ReqShipDate, '1900-01-01 00:00:00');
  assert.equal(row!.LNITMSEQ, 16384);
  assert.equal(Object.keys(row!).length, 120, 'every SOP30300 column of the layouts');
});

test('the four presets capture and map exactly through the pg driver; then only what changed', { skip }, async () => {
  assertFirstCapture(await run.capture());
  await direct.query(updateSql('postgres').join(';\n'));
  assertSecondCapture(await run.capture());
});
