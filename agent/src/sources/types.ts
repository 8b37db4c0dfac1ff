/**
 * The seam between capture strategies and database drivers. A driver returns rows
 * whose values are already exact (see Row); strategies build SQL through the Dialect
 * and never concatenate values into it.
 */

/**
 * Values as a driver must return them:
 * - integers that fit a JS safe integer: number; bigint/int8 and anything larger: decimal string
 * - numeric/decimal/money/real/float: exact decimal string as the database prints it
 * - naive date/datetime: "YYYY-MM-DD" / "YYYY-MM-DD HH:MM:SS[.fffffff]" text, never a JS Date
 * - datetime with offset: ISO 8601 text with its offset
 * - char/varchar/text: string as stored (CHAR padding is trimmed by the mapping, not the driver)
 * - binary (rowversion, bytea): "0x" + uppercase hex
 * - boolean: boolean; null: null
 */
export type Value = string | number | boolean | null;
export type Row = Record<string, Value>;

export interface ColumnInfo {
  name: string;
  /** Database type name, lower case, e.g. "numeric", "character", "varchar", "nvarchar", "timestamp". */
  type: string;
  nullable: boolean;
}

export interface Dialect {
  readonly name: 'postgres' | 'mssql' | 'mysql' | 'sqlite' | 'generic';
  quoteIdent(name: string): string;
  /** Qualified table name, e.g. "dbo"."RM00101" from "dbo.RM00101". */
  quoteTable(name: string): string;
  /** Placeholder for the i-th (1-based) parameter: "$1", "@p1" or "?". */
  param(i: number): string;
  /** Append a row limit to a SELECT ... ORDER BY statement. */
  limit(sql: string, n: number): string;
}

export interface SourceDriver {
  readonly kind: string;
  readonly dialect: Dialect;
  /** Open the pool/connection. Throws DovetailError AGENT_SOURCE_UNREACHABLE (retryable) etc. */
  connect(): Promise<void>;
  close(): Promise<void>;
  /** Run one parameterised statement and return all rows (callers page with LIMIT). */
  query(sql: string, params?: readonly Value[]): Promise<Row[]>;
  /** Columns of a table, in ordinal order; throws AGENT_SOURCE_MISSING_OBJECT if the table does not exist. */
  describe(table: string): Promise<ColumnInfo[]>;
  /** Approximate or exact row count for progress reporting. */
  count(table: string): Promise<number>;
}
