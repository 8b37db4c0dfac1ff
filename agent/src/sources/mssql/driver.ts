/**
 * SQL Server source driver over an `mssql` ConnectionPool. Beyond SourceDriver it
 * offers what the SQL Server strategies need: typed parameters (queryTyped) and a
 * transaction at a chosen isolation level (transaction), both on the same pool.
 * The connection string is never logged or put into an error message.
 */
import { DovetailError } from '@dovetail/shared';
import type { SourceConfig } from '../../config/types.ts';
import type { Row, SourceDriver, Value } from '../types.ts';
import { classifySourceError } from '../errors.ts';
import { loadMssql, type MssqlApi, type MssqlPool, type MssqlRequest } from './api.ts';
import { bindParam, normalizeRow, selectList, type MssqlColumn, type ParamColumn } from './columns.ts';
import { mssqlDialect } from './dialect.ts';

export interface TypedParam {
  value: Value;
  column: ParamColumn;
}

/** A place to run typed statements: the pool, or one open transaction. */
export interface MssqlSession {
  /**
   * Run one statement whose parameters are @p1..@pn, in `params` order. `types`
   * (column name -> type) lets datetimeoffset text become ISO 8601.
   */
  query(sql: string, params?: readonly TypedParam[], types?: ReadonlyMap<string, string>): Promise<Row[]>;
}

export type Isolation = 'snapshot' | 'read-committed';

const APP_NAME = 'dovetail-agent';

/** "mssql://user:pass@host:1433/db?encrypt=true&trustServerCertificate=true" -> mssql config. */
export function parseMssqlUrl(url: string): Record<string, unknown> {
  const u = new URL(url);
  const options: Record<string, unknown> = {};
  for (const [k, v] of u.searchParams) {
    const val = v === 'true' ? true : v === 'false' ? false : v;
    if (k === 'instanceName' || k === 'encrypt' || k === 'trustServerCertificate') options[k] = val;
  }
  return {
    server: decodeURIComponent(u.hostname),
    ...(u.port ? { port: Number(u.port) } : {}),
    ...(u.username ? { user: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.pathname.length > 1 ? { database: decodeURIComponent(u.pathname.slice(1)) } : {}),
    options,
  };
}

function isConnectionError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'ConnectionError';
}

const DESCRIBE_SQL = `SELECT c.name AS name, TYPE_NAME(c.system_type_id) AS type_name, c.max_length AS max_length,
  c.precision AS precision, c.scale AS scale, c.is_nullable AS is_nullable, c.collation_name AS collation_name
FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(@p1) ORDER BY c.column_id`;

const COUNT_SQL = `SELECT CAST(OBJECT_ID(@p1) AS varchar(12)) AS object_id,
  (SELECT CAST(SUM(p.rows) AS varchar(20)) FROM sys.partitions AS p WHERE p.object_id = OBJECT_ID(@p1) AND p.index_id IN (0, 1)) AS row_count`;

