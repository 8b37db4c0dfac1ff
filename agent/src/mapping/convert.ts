/**
 * Per-field value conversion, compiled once per field so the per-row path is one
 * closure call: no config lookups, no JSON, no floats for money.
 */
import { naiveToOffsetDateTime, normalizeOffsetDateTime, subtractDecimal, toDecimalString } from '@dovetail/shared';
import type { FieldMapping, FieldType } from '../config/types.ts';
import type { Row, Value } from '../sources/types.ts';

/** A value that cannot be converted; the mapper adds table and row key to the message. */
export class FieldError extends Error {
  constructor(public path: string, readonly column: string | null, readonly reason: string, readonly value: unknown) {
    super(`${path}${column ? ` (column ${column})` : ''}: ${reason}${value === undefined ? '' : `: ${showValue(value)}`}`);
    this.name = 'FieldError';
  }
  /** Rebuild the message after a parent path was prefixed (child rows). */
  withPrefix(prefix: string): FieldError {
    return new FieldError(prefix + this.path, this.column, this.reason, this.value);
  }
}

function showValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v);
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return `<${Object.prototype.toString.call(v).slice(8, -1)}>`;
}

/**
 * Offset lookups cost two Intl calls; rows cluster in few wall-clock hours, so the
 * offset is cached per wall hour. An hour whose start and end offsets differ (a DST
 * change inside it) is never cached and resolved per value by the shared helper.
 */
const MAX_CACHED_HOURS = 50_000;

const NAIVE_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)?$/;
const DATE_PREFIX_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?$/;
const MIDNIGHT_RE = /^(\d{4}-\d{2}-\d{2})[T ]00:00(?::00(?:\.0+)?)?$/;

function isRealDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1 || d > 31) return false;
  const dt = new Date(Date.UTC(y, m - 1, d));
  return dt.getUTCDate() === d && dt.getUTCMonth() === m - 1;
}

export class DateTimeReader {
  private readonly offsets = new Map<string, string>();
  constructor(readonly timeZone: string) {
    // Fail fast on a bad zone (the loader validates; this catches direct callers).
    naiveToOffsetDateTime('2000-01-01 00:00:00', timeZone);
  }

  /** Naive text in the time zone, or text with an offset normalised; null when not a datetime. */
  read(text: string): string | null {
    const s = text.trim();
    const m = NAIVE_RE.exec(s);
    if (m === null) {
      try {
        return normalizeOffsetDateTime(s);
      } catch {
        return null;
      }
    }
    const h = m[4] ?? '00';
    const mi = m[5] ?? '00';
    const sec = m[6] ?? '00';
    if (Number(mi) > 59 || Number(sec) > 59) return null;
    const hourKey = `${m[1]}-${m[2]}-${m[3]}T${h}`;
    let off = this.offsets.get(hourKey);
    if (off === undefined) {
      if (Number(h) > 23 || !isRealDate(Number(m[1]), Number(m[2]), Number(m[3]))) return null;
      const base = `${m[1]}-${m[2]}-${m[3]} ${h}`;
      const a = naiveToOffsetDateTime(`${base}:00:00`, this.timeZone).slice(-6);
      const b = naiveToOffsetDateTime(`${base}:59:59`, this.timeZone).slice(-6);
      off = a === b ? a : '';
      if (this.offsets.size >= MAX_CACHED_HOURS) this.offsets.clear();
      this.offsets.set(hourKey, off);
    }
    if (off === '') return naiveToOffsetDateTime(s, this.timeZone);
    return `${hourKey}:${mi}:${sec}${m[7] ?? ''}${off}`;
  }
}

export interface CompiledField {
  /** Canonical path as written in the config ("addresses[0].line1"). */
  readonly path: string;
  readonly column: string | null;
  /** Read and convert this field from a row; throws FieldError. */
  read(row: Row): unknown;
  /** Convert a raw value (used for key columns of deletes). */
  convert(raw: Value | undefined): unknown;
}

type Conv = (v: Value, fail: (reason: string) => never) => unknown;

const TRUE_TEXT = new Set(['TRUE', '1', 'Y', 'T', 'YES']);
const FALSE_TEXT = new Set(['FALSE', '0', 'N', 'F', 'NO']);

function textOf(v: Value, trim: boolean, fail: (r: string) => never): string {
  if (typeof v === 'string') return trim ? v.trim() : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return fail('unexpected value type');
}

