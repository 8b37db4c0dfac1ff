/**
 * Exact values out of SQL Server, and exactly typed parameters into it.
 *
 * tedious turns decimal/numeric/money into JS numbers and datetime2 into a JS Date
 * (milliseconds), and datetimeoffset into an instant without its offset. So every
 * generated SELECT casts those columns to text on the server (selectList), and the
 * few raw values left (Buffers, floats) are normalised here (normalizeRow).
 *
 * Parameters are bound with the column's own type (bindParam): an NVARCHAR
 * parameter compared to a VARCHAR column under a SQL_* collation converts the
 * column and compares with Unicode rules, which orders some punctuation
 * differently from the index; keyset paging would then skip or repeat rows.
 */
import { normalizeOffsetDateTime } from '@dovetail/shared';
import type { ColumnInfo, Row, Value } from '../types.ts';
import type { MssqlRequest, MssqlTypes, SqlType } from './api.ts';

/** describe() output: ColumnInfo plus what typed SQL generation needs. */
export interface MssqlColumn extends ColumnInfo {
  /** Length in characters (nchar/nvarchar already halved) or bytes (binary); -1 for MAX. */
  maxLength?: number;
  precision?: number;
  scale?: number;
  collation?: string | null;
}

/** A parameter's type: a column (from describe) or a literal type for internal values. */
export type ParamColumn = Pick<MssqlColumn, 'type'> & Partial<MssqlColumn>;

const ROWVERSION_RE = /^0x[0-9A-Fa-f]{16}$/;
const HEX_RE = /^0x([0-9A-Fa-f]{2})*$/;

/** 8 rowversion bytes -> "0x" + 16 uppercase hex digits (bytes 00..07 E7 -> "0x00000000000007E7"). */
export function rowversionToHex(buf: Uint8Array): string {
  if (buf.byteLength !== 8) throw new RangeError(`a rowversion has 8 bytes, got ${buf.byteLength}`);
  return bytesToHex(buf);
}

/** "0x00000000000007E7" -> its 8 bytes, for a binary(8) parameter. */
export function hexToRowversion(s: string): Buffer {
  if (typeof s !== 'string' || !ROWVERSION_RE.test(s)) {
    throw new TypeError(`not a rowversion ("0x" + 16 hex digits): ${JSON.stringify(String(s)).slice(0, 40)}`);
  }
  return Buffer.from(s.slice(2), 'hex');
}

export function bytesToHex(buf: Uint8Array): string {
  return `0x${Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex').toUpperCase()}`;
}

export function hexToBytes(s: string): Buffer {
  if (typeof s !== 'string' || !HEX_RE.test(s)) throw new TypeError(`not a "0x" hex string: ${JSON.stringify(String(s)).slice(0, 40)}`);
  return Buffer.from(s.slice(2), 'hex');
}

export function quoteIdent(name: string): string {
  if (name.length === 0) throw new TypeError('empty identifier');
  return `[${name.replace(/]/g, ']]')}]`;
}

const BINARY_TYPES = new Set(['binary', 'varbinary', 'image', 'rowversion', 'timestamp']);
const NARROW_TEXT = new Set(['char', 'varchar', 'text']);
const WIDE_TEXT = new Set(['nchar', 'nvarchar', 'ntext', 'sysname', 'xml']);

/**
 * The SELECT expression for one column, aliased back to its name, that yields an
 * exact value (see Row in ../types.ts). `alias` qualifies the column (e.g. "t").
 */
export function selectExpr(col: ParamColumn & { name: string }, alias?: string, asName: string = col.name): string {
  const ref = alias ? `${alias}.${quoteIdent(col.name)}` : quoteIdent(col.name);
  const as = ` AS ${quoteIdent(asName)}`;
  switch (col.type) {
    // bigint: tedious returns a string today, but a driver option could make it a number; never trust that.
    case 'bigint': return `CAST(${ref} AS varchar(20))${as}`;
    // decimal -> varchar prints every scale digit ("1.50000"); 42 covers 38 digits, sign and point.
    case 'decimal':
    case 'numeric': return `CAST(${ref} AS varchar(42))${as}`;
    // Style 2: four decimals, no thousands separators; style 0 would round to 2 decimals.
    case 'money':
    case 'smallmoney': return `CONVERT(varchar(30), ${ref}, 2)${as}`;
    case 'date': return `CONVERT(varchar(10), ${ref}, 23)${as}`;
    // Style 121 prints as many fraction digits as the type has (datetime2(7): all seven).
    case 'datetime':
    case 'smalldatetime':
    case 'datetime2': return `CONVERT(varchar(27), ${ref}, 121)${as}`;
    // Style 121 keeps the offset as " +05:30"; normalizeRow turns it into ISO 8601.
    case 'datetimeoffset': return `CONVERT(varchar(34), ${ref}, 121)${as}`;
    case 'time': return `CONVERT(varchar(16), ${ref}, 121)${as}`;
    case 'sql_variant':
    case 'hierarchyid': return `CAST(${ref} AS nvarchar(4000))${as}`;
    case 'geography':
    case 'geometry': return `${ref}.STAsText()${as}`;
    default: return `${ref}${as}`;
  }
}

/** The select-list with exact casts for these columns (from describe()), used by every strategy. */
export function selectList(columns: readonly MssqlColumn[], alias?: string): string {
  if (columns.length === 0) throw new TypeError('selectList needs at least one column');
  return columns.map((c) => selectExpr(c, alias)).join(', ');
}

