/**
 * PostgreSQL source driver over `pg`. Type parsers are set per pool (never on the
 * global pg.types) so every value follows the Row conventions in ../types.ts
 * exactly: no floats, no JS Dates, no trimming.
 */
import { PG_TYPE_NAMES } from '../pg-type-names.ts';
import pg from 'pg';
import { DovetailError, normalizeOffsetDateTime } from '@dovetail/shared';
import type { SourceConfig } from '../../config/types.ts';
import type { ColumnInfo, Dialect, Row, SourceDriver, Value } from '../types.ts';
import { classifySourceError } from '../errors.ts';

/** PostgreSQL type OIDs we parse specially; everything else stays server text. */
const OID = {
  bool: 16, bytea: 17, int8: 20, int2: 21, int4: 23, oid: 26, float4: 700, float8: 701,
  money: 790, date: 1082, timestamp: 1114, timestamptz: 1184, numeric: 1700,
} as const;

/** Default wait for a connection when the config gives no query timeout. */
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Fixed output formats the parsers rely on, whatever the server's defaults are.
 * TimeZone UTC: timestamptz holds an instant, not an offset, so printing it in UTC
 * loses nothing and makes the text independent of the server's configuration.
 */
const SESSION_SQL = "SET DateStyle = 'ISO, YMD'; SET bytea_output = 'hex'; SET IntervalStyle = 'iso_8601'; SET TimeZone = 'UTC'";

const identity = (s: string): string => s;

/** money prints with the lc_monetary symbol and separators ("$1,234.50", "-$3.00"); keep the exact digits. */
function parseMoney(s: string): string {
  const neg = s.includes('-') || (s.startsWith('(') && s.endsWith(')'));
  const digits = s.replace(/[^0-9.]/g, '');
  return neg ? `-${digits}` : digits;
}

/** timestamptz text "2024-01-02 03:04:05.123456+01" -> ISO with "+01:00"; infinity stays text. */
function parseTimestamptz(s: string): string {
  try {
    return normalizeOffsetDateTime(s);
  } catch {
    return s;
  }
}

const parsers: Record<number, (s: string) => Value> = {
  [OID.bool]: (s) => s === 't' || s === 'true',
  // bytea hex output "\x0a0b" -> "0x0A0B" (bytea_output=hex is forced on connect).
  [OID.bytea]: (s) => `0x${s.startsWith('\\x') ? s.slice(2).toUpperCase() : Buffer.from(s, 'latin1').toString('hex').toUpperCase()}`,
  // int8 may exceed 2^53: keep the decimal string.
  [OID.int8]: identity,
  [OID.int2]: (s) => Number(s),
  [OID.int4]: (s) => Number(s),
  [OID.oid]: (s) => Number(s),
  [OID.float4]: identity,
  [OID.float8]: identity,
  [OID.numeric]: identity,
  [OID.money]: parseMoney,
  [OID.date]: identity,
  [OID.timestamp]: identity,
  [OID.timestamptz]: parseTimestamptz,
};

/** Per-pool type set: text format only; unknown types (json, arrays, intervals) stay text. */
const pgTypes = {
  getTypeParser(oid: number, format?: string): (s: string) => Value {
    if (format === 'binary') throw new RangeError('binary result format is not used by this driver');
    return parsers[oid] ?? identity;
  },
};

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export const postgresDialect: Dialect = {
  name: 'postgres',
  quoteIdent,
  quoteTable(name: string): string {
    return name.split('.').map(quoteIdent).join('.');
  },
  param(i: number): string {
    if (!Number.isInteger(i) || i < 1) throw new RangeError(`parameter index must be >= 1, got ${i}`);
    return `$${i}`;
  },
  limit(sql: string, n: number): string {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`limit must be a positive integer, got ${n}`);
    return `${sql} LIMIT ${n}`;
  },
};

