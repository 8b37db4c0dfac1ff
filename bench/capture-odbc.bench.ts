/**
 * ODBC capture throughput against a raw read of the same rows with the same driver,
 * for each ODBC driver Debian ships: PostgreSQL (psqlODBC), MariaDB (Connector/ODBC)
 * and SQLite (sqlite3odbc). The native PostgreSQL figure is capture.bench.ts.
 *
 * Table: the ERP-shaped sales-order header table of capture.bench.ts (GP SOP10100:
 * CHAR-padded codes, numeric(19,5) money, naive timestamps with a 1900-01-01 sentinel),
 * N rows, deterministic, kept for the next run when it already holds exactly N rows:
 *   postgres  the very table capture.bench.ts reads (database dovetail_bench)
 *   mariadb   database dovetail_bench, InnoDB, filled from the SEQUENCE engine (seq_1_to_N)
 *   sqlite    a file under /tmp/dovetail-bench-sqlite, filled by a recursive CTE
 *
 * Stages, page size 5000 (the agent's default), one connection each, read in turns page by
 * page (order swapped every page) so that load from other work on the machine hits both alike:
 *   raw-keyset  OdbcDriver.query(`SELECT * FROM t [WHERE key > ?] ORDER BY key LIMIT 5000`): the
 *               statement scanPage() sends, so raw pays the same exact-value casts
 *               (numerics, dates -> text in SQL) that the driver's SELECT rewrite adds
 *   capture     CursorStrategy.poll loop over the snapshot (position round-tripped as text),
 *               including its start-up count and high-water query
 * Ratio = capture rows/s over raw-keyset rows/s (each stage's own time). Both stop after
 * 2 x maxStageMs together, having read the same first rows, so the ratio stays like for like.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createStrategy, type SourceDriver } from '@dovetail/agent';
import type { SourceConfig } from '../agent/src/config/types.ts';
import { createOdbcDriver } from '../agent/src/sources/odbc/index.ts';
import {
  BENCH_DB, benchTable, benchTableName, context, openPostgres, preparePgTable, reachable, stageLine, type StageResult,
} from './capture.bench.ts';
import { nowMs, rate } from './lib.ts';

export const ODBC_TARGETS = ['postgres', 'mariadb', 'sqlite'] as const;
export type OdbcTarget = (typeof ODBC_TARGETS)[number];

export interface OdbcCaptureOptions {
  rows: number;
  /** Rows per page (agent default 5000). */
  pageSize: number;
  targets: readonly OdbcTarget[];
  /** Each stage gets about this long, ms; both stop together after twice it, on the same rows. Default 240 000. */
  maxStageMs?: number;
  log?: (line: string) => void;
}

export interface OdbcTargetResult {
  target: OdbcTarget;
  /** Connection string as used (no secrets: loopback, trust/empty-password logins). */
  connection: string;
  server: string;
  rows: number;
  tableBuildMs: number;
  tableReused: boolean;
  stages: StageResult[];
  /** capture rows/s over raw-keyset rows/s; null when a stage did not run. */
  ratio: number | null;
  /** Rows both stages read (less than rows when maxStageMs cut them short). */
  rowsMeasured: number;
  skipped?: string;
}

const SQLITE_DIR = join(tmpdir(), 'dovetail-bench-sqlite');
/** Building 1M rows takes tens of seconds; the driver's per-statement timeout must allow it. */
const BUILD_TIMEOUT_MS = 900_000;

interface Target {
  connection: string;
  dialect: NonNullable<SourceConfig['dialect']>;
  /** Makes sure the table holds exactly `rows` rows; returns its name, build time and server label. */
  prepare(rows: number, log: (l: string) => void): Promise<{ name: string; tableBuildMs: number; tableReused: boolean; server: string }>;
}

function odbcConfig(url: string, dialect: Target['dialect'], queryTimeoutMs = 120_000): SourceConfig {
  return { type: 'odbc', system: 'gp', url, timeZone: 'America/Chicago', maxConnections: 1, queryTimeoutMs, dialect };
}