/** Shortest decimal text that reads back as the same float32 (tedious widens real to a double). */
function realToString(n: number): string {
  for (let p = 1; p <= 9; p++) {
    const s = n.toPrecision(p);
    if (Math.fround(Number(s)) === n) return String(Number(s));
  }
  return String(n);
}

/** One raw tedious value -> a Row value. `type` is the column's type when known. */
export function normalizeValue(v: unknown, type?: string): Value {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') return type === 'datetimeoffset' ? normalizeOffsetDateTime(v) : v;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (type === 'real') return realToString(v);
    if (type === 'float') return String(v);
    return Number.isSafeInteger(v) ? v : String(v);
  }
  if (v instanceof Uint8Array) return bytesToHex(v);
  if (v instanceof Date) {
    // Only reached by hand-written SQL that skipped selectList: tedious (useUTC) gives the naive wall time as UTC.
    return v.toISOString().slice(0, 23).replace('T', ' ');
  }
  return String(v);
}

export function normalizeRow(raw: Record<string, unknown>, types?: ReadonlyMap<string, string>): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(raw)) out[k] = normalizeValue(v, types?.get(k));
  return out;
}

function len(col: ParamColumn, fallback: number | 'max', max: number): number {
  const n = col.maxLength;
  if (n === undefined) return fallback === 'max' ? max : fallback;
  return n < 0 ? max : n;
}

/** Datetime text in the ISO "T" form: SQL Server reads it the same under every SET DATEFORMAT / language. */
function isoText(v: string): string {
  return /^\d{4}-\d{2}-\d{2} \d/.test(v) ? v.replace(' ', 'T') : v;
}

/**
 * The mssql type and JS value for a parameter compared with `column`. Text keeps
 * its family and length (VARCHAR(15) vs NVARCHAR(15)); decimals and datetimes go
 * as text the server converts to the column's type (exact, unlike tedious' float
 * and millisecond Date); binary (rowversion, LSN) goes as bytes.
 */
export function paramFor(value: Value, column: ParamColumn, types: MssqlTypes, MAX: number): { type: SqlType; value: unknown } {
  const t = column.type;
  if (BINARY_TYPES.has(t)) {
    const n = t === 'rowversion' || t === 'timestamp' ? 8 : len(column, 'max', MAX);
    const bytes = value === null ? null : typeof value === 'string' ? hexToBytes(value) : null;
    if (value !== null && bytes === null) throw new TypeError(`binary parameter needs a "0x" hex string, got ${typeof value}`);
    return { type: t === 'varbinary' || t === 'image' ? types.VarBinary(n) : types.Binary(n), value: bytes };
  }
  if (NARROW_TEXT.has(t)) {
    const n = t === 'text' ? MAX : len(column, 'max', MAX);
    return { type: t === 'char' ? types.Char(n) : types.VarChar(n), value: value === null ? null : String(value) };
  }
  if (WIDE_TEXT.has(t)) {
    const n = t === 'ntext' || t === 'xml' ? MAX : len(column, t === 'sysname' ? 128 : 'max', MAX);
    return { type: t === 'nchar' ? types.NChar(n) : types.NVarChar(n), value: value === null ? null : String(value) };
  }
  switch (t) {
    case 'int': return { type: types.Int(), value: value === null ? null : Number(value) };
    case 'smallint': return { type: types.SmallInt(), value: value === null ? null : Number(value) };
    case 'tinyint': return { type: types.TinyInt(), value: value === null ? null : Number(value) };
    // tedious converts a decimal string with BigInt(): exact up to 2^63-1.
    case 'bigint': return { type: types.BigInt(), value: value === null ? null : String(value) };
    case 'bit': return { type: types.Bit(), value: value === null ? null : value === true || value === 1 || value === '1' };
    case 'float':
    case 'real': return { type: types.Float(), value: value === null ? null : Number(value) };
    case 'uniqueidentifier': return { type: types.UniqueIdentifier(), value };
    case 'decimal':
    case 'numeric':
    case 'money':
    case 'smallmoney':
      return { type: types.VarChar(64), value: value === null ? null : String(value) };
    case 'date':
    case 'datetime':
    case 'smalldatetime':
    case 'datetime2':
    case 'datetimeoffset':
    case 'time':
      return { type: types.VarChar(40), value: value === null ? null : isoText(String(value)) };
    default:
      return { type: types.NVarChar(MAX), value: value === null ? null : String(value) };
  }
}

/** Bind `value` as parameter `name` (without "@") typed after `column`. */
export function bindParam(request: MssqlRequest, name: string, value: Value, column: ParamColumn, types: MssqlTypes, MAX: number): void {
  const p = paramFor(value, column, types, MAX);
  request.input(name, p.type, p.value);
}

/** SQL type text for a column, used by the dialect's typedParam for generic strategies. */
export function sqlTypeText(column: ParamColumn): string {
  const t = column.type;
  const n = (d: string): string => (column.maxLength === undefined ? d : column.maxLength < 0 ? 'max' : String(column.maxLength));
  if (t === 'rowversion' || t === 'timestamp') return 'binary(8)';
  if (t === 'binary' || t === 'varbinary') return `${t}(${n('max')})`.replace('binary(max)', 'varbinary(max)');
  if (t === 'char' || t === 'varchar' || t === 'nchar' || t === 'nvarchar') return `${t}(${n('max')})`.replace(/^n?char\(max\)/, (m) => m.replace('char', 'varchar'));
  if ((t === 'decimal' || t === 'numeric') && column.precision !== undefined) return `${t}(${column.precision}, ${column.scale ?? 0})`;
  if ((t === 'datetime2' || t === 'datetimeoffset' || t === 'time') && column.scale !== undefined) return `${t}(${column.scale})`;
  return t;
}
