/**
 * Source driver contract: one suite every SourceDriver must pass (postgres over PGlite
 * and a real server here; ODBC drivers later).
 *
 * How to run it against another backend:
 *
 *   sourceContract('odbc-mariadb', async () => ({ driver, exec, teardown, ddl }))
 *
 * - `driver` is connected, on an empty database/schema the suite may create tables in
 *   (unqualified names: contract_vals, contract_items, contract_orders, contract_lines).
 * - `exec(sql)` runs DDL/DML outside the driver under test (or through it).
 * - SQL the suite writes is PostgreSQL-flavoured by default. A backend whose SQL
 *   differs returns `ddl`: a Partial<ContractSql> overriding the column types and
 *   literals below (see PG_SQL for what each one means). Statements are otherwise
 *   plain SQL-92 (CREATE TABLE, INSERT ... VALUES, UPDATE, DELETE).
 * - `expect` (optional) overrides the exact values expected where a database
 *   legitimately prints differently (e.g. SQLite has no CHAR padding).
 *
 * Every assertion is an exact value a user would check.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { isDovetailError } from '@dovetail/shared';
import type { SourceDriver, Row } from '../../agent/src/sources/types.ts';
import type { TableConfig } from '../../agent/src/config/types.ts';
import { createStrategy } from '../../agent/src/capture/registry.ts';
import { Harness, summary } from '../helpers/capture-state.ts';

export interface ContractSql {
  /** Column types */
  int: string; bigint: string; decimal: string; timestamp: string; timestamptz: string | null;
  char5: string; varchar: string; binary: string; boolean: string | null;
  /** Literal for a binary value 0x0AFF00 */
  binaryLiteral: string;
  /** Literal for a timestamptz value 2024-03-10 02:30:00.123456+05:30 */
  timestamptzLiteral: string;
  /** Literal for true */
  trueLiteral: string;
}

export const PG_SQL: ContractSql = {
  int: 'integer', bigint: 'bigint', decimal: 'numeric(19,5)', timestamp: 'timestamp(6)', timestamptz: 'timestamptz',
  char5: 'char(5)', varchar: 'varchar(40)', binary: 'bytea', boolean: 'boolean',
  binaryLiteral: "'\\x0aff00'", timestamptzLiteral: "'2024-03-10 02:30:00.123456+05:30'", trueLiteral: 'true',
};

export interface ContractExpect {
  timestamptz: string;
  describeTypes: Record<string, string>;
}

const PG_EXPECT: ContractExpect = {
  // The instant in UTC, every fraction digit kept.
  timestamptz: '2024-03-09T21:00:00.123456+00:00',
  describeTypes: { id: 'integer', amount: 'numeric', big: 'bigint', ts: 'timestamp', code: 'character', bin: 'bytea' },
};

export interface ContractBackend {
  driver: SourceDriver;
  exec(sql: string): Promise<void>;
  teardown(): Promise<void>;
  ddl?: Partial<ContractSql>;
  expect?: Partial<ContractExpect>;
}

export function table(over: Partial<TableConfig> & Pick<TableConfig, 'name' | 'table' | 'key' | 'strategy'>): TableConfig {
  return { entity: 'test', schedule: { everyMs: 1000 }, pageSize: 2, map: {}, children: {}, onGap: 'resnapshot', ...over };
}