async function withOdbc<T>(config: SourceConfig, fn: (d: SourceDriver) => Promise<T>): Promise<T> {
  const d = await createOdbcDriver(config);
  await d.connect();
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

async function rowCount(d: SourceDriver, table: string): Promise<number> {
  try {
    return await d.count(table);
  } catch {
    return -1; // no such table yet
  }
}

async function scalar(d: SourceDriver, sql: string): Promise<string> {
  const r = await d.query(sql);
  return String(Object.values(r[0] ?? {})[0] ?? '');
}

const CITIES = `'Chicago','Milwaukee','Des Moines','Indianapolis','St. Louis','Minneapolis','Omaha','Madison'`;
const STATES = `'IL','WI','IA','IN','MO','MN','NE','WI'`;

/** Column types per dialect, same names and order as capture.bench.ts createSql(). */
function createTable(name: string, q: (s: string) => string, ts: string, money: string, tail = ''): string {
  return `CREATE TABLE ${q(name)} (
  sopnumbe char(21) NOT NULL PRIMARY KEY, soptype smallint NOT NULL, custnmbr char(15) NOT NULL, custname varchar(65) NOT NULL,
  docdate ${ts} NOT NULL, reqshipdate ${ts} NOT NULL, actlship ${ts} NOT NULL, curncyid char(15) NOT NULL,
  subtotal ${money} NOT NULL, frtamnt ${money} NOT NULL, taxamnt ${money} NOT NULL, docamnt ${money} NOT NULL,
  shiptoname varchar(65) NOT NULL, address1 varchar(61) NOT NULL, city varchar(35) NOT NULL, state varchar(29) NOT NULL,
  zipcode char(11) NOT NULL, country varchar(61) NOT NULL, dex_row_ts ${ts} NOT NULL)${tail}`;
}

function mariadbFill(name: string, rows: number): string {
  // The same deterministic values as the PostgreSQL generate_series fill.
  return `INSERT INTO \`${name}\`
SELECT CONCAT('ORD', LPAD(seq, 8, '0')), 2, CONCAT('C', LPAD(seq MOD 4999, 6, '0')), CONCAT('Customer ', seq MOD 4999, ' Distribution Co.'),
  TIMESTAMP '2019-01-01 00:00:00' + INTERVAL (seq * 97) SECOND,
  TIMESTAMP '2019-01-08 00:00:00' + INTERVAL (seq * 97) SECOND,
  CASE WHEN seq MOD 10 < 3 THEN TIMESTAMP '1900-01-01 00:00:00' ELSE TIMESTAMP '2019-01-03 14:30:00' + INTERVAL (seq * 97) SECOND END,
  'USD',
  ROUND(((seq * 7919) MOD 2000000) / 100.0, 2),
  ROUND((seq MOD 5000) / 100.0, 2),
  ROUND(((seq * 7919) MOD 2000000) * 0.000825, 5),
  ROUND(((seq * 7919) MOD 2000000) / 100.0 * 1.0825 + (seq MOD 5000) / 100.0, 5),
  CONCAT('Receiving Dock ', seq MOD 7),
  CONCAT(100 + seq MOD 9000, ' Industrial Pkwy Ste ', seq MOD 300),
  ELT(1 + seq MOD 8, ${CITIES}), ELT(1 + seq MOD 8, ${STATES}),
  LPAD(60000 + seq MOD 9999, 5, '0'), 'US',
  TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL ((seq MOD 1000) * 1000) MICROSECOND
FROM seq_1_to_${rows}`;
}

function sqliteFill(name: string, rows: number): string {
  // SQLite does not pad CHAR(n); printf pads the codes the way GP stores them (and PostgreSQL/MariaDB return them).
  const at = (base: string, secs: string) => `strftime('%Y-%m-%d %H:%M:%f', '${base}', '+' || (${secs}) || ' seconds')`;
  return `INSERT INTO "${name}"
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ${rows})
SELECT printf('%-21s', 'ORD' || printf('%08d', n)), 2, printf('%-15s', 'C' || printf('%06d', n % 4999)), 'Customer ' || (n % 4999) || ' Distribution Co.',
  ${at('2019-01-01', 'n * 97')}, ${at('2019-01-08', 'n * 97')},
  CASE WHEN n % 10 < 3 THEN '1900-01-01 00:00:00.000' ELSE ${at('2019-01-03 14:30:00', 'n * 97')} END,
  printf('%-15s', 'USD'),
  ROUND(((n * 7919) % 2000000) / 100.0, 2),
  ROUND((n % 5000) / 100.0, 2),
  ROUND(((n * 7919) % 2000000) * 0.000825, 5),
  ROUND(((n * 7919) % 2000000) / 100.0 * 1.0825 + (n % 5000) / 100.0, 5),
  'Receiving Dock ' || (n % 7),
  (100 + n % 9000) || ' Industrial Pkwy Ste ' || (n % 300),
  json_extract('[${CITIES.replaceAll("'", '"')}]', '$[' || (n % 8) || ']'),
  json_extract('[${STATES.replaceAll("'", '"')}]', '$[' || (n % 8) || ']'),
  printf('%-11s', printf('%05d', 60000 + n % 9999)), 'US',
  ${at('2024-01-01', "n + (n % 1000) / 1000.0")}
FROM g`;
}

const TARGETS: Record<OdbcTarget, (rows: number) => Target> = {
  postgres: () => ({
    connection: `DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=${BENCH_DB};UID=postgres;`,
    dialect: 'postgres',
    prepare: async (rows, log) => {
      const src = await openPostgres();
      if (!src) throw new Error('PostgreSQL at 127.0.0.1:5432 does not answer');
      try {
        return { ...(await preparePgTable(src, rows, log)), server: src.label };
      } finally {
        await src.close();
      }
    },
  }),
  mariadb: () => {
    const connection = `DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;DATABASE=${BENCH_DB};UID=root;PWD=;`;
    return {
      connection, dialect: 'mysql',
      prepare: async (rows, log) => {
        if (!(await reachable('127.0.0.1', 3306))) throw new Error('MariaDB at 127.0.0.1:3306 does not answer');
        await withOdbc(odbcConfig('DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;UID=root;PWD=;', 'mysql'), (d) =>
          d.query(`CREATE DATABASE IF NOT EXISTS ${BENCH_DB}`));
        return withOdbc(odbcConfig(connection, 'mysql', BUILD_TIMEOUT_MS), async (d) => {
          const name = benchTableName(rows);
          const server = `MariaDB ${await scalar(d, 'SELECT VERSION()')} at 127.0.0.1:3306 (database ${BENCH_DB})`;
          if ((await rowCount(d, name)) === rows) {
            log(`  table ${name}: reused (${rows} rows)`);
            return { name, tableBuildMs: 0, tableReused: true, server };
          }
          const t = nowMs();
          await d.query(`DROP TABLE IF EXISTS \`${name}\``);
          await d.query(createTable(name, (s) => `\`${s}\``, 'datetime(3)', 'decimal(19,5)', ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4'));
          await d.query(mariadbFill(name, rows));
          await d.query(`ANALYZE TABLE \`${name}\``);
          const tableBuildMs = nowMs() - t;
          log(`  table ${name}: built ${rows} rows in ${(tableBuildMs / 1000).toFixed(1)} s`);
          return { name, tableBuildMs, tableReused: false, server };
        });
      },
    };
  },
  sqlite: (rows) => {
    const file = join(SQLITE_DIR, `${benchTableName(rows)}.db`);
    const connection = `DRIVER={SQLite3};DATABASE=${file};`;
    return {
      connection, dialect: 'sqlite',
      prepare: async (n, log) => {
        mkdirSync(SQLITE_DIR, { recursive: true });
        return withOdbc(odbcConfig(connection, 'sqlite', BUILD_TIMEOUT_MS), async (d) => {
          const name = benchTableName(n);
          const server = `SQLite ${await scalar(d, 'SELECT sqlite_version()')} file ${file}`;
          if ((await rowCount(d, name)) === n) {
            log(`  table ${name}: reused (${n} rows)`);
            return { name, tableBuildMs: 0, tableReused: true, server };
          }
          const t = nowMs();
          await d.query(`DROP TABLE IF EXISTS "${name}"`);
          await d.query(createTable(name, (s) => `"${s}"`, 'timestamp', 'numeric(19,5)'));
          await d.query(sqliteFill(name, n));
          await d.query('ANALYZE');
          const tableBuildMs = nowMs() - t;
          log(`  table ${name}: built ${n} rows in ${(tableBuildMs / 1000).toFixed(1)} s`);
          return { name, tableBuildMs, tableReused: false, server };
        });
      },
    };
  },
};

/** Reads every row once on the server so neither stage pays for a cold cache (no index covers custname). */
async function warm(d: SourceDriver, table: string): Promise<void> {
  await d.query(`SELECT MAX(${d.dialect.quoteIdent('custname')}) AS m FROM ${d.dialect.quoteTable(table)}`);
}

async function runTarget(target: OdbcTarget, o: OdbcCaptureOptions, log: (l: string) => void): Promise<OdbcTargetResult> {
  const t = TARGETS[target](o.rows);
  const maxStageMs = o.maxStageMs ?? 240_000;
  const base = { target, connection: t.connection, rows: o.rows };
  let prepared;
  try {
    prepared = await t.prepare(o.rows, log);
  } catch (err) {
    const skipped = err instanceof Error ? err.message : String(err);
    log(`  SKIPPED: ${skipped}`);
    return { ...base, server: '', tableBuildMs: 0, tableReused: false, stages: [], ratio: null, rowsMeasured: 0, skipped };
  }
  const { name } = prepared;
  log(`  server: ${prepared.server}`);
  log(`  connection: ${t.connection}`);
  const config = odbcConfig(t.connection, t.dialect);
  const stages: StageResult[] = [];
  const add = (stage: string, rows: number, ms: number, note?: string): StageResult => {
    const raw = stages.find((s) => s.stage === 'raw-keyset');
    const rps = rate(rows, ms);
    const r: StageResult = { stage, rows, ms, rowsPerSec: rps, ratio: raw ? rps / raw.rowsPerSec : null, ...(note ? { note } : {}) };
    stages.push(r);
    log(stageLine(r));
    return r;
  };

  // Two drivers, two connections, read page by page in turns (the order swapped every page):
  // on a shared machine, load that comes and goes then hits both stages alike.
  const rawD = await createOdbcDriver(config);
  const capD = await createOdbcDriver(config);
  try {
    await rawD.connect();
    await capD.connect();
    await warm(rawD, name);

    // raw: the statement scanPage() builds, through the same driver (same SELECT rewrite and casts).
    const dl = rawD.dialect;
    const tq = dl.quoteTable(name);
    const k = dl.quoteIdent('sopnumbe');
    const first = dl.limit(`SELECT * FROM ${tq} ORDER BY ${k}`, o.pageSize);
    const next = dl.limit(`SELECT * FROM ${tq} WHERE (${k} > ${dl.param(1)}) ORDER BY ${k}`, o.pageSize);
    const raw = { rows: 0, ms: 0, done: false, after: null as string | null };
    const rawPage = async () => {
      const t0 = nowMs();
      const page = raw.after === null ? await rawD.query(first) : await rawD.query(next, [raw.after]);
      raw.ms += nowMs() - t0;
      raw.rows += page.length;
      if (page.length < o.pageSize) raw.done = true;
      else raw.after = page[page.length - 1]!.sopnumbe as string;
    };

    // capture: the cursor strategy's snapshot, as the table runner drives it (position round-tripped as text).
    const strategy = createStrategy(benchTable(name, 'cursor', o.pageSize));
    const ctx = context(capD, o.pageSize);
    const cap = { rows: 0, ms: 0, done: false, pos: null as unknown };
    const capPage = async () => {
      const t0 = nowMs();
      const r = await strategy.poll(cap.pos, ctx);
      cap.pos = strategy.decodePosition(strategy.encodePosition(r.position));
      cap.ms += nowMs() - t0;
      cap.rows += r.changes.length;
      if ((cap.pos as { phase: string }).phase === 'stream') cap.done = true;
    };

    const started = nowMs();
    let cut = false;
    for (let i = 0; !(raw.done && cap.done); i++) {
      const order = i % 2 === 0 ? [rawPage, capPage] : [capPage, rawPage];
      for (const step of order) {
        if (step === rawPage ? !raw.done : !cap.done) await step();
      }
      // Both stages together: each gets about maxStageMs.
      if (nowMs() - started > 2 * maxStageMs && !(raw.done && cap.done)) { cut = true; break; }
    }
    const note = cut ? `stopped at ${(2 * maxStageMs) / 1000} s of both stages: first rows only` : undefined;
    add('raw-keyset', raw.rows, raw.ms, note);
    const capture = add('capture', cap.rows, cap.ms, note);
    if (capture.rows !== raw.rows) log(`    WARNING: capture saw ${capture.rows} rows, raw ${raw.rows}`);
    if (!cut && raw.rows !== o.rows) log(`    WARNING: raw saw ${raw.rows} rows, expected ${o.rows}`);
    return {
      ...base, server: prepared.server, tableBuildMs: prepared.tableBuildMs, tableReused: prepared.tableReused,
      stages, ratio: capture.ratio, rowsMeasured: Math.min(raw.rows, cap.rows),
    };
  } finally {
    await rawD.close();
    await capD.close();
  }
}

export async function runOdbcCaptureBench(o: OdbcCaptureOptions): Promise<OdbcTargetResult[]> {
  const log = o.log ?? ((l: string) => console.log(l));
  const out: OdbcTargetResult[] = [];
  for (const target of o.targets) {
    log(`\n-- ${target} via ODBC`);
    out.push(await runTarget(target, o, log));
  }
  return out;
}
