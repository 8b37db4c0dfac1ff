/**
 * SQL for the databases an ODBC DSN can point at, and the one rule that makes ODBC
 * values exact: every column whose type the `odbc` package would turn into a JS
 * number, bigint or reformatted datetime is CAST to character data IN SQL, so the
 * package only ever sees text the database printed itself.
 *
 * Why in SQL: the package parses NUMERIC/DECIMAL with atof (-999.99 -> -999.9 and
 * 30-digit values 10x off were reported), binds FLOAT/DOUBLE as C doubles, BIGINT as a
 * signed int64 (MariaDB's BIGINT UNSIGNED max -> -1n), SQLite INTEGER as a 32-bit int,
 * and lets psqlODBC drop a timestamptz offset. None of that is repairable afterwards.
 */
import type { ColumnInfo, Dialect } from '../types.ts';

export type OdbcDialectName = 'postgres' | 'mysql' | 'sqlite' | 'mssql' | 'generic';

/** ODBC binds parameters positionally with "?" whatever the database behind the DSN. */
function param(i: number): string {
  if (!Number.isInteger(i) || i < 1) throw new RangeError(`parameter index must be >= 1, got ${i}`);
  return '?';
}

function checkLimit(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`limit must be a positive integer, got ${n}`);
}

function quoter(open: string, close: string): (name: string) => string {
  return (name: string) => {
    if (typeof name !== 'string' || name.length === 0 || name.includes('\0')) {
      throw new TypeError(`invalid SQL identifier ${JSON.stringify(name)}`);
    }
    return `${open}${name.split(close).join(close + close)}${close}`;
  };
}

function makeDialect(name: OdbcDialectName, quoteIdent: (n: string) => string, limit: (sql: string, n: number) => string): Dialect {
  return {
    name,
    quoteIdent,
    quoteTable: (table: string) => splitTable(table).map(quoteIdent).join('.'),
    param,
    limit: (sql: string, n: number) => {
      checkLimit(n);
      return limit(sql, n);
    },
  };
}

const limitClause = (sql: string, n: number): string => `${sql} LIMIT ${n}`;

export const ODBC_DIALECTS: Record<OdbcDialectName, Dialect> = {
  postgres: makeDialect('postgres', quoter('"', '"'), limitClause),
  mysql: makeDialect('mysql', quoter('`', '`'), limitClause),
  sqlite: makeDialect('sqlite', quoter('"', '"'), limitClause),
  // OFFSET/FETCH needs the ORDER BY that Dialect.limit callers always give.
  mssql: makeDialect('mssql', quoter('[', ']'), (sql, n) => `${sql} OFFSET 0 ROWS FETCH NEXT ${n} ROWS ONLY`),
  // SQL:2008 row limiting: DB2, Oracle 12c+, Firebird 3+, Informix, recent others.
  generic: makeDialect('generic', quoter('"', '"'), (sql, n) => `${sql} FETCH FIRST ${n} ROWS ONLY`),
};

/** "schema.table" -> ["schema", "table"]; at most catalog.schema.table. */
export function splitTable(table: string): string[] {
  if (typeof table !== 'string' || table.length === 0) throw new TypeError(`invalid table name ${JSON.stringify(table)}`);
  const parts = table.split('.');
  if (parts.length > 3 || parts.some((p) => p.length === 0)) {
    throw new TypeError(`table name must be "table", "schema.table" or "catalog.schema.table", got ${JSON.stringify(table)}`);
  }
  return parts;
}

/**
 * Cast columns are aliased "<name>~dv" (text) or "<name>~di" (integer text: a number
 * when it is a safe integer), and the driver renames them back to <name> after the
 * fetch. Aliasing them to <name> itself would make `ORDER BY <name>` sort the TEXT
 * (output columns win over table columns in ORDER BY): "10" before "9", broken keyset paging.
 */
export const TEXT_ALIAS_SUFFIX = '~dv';
export const INT_ALIAS_SUFFIX = '~di';

/** How a column must be read to arrive exact. */
export type ReadAs =
  | 'raw' // exact through the package as it is (small ints, text, binary, bool)
  | 'text' // cast to the database's own text form
  | 'int' // an integer the package would truncate (SQLite's 64-bit INTEGER, MySQL unsigned): text, then a number when safe
  | 'money' // PostgreSQL money: via numeric, its text form carries currency symbols
  | 'timestamptz'; // PostgreSQL timestamptz: ISO 8601 with the offset kept

/**
 * Decide per dialect and (lower-case) type name. Type names are those describe()
 * reports: PostgreSQL short names (int8, float4, timestamptz, varchar) or
 * information_schema spellings, MySQL data_type (+ " unsigned"), SQLite declared types.
 */
