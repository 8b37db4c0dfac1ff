/**
 * `mssql-cdc`: SQL Server Change Data Capture.
 *
 * Snapshot: sys.fn_cdc_get_max_lsn() is read BEFORE the first page and becomes the
 * streaming start (changes racing the chunked snapshot are replayed afterwards).
 *
 * Streaming reads cdc.fn_cdc_get_all_changes_<instance>(@from, @to, N'all'): ops
 * 1 delete, 2 insert, 4 update after image (3, the before image, is not asked for and
 * ignored if present). Pages go by (__$start_lsn, __$seqval, __$operation) because one
 * transaction (one commit LSN) can hold more rows than a page.
 *
 * Position (hex strings, "0x" + 20 uppercase digits): `lsn` = every commit up to it is
 * delivered; `page` = last (commit LSN, seqval, operation) delivered after `lsn`.
 * A poll that finds nothing for this table still moves `lsn` to the current max LSN,
 * so a quiet table is never mistaken for one that fell behind cleanup. A stored `lsn`
 * below sys.fn_cdc_get_min_lsn (cleanup removed changes never read) is a real gap:
 * phase 'gap', handled by the table's onGap (resnapshot by default, or stop).
 *
 * The capture job (SQL Server Agent) fills the change tables; when Agent is stopped,
 * max LSN stops moving and polls return nothing: see the README section on CDC.
 */
import { DovetailError, isDovetailError } from '@dovetail/shared';
import type { TableConfig } from '../config/types.ts';
import type { Row } from '../sources/types.ts';
import type { MssqlDriver } from '../sources/mssql/driver.ts';
import { quoteIdent, selectList } from '../sources/mssql/columns.ts';
import { splitTable } from '../sources/mssql/dialect.ts';
import type { CaptureContext, CaptureStrategy, PollResult, RowChange } from './types.ts';
import { decodeJson, encodeJson } from './position.ts';
import {
  INT_PARAM, LSN_PARAM, NAME_PARAM, TypedParams, describeTable, gapResult, keyOf, notConfigured,
  requireMssql, snapshotPage, upserts, type SnapshotState, type TableMeta,
} from './mssql/common.ts';

export interface CdcPosition {
  v: 1;
  phase: 'snapshot' | 'streaming';
  /** Snapshot: max LSN read before the first page (null until then). Streaming: delivered up to here. */
  lsn: string | null;
  snapshot: SnapshotState | null;
  /** Last change delivered inside commits after `lsn`: commit LSN, seqval, operation. */
  page: { lsn: string; seqval: string; op: number } | null;
}

const LSN_HEX = 20;
const LSN_RE = /^0x[0-9A-F]{20}$/;
const ZERO_LSN = `0x${'0'.repeat(LSN_HEX)}`;

export function lsnToBigInt(lsn: string): bigint {
  if (!LSN_RE.test(lsn)) throw new TypeError(`not an LSN ("0x" + 20 uppercase hex digits): ${JSON.stringify(lsn).slice(0, 30)}`);
  return BigInt(lsn);
}

export function bigIntToLsn(n: bigint): string {
  if (n < 0n) n = 0n;
  return `0x${n.toString(16).toUpperCase().padStart(LSN_HEX, '0')}`;
}

function isCdcPosition(v: Record<string, unknown>): boolean {
  if (v.v !== 1 || (v.phase !== 'snapshot' && v.phase !== 'streaming')) return false;
  if (!(v.lsn === null || (typeof v.lsn === 'string' && LSN_RE.test(v.lsn)))) return false;
  return v.phase === 'snapshot' ? typeof v.snapshot === 'object' && v.snapshot !== null : typeof v.lsn === 'string';
}

const freshPosition = (): CdcPosition => ({ v: 1, phase: 'snapshot', lsn: null, snapshot: { after: null, done: 0, total: 0 }, page: null });