export function sourceContract(name: string, setup: () => Promise<ContractBackend>, opts: { skip?: string | undefined } = {}): void {
  describe(`source contract: ${name}`, { skip: opts.skip ?? false }, () => {
    let b: ContractBackend;
    let sql: ContractSql;
    let exp: ContractExpect;

    before(async () => {
      b = await setup();
      sql = { ...PG_SQL, ...b.ddl };
      exp = { ...PG_EXPECT, ...b.expect };
      await b.exec(`CREATE TABLE contract_vals (id ${sql.int} NOT NULL PRIMARY KEY, amount ${sql.decimal}, big ${sql.bigint}, ts ${sql.timestamp}, code ${sql.char5}, bin ${sql.binary}` +
        `${sql.timestamptz ? `, tz ${sql.timestamptz}` : ''}${sql.boolean ? `, flag ${sql.boolean}` : ''})`);
      await b.exec(`INSERT INTO contract_vals (id, amount, big, ts, code, bin${sql.timestamptz ? ', tz' : ''}${sql.boolean ? ', flag' : ''}) VALUES ` +
        `(1, 1234.5, 9007199254740993, '2024-01-02 03:04:05.123456', 'AB', ${sql.binaryLiteral}${sql.timestamptz ? `, ${sql.timestamptzLiteral}` : ''}${sql.boolean ? `, ${sql.trueLiteral}` : ''}), ` +
        `(2, -99999999999999.99999, -9223372036854775808, '1999-12-31 23:59:59', 'ABCDE', NULL${sql.timestamptz ? ', NULL' : ''}${sql.boolean ? ', NULL' : ''})`);
    });
    after(async () => {
      await b?.teardown();
    });

    it('returns exact values: decimals, int8 beyond 2^53, timestamps, CHAR padding, binary', async () => {
      const rows = await b.driver.query(`SELECT * FROM contract_vals ORDER BY id`);
      assert.equal(rows.length, 2);
      const [r1, r2] = rows as [Row, Row];
      assert.equal(r1.id, 1);
      assert.equal(r1.amount, '1234.50000');
      assert.equal(r2.amount, '-99999999999999.99999');
      assert.equal(r1.big, '9007199254740993');
      assert.equal(r2.big, '-9223372036854775808');
      assert.equal(r1.ts, '2024-01-02 03:04:05.123456');
      assert.equal(r2.ts, '1999-12-31 23:59:59');
      assert.equal(r1.code, 'AB   ', 'the driver keeps CHAR padding; the mapping trims');
      assert.equal(r2.code, 'ABCDE');
      assert.equal(r1.bin, '0x0AFF00');
      assert.equal(r2.bin, null);
      if (sql.timestamptz) assert.equal(r1.tz, exp.timestamptz);
      if (sql.boolean) assert.equal(r1.flag, true);
    });

    it('binds parameters with exact values', async () => {
      const rows = await b.driver.query(`SELECT id FROM contract_vals WHERE big = ${b.driver.dialect.param(1)} AND amount = ${b.driver.dialect.param(2)}`, ['9007199254740993', '1234.50000']);
      assert.deepEqual(rows, [{ id: 1 }]);
    });

    it('describes columns in ordinal order and counts rows', async () => {
      const cols = await b.driver.describe('contract_vals');
      const names = cols.map((c) => c.name);
      assert.deepEqual(names.slice(0, 6), ['id', 'amount', 'big', 'ts', 'code', 'bin']);
      for (const [col, type] of Object.entries(exp.describeTypes)) assert.equal(cols.find((c) => c.name === col)?.type, type, col);
      assert.equal(cols[0]!.nullable, false);
      assert.equal(cols[1]!.nullable, true);
      assert.equal(await b.driver.count('contract_vals'), 2);
    });

    it('reports a missing table as AGENT_SOURCE_MISSING_OBJECT', async () => {
      await assert.rejects(b.driver.describe('no_such_table'), (e: unknown) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT'));
      await assert.rejects(b.driver.query('SELECT * FROM no_such_table'), (e: unknown) => isDovetailError(e, 'AGENT_SOURCE_MISSING_OBJECT'));
      // The connection stays usable after a failed statement.
      assert.equal(await b.driver.count('contract_vals'), 2);
    });

    it('cursor strategy: snapshot, then exactly the inserted and updated rows; deletes not seen', async () => {
      await b.exec(`CREATE TABLE contract_items (id ${sql.int} NOT NULL PRIMARY KEY, name ${sql.varchar}, price ${sql.decimal}, updated_at ${sql.timestamp} NOT NULL)`);
      await b.exec(`INSERT INTO contract_items VALUES (1, 'one', 1.10000, '2024-05-01 10:00:00.000001'), (2, 'two', 2.2, '2024-05-01 10:00:00.000002'), (3, 'three', 3.3, '2024-05-01 10:00:00.000003')`);
      const h = new Harness(createStrategy(table({ name: 'items', table: 'contract_items', key: ['id'], strategy: 'cursor',
        cursor: { column: 'updated_at', type: 'timestamp', overlapMs: 5000, overlapUnits: 0 } })), b.driver, 2);
      const snap = await h.drain();
      assert.deepEqual(summary(snap.changes), ['upsert [1]', 'upsert [2]', 'upsert [3]']);
      assert.equal(snap.changes[0]!.row!.price, '1.10000');
      assert.equal(snap.polls[0]!.phase, 'snapshotting');
      assert.deepEqual(snap.polls.filter((p) => p.phase === 'snapshotting').at(-1)!.progress, { done: 3, total: 3 });

      await b.exec(`INSERT INTO contract_items VALUES (4, 'four', 4.4, '2024-05-01 10:00:01')`);
      await b.exec(`UPDATE contract_items SET name = 'TWO', updated_at = '2024-05-01 10:00:02' WHERE id = 2`);
      await b.exec(`DELETE FROM contract_items WHERE id = 1`);
      const next = await h.drain();
      assert.deepEqual(summary(next.changes), ['upsert [4]', 'upsert [2]']);
      assert.equal(next.changes[1]!.row!.name, 'TWO');
      assert.equal(next.polls.at(-1)!.phase, 'streaming');
      assert.deepEqual(summary((await h.drain()).changes), [], 'nothing new: nothing emitted');
    });

    it('diff strategy: inserts, updates, deletes and child rows, exactly once', async () => {
      await b.exec(`CREATE TABLE contract_orders (order_no ${sql.char5} NOT NULL PRIMARY KEY, customer ${sql.varchar}, total ${sql.decimal})`);
      await b.exec(`CREATE TABLE contract_lines (order_no ${sql.char5} NOT NULL, line_no ${sql.int} NOT NULL, sku ${sql.varchar}, qty ${sql.decimal}, PRIMARY KEY (order_no, line_no))`);
      await b.exec(`INSERT INTO contract_orders VALUES ('A1', 'c1', 10), ('A2', 'c2', 20), ('B1', 'c3', 30)`);
      await b.exec(`INSERT INTO contract_lines VALUES ('A1', 2, 'S2', 1.5), ('A1', 1, 'S1', 2), ('B1', 1, 'S3', 3)`);
      const t = table({ name: 'orders', table: 'contract_orders', key: ['order_no'], strategy: 'diff',
        children: { lines: { table: 'contract_lines', parentKey: ['order_no'], orderBy: ['line_no'], into: 'lines', map: {} } } });
      const h = new Harness(createStrategy(t), b.driver, 2);
      const first = await h.drain();
      assert.deepEqual(summary(first.changes), ['upsert ["A1   "]', 'upsert ["A2   "]', 'upsert ["B1   "]']);
      assert.deepEqual(first.changes[0]!.children!.lines!.map((l) => [l.line_no, l.qty]), [[1, '2.00000'], [2, '1.50000']]);
      assert.deepEqual(first.changes[1]!.children!.lines, []);
      assert.equal(first.polls[0]!.phase, 'snapshotting');
      assert.deepEqual(first.polls.at(-1)!.progress, { done: 3, total: 3 });

      assert.deepEqual(summary((await h.drain()).changes), [], 'unchanged table: no changes');

      await b.exec(`UPDATE contract_orders SET total = 11 WHERE order_no = 'A2'`);
      await b.exec(`UPDATE contract_lines SET qty = 9 WHERE order_no = 'B1'`);
      await b.exec(`DELETE FROM contract_orders WHERE order_no = 'A1'`);
      await b.exec(`INSERT INTO contract_orders VALUES ('C1', 'c4', 40)`);
      const second = await h.drain();
      assert.deepEqual(summary(second.changes), ['upsert ["A2   "]', 'upsert ["B1   "]', 'upsert ["C1   "]', 'delete ["A1   "]']);
      assert.equal(second.changes[0]!.row!.total, '11.00000');
      assert.equal(second.changes[1]!.children!.lines![0]!.qty, '9.00000', 'a changed line re-emits its order');
      assert.equal(second.changes[3]!.row, null);
      assert.equal(second.polls.at(-1)!.phase, 'streaming');
      assert.deepEqual(summary((await h.drain()).changes), []);
    });
  });
}
