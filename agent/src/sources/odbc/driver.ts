/**
 * Source driver over the `odbc` package (unixODBC / Windows ODBC). Values are made
 * exact by SQL casts (see dialects.ts); this file adds what the package lacks:
 * bounded concurrency (each running ODBC call holds a libuv threadpool thread for
 * its whole duration), small long-data buffers, a tiny connection pool, and error
 * classification through ../errors.ts.
 */
import { PG_TYPE_NAMES } from '../pg-type-names.ts';
import { DovetailError } from '@dovetail/shared';
import type { SourceConfig } from '../../config/types.ts';
import type { ColumnInfo, Dialect, Row, SourceDriver, Value } from '../types.ts';
import { classifySourceError } from '../errors.ts';
import { ODBC_DIALECTS, INT_ALIAS_SUFFIX, TEXT_ALIAS_SUFFIX, selectExpr, selectList, splitTable, type OdbcDialectName } from './dialects.ts';
import type { OdbcColumn, OdbcConnection, OdbcModule, OdbcParam, OdbcResult } from './load.ts';

/**
 * libuv's default threadpool has 4 threads, shared with fs, dns.lookup, crypto and
 * LevelDB. A running ODBC statement blocks one of them until the database answers,
 * so at most 2 go to ODBC whatever source.maxConnections says; the rest of the
 * process (outbox writes, logging to files) never starves behind a slow query.
 */
export const MAX_CONCURRENT_ODBC_CALLS = 2;

/**
 * First buffer for each TEXT/BLOB value, grown by realloc when the value is longer.
 * The package default is 1 MiB per value: a 5,000-row page with one TEXT column
 * would reserve ~5 GiB. 4 KiB covers typical ERP notes in one SQLGetData call.
 */
export const LONG_DATA_INITIAL_BYTES = 4096;

/** How long describe() results back selectList(); a column added to a table is picked up after this. */
export const DESCRIBE_CACHE_MS = 60_000;

/** Login timeout when the config gives no query timeout. */
const DEFAULT_LOGIN_TIMEOUT_S = 10;

/** ODBC SQL types the package hands back as lossy JS numbers (NUMERIC, DECIMAL, FLOAT, REAL, DOUBLE). */
const INEXACT_NUMBER_TYPES = new Set([2, 3, 6, 7, 8]);
const SQL_BIT = -7;
/** CHAR, VARCHAR, WCHAR, WVARCHAR: bound with a fixed buffer of the reported size (4 bytes per character). */
const FIXED_BUFFER_TEXT_TYPES = new Set([1, 12, -8, -9]);

/**
 * The package binds (W)CHAR/(W)VARCHAR into columnSize*4+1 bytes and silently cuts
 * longer values. Databases that enforce declared lengths never hit that; SQLite does
 * not enforce them (VARCHAR(5) may hold 3,000 characters) and reports expressions as
 * VARCHAR(255). A value with more characters than the reported size that filled the
 * buffer was cut: fail rather than deliver it shortened.
 */
function checkNotTruncated(v: string, col: OdbcColumn): void {
  const size = col.columnSize ?? 0;
  // Cheap exits first: UTF-16 length >= code points, so v.length <= size means it fits.
  if (size <= 0 || v.length <= size) return;
  const bytes = Buffer.byteLength(v, 'utf8');
  if (bytes >= size * 4 - 3 && [...v].length > size) {
    throw new DovetailError(
      'AGENT_SOURCE_QUERY',
      `odbc source: a value of column ${col.name} is longer than the ${size} characters the ODBC driver reports for it and was cut ` +
        `by the odbc package; read it from a column declared TEXT/CLOB (SQLite) or one whose declared length holds the data`,
      { column: col.name, reportedSize: size, retryable: false },
    );
  }
}

