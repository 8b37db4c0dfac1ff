/**
 * SQL building blocks shared by the capture strategies: parameter lists, keyset
 * ("seek") predicates, key extraction, row hashing and child loading. Values always
 * travel as parameters; only configured identifiers are spliced (quoted) into SQL.
 */
import { createHash } from 'node:crypto';
import { DovetailError } from '@dovetail/shared';
import type { ChildConfig, TableConfig } from '../config/types.ts';
import type { Dialect, Row, SourceDriver, Value } from '../sources/types.ts';

/** Children are loaded for at most this many parents per statement (SQL Server allows 2100 parameters). */
export const CHILD_PARENTS_PER_QUERY = 500;

/** Collects parameters and hands out the dialect's placeholder for each. */
export class Params {
  readonly values: Value[] = [];
  constructor(private readonly dialect: Dialect) {}
  add(v: Value): string {
    this.values.push(v);
    return this.dialect.param(this.values.length);
  }
}

/** Dialects whose SQL compares row values, `(a, b) > (x, y)`, lexicographically. */
function hasRowValues(d: Dialect): boolean {
  return d.name === 'postgres' || d.name === 'mysql' || d.name === 'sqlite';
}

/**
 * `(c1, c2, ...) > (v1, v2, ...)` for a seek past the last row of a page. Dialects
 * without row-value comparison get the equivalent OR expansion:
 * `c1 > v1 OR (c1 = v1 AND c2 > v2) OR ...`. `exprs[i]` may wrap the placeholder
 * (e.g. a binary conversion for rowversion).
 */
export function seekAfter(d: Dialect, cols: readonly string[], values: readonly Value[], params: Params, wrap: (i: number, ph: string) => string = (_i, ph) => ph): string {
  if (cols.length !== values.length || cols.length === 0) throw new RangeError('seekAfter needs one value per column');
  const q = cols.map((c) => d.quoteIdent(c));
  if (hasRowValues(d)) {
    if (q.length === 1) return `${q[0]} > ${wrap(0, params.add(values[0]!))}`;
    return `(${q.join(', ')}) > (${values.map((v, i) => wrap(i, params.add(v))).join(', ')})`;
  }
  const ors: string[] = [];
  for (let i = 0; i < q.length; i++) {
    const ands: string[] = [];
    for (let j = 0; j < i; j++) ands.push(`${q[j]} = ${wrap(j, params.add(values[j]!))}`);
    ands.push(`${q[i]} > ${wrap(i, params.add(values[i]!))}`);
    ors.push(ands.length === 1 ? ands[0]! : `(${ands.join(' AND ')})`);
  }
  return `(${ors.join(' OR ')})`;
}

/** `WHERE a AND b` from the non-empty conditions, or "". */
export function whereClause(conds: readonly (string | undefined | null)[]): string {
  const c = conds.filter((x): x is string => typeof x === 'string' && x.trim() !== '');
  return c.length === 0 ? '' : ` WHERE ${c.map((x) => `(${x})`).join(' AND ')}`;
}

/**
 * A column of a row by its configured name. Drivers return names as the database
 * spells them; SQL Server and ODBC are case-insensitive, so fall back to that.
 */
export function col(row: Row, name: string, table: string): Value {
  if (Object.prototype.hasOwnProperty.call(row, name)) return row[name]!;
  const lower = name.toLowerCase();
  for (const k of Object.keys(row)) if (k.toLowerCase() === lower) return row[k]!;
  throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `table ${table}: column ${name} is not in the result`, { table, column: name });
}

export function keyValues(row: Row, key: readonly string[], table: string): Value[] {
  return key.map((k) => col(row, k, table));
}

export function keyRow(values: readonly Value[], key: readonly string[]): Row {
  const r: Row = {};
  key.forEach((k, i) => { r[k] = values[i] ?? null; });
  return r;
}

/** Exact, order-stable text of key values (JSON keeps strings/numbers/booleans exactly). */
export function keyJson(values: readonly Value[]): string {
  return JSON.stringify(values);
}

function stableRow(row: Row): [string, Value][] {
  return Object.keys(row).sort().map((k) => [k, row[k]!]);
}

export type RowHasher = (row: Row, children?: Record<string, Row[]>) => string;

/** Columns a mapping reads (plain, computed and joined fields); sorted for a stable hash. */
function mappedColumns(keys: readonly string[], map: TableConfig['map']): string[] {
  const cols = new Set<string>(keys);
  for (const fm of Object.values(map)) {
    if (fm.column !== undefined) cols.add(fm.column);
    for (const c of fm.subtract ?? []) cols.add(c);
    for (const c of fm.columns ?? []) cols.add(c);
  }
  return [...cols].sort();
}