function splitTable(table: string): { schema: string | null; name: string } {
  const parts = table.split('.');
  if (parts.length === 1) return { schema: null, name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  throw new TypeError(`table name must be "table" or "schema.table", got ${JSON.stringify(table)}`);
}

/** A pg error that is not a server (DatabaseError) response came from the transport/client. */
function isServerError(err: unknown): boolean {
  return err instanceof pg.DatabaseError;
}

export class PostgresDriver implements SourceDriver {
  readonly kind = 'postgres';
  readonly dialect = postgresDialect;
  #pool: pg.Pool | null = null;
  readonly #sessions = new WeakSet<pg.PoolClient>();
  readonly #config: SourceConfig;

  constructor(config: SourceConfig) {
    if (!Number.isInteger(config.maxConnections) || config.maxConnections < 1) {
      throw new RangeError(`source.maxConnections must be a positive integer, got ${config.maxConnections}`);
    }
    this.#config = config;
  }

  #fail(err: unknown, op: string, table?: string): DovetailError {
    return classifySourceError(err, { op, source: 'postgres', ...(table !== undefined ? { table } : {}) }, { connectionLevel: !isServerError(err) });
  }

  async connect(): Promise<void> {
    if (this.#pool) return;
    const timeout = this.#config.queryTimeoutMs > 0 ? this.#config.queryTimeoutMs : 0;
    const pool = new pg.Pool({
      connectionString: this.#config.url,
      max: this.#config.maxConnections,
      types: pgTypes,
      connectionTimeoutMillis: timeout || DEFAULT_CONNECT_TIMEOUT_MS,
      ...(timeout ? { statement_timeout: timeout } : {}),
    });
    // An idle client dying (server restart) must not crash the agent; the next query reconnects.
    pool.on('error', () => {});
    this.#pool = pool;
    try {
      const client = await this.#client('connect');
      client.release();
    } catch (err) {
      this.#pool = null;
      await pool.end().catch(() => {});
      throw err;
    }
  }

  /** A pooled client with the session settings applied (once per physical connection). */
  async #client(op: string, table?: string): Promise<pg.PoolClient> {
    const pool = this.#requirePool();
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      // Message names the operation only: pg messages never contain the password, and we never add the URL.
      throw classifySourceError(err, { op, source: 'postgres', ...(table !== undefined ? { table } : {}) }, { connectionLevel: !isServerError(err) });
    }
    if (!this.#sessions.has(client)) {
      try {
        await client.query(SESSION_SQL);
      } catch (err) {
        client.release(true);
        throw this.#fail(err, op, table);
      }
      this.#sessions.add(client);
    }
    return client;
  }

  async close(): Promise<void> {
    const pool = this.#pool;
    this.#pool = null;
    if (pool) await pool.end();
  }

  #requirePool(): pg.Pool {
    if (!this.#pool) throw new TypeError('postgres driver used before connect()');
    return this.#pool;
  }

  async query(sql: string, params: readonly Value[] = []): Promise<Row[]> {
    return this.#run(sql, params, 'query');
  }

  async #run(sql: string, params: readonly Value[], op: string, table?: string): Promise<Row[]> {
    const client = await this.#client(op, table);
    let res: pg.QueryResult;
    try {
      res = await client.query({ text: sql, values: params as Value[] });
    } catch (err) {
      // A server error (bad SQL, permission) leaves the connection healthy: keep it. Discarding
      // it would make the next query reconnect, which a one-connection server (the demo's
      // PGlite socket) may refuse until it has noticed the old socket closed.
      client.release(isServerError(err) ? undefined : true);
      throw this.#fail(err, op, table);
    }
    client.release();
    return res.rows as Row[];
  }

  async describe(table: string): Promise<ColumnInfo[]> {
    const { schema, name } = splitTable(table);
    const rows = await this.#run(
      `SELECT column_name, data_type, is_nullable FROM information_schema.columns
        WHERE table_schema = ${schema === null ? 'current_schema()' : '$2'} AND table_name = $1
        ORDER BY ordinal_position`,
      schema === null ? [name] : [name, schema],
      'describe', table,
    );
    if (rows.length === 0) {
      throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `postgres source: table ${table} does not exist (or the login cannot see it)`, { table });
    }
    return rows.map((r) => {
      const t = String(r.data_type).toLowerCase();
      return { name: String(r.column_name), type: PG_TYPE_NAMES[t] ?? t, nullable: r.is_nullable === 'YES' };
    });
  }

  async count(table: string): Promise<number> {
    const rows = await this.#run(`SELECT count(*) AS n FROM ${postgresDialect.quoteTable(table)}`, [], 'count', table);
    return Number(rows[0]?.n ?? 0);
  }
}

export function createPostgresDriver(config: SourceConfig): SourceDriver {
  return new PostgresDriver(config);
}
