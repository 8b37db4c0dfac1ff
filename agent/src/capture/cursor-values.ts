/**
 * Exact arithmetic on cursor values, without floats or JS Dates (which would drop
 * microseconds): ordering, "minus the overlap window", and the SQL parameter for a
 * cursor value per dialect.
 */
import type { CursorConfig } from '../config/types.ts';
import type { Dialect, Value } from '../sources/types.ts';

const TS_RE = /^(\d{4})-(\d{2})-(\d{2})(?:([T ])(\d{2}):(\d{2})(?::(\d{2}))?(?:\.(\d{1,9}))?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/;

interface ParsedTs {
  /** Wall-clock nanoseconds since 1970-01-01, the offset not applied. */
  wallNs: bigint;
  offsetMin: number;
  offsetText: string | undefined;
  sep: string;
  fracDigits: number;
  hasTime: boolean;
}

function parseTs(v: string): ParsedTs {
  const m = TS_RE.exec(v);
  if (!m) throw new TypeError(`cursor value is not a timestamp: ${JSON.stringify(v).slice(0, 40)}`);
  const [, y, mo, d, sep, h = '00', mi = '00', s = '00', frac = '', off] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const wallNs = BigInt(ms) * 1_000_000n + BigInt(frac.padEnd(9, '0') || '0');
  let offsetMin = 0;
  if (off && off !== 'Z') {
    const digits = off.slice(1).replace(':', '');
    offsetMin = (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0')) * (off[0] === '-' ? -1 : 1);
  }
  return { wallNs, offsetMin, offsetText: off, sep: sep ?? ' ', fracDigits: frac.length, hasTime: sep !== undefined };
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

function formatTs(wallNs: bigint, like: ParsedTs, fracDigits: number): string {
  const ms = wallNs / 1_000_000n - (wallNs < 0n && wallNs % 1_000_000n !== 0n ? 1n : 0n);
  const nsInSecond = ((wallNs % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
  const dt = new Date(Number(ms));
  const date = `${pad(dt.getUTCFullYear(), 4)}-${pad(dt.getUTCMonth() + 1)}-${pad(dt.getUTCDate())}`;
  const frac = fracDigits > 0 ? `.${String(nsInSecond).padStart(9, '0').slice(0, fracDigits)}` : '';
  return `${date}${like.sep}${pad(dt.getUTCHours())}:${pad(dt.getUTCMinutes())}:${pad(dt.getUTCSeconds())}${frac}${like.offsetText ?? ''}`;
}

/** A totally ordered number for a cursor value of the configured type. */
export function cursorOrdinal(type: CursorConfig['type'], v: Value): bigint {
  if (v === null || typeof v === 'boolean') throw new TypeError(`cursor value must be a number or string, got ${String(v)}`);
  switch (type) {
    case 'integer':
      return BigInt(v);
    case 'rowversion': {
      const s = String(v);
      if (!/^0x[0-9a-fA-F]+$/.test(s)) throw new TypeError(`rowversion cursor must be 0x + hex, got ${s.slice(0, 40)}`);
      return BigInt(s);
    }
    case 'timestamp': {
      const p = parseTs(String(v));
      return p.wallNs - BigInt(p.offsetMin) * 60_000_000_000n;
    }
  }
}

export function compareCursor(type: CursorConfig['type'], a: Value, b: Value): number {
  const x = cursorOrdinal(type, a);
  const y = cursorOrdinal(type, b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The lower edge of the re-read window: `v` minus the overlap, in `v`'s own format
 * (same separator, same offset, enough fraction digits to be exact), so the source
 * compares it exactly as it compares its own values.
 */
export function minusOverlap(cfg: CursorConfig, v: Value): Value {
  if (v === null) return null;
  switch (cfg.type) {
    case 'integer': {
      const r = BigInt(v as string | number) - BigInt(cfg.overlapUnits);
      return typeof v === 'number' && r >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(r) : r.toString();
    }
    case 'rowversion': {
      let r = BigInt(String(v)) - BigInt(cfg.overlapUnits);
      if (r < 0n) r = 0n;
      const width = Math.max(16, String(v).length - 2);
      return `0x${r.toString(16).toUpperCase().padStart(width, '0')}`;
    }
    case 'timestamp': {
      const p = parseTs(String(v));
      const r = p.wallNs - BigInt(cfg.overlapMs) * 1_000_000n;
      const digits = Math.max(p.fracDigits, cfg.overlapMs % 1000 !== 0 ? 3 : 0);
      const like = p.hasTime ? p : { ...p, sep: ' ' };
      return formatTs(r, like, digits);
    }
  }
}

/** The SQL expression for a cursor parameter; rowversion needs a binary value, not text. */
export function cursorParamExpr(d: Dialect, type: CursorConfig['type'], placeholder: string): string {
  if (type !== 'rowversion') return placeholder;
  switch (d.name) {
    case 'postgres': return `decode(${placeholder}, 'hex')`;
    // Style 1 parses a "0x..." string into binary.
    case 'mssql': return `CONVERT(binary(8), ${placeholder}, 1)`;
    case 'mysql': return `UNHEX(${placeholder})`;
    case 'sqlite': return `unhex(${placeholder})`;
    default: return placeholder;
  }
}

/** The parameter value matching cursorParamExpr (postgres/mysql/sqlite take bare hex). */
export function cursorParamValue(d: Dialect, type: CursorConfig['type'], v: Value): Value {
  if (type !== 'rowversion' || v === null) return v;
  return d.name === 'mssql' || d.name === 'generic' ? v : String(v).slice(2);
}

const NAIVE_PREFIX_RE = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}/;

/**
 * A test "v >= low" for many values against one window edge, compiled once per page.
 * Snapshots check every row against the window, and most rows are far older than the
 * edge: for naive timestamps the whole-second prefix decides those without parsing
 * (same-format text compares like the instant); only rows in the edge's second are parsed.
 */
export function atLeast(type: CursorConfig['type'], low: Value | null): (v: Value) => boolean {
  if (low === null) return () => true;
  const lowOrd = cursorOrdinal(type, low);
  const exact = (v: Value) => cursorOrdinal(type, v) >= lowOrd;
  if (type !== 'timestamp') return exact;
  const lowText = String(low);
  const naive = (s: string) => s.length >= 19 && NAIVE_PREFIX_RE.test(s) && !/[zZ]|[+-]\d{2}(:?\d{2})?$/.test(s.slice(19));
  if (!naive(lowText)) return exact;
  const lowSecond = lowText.slice(0, 10) + ' ' + lowText.slice(11, 19);
  return (v) => {
    const s = String(v);
    if (!naive(s)) return exact(v);
    const second = s.slice(0, 10) + ' ' + s.slice(11, 19);
    if (second < lowSecond) return false;
    if (second > lowSecond) return true;
    return exact(v);
  };
}