/** Counting semaphore with a FIFO of waiters; callers are bounded by configured tables. */
class Semaphore {
  #free: number;
  readonly #waiters: Array<() => void> = [];
  constructor(permits: number) {
    this.#free = permits;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }
}

/** An error carrying the first ODBC diagnostic's SQLSTATE as `code`/`state` for classifySourceError. */
function diagnose(err: unknown): unknown {
  const diags = (err as { odbcErrors?: Array<{ state?: string; code?: number; message?: string }> } | null)?.odbcErrors;
  if (!Array.isArray(diags) || diags.length === 0) return err;
  const first = diags[0]!;
  const detail = diags.map((d) => `[${d.state ?? '?'}] ${d.message ?? ''}`.trim()).join('; ');
  return Object.assign(new Error(detail, { cause: err }), { code: first.state, state: first.state, nativeCode: first.code });
}

/** SQLSTATE class 08 and the driver manager's "could not load" states mean the connection itself is gone or unusable. */
function isConnectionState(err: unknown): boolean {
  const state = (err as { state?: unknown }).state;
  return typeof state === 'string' && (state.startsWith('08') || state === 'HYT01');
}

function hex(buf: ArrayBuffer): string {
  return `0x${Buffer.from(buf).toString('hex').toUpperCase()}`;
}

/** One value from the package -> the Row conventions in ../types.ts. */
export function convertValue(v: unknown, col: OdbcColumn | undefined): Value {
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case 'bigint':
      // BIGINT columns are decimal strings in every driver (values may exceed 2^53).
      return v.toString();
    case 'number':
      if (col && INEXACT_NUMBER_TYPES.has(col.dataType)) {
        throw new TypeError(
          `odbc: column ${col.name} is ${col.dataTypeName ?? `SQL type ${col.dataType}`} and the odbc package returns it as a float ` +
            `(${v}), which may have lost digits; select it through selectList()/driver.selectExpr() so it arrives as text`,
        );
      }
      return v;
    case 'string':
      if (col?.dataType === SQL_BIT) return v === '1';
      if (col && FIXED_BUFFER_TEXT_TYPES.has(col.dataType)) checkNotTruncated(v, col);
      return v;
    case 'boolean':
      return v;
    default:
      if (v instanceof ArrayBuffer) return hex(v);
      if (ArrayBuffer.isView(v)) return hex(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer);
      throw new TypeError(`odbc: unexpected ${typeof v} value in column ${col?.name ?? '?'}`);
  }
}

const SAFE_INT_TEXT = /^-?\d{1,16}$/;

/** Rows from the package -> Rows: values converted, marker aliases of cast columns (see dialects.ts) renamed back. */
export function convertRows(result: OdbcResult): Row[] {
  const cols = new Map((result.columns ?? []).map((c) => [c.name, c]));
  const out: Row[] = new Array(result.length);
  for (let i = 0; i < result.length; i++) {
    const src = result[i]!;
    const row: Row = {};
    for (const k of Object.keys(src)) {
      const v = convertValue(src[k], cols.get(k));
      if (k.endsWith(TEXT_ALIAS_SUFFIX)) {
        row[k.slice(0, -TEXT_ALIAS_SUFFIX.length)] = v;
      } else if (k.endsWith(INT_ALIAS_SUFFIX)) {
        const n = typeof v === 'string' && SAFE_INT_TEXT.test(v) ? Number(v) : NaN;
        row[k.slice(0, -INT_ALIAS_SUFFIX.length)] = Number.isSafeInteger(n) ? n : v;
      } else {
        row[k] = v;
      }
    }
    out[i] = row;
  }
  return out;
}

const IDENT = String.raw`(?:"(?:[^"]|"")+"|\`(?:[^\`]|\`\`)+\`|\[(?:[^\]]|\]\])+\]|[A-Za-z_][A-Za-z0-9_$]*)`;
/**
 * `SELECT * | col, col FROM table [WHERE|ORDER BY|LIMIT|FETCH|OFFSET ...]`: the statements
 * capture strategies build. Those get their select list replaced by the exact one; anything
 * else (joins, expressions, aggregates) runs as written, and a float the package produced
 * from it is refused by convertValue.
 */
const SIMPLE_SELECT = new RegExp(
  String.raw`^\s*SELECT\s+(\*|${IDENT}(?:\s*,\s*${IDENT})*)\s+FROM\s+(${IDENT}(?:\s*\.\s*${IDENT}){0,2})((?:\s+(?:WHERE|ORDER|LIMIT|FETCH|OFFSET)\b[\s\S]*)?)$`,
  'i',
);
const IDENT_G = new RegExp(IDENT, 'g');