const PREFLIGHT_SQL = `SELECT DB_NAME() AS db_name, CAST(d.is_cdc_enabled AS int) AS db_cdc_enabled,
  CAST(OBJECT_ID(@p1) AS varchar(12)) AS object_id,
  sys.fn_cdc_get_min_lsn(@p2) AS min_lsn, sys.fn_cdc_get_max_lsn() AS max_lsn
FROM sys.databases AS d WHERE d.database_id = DB_ID()`;

const CAPTURED_SQL = `SELECT cc.column_name AS name FROM cdc.captured_columns AS cc
JOIN cdc.change_tables AS ct ON ct.object_id = cc.object_id
WHERE ct.capture_instance = @p1 ORDER BY cc.column_ordinal`;

const META = { lsn: '__dovetail_cdc_lsn', seqval: '__dovetail_cdc_seqval', op: '__dovetail_cdc_op', time: '__dovetail_cdc_time' } as const;

interface Lsns { min: string; max: string | null }

export class MssqlCdcStrategy implements CaptureStrategy<CdcPosition> {
  readonly name = 'mssql-cdc';
  readonly #table: TableConfig;
  readonly #instance: string;
  #meta: TableMeta | null = null;
  /** Columns the capture instance records (may be fewer than the table's). */
  #captured: TableMeta | null = null;

  constructor(table: TableConfig) {
    if (table.key.length === 0) throw new TypeError(`table ${table.name}: strategy mssql-cdc needs key columns`);
    this.#table = table;
    const { schema, name } = splitTable(table.table);
    this.#instance = table.captureInstance ?? `${schema}_${name}`;
  }

  get captureInstance(): string {
    return this.#instance;
  }

  encodePosition(p: CdcPosition): string {
    return encodeJson(p);
  }

  decodePosition(s: string): CdcPosition {
    return decodeJson<CdcPosition>('mssql-cdc', s, isCdcPosition);
  }

  resyncPosition(_current: CdcPosition | null): CdcPosition {
    return freshPosition();
  }

