/**
 * Capture throughput against a raw read of the same rows with the same driver.
 *
 * Source: the machine's PostgreSQL at 127.0.0.1:5432 (database dovetail_bench) when it
 * answers, else embedded PGlite served over its socket (said in the output). A table
 * of N realistic ERP sales-order headers (GP SOP10100 shape: CHAR-padded codes,
 * numeric(19,5) money, naive timestamps with a 1900-01-01 sentinel, varchar names
 * and addresses) is generated with generate_series, and kept for the next run when
 * it already holds exactly N rows (its content is deterministic).
 *
 * Stages, each over all N rows, page size 5000 (the agent's default):
 *   raw-keyset   the agent's pg driver, `SELECT * ... WHERE key > $1 ORDER BY key LIMIT 5000`
 *   raw-cursor   a plain pg Client, one SELECT through DECLARE CURSOR / FETCH 5000, all values as text
 *   capture      CursorStrategy.poll loop over the snapshot (position round-tripped as text, as committed)
 *   capture+map  + compileMapping().toEvent per row (convert, validate, event id)
 *   pipeline     the real TableRunner + Outbox: + split, msgpack, Ed25519 sign, one LevelDB write per page
 *   diff-scan    DiffStrategy first scan, capture only (state empty: every row is new)
 *   diff-pipeline TableRunner + Outbox, diff first run: scan (timed alone) then the delete sweep
 * Ratios are each stage's rows/s over raw-keyset (the same driver, page size and SQL shape).
 */
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { createLogger, keyPairFromSeed } from '@dovetail/shared';
import { Outbox, compileMapping, createDriver, createStrategy, type SourceDriver, type TableConfig } from '@dovetail/agent';
import type { FieldMapping, FieldType, SourceConfig } from '../agent/src/config/types.ts';
import { EMPTY_STATE, type CaptureContext, type StateReader } from '../agent/src/capture/types.ts';
import type { DiffPosition } from '../agent/src/capture/diff.ts';
import { TableRunner } from '../agent/src/table-runner.ts';
import { nowMs, rate, tempDir } from './lib.ts';

export interface CaptureBenchOptions {
  rows: number;
  /** Rows per page (agent default 5000). */
  pageSize: number;
  /** Stages to skip (names as in StageResult.stage). */
  skip?: string[];
  log?: (line: string) => void;
}

export interface StageResult {
  stage: string;
  rows: number;
  ms: number;
  rowsPerSec: number;
  /** rowsPerSec / raw-keyset rowsPerSec. */
  ratio: number | null;
  note?: string;
  /** diff-pipeline only: the delete sweep after the first scan (bounded by DIFF_SWEEP_BUDGET_MS). */
  sweep?: { keys: number; ms: number; keysPerSec: number; complete: boolean };
}

export interface CaptureBenchResult {
  source: string;
  rows: number;
  pageSize: number;
  tableBuildMs: number;
  tableReused: boolean;
  stages: StageResult[];
}

export const BENCH_DB = 'dovetail_bench';
const DB = BENCH_DB;
/** The diff delete sweep runs at most this long after the first scan (it is O(n^2) today; see the report). */
const DIFF_SWEEP_BUDGET_MS = 30_000;
const AGENT_ID = 'agt_bench';
export const MAPPER_OPTS = { timeZone: 'America/Chicago', system: 'gp', agentId: AGENT_ID };
const silent = createLogger({ name: 'bench', level: 'silent' });

function f(column: string, type: FieldType, more: Partial<FieldMapping> = {}): FieldMapping {
  return { column, type, trim: type === 'code', required: false, ...more };
}

