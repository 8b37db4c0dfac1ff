/**
 * `mssql-ct`: SQL Server Change Tracking.
 *
 * Snapshot: CHANGE_TRACKING_CURRENT_VERSION() is read BEFORE the first page (in the
 * page's SNAPSHOT transaction) and becomes the streaming start, so every change made
 * while the chunked snapshot runs is replayed afterwards (at-least-once, never lost).
 *
 * Streaming, one SNAPSHOT-isolation transaction per poll (CT functions and the table
 * read agree on one point in time): check the stored version against
 * CHANGE_TRACKING_MIN_VALID_VERSION, read the current version, read
 * CHANGETABLE(CHANGES t, @version) LEFT JOINed to the table (deletes have no table
 * row: key only). One transaction can give thousands of rows the same
 * SYS_CHANGE_VERSION, so pages go by (SYS_CHANGE_VERSION, key). CHANGETABLE shows a
 * row once, at its LATEST version, and versions only rise: a row not yet delivered
 * stays after the page cursor even if it changes again between polls.
 *
 * Position: { phase, version, snapshot, page }. `version`: all changes up to it are
 * delivered. Versions are bigint, kept as decimal strings.
 */
import { DovetailError, isDovetailError } from '@dovetail/shared';
import type { TableConfig } from '../config/types.ts';
import type { Row, Value } from '../sources/types.ts';
import type { MssqlDriver } from '../sources/mssql/driver.ts';
import { quoteIdent, selectExpr, selectList } from '../sources/mssql/columns.ts';
import type { CaptureContext, CaptureStrategy, PollResult, RowChange } from './types.ts';
import { decodeJson, encodeJson } from './position.ts';
import {
  BIGINT_PARAM, INT_PARAM, NAME_PARAM, TypedParams, describeTable, gapResult, keyOf, keysetAfter, notConfigured,
  requireMssql, snapshotPage, upserts, type SnapshotState, type TableMeta,
} from './mssql/common.ts';

export interface CtPosition {
  v: 1;
  phase: 'snapshot' | 'streaming';
  /** Snapshot: version read before the first page (null until then). Streaming: delivered up to here. */
  version: string | null;
  snapshot: SnapshotState | null;
  /** Last (SYS_CHANGE_VERSION, key) delivered while paging through changes after `version`. */
  page: { version: string; key: Value[] } | null;
}

const VERSION_RE = /^\d+$/;

function isCtPosition(v: Record<string, unknown>): boolean {
  if (v.v !== 1 || (v.phase !== 'snapshot' && v.phase !== 'streaming')) return false;
  if (!(v.version === null || (typeof v.version === 'string' && VERSION_RE.test(v.version)))) return false;
  return v.phase === 'snapshot' ? typeof v.snapshot === 'object' && v.snapshot !== null : typeof v.version === 'string';
}

const freshPosition = (): CtPosition => ({ v: 1, phase: 'snapshot', version: null, snapshot: { after: null, done: 0, total: 0 }, page: null });

const PREFLIGHT_SQL = `SELECT DB_NAME() AS db_name, CAST(OBJECT_ID(@p1) AS varchar(12)) AS object_id,
  CAST(CHANGE_TRACKING_CURRENT_VERSION() AS varchar(20)) AS current_version,
  CAST(CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1)) AS varchar(20)) AS min_valid_version,
  (SELECT d.snapshot_isolation_state FROM sys.databases AS d WHERE d.database_id = DB_ID()) AS snapshot_isolation_state`;

const VERSIONS_SQL = `SELECT CAST(CHANGE_TRACKING_CURRENT_VERSION() AS varchar(20)) AS current_version,
  CAST(CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1)) AS varchar(20)) AS min_valid_version`;

/** Result columns the strategy adds; the prefix keeps them apart from table columns. */
const META = { version: '__dovetail_ct_version', op: '__dovetail_ct_op', present: '__dovetail_ct_present', key: '__dovetail_ct_key_' } as const;

export class MssqlCtStrategy implements CaptureStrategy<CtPosition> {
  readonly name = 'mssql-ct';
  readonly #table: TableConfig;
  #meta: TableMeta | null = null;

  constructor(table: TableConfig) {
    if (table.key.length === 0) throw new TypeError(`table ${table.name}: strategy mssql-ct needs the primary key columns in key`);
    this.#table = table;
  }

  encodePosition(p: CtPosition): string {
    return encodeJson(p);
  }

  decodePosition(s: string): CtPosition {
    return decodeJson<CtPosition>('mssql-ct', s, isCtPosition);
  }

  resyncPosition(_current: CtPosition | null): CtPosition {
    return freshPosition();
  }