  async poll(position: CdcPosition | null, ctx: CaptureContext): Promise<PollResult<CdcPosition>> {
    const driver = requireMssql(ctx.driver, this.name, this.#table);
    const pos = position ?? freshPosition();
    const lsns = await this.#preflight(driver);
    if (!this.#meta || pos.phase === 'snapshot') {
      this.#meta = await describeTable(driver, this.#table);
      this.#captured = await this.#capturedMeta(driver, this.#meta);
    }
    try {
      return pos.phase === 'snapshot' ? await this.#snapshot(driver, this.#meta, pos, lsns, ctx) : await this.#stream(driver, pos, lsns, ctx);
    } catch (err) {
      if (isDovetailError(err, 'AGENT_SOURCE_PERMISSION')) {
        throw new DovetailError('AGENT_SOURCE_PERMISSION', `table ${this.#table.name}: the login may not read capture instance ${this.#instance} (needs SELECT on the captured columns and membership in its gating role, if any): ${err.message}`, { ...err.context, table: this.#table.name }, { cause: err });
      }
      throw err;
    }
  }

  async #preflight(driver: MssqlDriver): Promise<Lsns> {
    const t = this.#table;
    const quoted = driver.dialect.quoteTable(t.table);
    const [r] = await driver.queryTyped(PREFLIGHT_SQL, [{ value: quoted, column: NAME_PARAM }, { value: this.#instance, column: NAME_PARAM }]);
    const db = quoteIdent(String(r?.db_name ?? 'database'));
    if (!r || r.db_cdc_enabled !== 1) {
      throw notConfigured(t, `CDC is not enabled on database ${db}; run (as sysadmin): USE ${db}; EXEC sys.sp_cdc_enable_db`, { feature: 'cdc' });
    }
    if (r.object_id === null) {
      throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `table ${t.name}: ${t.table} does not exist in ${db} (or the login cannot see it)`, { table: t.name });
    }
    const min = r.min_lsn === null ? ZERO_LSN : String(r.min_lsn);
    if (min === ZERO_LSN) {
      const { schema, name } = splitTable(t.table);
      throw notConfigured(t, `capture instance ${this.#instance} does not exist (or the login may not read it); run: EXEC sys.sp_cdc_enable_table @source_schema = N'${schema}', @source_name = N'${name}', @role_name = NULL, @capture_instance = N'${this.#instance}'  (SQL Server Agent must be running for the capture job)`, { feature: 'cdc', captureInstance: this.#instance });
    }
    const max = r.max_lsn === null || r.max_lsn === ZERO_LSN ? null : String(r.max_lsn);
    return { min, max };
  }

  async #capturedMeta(driver: MssqlDriver, meta: TableMeta): Promise<TableMeta> {
    let names: Set<string>;
    try {
      const rows = await driver.queryTyped(CAPTURED_SQL, [{ value: this.#instance, column: NAME_PARAM }]);
      names = new Set(rows.map((r) => String(r.name)));
    } catch (err) {
      // cdc.* metadata may be closed to a least-privilege login: assume every column is captured.
      if (isDovetailError(err, 'AGENT_SOURCE_PERMISSION')) return meta;
      throw err;
    }
    if (names.size === 0) return meta;
    const columns = meta.columns.filter((c) => names.has(c.name));
    const missing = meta.keyCols.filter((c) => !names.has(c.name));
    if (missing.length > 0) {
      throw notConfigured(this.#table, `capture instance ${this.#instance} does not capture key column(s) ${missing.map((c) => c.name).join(', ')}`, { captureInstance: this.#instance });
    }
    return { ...meta, columns, types: new Map(columns.map((c) => [c.name, c.type])) };
  }

  async #snapshot(driver: MssqlDriver, meta: TableMeta, pos: CdcPosition, lsns: Lsns, ctx: CaptureContext): Promise<PollResult<CdcPosition>> {
    const snap = pos.snapshot ?? { after: null, done: 0, total: 0 };
    const total = snap.after === null ? await driver.count(this.#table.table) : snap.total;
    // Streaming starts after this LSN. A capture instance newer than every mapped LSN
    // has all its changes at or after min_lsn, so start just below it.
    const start = pos.lsn ?? bigIntToLsn(maxBig(lsns.max === null ? 0n : lsnToBigInt(lsns.max), lsnToBigInt(lsns.min) - 1n));
    const rows = await driver.transaction('read-committed', (s) => snapshotPage(s, this.#table, meta, snap.after, ctx.pageSize));
    const changes = await upserts(driver, this.#table, meta, rows, () => start);
    const done = snap.done + rows.length;
    const last = rows[rows.length - 1];
    if (rows.length < ctx.pageSize || !last) {
      return {
        changes, stateOps: [], more: true, phase: 'streaming', progress: { done, total: Math.max(total, done) },
        position: { v: 1, phase: 'streaming', lsn: start, snapshot: null, page: null },
      };
    }
    return {
      changes, stateOps: [], more: true, phase: 'snapshotting', progress: { done, total: Math.max(total, done) },
      position: { v: 1, phase: 'snapshot', lsn: start, snapshot: { after: meta.keyCols.map((c) => last[c.name] ?? null), done, total }, page: null },
    };
  }

  async #stream(driver: MssqlDriver, pos: CdcPosition, lsns: Lsns, ctx: CaptureContext): Promise<PollResult<CdcPosition>> {
    const meta = this.#captured!;
    const done = lsnToBigInt(pos.lsn!);
    const from = done + 1n;
    // Cleanup moved the low water mark past changes we never read.
    if (from < lsnToBigInt(lsns.min)) return gapResult(this.#table, pos, freshPosition());
    if (lsns.max === null || from > lsnToBigInt(lsns.max)) {
      return { changes: [], stateOps: [], more: false, phase: 'streaming', position: pos };
    }
    const to = lsns.max;
    const q = this.#changesSql(meta, bigIntToLsn(from), to, pos.page, ctx.pageSize);
    const rows = await driver.queryTyped(q.sql, q.params, meta.types);
    const changes: RowChange[] = [];
    const live: Row[] = [];
    const info = new Map<Row, { position: string; at: string | null }>();
    for (const r of rows) {
      const op = Number(r[META.op]);
      const position = `${String(r[META.lsn])}:${String(r[META.seqval])}`;
      const at = r[META.time] === null ? null : String(r[META.time]);
      const row = dataOnly(r);
      if (op === 1) changes.push({ op: 'delete', key: keyOf(row, meta, this.#table), row: null, position, occurredAt: at });
      else if (op === 2 || op === 4) {
        live.push(row);
        info.set(row, { position, at });
        changes.push({ op: 'upsert', key: keyOf(row, meta, this.#table), row, position, occurredAt: at });
      }
    }
    if (live.length > 0) {
      const withKids = await upserts(driver, this.#table, meta, live, (row) => info.get(row)!.position, (row) => info.get(row)!.at);
      let i = 0;
      for (let j = 0; j < changes.length; j++) if (changes[j]!.op === 'upsert') changes[j] = withKids[i++]!;
    }
    const last = rows[rows.length - 1];
    if (rows.length < ctx.pageSize || !last) {
      // Everything up to max LSN is read, including "nothing for this table": move on to it.
      return { changes, stateOps: [], more: false, phase: 'streaming', position: { v: 1, phase: 'streaming', lsn: to, snapshot: null, page: null } };
    }
    const lastLsn = String(last[META.lsn]);
    // Commits before the last one read are complete: keep `lsn` close behind, so a long
    // paging run under constant load is not mistaken for a gap after cleanup.
    const behind = maxBig(done, lsnToBigInt(lastLsn) - 1n);
    return {
      changes, stateOps: [], more: true, phase: 'streaming',
      position: { v: 1, phase: 'streaming', lsn: bigIntToLsn(behind), snapshot: null, page: { lsn: lastLsn, seqval: String(last[META.seqval]), op: Number(last[META.op]) } },
    };
  }

  #changesSql(meta: TableMeta, from: string, to: string, page: CdcPosition['page'], limit: number): { sql: string; params: TypedParams['list'] } {
    const params = new TypedParams();
    const top = params.add(limit, INT_PARAM);
    const pFrom = params.add(from, LSN_PARAM);
    const pTo = params.add(to, LSN_PARAM);
    const conds = ['c.[__$operation] IN (1, 2, 4)'];
    if (page) {
      const l = params.add(page.lsn, LSN_PARAM);
      const s = params.add(page.seqval, LSN_PARAM);
      const o = params.add(page.op, INT_PARAM);
      conds.push(`(c.[__$start_lsn] > ${l} OR (c.[__$start_lsn] = ${l} AND (c.[__$seqval] > ${s} OR (c.[__$seqval] = ${s} AND c.[__$operation] > ${o}))))`);
    }
    const fn = `[cdc].${quoteIdent(`fn_cdc_get_all_changes_${this.#instance}`)}`;
    const sql = `SELECT TOP (${top}) c.[__$start_lsn] AS ${quoteIdent(META.lsn)}, c.[__$seqval] AS ${quoteIdent(META.seqval)}, `
      + `c.[__$operation] AS ${quoteIdent(META.op)}, CONVERT(varchar(23), sys.fn_cdc_map_lsn_to_time(c.[__$start_lsn]), 121) AS ${quoteIdent(META.time)}, `
      + `${selectList(meta.columns, 'c')} FROM ${fn}(${pFrom}, ${pTo}, N'all') AS c `
      + `WHERE ${conds.join(' AND ')} ORDER BY c.[__$start_lsn], c.[__$seqval], c.[__$operation]`;
    return { sql, params: params.list };
  }
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function dataOnly(r: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(r)) if (!k.startsWith('__dovetail_cdc_')) out[k] = v;
  return out;
}

export function createMssqlCdcStrategy(table: TableConfig): CaptureStrategy {
  return new MssqlCdcStrategy(table) as CaptureStrategy;
}