export function benchTable(name: string, strategy: 'cursor' | 'diff', pageSize: number): TableConfig {
  return {
    name: 'sales_orders', table: name, key: ['sopnumbe'], entity: 'sales_order', strategy,
    ...(strategy === 'cursor' ? { cursor: { column: 'dex_row_ts', type: 'timestamp' as const, overlapMs: 5000, overlapUnits: 0 } } : {}),
    schedule: { everyMs: 5000 }, pageSize, children: {}, onGap: 'resnapshot',
    map: {
      orderNumber: f('sopnumbe', 'code', { required: true }),
      customerId: f('custnmbr', 'code', { required: true }),
      orderDate: f('docdate', 'datetime', { required: true }),
      requestedDate: f('reqshipdate', 'datetime'),
      shippedDate: f('actlship', 'datetime', { nullIf: ['1900-01-01'] }),
      currency: f('curncyid', 'code'),
      subtotal: f('subtotal', 'decimal'),
      freight: f('frtamnt', 'decimal'),
      tax: f('taxamnt', 'decimal'),
      total: f('docamnt', 'decimal'),
      'shipTo.name': f('shiptoname', 'string', { trim: true }),
      'shipTo.line1': f('address1', 'string', { trim: true }),
      'shipTo.city': f('city', 'string', { trim: true }),
      'shipTo.region': f('state', 'string', { trim: true }),
      'shipTo.postalCode': f('zipcode', 'string', { trim: true }),
      'shipTo.country': f('country', 'string', { trim: true }),
      'extra.sopType': f('soptype', 'integer'),
      'extra.customerName': f('custname', 'string', { trim: true }),
      updatedAt: f('dex_row_ts', 'datetime'),
    },
  };
}

/** PostgreSQL DDL + generate_series fill for the ERP-shaped table (the ODBC bench ports it to MariaDB and SQLite). */
export function createSql(name: string, rows: number): string {
  // Deterministic content; ~30 % unshipped orders carry the 1900-01-01 sentinel.
  return `
CREATE TABLE ${name} (
  sopnumbe    char(21)      PRIMARY KEY,
  soptype     smallint      NOT NULL,
  custnmbr    char(15)      NOT NULL,
  custname    varchar(65)   NOT NULL,
  docdate     timestamp(3)  NOT NULL,
  reqshipdate timestamp(3)  NOT NULL,
  actlship    timestamp(3)  NOT NULL,
  curncyid    char(15)      NOT NULL,
  subtotal    numeric(19,5) NOT NULL,
  frtamnt     numeric(19,5) NOT NULL,
  taxamnt     numeric(19,5) NOT NULL,
  docamnt     numeric(19,5) NOT NULL,
  shiptoname  varchar(65)   NOT NULL,
  address1    varchar(61)   NOT NULL,
  city        varchar(35)   NOT NULL,
  state       varchar(29)   NOT NULL,
  zipcode     char(11)      NOT NULL,
  country     varchar(61)   NOT NULL,
  dex_row_ts  timestamp(3)  NOT NULL
);
INSERT INTO ${name}
SELECT 'ORD' || lpad(g::text, 8, '0'),
       2,
       'C' || lpad((g % 4999)::text, 6, '0'),
       'Customer ' || (g % 4999) || ' Distribution Co.',
       timestamp '2019-01-01' + g * interval '97 seconds',
       timestamp '2019-01-08' + g * interval '97 seconds',
       CASE WHEN g % 10 < 3 THEN timestamp '1900-01-01' ELSE timestamp '2019-01-03 14:30:00' + g * interval '97 seconds' END,
       'USD',
       round(((g::bigint * 7919) % 2000000) / 100.0, 2),
       round((g % 5000) / 100.0, 2),
       round(((g::bigint * 7919) % 2000000) * 0.000825, 5),
       round(((g::bigint * 7919) % 2000000) / 100.0 * 1.0825 + (g % 5000) / 100.0, 5),
       'Receiving Dock ' || (g % 7),
       (100 + g % 9000) || ' Industrial Pkwy Ste ' || (g % 300),
       (ARRAY['Chicago','Milwaukee','Des Moines','Indianapolis','St. Louis','Minneapolis','Omaha','Madison'])[1 + g % 8],
       (ARRAY['IL','WI','IA','IN','MO','MN','NE','WI'])[1 + g % 8],
       lpad((60000 + g % 9999)::text, 5, '0'),
       'US',
       timestamp '2024-01-01' + g * interval '1 second' + (g % 1000) * interval '1 millisecond'
  FROM generate_series(1, ${rows}) AS g;
ANALYZE ${name};`;
}