  async poll(position: CtPosition | null, ctx: CaptureContext): Promise<PollResult<CtPosition>> {
    const driver = requireMssql(ctx.driver, this.name, this.#table);
    const pos = position ?? freshPosition();
    await this.#preflight(driver);
    if (!this.#meta || pos.phase === 'snapshot') this.#meta = await describeTable(driver, this.#table);
    try {
      return pos.phase === 'snapshot' ? await this.#snapshot(driver, this.#meta, pos, ctx) : await this.#stream(driver, this.#meta, pos, ctx);
    } catch (err) {
      throw this.#hint(err);
    }
  }

  /** Clear errors before any SNAPSHOT transaction: what is missing and the statement that fixes it. */
  async #preflight(driver: MssqlDriver): Promise<void> {
    const t = this.#table;
    const quoted = driver.dialect.quoteTable(t.table);
    const [r] = await driver.queryTyped(PREFLIGHT_SQL, [{ value: quoted, column: NAME_PARAM }]);
    const db = quoteIdent(String(r?.db_name ?? 'database'));
    if (!r || r.object_id === null) {
      throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `table ${t.name}: ${t.table} does not exist in ${db} (or the login cannot see it)`, { table: t.name });
    }
    if (r.current_version === null) {
      throw notConfigured(t, `Change Tracking is not enabled on database ${db}; run: ALTER DATABASE ${db} SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)`, { feature: 'change-tracking' });
    }
    if (r.min_valid_version === null) {
      throw notConfigured(t, `Change Tracking is not enabled on ${quoted} (or the login lacks VIEW CHANGE TRACKING on it); run: ALTER TABLE ${quoted} ENABLE CHANGE_TRACKING; GRANT SELECT, VIEW CHANGE TRACKING ON ${quoted} TO <agent login>`, { feature: 'change-tracking' });
    }
    if (Number(r.snapshot_isolation_state) !== 1) {
      throw notConfigured(t, `snapshot isolation is off in ${db} (mssql-ct reads each poll in one SNAPSHOT transaction); run: ALTER DATABASE ${db} SET ALLOW_SNAPSHOT_ISOLATION ON`, { feature: 'snapshot-isolation' });
    }
  }