function unquote(token: string): { name: string; bare: boolean } {
  const open = token[0];
  if (open === '"') return { name: token.slice(1, -1).replaceAll('""', '"'), bare: false };
  if (open === '`') return { name: token.slice(1, -1).replaceAll('``', '`'), bare: false };
  if (open === '[') return { name: token.slice(1, -1).replaceAll(']]', ']'), bare: false };
  return { name: token, bare: true };
}

/** Infer the dialect from DRIVER={...} when source.dialect is not set. */
export function inferDialect(connectionString: string): OdbcDialectName {
  const m = /(?:^|;)\s*driver\s*=\s*(\{[^}]*\}|[^;]*)/i.exec(connectionString);
  const driver = (m?.[1] ?? '').toLowerCase();
  if (/postgres|psqlodbc/.test(driver)) return 'postgres';
  if (/maria|mysql|maodbc/.test(driver)) return 'mysql';
  if (/sqlite/.test(driver)) return 'sqlite';
  if (/sql server|msodbcsql|sqlsrv|freetds|tdsodbc/.test(driver)) return 'mssql';
  return 'generic';
}

/** Driver-specific connection defaults, appended so anything the operator set wins (ODBC: first occurrence of a key wins). */
function withDefaults(connectionString: string, dialect: OdbcDialectName): string {
  if (dialect !== 'postgres') return connectionString;
  // psqlODBC reports boolean as varchar '1'/'0' unless told otherwise; SQL_BIT lets us return booleans.
  const sep = connectionString.trim().endsWith(';') || connectionString.trim() === '' ? '' : ';';
  return `${connectionString}${sep}BoolsAsChar=0;`;
}

/** Per-session settings the casts rely on. */
const SESSION_SQL: Partial<Record<OdbcDialectName, string[]>> = {
  // timestamptz/date ::text must be ISO whatever the server's DateStyle; bytea arrives binary anyway.
  postgres: ["SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'iso_8601'"],
  // MariaDB/MySQL strip CHAR padding on read unless asked not to; every driver keeps it
  // (GP-style padded keys must round-trip) and the mapping trims.
  mysql: ["SET SESSION sql_mode = CONCAT(@@sql_mode, ',PAD_CHAR_TO_FULL_LENGTH')"],
};

/** A character type that holds any COUNT(*) result, per dialect. */
const COUNT_CAST: Record<OdbcDialectName, string> = {
  postgres: 'text', mysql: 'CHAR', sqlite: 'TEXT', mssql: 'varchar(20)', generic: 'VARCHAR(20)',
};

export class OdbcDriver implements SourceDriver {
  readonly kind = 'odbc';
  readonly dialect: Dialect;
  readonly #odbc: OdbcModule;
  readonly #config: SourceConfig;
  readonly #dialectName: OdbcDialectName;
  readonly #connectionString: string;
  readonly #sem: Semaphore;
  readonly #maxConnections: number;
  readonly #idle: OdbcConnection[] = [];
  readonly #now: () => number;
  readonly #describeCache = new Map<string, { at: number; columns: ColumnInfo[] }>();
  #open = 0;
  #closed = false;

  constructor(odbc: OdbcModule, config: SourceConfig, opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
    if (!Number.isInteger(config.maxConnections) || config.maxConnections < 1) {
      throw new RangeError(`source.maxConnections must be a positive integer, got ${config.maxConnections}`);
    }
    if (typeof config.url !== 'string' || config.url.trim() === '') {
      throw new TypeError('source.url must be an ODBC connection string (e.g. "DRIVER={PostgreSQL Unicode};Server=...")');
    }
    this.#odbc = odbc;
    this.#config = config;
    this.#dialectName = config.dialect ?? inferDialect(config.url);
    this.dialect = ODBC_DIALECTS[this.#dialectName];
    this.#connectionString = withDefaults(config.url, this.#dialectName);
    this.#maxConnections = Math.min(config.maxConnections, MAX_CONCURRENT_ODBC_CALLS);
    this.#sem = new Semaphore(this.#maxConnections);
  }

  /** How many ODBC calls may run at once (min of source.maxConnections and MAX_CONCURRENT_ODBC_CALLS). */
  get concurrency(): number {
    return this.#maxConnections;
  }

  /** SQL expression reading `column` exactly through ODBC, aliased to its name. */
  selectExpr(column: ColumnInfo): string {
    return selectExpr(column, this.dialect);
  }

  /**
   * The exact SELECT list for `table` (or only `columns` of it), for statements query()
   * does not rewrite itself. Column types come from describe(), cached per table for
   * DESCRIBE_CACHE_MS so a page costs one query, not two.
   */
  async selectList(table: string, columns?: readonly string[]): Promise<string> {
    const all = await this.#describeCached(table);
    let chosen = all;
    if (columns) {
      chosen = columns.map((name) => {
        const c = all.find((x) => x.name === name) ?? all.find((x) => x.name.toLowerCase() === name.toLowerCase());
        if (!c) throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `odbc source: table ${table} has no column ${name}`, { table, column: name });
        return c;
      });
    }
    return selectList(chosen, this.dialect);
  }