export function reachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    const done = (ok: boolean) => { s.destroy(); resolve(ok); };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export interface Source {
  label: string;
  url: string;
  exec(sql: string): Promise<void>;
  scalar(sql: string): Promise<string | null>;
  close(): Promise<void>;
}

export async function openPostgres(): Promise<Source | null> {
  if (!(await reachable('127.0.0.1', 5432))) return null;
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  try {
    await admin.connect();
    const has = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB]);
    if (has.rowCount === 0) await admin.query(`CREATE DATABASE ${DB}`);
    const version = (await admin.query('SHOW server_version')).rows[0]?.server_version as string;
    await admin.end();
    const url = `postgres://postgres@127.0.0.1:5432/${DB}`;
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    return {
      label: `PostgreSQL ${version} at 127.0.0.1:5432 (database ${DB})`, url,
      exec: async (sql) => { await c.query(sql); },
      scalar: async (sql) => { const r = await c.query(sql); const v = r.rows[0] ? Object.values(r.rows[0])[0] : null; return v == null ? null : String(v); },
      close: () => c.end(),
    };
  } catch {
    await admin.end().catch(() => undefined);
    return null;
  }
}

async function openPglite(): Promise<Source> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const db = await PGlite.create();
  const server = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1' });
  await server.start();
  return {
    label: 'PGlite (embedded, WASM) over its socket server; PostgreSQL at 127.0.0.1:5432 did not answer',
    url: `postgres://postgres@${server.getServerConn()}/postgres`,
    exec: async (sql) => { await db.exec(sql); },
    scalar: async (sql) => { const r = await db.query<Record<string, unknown>>(sql); const v = r.rows[0] ? Object.values(r.rows[0])[0] : null; return v == null ? null : String(v); },
    close: async () => { await server.stop(); await db.close(); },
  };
}

function sourceConfig(url: string): SourceConfig {
  return { type: 'postgres', system: 'gp', url, timeZone: 'America/Chicago', maxConnections: 1, queryTimeoutMs: 120_000 };
}


