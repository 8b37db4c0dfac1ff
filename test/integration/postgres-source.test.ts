/**
 * The postgres driver against this machine's PostgreSQL: permission errors, a pool
 * with several connections, money, and diff over a larger table in many pages.
 * A fresh database per run, dropped afterwards.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { isDovetailError } from '@dovetail/shared';
import { service, PG } from '../helpers/services.ts';
import { sourceConfig } from '../helpers/pglite-source.ts';
import { createDriver } from '../../agent/src/sources/registry.ts';
import { isRetryable } from '../../agent/src/sources/errors.ts';
import { createStrategy } from '../../agent/src/capture/registry.ts';
import type { SourceDriver } from '../../agent/src/sources/types.ts';
import { Harness } from '../helpers/capture-state.ts';
import { table } from '../contract/source-contract.ts';

const skip = await service('PostgreSQL', PG.host, PG.port);

describe('postgres source on a real server', { skip: skip ?? false }, () => {
  const dbName = `dovetail_pgsrc_${process.pid}_${Date.now()}`;
  const role = `dovetail_ro_${process.pid}`;
  const base = `postgres://${PG.user}@${PG.host}:${PG.port}`;
  let root: pg.Client;
  let direct: pg.Client;
  let driver: SourceDriver;

  before(async () => {
    root = new pg.Client({ connectionString: `${base}/postgres` });
    await root.connect();
    await root.query(`CREATE DATABASE ${dbName}`);
    await root.query(`DROP ROLE IF EXISTS ${role}`);
    await root.query(`CREATE ROLE ${role} LOGIN`);
    direct = new pg.Client({ connectionString: `${base}/${dbName}` });
    await direct.connect();
    await direct.query(`CREATE TABLE secret (id int PRIMARY KEY); CREATE TABLE m (id int PRIMARY KEY, amount money, f float8)`);
    await direct.query(`SET lc_monetary = 'C'; INSERT INTO m VALUES (1, '-1234.56', 0.1)`);
    driver = await createDriver(sourceConfig(`${base}/${dbName}`, { maxConnections: 4 }));
    await driver.connect();
  });
  after(async () => {
    await driver?.close();
    await direct?.end();
    await root?.query(`DROP DATABASE IF EXISTS ${dbName}`);
    await root?.query(`DROP ROLE IF EXISTS ${role}`);
    await root?.end();
  });

  it('permission denied is AGENT_SOURCE_PERMISSION and not retried', async () => {
    const ro = await createDriver(sourceConfig(`postgres://${role}@${PG.host}:${PG.port}/${dbName}`));
    await ro.connect();
    try {
      await assert.rejects(ro.query('SELECT * FROM secret'), (e: unknown) => {
        assert.ok(isDovetailError(e, 'AGENT_SOURCE_PERMISSION'));
        assert.equal(isRetryable(e), false);
        return true;
      });
    } finally {
      await ro.close();
    }
  });

  it('money and float8 come back as exact text', async () => {
    const rows = await driver.query('SELECT amount, f FROM m');
    assert.ok(rows[0]!.amount === '-1234.56', String(rows[0]!.amount));
    assert.equal(rows[0]!.f, '0.1');
  });

  it('runs concurrent queries on a pool of several connections', async () => {
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => driver.query('SELECT $1::int AS i, pg_backend_pid() AS pid', [i])));
    assert.deepEqual(results.map((r) => r[0]!.i), [1, 2, 3, 4, 5, 6]);
  });

  it('diff over 1000 rows in pages of 100: every row once, then deletes only', async () => {
    await direct.query(`CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000) g`);
    const h = new Harness(createStrategy(table({ name: 'big', table: 'big', key: ['id'], strategy: 'diff' })), driver, 100);
    const first = await h.drain();
    assert.equal(first.changes.length, 1000);
    assert.equal(new Set(first.changes.map((c) => c.key.id)).size, 1000);
    await direct.query(`DELETE FROM big WHERE id % 100 = 0`);
    const second = await h.drain();
    assert.equal(second.changes.length, 10);
    assert.ok(second.changes.every((c) => c.op === 'delete'));
  });
});