export function converterFor(type: FieldType, trim: boolean, dt: DateTimeReader): Conv {
  switch (type) {
    case 'string':
    case 'code':
      return (v, fail) => textOf(v, trim, fail);
    case 'decimal':
      return (v, fail) => {
        if (typeof v === 'boolean') return fail('not a decimal');
        if (typeof v === 'number' && !Number.isSafeInteger(v)) return fail('inexact JS number for a decimal (the driver must return text)');
        try {
          return toDecimalString(v);
        } catch {
          return fail('not a decimal');
        }
      };
    case 'integer':
      return (v, fail) => {
        if (typeof v === 'number') return Number.isSafeInteger(v) ? v : fail('not an integer');
        if (typeof v !== 'string') return fail('not an integer');
        const s = v.trim();
        if (!/^[+-]?\d+$/.test(s)) return fail('not an integer');
        const n = Number(s);
        return Number.isSafeInteger(n) ? n : fail('integer beyond 2^53; map it as decimal or code');
      };
    case 'boolean':
      return (v, fail) => {
        if (typeof v === 'boolean') return v;
        if (v === 1 || v === 0) return v === 1;
        if (typeof v === 'string') {
          const s = v.trim().toUpperCase();
          if (TRUE_TEXT.has(s)) return true;
          if (FALSE_TEXT.has(s)) return false;
        }
        return fail('not a boolean');
      };
    case 'datetime':
      return (v, fail) => {
        if (typeof v !== 'string') return fail('not a datetime (the driver must return text)');
        return dt.read(v) ?? fail('not a datetime');
      };
    case 'date':
      return (v, fail) => {
        if (typeof v !== 'string') return fail('not a date');
        const m = DATE_PREFIX_RE.exec(v.trim());
        if (!m || !isRealDate(Number(m[1]), Number(m[2]), Number(m[3]))) return fail('not a date');
        return `${m[1]}-${m[2]}-${m[3]}`;
      };
    default:
      throw new TypeError(`unknown field type ${String(type)}`);
  }
}

/** nullIf entries and raw values compare after trim; for dates "1900-01-01" also matches "1900-01-01 00:00:00.000". */
function nullKey(text: string, dateLike: boolean): string {
  if (!dateLike || text.length <= 10) return text;
  const m = MIDNIGHT_RE.exec(text);
  return m ? m[1]! : text;
}

/** Text of one column for a `columns` field: trimmed, null as "". */
function partText(v: Value, fail: (r: string) => never): string {
  if (v === null) return '';
  if (typeof v === 'string') return v.trim();
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return fail('unexpected value type');
}

export function compileField(path: string, fm: FieldMapping, dt: DateTimeReader): CompiledField {
  const column = fm.column ?? null;
  const subtract = fm.subtract ?? null;
  const columns = fm.columns ?? null;
  if (subtract !== null && fm.type !== 'decimal') throw new TypeError(`${path}: subtract needs type decimal`);
  // Errors name the columns a computed value came from.
  const label = column ?? (subtract ? `${subtract[0]} - ${subtract[1]}` : columns ? columns.join(', ') : null);
  const reader = fm.timeZone !== undefined && fm.timeZone !== dt.timeZone ? new DateTimeReader(fm.timeZone) : dt;
  const conv = converterFor(fm.type, fm.trim, reader);
  const dateLike = fm.type === 'date' || fm.type === 'datetime';
  const nulls = fm.nullIf && fm.nullIf.length > 0 ? new Set(fm.nullIf.map((s) => nullKey(String(s).trim(), dateLike))) : null;
  const crosswalk = fm.crosswalk ? new Map(Object.entries(fm.crosswalk)) : null;
  const hasDefault = fm.crosswalkDefault !== undefined;
  const crosswalkDefault = fm.crosswalkDefault ?? null;
  const required = fm.required;

  let current: Value | undefined;
  const fail = (reason: string): never => {
    throw new FieldError(path, label, reason, current);
  };

  const convert = (raw: Value | undefined): unknown => {
    current = raw;
    if (raw === undefined) return fail('column not in row');
    let out: unknown;
    if (raw === null) {
      out = null;
    } else if (nulls !== null && nulls.has(nullKey(typeof raw === 'string' ? raw.trim() : String(raw), dateLike))) {
      out = null;
    } else if (crosswalk !== null) {
      const k = typeof raw === 'string' ? raw.trim() : String(raw);
      out = crosswalk.get(k);
      if (out === undefined) out = hasDefault ? crosswalkDefault : fail('not in crosswalk');
    } else {
      out = conv(raw, fail);
    }
    if (out === null && required) fail('required but null');
    return out;
  };

  if (subtract !== null) {
    const [a, b] = subtract;
    const decimal = converterFor('decimal', false, dt);
    const read = (row: Row): unknown => {
      const x = row[a];
      const y = row[b];
      current = x === undefined ? y : x;
      if (x === undefined || y === undefined) return fail(`column ${x === undefined ? a : b} not in row`);
      if (x === null || y === null) return convert(null);
      current = `${String(x)} - ${String(y)}`;
      return convert(subtractDecimal(decimal(x, fail) as string, decimal(y, fail) as string));
    };
    return { path, column: null, read, convert: () => fail('a computed field has no single key column') };
  }
  if (columns !== null) {
    const read = (row: Row): unknown => {
      let text = '';
      for (let i = 0; i < columns.length; i++) {
        const v = row[columns[i]!];
        current = v;
        if (v === undefined) return fail(`column ${columns[i]} not in row`);
        text += (i ? ',' : '') + partText(v, fail);
      }
      return convert(text);
    };
    return { path, column: null, read, convert: () => fail('a computed field has no single key column') };
  }
  if (column === null) {
    // Constants are converted once, here; a bad constant is a config error.
    const value = fm.const === undefined || fm.const === null ? null : convert(fm.const);
    if (value === null && required) throw new FieldError(path, null, 'required but the constant is null', null);
    return { path, column, read: () => value, convert: () => value };
  }
  return { path, column, read: (row) => convert(row[column]), convert };
}