  #hint(err: unknown): unknown {
    if (isDovetailError(err, 'AGENT_SOURCE_PERMISSION')) {
      const q = quoteIdent(this.#table.table.split('.').pop() ?? this.#table.table);
      return new DovetailError('AGENT_SOURCE_PERMISSION', `table ${this.#table.name}: the login may not read change tracking data; GRANT SELECT, VIEW CHANGE TRACKING ON ${q} TO <agent login> (${err.message})`, { ...err.context, table: this.#table.name }, { cause: err });
    }
    return err;
  }

  async #snapshot(driver: MssqlDriver, meta: TableMeta, pos: CtPosition, ctx: CaptureContext): Promise<PollResult<CtPosition>> {
    const snap = pos.snapshot ?? { after: null, done: 0, total: 0 };
    const total = snap.after === null ? await driver.count(this.#table.table) : snap.total;
    const { version, rows } = await driver.transaction('snapshot', async (s) => {
      let v = pos.version;
      if (v === null) {
        // Read before the first row, so changes racing the snapshot are replayed by streaming.
        const [r] = await s.query(VERSIONS_SQL, [{ value: meta.quoted, column: NAME_PARAM }]);
        v = String(r?.current_version);
      }
      return { version: v, rows: await snapshotPage(s, this.#table, meta, snap.after, ctx.pageSize) };
    });
    const changes = await upserts(driver, this.#table, meta, rows, () => version);
    const done = snap.done + rows.length;
    const last = rows[rows.length - 1];
    if (rows.length < ctx.pageSize || !last) {
      return {
        changes, stateOps: [], more: true, phase: 'streaming', progress: { done, total: Math.max(total, done) },
        position: { v: 1, phase: 'streaming', version, snapshot: null, page: null },
      };
    }
    const after = meta.keyCols.map((c) => last[c.name] ?? null);
    return {
      changes, stateOps: [], more: true, phase: 'snapshotting', progress: { done, total: Math.max(total, done) },
      position: { v: 1, phase: 'snapshot', version, snapshot: { after, done, total }, page: null },
    };
  }

  async #stream(driver: MssqlDriver, meta: TableMeta, pos: CtPosition, ctx: CaptureContext): Promise<PollResult<CtPosition>> {
    const base = pos.version!;
    const out = await driver.transaction('snapshot', async (s) => {
      const [r] = await s.query(VERSIONS_SQL, [{ value: meta.quoted, column: NAME_PARAM }]);
      if (!r || r.min_valid_version === null || r.current_version === null) {
        throw notConfigured(this.#table, `Change Tracking was disabled on ${meta.quoted}; re-enable it (ALTER TABLE ${meta.quoted} ENABLE CHANGE_TRACKING) and resync the table`, { feature: 'change-tracking' });
      }
      const current = String(r.current_version);
      // Below the minimum valid version, cleanup removed changes we never read; a current
      // version below ours means the database was restored from an older backup.
      if (BigInt(base) < BigInt(String(r.min_valid_version)) || BigInt(current) < BigInt(base)) return { gap: true as const };
      const q = this.#changesSql(meta, base, current, pos.page, ctx.pageSize);
      return { gap: false as const, current, rows: await s.query(q.sql, q.params, meta.types) };
    });
    if (out.gap) return gapResult(this.#table, pos, freshPosition());
    const rows = out.rows;
    const changes: RowChange[] = [];
    const live: Row[] = [];
    const liveVersions = new Map<Row, string>();
    for (const r of rows) {
      const version = String(r[META.version]);
      if (r[META.op] === 'D' || r[META.present] !== 1) {
        // Deleted, or no longer in the table / the configured `where`: the consumer drops it.
        const key: Row = {};
        meta.keyCols.forEach((_c, i) => { key[this.#table.key[i]!] = r[`${META.key}${i}`] ?? null; });
        changes.push({ op: 'delete', key, row: null, position: version });
      } else {
        const row = dataOnly(r);
        live.push(row);
        liveVersions.set(row, version);
        changes.push({ op: 'upsert', key: keyOf(row, meta, this.#table), row, position: version });
      }
    }
    if (live.length > 0) {
      // Children need one query per page, not per row; splice them back in capture order.
      const withKids = await upserts(driver, this.#table, meta, live, (row) => liveVersions.get(row)!);
      let i = 0;
      for (let j = 0; j < changes.length; j++) if (changes[j]!.op === 'upsert') changes[j] = withKids[i++]!;
    }
    const last = rows[rows.length - 1];
    if (rows.length < ctx.pageSize || !last) {
      return { changes, stateOps: [], more: false, phase: 'streaming', position: { v: 1, phase: 'streaming', version: out.current, snapshot: null, page: null } };
    }
    const key = meta.keyCols.map((_c, i) => last[`${META.key}${i}`] ?? null);
    return {
      changes, stateOps: [], more: true, phase: 'streaming',
      position: { v: 1, phase: 'streaming', version: base, snapshot: null, page: { version: String(last[META.version]), key } },
    };
  }

  /** CHANGETABLE joined back to the (where-filtered) table, one page after the cursor. */
  #changesSql(meta: TableMeta, base: string, current: string, page: CtPosition['page'], limit: number): { sql: string; params: TypedParams['list'] } {
    const params = new TypedParams();
    const top = params.add(limit, INT_PARAM);
    const since = params.add(base, BIGINT_PARAM);
    const upTo = params.add(current, BIGINT_PARAM);
    const ctKey = meta.keyCols.map((c) => `ct.${quoteIdent(c.name)}`);
    const conds = [`ct.SYS_CHANGE_VERSION <= ${upTo}`];
    if (page) {
      const v = params.add(page.version, BIGINT_PARAM);
      conds.push(`(ct.SYS_CHANGE_VERSION > ${v} OR (ct.SYS_CHANGE_VERSION = ${v} AND ${keysetAfter(ctKey, meta.keyCols, page.key, params)}))`);
    }
    const keyExprs = meta.keyCols.map((c, i) => selectExpr(c, 'ct', `${META.key}${i}`));
    const join = meta.keyCols.map((c) => `t.${quoteIdent(c.name)} = ct.${quoteIdent(c.name)}`).join(' AND ');
    const present = `CASE WHEN t.${quoteIdent(meta.keyCols[0]!.name)} IS NULL THEN 0 ELSE 1 END AS ${quoteIdent(META.present)}`;
    const source = this.#table.where ? `(SELECT * FROM ${meta.quoted} WHERE ${this.#table.where})` : meta.quoted;
    const sql = `SELECT TOP (${top}) CAST(ct.SYS_CHANGE_VERSION AS varchar(20)) AS ${quoteIdent(META.version)}, ct.SYS_CHANGE_OPERATION AS ${quoteIdent(META.op)}, `
      + `${keyExprs.join(', ')}, ${present}, ${selectList(meta.columns, 't')} `
      + `FROM CHANGETABLE(CHANGES ${meta.quoted}, ${since}) AS ct LEFT JOIN ${source} AS t ON ${join} `
      + `WHERE ${conds.join(' AND ')} ORDER BY ct.SYS_CHANGE_VERSION, ${ctKey.join(', ')}`;
    return { sql, params: params.list };
  }
}

function dataOnly(r: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(r)) if (!k.startsWith('__dovetail_ct_')) out[k] = v;
  return out;
}

export function createMssqlCtStrategy(table: TableConfig): CaptureStrategy {
  return new MssqlCtStrategy(table) as CaptureStrategy;
}