async function withDriver<T>(url: string, fn: (d: SourceDriver) => Promise<T>): Promise<T> {
  const d = await createDriver(sourceConfig(url));
  await d.connect();
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

export function context(driver: SourceDriver, pageSize: number, state: StateReader = EMPTY_STATE): CaptureContext {
  return { driver, state, pageSize, signal: new AbortController().signal, now: () => new Date() };
}

/** One stage as a printed line: name, rows, seconds, rows/s, ratio to raw, note. */
export function stageLine(r: StageResult): string {
  return `  ${r.stage.padEnd(14)} ${String(r.rows).padStart(8)} rows  ${(r.ms / 1000).toFixed(1).padStart(6)} s  ${Math.round(r.rowsPerSec).toLocaleString('en-US').padStart(8)} rows/s${r.ratio !== null ? `  x${r.ratio.toFixed(2)} of raw` : ''}${r.note ? `  (${r.note})` : ''}`;
}

/** The bench table name for a row count (shared by every source, so the ODBC bench reads the very same PostgreSQL table). */
export function benchTableName(rows: number): string {
  return `bench_sop10100_${rows}`;
}

/** Builds the table unless it already holds exactly `rows` rows (its content is deterministic). */
export async function preparePgTable(src: Source, rows: number, log: (l: string) => void): Promise<{ name: string; tableBuildMs: number; tableReused: boolean }> {
  const name = benchTableName(rows);
  const exists = await src.scalar(`SELECT to_regclass('public.${name}')::text`);
  const count = exists ? Number(await src.scalar(`SELECT count(*) FROM ${name}`)) : -1;
  if (count === rows) {
    log(`  table ${name}: reused (${rows} rows)`);
    return { name, tableBuildMs: 0, tableReused: true };
  }
  const t = nowMs();
  await src.exec(`DROP TABLE IF EXISTS ${name}`);
  await src.exec(createSql(name, rows));
  const tableBuildMs = nowMs() - t;
  log(`  table ${name}: built ${rows} rows in ${(tableBuildMs / 1000).toFixed(1)} s`);
  return { name, tableBuildMs, tableReused: false };
}

export async function runCaptureBench(o: CaptureBenchOptions): Promise<CaptureBenchResult> {
  const log = o.log ?? ((l: string) => console.log(l));
  const skip = new Set(o.skip ?? []);
  const src = (await openPostgres()) ?? (await openPglite());
  log(`  source: ${src.label}`);
  const stages: StageResult[] = [];
  try {
    const { name, tableBuildMs, tableReused } = await preparePgTable(src, o.rows, log);
    const bytes = Number(await src.scalar(`SELECT pg_total_relation_size('${name}')`));
    log(`  table size ${(bytes / 2 ** 20).toFixed(0)} MiB`);
    // Warm the server's cache so the first stage is not penalised for reading from disk.
    await src.scalar(`SELECT count(*) FROM (SELECT * FROM ${name}) t`);

    const add = (stage: string, rows: number, ms: number, note?: string) => {
      const base = stages.find((s) => s.stage === 'raw-keyset');
      const rps = rate(rows, ms);
      const r: StageResult = { stage, rows, ms, rowsPerSec: rps, ratio: base ? rps / base.rowsPerSec : null, ...(note ? { note } : {}) };
      stages.push(r);
      log(stageLine(r));
      if (rows !== o.rows) log(`    WARNING: ${stage} saw ${rows} rows, expected ${o.rows}`);
    };
    const stage = async (label: string, fn: () => Promise<{ rows: number; ms?: number; note?: string }>) => {
      if (skip.has(label)) return;
      const t = nowMs();
      const r = await fn();
      add(label, r.rows, r.ms ?? nowMs() - t, r.note);
    };

    // (a) raw: same driver, same page size, same keyset SQL shape as the strategies' scanPage.
    await stage('raw-keyset', () => withDriver(src.url, async (d) => {
      let rows = 0;
      let after: string | null = null;
      for (;;) {
        const page = after === null
          ? await d.query(`SELECT * FROM "${name}" ORDER BY "sopnumbe" LIMIT ${o.pageSize}`)
          : await d.query(`SELECT * FROM "${name}" WHERE "sopnumbe" > $1 ORDER BY "sopnumbe" LIMIT ${o.pageSize}`, [after]);
        rows += page.length;
        if (page.length < o.pageSize) return { rows };
        after = page[page.length - 1]!.sopnumbe as string;
      }
    }));

    await stage('raw-cursor', async () => {
      const c = new pg.Client({ connectionString: src.url, types: { getTypeParser: () => (s: string) => s } });
      await c.connect();
      try {
        let rows = 0;
        await c.query('BEGIN');
        await c.query(`DECLARE bench_c NO SCROLL CURSOR FOR SELECT * FROM "${name}" ORDER BY "sopnumbe"`);
        for (;;) {
          const r = await c.query(`FETCH ${o.pageSize} FROM bench_c`);
          rows += r.rows.length;
          if (r.rows.length < o.pageSize) break;
        }
        await c.query('COMMIT');
        return { rows, note: 'one SELECT, pg Client, values as text' };
      } finally {
        await c.end();
      }
    });

    const cursorTable = benchTable(name, 'cursor', o.pageSize);

    // (b), (c): the strategy's poll loop over the snapshot, as the runner drives it, without the outbox.
    for (const withMap of [false, true]) {
      await stage(withMap ? 'capture+map' : 'capture', () => withDriver(src.url, async (d) => {
        const strategy = createStrategy(cursorTable);
        const mapper = compileMapping(cursorTable, MAPPER_OPTS);
        const ctx = context(d, o.pageSize);
        let pos: unknown = null;
        let rows = 0;
        let mapped = 0;
        for (;;) {
          const r = await strategy.poll(pos, ctx);
          rows += r.changes.length;
          if (withMap) {
            const at = new Date();
            for (const ch of r.changes) { mapper.toEvent(ch, at); mapped++; }
          }
          pos = strategy.decodePosition(strategy.encodePosition(r.position));
          if ((pos as { phase: string }).phase === 'stream') break;
        }
        if (withMap && mapped !== rows) throw new Error(`mapped ${mapped} of ${rows}`);
        return { rows };
      }));
    }

    // (d) the real pipeline: TableRunner -> mapper -> Outbox.commit (sign + LevelDB), snapshot then one streaming sweep.
    const pipeline = async (table: TableConfig, onCommit?: (runner: TableRunner, stop: () => void) => void) => withDriver(src.url, async (d) => {
      const tmp = tempDir('dovetail-bench-capture-');
      const outbox = await Outbox.open(join(tmp.path, 'agent'), {
        agentId: AGENT_ID, secretKey: keyPairFromSeed(new Uint8Array(32).fill(9)).secretKey, maxBatchEvents: 500, maxBatchBytes: 1024 * 1024,
      });
      try {
        const ac = new AbortController();
        let runner: TableRunner | undefined;
        runner = new TableRunner({
          table, strategy: createStrategy(table), mapper: compileMapping(table, MAPPER_OPTS), sink: outbox,
          driver: () => d, logger: silent, onEvents: () => { onCommit?.(runner!, () => ac.abort()); },
        });
        const ok = await runner.runOnce(ac.signal);
        if (!ok) throw new Error(`pipeline run failed: ${JSON.stringify(runner.status.lastError)}`);
        const st = await outbox.stats();
        return { rows: runner.status.eventsCaptured, note: `${st.depth} batches, ${(st.bytes / 2 ** 20).toFixed(0)} MiB signed bodies` };
      } finally {
        await outbox.close();
        tmp.remove();
      }
    });
    await stage('pipeline', () => pipeline(cursorTable));

    const diffTable = benchTable(name, 'diff', o.pageSize);
    await stage('diff-scan', () => withDriver(src.url, async (d) => {
      const strategy = createStrategy(diffTable);
      const ctx = context(d, o.pageSize);
      let pos: unknown = null;
      let rows = 0;
      for (;;) {
        const r = await strategy.poll(pos, ctx);
        rows += r.changes.length;
        pos = strategy.decodePosition(strategy.encodePosition(r.position));
        if ((pos as DiffPosition).stage === 'sweep') break;
      }
      return { rows, note: 'capture only, empty state' };
    }));

    if (!skip.has('diff-pipeline')) {
      // The delete sweep after the first scan is bounded: it is reported as keys checked per second.
      let scanEnd = 0;
      let sweepEnd = 0;
      let sweptKeys = 0;
      const t = nowMs();
      const r = await pipeline(diffTable, (runner, stop) => {
        const pos = runner.status.position ? (JSON.parse(runner.status.position) as DiffPosition) : null;
        if (!pos) return;
        if (scanEnd === 0 && pos.stage === 'sweep') scanEnd = nowMs();
        if (pos.stage === 'sweep' && pos.sweepAfter !== null) {
          // Keys are ORD + the row number, so the last key checked tells how far the sweep got.
          sweptKeys = Number(/ORD(\d+)/.exec(pos.sweepAfter)?.[1] ?? 0);
        }
        if (pos.stage === 'scan' && scanEnd !== 0 && pos.run === '') sweptKeys = o.rows;
        if (scanEnd !== 0 && nowMs() - scanEnd > DIFF_SWEEP_BUDGET_MS) { sweepEnd = nowMs(); stop(); }
      });
      const end = sweepEnd || nowMs();
      const sweepS = (end - scanEnd) / 1000;
      add('diff-pipeline', r.rows, scanEnd - t,
        `first scan; then the delete sweep checked ${sweptKeys} of ${o.rows} stored keys in ${sweepS.toFixed(1)} s${sweepEnd ? ' (stopped at its time budget)' : ''}; ${r.note}`);
      stages[stages.length - 1]!.sweep = { keys: sweptKeys, ms: end - scanEnd, keysPerSec: rate(sweptKeys, end - scanEnd), complete: sweepEnd === 0 };
    }
    return { source: src.label, rows: o.rows, pageSize: o.pageSize, tableBuildMs, tableReused, stages };
  } finally {
    await src.close().catch(() => undefined);
  }
}