/**
 * Content hash of what the mapping reads from a row and its children: what "changed"
 * means for diff and cursor dedupe. Columns no mapping uses are left out, so a change
 * to one of them (or a table mapped to two entities, each reading its own columns)
 * sends no identical event again.
 */
export function rowHasher(table: TableConfig): RowHasher {
  // A table with no mapping (tests, tools) compares whole rows.
  const cols = Object.keys(table.map).length ? mappedColumns(table.key, table.map) : null;
  const childCols = new Map(Object.entries(table.children).filter(([, c]) => Object.keys(c.map).length).map(([name, c]) => [name, mappedColumns(c.parentKey, c.map)]));
  const pick = (row: Row, names: readonly string[]) => JSON.stringify(names.map((c) => row[c] ?? null));
  return (row, children) => {
    const h = createHash('sha256');
    h.update(cols ? pick(row, cols) : JSON.stringify(stableRow(row)));
    if (children) {
      for (const name of Object.keys(children).sort()) {
        const names = childCols.get(name);
        h.update(`\u0000${name}`);
        for (const c of children[name]!) h.update(`\u0001${names ? pick(c, names) : JSON.stringify(stableRow(c))}`);
      }
    }
    // 128 bits: collisions are not a practical concern and the position/state stay small.
    return h.digest('hex').slice(0, 32);
  };
}

/** One keyset page of a table (or a where-filtered part of it), ordered by key. */
export async function scanPage(driver: SourceDriver, table: TableConfig, after: readonly Value[] | null, limit: number): Promise<Row[]> {
  const d = driver.dialect;
  const params = new Params(d);
  const conds = [table.where, after ? seekAfter(d, table.key, after, params) : null];
  const sql = `SELECT * FROM ${d.quoteTable(table.table)}${whereClause(conds)} ORDER BY ${table.key.map((k) => d.quoteIdent(k)).join(', ')}`;
  return driver.query(d.limit(sql, limit), params.values);
}

/**
 * Child rows (e.g. order lines) for a page of parents, grouped by parent key JSON and
 * then by child name, each list ordered by the child's orderBy. One statement per
 * child per CHILD_PARENTS_PER_QUERY parents.
 */
export async function loadChildren(driver: SourceDriver, table: TableConfig, parents: readonly Row[]): Promise<Map<string, Record<string, Row[]>>> {
  const out = new Map<string, Record<string, Row[]>>();
  const names = Object.keys(table.children ?? {});
  if (names.length === 0 || parents.length === 0) return out;
  const parentKeys = parents.map((p) => keyValues(p, table.key, table.table));
  for (const pk of parentKeys) {
    const rec: Record<string, Row[]> = {};
    for (const n of names) rec[n] = [];
    out.set(keyJson(pk), rec);
  }
  for (const name of names) {
    const child = table.children[name]!;
    if (child.parentKey.length !== table.key.length) {
      throw new RangeError(`table ${table.name}: child ${name} parentKey must name ${table.key.length} column(s), one per parent key column`);
    }
    for (let i = 0; i < parentKeys.length; i += CHILD_PARENTS_PER_QUERY) {
      const rows = await childQuery(driver, child, parentKeys.slice(i, i + CHILD_PARENTS_PER_QUERY));
      for (const r of rows) {
        const pk = keyJson(keyValues(r, child.parentKey, child.table));
        out.get(pk)?.[name]!.push(r);
      }
    }
  }
  return out;
}

async function childQuery(driver: SourceDriver, child: ChildConfig, parentKeys: readonly Value[][]): Promise<Row[]> {
  const d = driver.dialect;
  const params = new Params(d);
  const cols = child.parentKey.map((c) => d.quoteIdent(c));
  const match = cols.length === 1
    ? `${cols[0]} IN (${parentKeys.map((k) => params.add(k[0]!)).join(', ')})`
    : parentKeys.map((k) => `(${cols.map((c, i) => `${c} = ${params.add(k[i]!)}`).join(' AND ')})`).join(' OR ');
  const order = [...child.parentKey, ...child.orderBy].map((c) => d.quoteIdent(c)).join(', ');
  const sql = `SELECT * FROM ${d.quoteTable(child.table)}${whereClause([child.where, match])} ORDER BY ${order}`;
  return driver.query(sql, params.values);
}

export function hasChildren(table: TableConfig): boolean {
  return Object.keys(table.children ?? {}).length > 0;
}
