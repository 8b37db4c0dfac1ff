/**
 * Dynamics GP presets end to end on GP-shaped tables in MariaDB, read through ODBC
 * (MariaDB Connector/ODBC, dialect mysql): real loader, cursor/diff capture and mapper.
 * A fresh database per run, dropped afterwards.
 */
import { kitMissing } from '../helpers/paths.ts';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { MARIADB, service } from '../helpers/services.ts';
import { createDriver } from '../../agent/src/sources/registry.ts';
import type { SourceDriver } from '../../agent/src/sources/types.ts';
import { ODBC_LIBS, odbcAvailable } from './odbc-common.ts';
import { GpRun, assertFirstCapture, assertSecondCapture, createTablesSql, fixtureSql, loadGpConfig, updateSql } from './gp-common.ts';

const db = `dovetail_gp_${process.pid}_${Date.now()}`;

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
let run: GpRun;

before(async () => {
  if (skip) return;
  await mariadb(`DROP DATABASE IF EXISTS \`${db}\`; CREATE DATABASE \`${db}\`; USE \`${db}\`;\n`
    + [...createTablesSql('mysql'), ...fixtureSql('mysql')].join(';\n') + ';');
  const config = loadGpConfig(`  type: odbc\n  connectionString: "DRIVER={MariaDB Unicode};SERVER=${MARIADB.host};PORT=${MARIADB.port};DATABASE=${db};UID=${MARIADB.user};PWD=;"\n  dialect: mysql`);
  driver = await createDriver(config.source);
  await driver.connect();
  run = new GpRun(config, driver);
});

after(async () => {
  if (skip) return;
  await driver?.close();
  await mariadb(`DROP DATABASE IF EXISTS \`${db}\`;`);
});

test('the generated tables are GP-shaped: padded CHAR keys, numeric(19,5), 1900-01-01 defaults', { skip }, async () => {
  const [row] = await driver.query("SELECT * FROM `RM00101` WHERE `CUSTNMBR` = 'ADAMPARK0001'");
  assert.equal(row!.CUSTNMBR, 'ADAMPARK0001   ');
  assert.equal(row!.CRLMTAMT, '0.00000');
  assert.equal(row!.CREATDDT, '1900-01-01 00:00:00');
  assert.equal(row!.MODIFDT, '1900-01-01 00:00:00', 'an unset GP date is the 1900-01-01 sentinel');
  assert.equal(Object.keys(row!).length, 103, 'every RM00101 column of the layouts');
});

test('the four presets capture and map exactly through ODBC; then only what changed', { skip }, async () => {
  assertFirstCapture(await run.capture());
  await mariadb(`USE \`${db}\`;\n${updateSql('mysql').join(';\n')};`);
  assertSecondCapture(await run.capture());
});
