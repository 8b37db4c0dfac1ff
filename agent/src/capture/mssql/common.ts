/**
 * Pieces shared by mssql-ct and mssql-cdc: typed parameters, keyset predicates over
 * typed key columns, the chunked snapshot page, and the onGap decision.
 */
import { DovetailError } from '@dovetail/shared';
import type { TableConfig } from '../../config/types.ts';
import type { Row, SourceDriver, Value } from '../../sources/types.ts';
import { isMssqlDriver, type MssqlDriver, type MssqlSession, type TypedParam } from '../../sources/mssql/driver.ts';
import { selectList, quoteIdent, type MssqlColumn, type ParamColumn } from '../../sources/mssql/columns.ts';
import { mssqlDialect } from '../../sources/mssql/dialect.ts';
import type { PollResult, RowChange } from '../types.ts';
import { hasChildren, keyJson, keyValues, loadChildren } from '../sql.ts';

export const INT_PARAM: ParamColumn = { type: 'int' };
export const BIGINT_PARAM: ParamColumn = { type: 'bigint' };
export const LSN_PARAM: ParamColumn = { type: 'binary', maxLength: 10 };
export const NAME_PARAM: ParamColumn = { type: 'nvarchar', maxLength: 776 };

/** Collects typed parameters and hands out @p1, @p2, ... */
export class TypedParams {
  readonly list: TypedParam[] = [];
  add(value: Value, column: ParamColumn): string {
    this.list.push({ value, column });
    return `@p${this.list.length}`;
  }
}

/** `a > @x OR (a = @x AND b > @y) OR ...` (T-SQL has no row-value comparison). */
export function keysetAfter(exprs: readonly string[], cols: readonly ParamColumn[], values: readonly Value[], params: TypedParams): string {
  if (exprs.length === 0 || exprs.length !== values.length || cols.length !== values.length) {
    throw new RangeError('keysetAfter needs one value and one column type per expression');
  }
  const ors: string[] = [];
  for (let i = 0; i < exprs.length; i++) {
    const ands: string[] = [];
    for (let j = 0; j < i; j++) ands.push(`${exprs[j]} = ${params.add(values[j]!, cols[j]!)}`);
    ands.push(`${exprs[i]} > ${params.add(values[i]!, cols[i]!)}`);
    ors.push(ands.length === 1 ? ands[0]! : `(${ands.join(' AND ')})`);
  }
  return ors.length === 1 ? ors[0]! : `(${ors.join(' OR ')})`;
}

export function requireMssql(driver: SourceDriver, strategy: string, table: TableConfig): MssqlDriver {
  if (!isMssqlDriver(driver)) {
    throw new TypeError(`table ${table.name}: strategy ${strategy} needs source.type mssql, the source is ${driver.kind}`);
  }
  return driver;
}

/** What a strategy knows about its table after describe(). */
export interface TableMeta {
  quoted: string;
  columns: MssqlColumn[];
  keyCols: MssqlColumn[];
  types: Map<string, string>;
}

export async function describeTable(driver: MssqlDriver, table: TableConfig): Promise<TableMeta> {
  if (table.key.length === 0) throw new TypeError(`table ${table.name}: needs key columns`);
  const columns = await driver.describe(table.table);
  const keyCols = table.key.map((k) => {
    const c = columns.find((x) => x.name === k) ?? columns.find((x) => x.name.toLowerCase() === k.toLowerCase());
    if (!c) {
      throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `table ${table.name}: key column ${k} does not exist in ${table.table}`, { table: table.name, column: k });
    }
    return c;
  });
  return { quoted: mssqlDialect.quoteTable(table.table), columns, keyCols, types: new Map(columns.map((c) => [c.name, c.type])) };
}

export function keyOf(row: Row, meta: TableMeta, table: TableConfig): Row {
  const out: Row = {};
  meta.keyCols.forEach((c, i) => { out[table.key[i]!] = row[c.name] ?? null; });
  return out;
}

/** Snapshot progress kept in a position: resumable by the last key. */
export interface SnapshotState {
  after: Value[] | null;
  done: number;
  total: number;
}

/** One keyset page of the table, exact values, key params typed after the key columns. */
export function snapshotPage(session: MssqlSession, table: TableConfig, meta: TableMeta, after: Value[] | null, limit: number): Promise<Row[]> {
  const params = new TypedParams();
  const top = params.add(limit, INT_PARAM);
  const conds: string[] = [];
  if (table.where) conds.push(`(${table.where})`);
  if (after) conds.push(keysetAfter(meta.keyCols.map((c) => `t.${quoteIdent(c.name)}`), meta.keyCols, after, params));
  const where = conds.length ? ` WHERE ${conds.join(' AND ')}` : '';
  const order = meta.keyCols.map((c) => `t.${quoteIdent(c.name)}`).join(', ');
  const sql = `SELECT TOP (${top}) ${selectList(meta.columns, 't')} FROM ${meta.quoted} AS t${where} ORDER BY ${order}`;
  return session.query(sql, params.list, meta.types);
}

/** Upserts for rows, with children (order lines...) when the table maps them. */
export async function upserts(driver: SourceDriver, table: TableConfig, meta: TableMeta, rows: Row[], position: (r: Row) => string, occurredAt?: (r: Row) => string | null): Promise<RowChange[]> {
  const kids = hasChildren(table) && rows.length > 0 ? await loadChildren(driver, table, rows) : null;
  return rows.map((r) => {
    const change: RowChange = { op: 'upsert', key: keyOf(r, meta, table), row: r, position: position(r) };
    if (kids) {
      const c = kids.get(keyJson(keyValues(r, table.key, table.table)));
      if (c) change.children = c;
    }
    if (occurredAt) change.occurredAt = occurredAt(r);
    return change;
  });
}

/**
 * The position is no longer valid (CT min valid version / CDC cleanup passed it).
 * Reported as phase 'gap' either way; onGap decides what happens next:
 * resnapshot -> commit the fresh-snapshot position and poll on (more: true);
 * stop -> keep the old position, the runner pauses the table until a resync.
 */
export function gapResult<P>(table: TableConfig, current: P, fresh: P): PollResult<P> {
  if (table.onGap === 'stop') return { changes: [], position: current, stateOps: [], more: false, phase: 'gap' };
  return { changes: [], position: fresh, stateOps: [], more: true, phase: 'gap' };
}

export function notConfigured(table: TableConfig, message: string, context: Record<string, unknown> = {}): DovetailError {
  return new DovetailError('AGENT_SOURCE_NOT_CONFIGURED', `table ${table.name}: ${message}`, { table: table.name, ...context });
}
