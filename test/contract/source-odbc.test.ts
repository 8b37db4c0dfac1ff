/**
 * The source contract against the ODBC driver: PostgreSQL through psqlODBC and MariaDB
 * through MariaDB Connector/ODBC, each in a fresh database dropped afterwards
 * (required in CI through services.ts). SQLite's own suite is
 * test/integration/odbc-sqlite.test.ts: SQLite keeps no DECIMAL scale or CHAR padding,
 * so the contract's exact decimals cannot hold there.
 */
import { spawn } from 'node:child_process';
import pg from 'pg';
import { sourceContract } from './source-contract.ts';
import { service, PG, MARIADB } from '../helpers/services.ts';
import { createDriver } from '../../agent/src/sources/registry.ts';
import { ODBC_LIBS, odbcAvailable, odbcConfig } from '../integration/odbc-common.ts';

const pgSkip = (await service('PostgreSQL', PG.host, PG.port)) ?? (await odbcAvailable(ODBC_LIBS.postgres));
sourceContract('odbc: PostgreSQL via psqlODBC', async () => {
  const dbName = `dovetail_contract_odbc_${process.pid}_${Date.now()}`;
  const root = new pg.Client({ connectionString: `postgres://${PG.user}@${PG.host}:${PG.port}/postgres` });
  await root.connect();
  await root.query(`CREATE DATABASE ${dbName}`);
  const driver = await createDriver(odbcConfig(
    `DRIVER={PostgreSQL Unicode};Server=${PG.host};Port=${PG.port};Database=${dbName};Uid=${PG.user};`, 'postgres'));
  await driver.connect();
  return {
    driver,
    async exec(sql) {
      await driver.query(sql);
    },
    async teardown() {
      await driver.close();
      await root.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await root.end();
    },
  };
}, { skip: pgSkip });

function mariadb(sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('mariadb', [`-u${MARIADB.user}`, `-h${MARIADB.host}`, `-P${MARIADB.port}`, '-e', sql], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += String(d); });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mariadb exited ${code}: ${err}`))));
  });
}

const mariaSkip = (await service('MariaDB', MARIADB.host, MARIADB.port)) ?? (await odbcAvailable(ODBC_LIBS.mysql));
sourceContract('odbc: MariaDB via Connector/ODBC', async () => {
  const dbName = `dovetail_contract_odbc_${process.pid}_${Date.now()}`;
  await mariadb(`CREATE DATABASE \`${dbName}\``);
  const driver = await createDriver(odbcConfig(
    `DRIVER={MariaDB Unicode};Server=${MARIADB.host};Port=${MARIADB.port};Database=${dbName};Uid=${MARIADB.user};`, 'mysql'));
  await driver.connect();
  return {
    driver,
    async exec(sql) {
      await driver.query(sql);
    },
    async teardown() {
      await driver.close();
      await mariadb(`DROP DATABASE IF EXISTS \`${dbName}\``);
    },
    ddl: {
      int: 'int', bigint: 'bigint', decimal: 'decimal(19,5)', timestamp: 'datetime(6)', timestamptz: null,
      char5: 'char(5)', varchar: 'varchar(40)', binary: 'varbinary(8)', boolean: null, binaryLiteral: "X'0AFF00'",
    },
    expect: { describeTypes: { id: 'int', amount: 'decimal', big: 'bigint', ts: 'datetime', code: 'char', bin: 'varbinary' } },
  };
}, { skip: mariaSkip });