/** `SELECT * FROM [a].[b]` (as the generic strategies write it); group 1 is the quoted table. */
const STAR_RE = /^\s*SELECT \* FROM ((?:\[(?:[^\]]|\]\])+\]\.){0,2}\[(?:[^\]]|\]\])+\])(?![.\w[])/i;

const NAME_PARAM: ParamColumn = { type: 'nvarchar', maxLength: 776 };

export class MssqlDriver implements SourceDriver {
  readonly kind = 'mssql';
  readonly dialect = mssqlDialect;
  readonly #config: SourceConfig;
  #api: MssqlApi | null;
  #pool: MssqlPool | null = null;
  readonly #described = new Map<string, MssqlColumn[]>();

  constructor(config: SourceConfig, api?: MssqlApi) {
    if (!Number.isInteger(config.maxConnections) || config.maxConnections < 1) {
      throw new RangeError(`source.maxConnections must be a positive integer, got ${config.maxConnections}`);
    }
    this.#config = config;
    this.#api = api ?? null;
  }

  #fail(err: unknown, op: string, table?: string): DovetailError {
    return classifySourceError(err, { op, source: 'mssql', ...(table !== undefined ? { table } : {}) }, { connectionLevel: isConnectionError(err) });
  }

  #poolConfig(api: MssqlApi): Record<string, unknown> {
    const url = this.#config.url;
    let cfg: Record<string, unknown>;
    try {
      cfg = /^(mssql|sqlserver):\/\//i.test(url) ? parseMssqlUrl(url) : api.ConnectionPool.parseConnectionString(url);
    } catch {
      // The parser's message may quote the string (and its password): say only where to look.
      throw new DovetailError('CONFIG_INVALID', 'source.url: not a valid SQL Server connection string (ADO "Server=...;Database=..." or mssql://user:pass@host:port/db)', { key: 'source.url' });
    }
    const options = { ...(cfg.options as Record<string, unknown> | undefined), appName: APP_NAME, useUTC: true };
    const pool = { ...(cfg.pool as Record<string, unknown> | undefined), max: this.#config.maxConnections, min: 0 };
    const timeout = this.#config.queryTimeoutMs > 0 ? { requestTimeout: this.#config.queryTimeoutMs } : {};
    return { ...cfg, ...timeout, options, pool };
  }

  async connect(): Promise<void> {
    if (this.#pool) return;
    let api = this.#api;
    if (!api) {
      try {
        api = await loadMssql();
      } catch (err) {
        throw new DovetailError('AGENT_SOURCE_DRIVER_MISSING', 'source.type mssql: the "mssql" package could not be loaded', {}, { cause: err });
      }
      this.#api = api;
    }
    const pool = new api.ConnectionPool(this.#poolConfig(api));
    // An idle connection dying (server restart) must not crash the agent; the next request reconnects.
    pool.on?.('error', () => {});
    try {
      await pool.connect();
    } catch (err) {
      await pool.close().catch(() => {});
      throw this.#fail(err, 'connect');
    }
    this.#pool = pool;
  }

  async close(): Promise<void> {
    const pool = this.#pool;
    this.#pool = null;
    if (pool) await pool.close().catch(() => {});
  }

  #ready(): { api: MssqlApi; pool: MssqlPool } {
    if (!this.#pool || !this.#api) throw new TypeError('MssqlDriver: call connect() first');
    return { api: this.#api, pool: this.#pool };
  }

  async #run(req: MssqlRequest, sql: string, types: ReadonlyMap<string, string> | undefined, op: string): Promise<Row[]> {
    try {
      const res = await req.query(sql);
      return (res.recordset ?? []).map((r) => normalizeRow(r, types));
    } catch (err) {
      throw this.#fail(err, op);
    }
  }

  #session(newRequest: () => MssqlRequest, api: MssqlApi): MssqlSession {
    return {
      query: (sql, params = [], types) => {
        const req = newRequest();
        params.forEach((p, i) => bindParam(req, `p${i + 1}`, p.value, p.column, api.TYPES, api.MAX));
        return this.#run(req, sql, types, 'query');
      },
    };
  }

  /**
   * Untyped parameters for generic strategies: numbers as INT/BIGINT/FLOAT, strings as
   * NVARCHAR(MAX). Compare against typed columns with dialect.typedParam(i, column).
   */
  async query(sql: string, params: readonly Value[] = []): Promise<Row[]> {
    const { api, pool } = this.#ready();
    const exact = await this.#exactStar(sql);
    const req = pool.request();
    params.forEach((v, i) => {
      const name = `p${i + 1}`;
      const T = api.TYPES;
      if (v === null) req.input(name, T.NVarChar(api.MAX), null);
      else if (typeof v === 'boolean') req.input(name, T.Bit(), v);
      else if (typeof v === 'number') {
        if (!Number.isInteger(v)) req.input(name, T.Float(), v);
        else if (v >= -2147483648 && v <= 2147483647) req.input(name, T.Int(), v);
        else req.input(name, T.BigInt(), String(v));
      } else req.input(name, T.NVarChar(api.MAX), v);
    });
    try {
      return await this.#run(req, exact?.sql ?? sql, exact?.types, 'query');
    } catch (err) {
      // A column added or dropped since describe(): describe again next time.
      if (exact) this.#described.delete(exact.table);
      throw err;
    }
  }

  /**
   * Generic strategies (cursor, diff, children) read `SELECT * FROM [schema].[table] ...`.
   * tedious would return decimals as floats and datetime2 as millisecond Dates, so the
   * star is replaced by the exact select-list of that table (described once, cached).
   */
  async #exactStar(sql: string): Promise<{ sql: string; types: Map<string, string>; table: string } | null> {
    const m = STAR_RE.exec(sql);
    if (!m) return null;
    const quoted = m[1]!;
    let cols = this.#described.get(quoted);
    if (!cols) {
      cols = await this.#describeQuoted(quoted, quoted);
      this.#described.set(quoted, cols);
    }
    return {
      sql: `SELECT ${selectList(cols)} FROM ${quoted}${sql.slice(m[0].length)}`,
      types: new Map(cols.map((c) => [c.name, c.type])),
      table: quoted,
    };
  }

  /** One statement with typed parameters @p1..@pn on the pool (autocommit). */
  queryTyped(sql: string, params: readonly TypedParam[] = [], types?: ReadonlyMap<string, string>): Promise<Row[]> {
    const { api, pool } = this.#ready();
    return this.#session(() => pool.request(), api).query(sql, params, types);
  }

  /**
   * Run `fn` inside one transaction at `isolation`; commit when it resolves, roll back
   * when it throws. SNAPSHOT needs ALLOW_SNAPSHOT_ISOLATION ON (error 3952 otherwise).
   */
  async transaction<T>(isolation: Isolation, fn: (s: MssqlSession) => Promise<T>): Promise<T> {
    const { api, pool } = this.#ready();
    const tx = new api.Transaction(pool);
    const level = isolation === 'snapshot' ? api.ISOLATION_LEVEL.SNAPSHOT : api.ISOLATION_LEVEL.READ_COMMITTED;
    try {
      await tx.begin(level);
    } catch (err) {
      throw this.#fail(err, `begin ${isolation} transaction`);
    }
    try {
      const out = await fn(this.#session(() => tx.request(), api));
      await tx.commit();
      return out;
    } catch (err) {
      // A server-side abort already ended the transaction; rollback then fails and says nothing new.
      await tx.rollback().catch(() => {});
      throw err instanceof DovetailError ? err : this.#fail(err, `${isolation} transaction`);
    }
  }

  describe(table: string): Promise<MssqlColumn[]> {
    return this.#describeQuoted(mssqlDialect.quoteTable(table), table);
  }

  async #describeQuoted(quoted: string, table: string): Promise<MssqlColumn[]> {
    const rows = await this.queryTyped(DESCRIBE_SQL, [{ value: quoted, column: NAME_PARAM }]);
    if (rows.length === 0) {
      throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `mssql source: table ${table} does not exist (or the login cannot see it)`, { source: 'mssql', table });
    }
    return rows.map((r) => {
      const raw = String(r.type_name);
      const type = raw === 'timestamp' ? 'rowversion' : raw;
      const bytes = Number(r.max_length);
      const wide = type === 'nchar' || type === 'nvarchar';
      return {
        name: String(r.name),
        type,
        nullable: r.is_nullable === true || r.is_nullable === 1,
        maxLength: bytes < 0 ? -1 : wide ? bytes / 2 : bytes,
        precision: Number(r.precision),
        scale: Number(r.scale),
        collation: r.collation_name === null ? null : String(r.collation_name),
      };
    });
  }

  async count(table: string): Promise<number> {
    const [row] = await this.queryTyped(COUNT_SQL, [{ value: mssqlDialect.quoteTable(table), column: NAME_PARAM }]);
    if (!row || row.object_id === null) {
      throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `mssql source: table ${table} does not exist (or the login cannot see it)`, { source: 'mssql', table });
    }
    return row.row_count === null ? 0 : Number(row.row_count);
  }
}

export function isMssqlDriver(d: SourceDriver): d is MssqlDriver {
  return d instanceof MssqlDriver;
}