  async #describeCached(table: string): Promise<ColumnInfo[]> {
    const now = this.#now();
    const hit = this.#describeCache.get(table);
    if (hit && now - hit.at < DESCRIBE_CACHE_MS) return hit.columns;
    const columns = await this.describe(table);
    this.#describeCache.set(table, { at: now, columns });
    return columns;
  }

  async connect(): Promise<void> {
    this.#closed = false;
    await this.#with('connect', undefined, async () => undefined);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const idle = this.#idle.splice(0);
    this.#open -= idle.length;
    await Promise.allSettled(idle.map((c) => c.close()));
  }

  async query(sql: string, params: readonly Value[] = []): Promise<Row[]> {
    return this.#run(await this.#exactSelect(sql), params, 'query');
  }

  /** Rewrite a simple single-table SELECT so every column is read exactly (see SIMPLE_SELECT). */
  async #exactSelect(sql: string): Promise<string> {
    const m = SIMPLE_SELECT.exec(sql);
    if (!m) return sql;
    const [, list, tableToken, rest] = m as unknown as [string, string, string, string];
    const table = (tableToken.match(IDENT_G) ?? []).map((t) => unquote(t).name).join('.');
    const columns = await this.#describeCached(table);
    let items: string;
    if (list.trim() === '*') {
      items = selectList(columns, this.dialect);
    } else {
      items = (list.match(IDENT_G) ?? []).map((token) => {
        const { name, bare } = unquote(token);
        const c = columns.find((x) => x.name === name) ?? (bare ? columns.find((x) => x.name.toLowerCase() === name.toLowerCase()) : undefined);
        return c ? selectExpr(c, this.dialect) : token;
      }).join(', ');
    }
    return `SELECT ${items} FROM ${tableToken}${rest}`;
  }

  async describe(table: string): Promise<ColumnInfo[]> {
    const parts = splitTable(table);
    const name = parts[parts.length - 1]!;
    const schema = parts.length >= 2 ? parts[parts.length - 2]! : null;
    let cols: ColumnInfo[];
    switch (this.#dialectName) {
      case 'postgres': {
        const rows = await this.#run(
          `SELECT column_name AS name, data_type AS type, is_nullable AS nullable FROM information_schema.columns
            WHERE table_schema = ${schema === null ? 'current_schema()' : '?'} AND table_name = ? ORDER BY ordinal_position`,
          schema === null ? [name] : [schema, name], 'describe', table);
        cols = rows.map((r) => {
          const t = String(r.type).toLowerCase();
          return { name: String(r.name), type: PG_TYPE_NAMES[t] ?? t, nullable: r.nullable === 'YES' };
        });
        break;
      }
      case 'mysql': {
        const rows = await this.#run(
          `SELECT column_name AS name, data_type AS type, column_type AS ctype, is_nullable AS nullable FROM information_schema.columns
            WHERE table_schema = ${schema === null ? 'DATABASE()' : '?'} AND table_name = ? ORDER BY ordinal_position`,
          schema === null ? [name] : [schema, name], 'describe', table);
        cols = rows.map((r) => {
          const t = String(r.type).toLowerCase();
          const unsigned = /unsigned/i.test(String(r.ctype));
          return { name: String(r.name), type: unsigned ? `${t} unsigned` : t, nullable: r.nullable === 'YES' };
        });
        break;
      }
      case 'sqlite': {
        const rows = await this.#run(
          `SELECT name, type, CAST("notnull" AS TEXT) AS nn FROM pragma_table_info(?${schema === null ? '' : ', ?'}) ORDER BY cid`,
          schema === null ? [name] : [name, schema], 'describe', table);
        cols = rows.map((r) => ({ name: String(r.name), type: String(r.type ?? '').toLowerCase(), nullable: r.nn === '0' }));
        break;
      }
      default: {
        // No portable information_schema: ask the driver's catalog (SQLColumns).
        const catalog = parts.length === 3 ? parts[0]! : null;
        const rows = await this.#with('describe', table, async (conn) => conn.columns(catalog, schema, name, null));
        cols = [...rows]
          .sort((a, b) => Number(a.ORDINAL_POSITION ?? 0) - Number(b.ORDINAL_POSITION ?? 0))
          .map((r) => ({
            name: String(r.COLUMN_NAME),
            type: String(r.TYPE_NAME ?? '').toLowerCase(),
            nullable: Number(r.NULLABLE) !== 0,
          }));
      }
    }
    if (cols.length === 0) {
      throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `odbc source: table ${table} does not exist (or the login cannot see it)`, { table });
    }
    return cols;
  }

  async count(table: string): Promise<number> {
    const rows = await this.#run(
      `SELECT CAST(COUNT(*) AS ${COUNT_CAST[this.#dialectName]}) AS n FROM ${this.dialect.quoteTable(table)}`, [], 'count', table);
    return Number(rows[0]?.n ?? 0);
  }

  #params(params: readonly Value[]): OdbcParam[] {
    return params.map((p, i) => {
      if (p === null || typeof p === 'string') return p;
      if (typeof p === 'boolean') return this.#dialectName === 'postgres' ? (p ? 'true' : 'false') : p ? 1 : 0;
      if (typeof p === 'number' && Number.isSafeInteger(p)) return p;
      throw new TypeError(`odbc: parameter ${i + 1} is ${String(p)}; pass non-integer numbers as decimal strings`);
    });
  }

  #options(): { timeout?: number; initialBufferSize: number } {
    const ms = this.#config.queryTimeoutMs;
    return ms > 0 ? { timeout: Math.ceil(ms / 1000), initialBufferSize: LONG_DATA_INITIAL_BYTES } : { initialBufferSize: LONG_DATA_INITIAL_BYTES };
  }

  async #run(sql: string, params: readonly Value[], op: string, table?: string): Promise<Row[]> {
    const bound = this.#params(params);
    const result = await this.#with(op, table, (conn) => conn.query(sql, bound, this.#options()));
    return convertRows(result);
  }

  /** Run fn on a pooled connection while holding one of the concurrency permits. */
  async #with<T>(op: string, table: string | undefined, fn: (conn: OdbcConnection) => Promise<T>): Promise<T> {
    if (this.#closed) throw new TypeError('odbc driver used after close()');
    await this.#sem.acquire();
    try {
      const conn = await this.#take(op, table);
      let healthy = true;
      try {
        return await fn(conn);
      } catch (err) {
        const e = diagnose(err);
        healthy = !isConnectionState(e);
        throw classifySourceError(e, { op, table, source: 'odbc' });
      } finally {
        this.#give(conn, healthy);
      }
    } finally {
      this.#sem.release();
    }
  }

  async #take(op: string, table: string | undefined): Promise<OdbcConnection> {
    const idle = this.#idle.pop();
    if (idle) return idle;
    const ms = this.#config.queryTimeoutMs;
    const loginTimeout = ms > 0 ? Math.ceil(ms / 1000) : DEFAULT_LOGIN_TIMEOUT_S;
    let conn: OdbcConnection;
    try {
      conn = await this.#odbc.connect({ connectionString: this.#connectionString, loginTimeout, connectionTimeout: loginTimeout });
    } catch (err) {
      throw classifySourceError(diagnose(err), { op: `${op} (connect)`, table, source: 'odbc' }, { connectionLevel: true });
    }
    this.#open++;
    try {
      for (const sql of SESSION_SQL[this.#dialectName] ?? []) await conn.query(sql, [], {});
    } catch (err) {
      this.#give(conn, false);
      throw classifySourceError(diagnose(err), { op: `${op} (session setup)`, table, source: 'odbc' }, { connectionLevel: true });
    }
    return conn;
  }

  #give(conn: OdbcConnection, healthy: boolean): void {
    if (healthy && !this.#closed) {
      this.#idle.push(conn);
      return;
    }
    this.#open--;
    conn.close().catch(() => undefined);
  }
}