export function readAs(dialect: OdbcDialectName, type: string): ReadAs {
  const t = type.toLowerCase().trim();
  switch (dialect) {
    case 'postgres': {
      // int2/int4 bind as C short/long (exact); bool arrives as SQL_BIT (BoolsAsChar=0); bytea as
      // binary; text is SQL_LONGVARCHAR, read with SQLGetData whatever its length; char(n) has an
      // exact reported size (and ::text would trim its padding).
      if (/^(smallint|integer|int|int2|int4|boolean|bool|bytea|text|character|char|bpchar)$/.test(t)) return 'raw';
      if (t === 'money') return 'money';
      if (t === 'timestamptz' || t === 'timestamp with time zone') return 'timestamptz';
      // numeric, int8, float4/8, date/time kinds, uuid, json, arrays, enums, intervals, and
      // varchar (psqlODBC reports unbounded varchar as 255 wide and the package truncates to that):
      // text keeps them exact and is fetched with SQLGetData, so no size guess truncates it.
      return 'text';
    }
    case 'mysql': {
      if (t.startsWith('bigint') && t.includes('unsigned')) return 'text';
      // TINYINT..INT UNSIGNED bind as signed C types of the same width (65535 -> -1); they all fit 2^53.
      if (t.includes('unsigned') && /int/.test(t)) return 'int';
      if (t.includes('unsigned')) return 'text';
      if (/^(tinyint|smallint|mediumint|int|integer)$/.test(t)) return 'raw';
      if (/(char|text|blob|binary|enum|set|json)/.test(t)) return 'raw';
      // bigint, decimal, float, double, date, datetime, timestamp, time, year, bit, geometry.
      return 'text';
    }
    case 'sqlite': {
      // SQLite stores what it is given; only TEXT and BLOB affinity columns are safe raw
      // (INTEGER values are 64-bit but the ODBC driver reports SQL_INTEGER = 32 bits).
      if (/(char|clob|text)/.test(t) && !/int/.test(t)) return 'raw';
      if (t === 'blob') return 'raw';
      // Declared BIGINT/INT8 is a decimal string like every driver's int8; other INT affinity is a number when it fits.
      if (/int/.test(t)) return /big|int8/.test(t) ? 'text' : 'int';
      return 'text';
    }
    case 'mssql':
    case 'generic': {
      if (/^(smallint|int|integer|tinyint|bit|boolean)$/.test(t)) return 'raw';
      if (/(char|text|clob|binary|blob|image|xml|uniqueidentifier|graphic)/.test(t)) return 'raw';
      return 'text';
    }
  }
}

/** SQL expression reading `column` exactly; cast columns carry a marker alias the driver strips. */
export function selectExpr(column: ColumnInfo, dialect: Dialect): string {
  const name = dialect.name as OdbcDialectName;
  const q = dialect.quoteIdent(column.name);
  const how = readAs(name, column.type);
  if (how === 'raw') return q;
  const as = `AS ${dialect.quoteIdent(column.name + (how === 'int' ? INT_ALIAS_SUFFIX : TEXT_ALIAS_SUFFIX))}`;
  return `${castExpr(name, q, column.type.toLowerCase(), how)} ${as}`;
}

function castExpr(name: OdbcDialectName, q: string, t: string, how: ReadAs): string {
  switch (name) {
    case 'postgres':
      if (how === 'money') return `(${q})::numeric::text`;
      // DateStyle ISO is set per session; turn "2024-01-02 03:04:05.5+05:30" / "...+00" into
      // ISO 8601 with a full offset, the same text the pg driver produces.
      if (how === 'timestamptz') return `regexp_replace(replace((${q})::text, ' ', 'T'), '([+-][0-9]{2})$', '\\1:00')`;
      return `(${q})::text`;
    case 'mysql':
      // DATETIME(6)/TIME(3) print every fraction digit ("...:59.000000"); PostgreSQL and the pg
      // driver print none when the fraction is zero. Drop only an all-zero fraction.
      if (/^(datetime|timestamp|time)$/.test(t)) return `REGEXP_REPLACE(CAST(${q} AS CHAR), '[.]0+$', '')`;
      return `CAST(${q} AS CHAR)`;
    case 'sqlite':
      return `CAST(${q} AS TEXT)`;
    case 'mssql':
      // Style 121 = ODBC canonical "yyyy-mm-dd hh:mi:ss.fffffff" (naive); 127 = ISO 8601 with offset.
      if (t === 'datetimeoffset') return `CONVERT(varchar(40), ${q}, 127)`;
      if (/^(datetime|datetime2|smalldatetime|date|time)$/.test(t)) return `CONVERT(varchar(40), ${q}, 121)`;
      return `CAST(${q} AS varchar(100))`;
    case 'generic':
      return `CAST(${q} AS VARCHAR(100))`;
  }
}

/**
 * The SELECT list for `columns` (from describe()) in which every value arrives exact
 * through OdbcDriver.query(): `"id", ("amount")::text AS "amount~dv", ...`. The driver
 * applies it itself to simple `SELECT *|cols FROM table ...` statements.
 */
export function selectList(columns: readonly ColumnInfo[], dialect: Dialect): string {
  if (columns.length === 0) throw new RangeError('selectList needs at least one column');
  return columns.map((c) => selectExpr(c, dialect)).join(', ');
}
