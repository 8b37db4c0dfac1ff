/**
 * The source contract against (a) embedded PGlite over its socket server, one
 * connection (runs anywhere), and (b) this machine's PostgreSQL, in a fresh database
 * dropped afterwards (required in CI through services.ts).
 */
import pg from 'pg';
import { sourceContract } from './source-contract.ts';
import { startPgliteSource, sourceConfig } from '../helpers/pglite-source.ts';
import { service, PG } from '../helpers/services.ts';
import { createDriver } from '../../agent/src/sources/registry.ts';

sourceContract('postgres over embedded PGlite (max 1 connection)', startPgliteSource);

const skip = await service('PostgreSQL', PG.host, PG.port);
sourceContract('postgres (real server)', async () => {
  const admin = `postgres://${PG.user}@${PG.host}:${PG.port}/postgres`;
  const dbName = `dovetail_contract_${process.pid}_${Date.now()}`;
  const root = new pg.Client({ connectionString: admin });
  await root.connect();
  await root.query(`CREATE DATABASE ${dbName}`);
  const url = `postgres://${PG.user}@${PG.host}:${PG.port}/${dbName}`;
  const direct = new pg.Client({ connectionString: url });
  await direct.connect();
  const driver = await createDriver(sourceConfig(url, { maxConnections: 2 }));
  await driver.connect();
  return {
    driver,
    async exec(sql) {
      await direct.query(sql);
    },
    async teardown() {
      await driver.close();
      await direct.end();
      await root.query(`DROP DATABASE IF EXISTS ${dbName}`);
      await root.end();
    },
  };
}, { skip });
