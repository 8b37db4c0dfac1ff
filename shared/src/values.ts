/**
 * Exact values. Money and quantities are decimal strings; datetimes are ISO 8601
 * with an offset and keep every fraction digit the source gave.
 */

export const DECIMAL_RE = /^-?\d+(\.\d+)?$/;
export const DATETIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
export const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

export function isDecimalString(s: unknown): s is string {
  return typeof s === 'string' && DECIMAL_RE.test(s);
}

/**
 * Turn a driver value into an exact decimal string. Strings are checked, bigints
 * printed; JS numbers are accepted only when they are safe integers, because any
 * other number may already have lost digits.
 */
export function toDecimalString(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return String(v);
    throw new TypeError(`refusing inexact number ${v} for a decimal; the driver must return a string`);
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (DECIMAL_RE.test(s)) return s;
    // Drivers print some values as "1.5E+3" or ".5"; normalise without floating point.
    const expanded = expandDecimal(s);
    if (expanded !== null) return expanded;
  }
  throw new TypeError(`not a decimal value: ${JSON.stringify(String(v)).slice(0, 40)}`);
}

/** ".5" -> "0.5", "-1.25E+2" -> "-125", "1e-3" -> "0.001"; null when not a number. */
function expandDecimal(s: string): string | null {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(s);
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) return null;
  const sign = m[1] === '-' ? '-' : '';
  let int = m[2] ?? '';
  let frac = m[3] ?? '';
  const exp = Number(m[4] ?? '0');
  if (exp > 0) {
    const shift = frac.slice(0, exp).padEnd(exp, '0');
    int = int + shift;
    frac = frac.slice(exp);
  } else if (exp < 0) {
    const n = -exp;
    const padded = int.padStart(n + 1, '0');
    frac = padded.slice(padded.length - n) + frac;
    int = padded.slice(0, padded.length - n);
  }
  int = int.replace(/^0+(?=\d)/, '') || '0';
  const out = frac ? `${int}.${frac}` : int;
  return sign && /[1-9]/.test(out) ? sign + out : out;
}

const dtfCache = new Map<string, Intl.DateTimeFormat>();
function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = dtfCache.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    dtfCache.set(timeZone, f);
  }
  return f;
}

export function isValidTimeZone(tz: string): boolean {
  try {
    formatter(tz);
    return true;
  } catch {
    return false;
  }
}

/** Offset in minutes of `timeZone` at UTC instant `utcMs`. */
function offsetAt(utcMs: number, timeZone: string): number {
  const parts = formatter(timeZone).formatToParts(new Date(utcMs));
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((asUtc - Math.floor(utcMs / 1000) * 1000) / 60000);
}

function fmtOffset(min: number): string {
  if (min === 0) return '+00:00';
  const sign = min < 0 ? '-' : '+';
  const a = Math.abs(min);
  return `${sign}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

const NAIVE_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?$/;

/**
 * Interpret a naive ERP datetime ("2024-03-10 02:30:00.1234567") in the source's
 * time zone and return ISO 8601 with that zone's offset at that instant, keeping
 * every fraction digit. A wall time skipped by a DST change resolves forward
 * (the offset before the change), an ambiguous one to the earlier instant.
 */
export function naiveToOffsetDateTime(naive: string, timeZone: string): string {
  const m = NAIVE_RE.exec(naive.trim());
  if (!m) throw new TypeError(`not a datetime: ${JSON.stringify(naive).slice(0, 40)}`);
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac] = m;
  const wallMs = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  // Two passes find the offset in force at the wall time (the standard trick for zones without a library).
  const o1 = offsetAt(wallMs, timeZone);
  const o2 = offsetAt(wallMs - o1 * 60000, timeZone);
  const offset = o1 === o2 ? o1 : Math.max(o1, o2);
  return `${y}-${mo}-${d}T${h}:${mi}:${s}${frac ? '.' + frac : ''}${fmtOffset(offset)}`;
}

/**
 * Normalise a datetime that already carries an offset ("2024-01-02 03:04:05.123+01",
 * PostgreSQL timestamptz text) to ISO 8601 "T" form with "+HH:MM", keeping fraction digits.
 */
export function normalizeOffsetDateTime(s: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(\.\d{1,9})?\s*(Z|[+-]\d{2}(?::?\d{2})?)$/.exec(s.trim());
  if (!m) throw new TypeError(`not a datetime with offset: ${JSON.stringify(s).slice(0, 40)}`);
  const time = m[2]!.length === 5 ? `${m[2]}:00` : m[2]!;
  let off = m[4]!;
  if (off !== 'Z') {
    const digits = off.slice(1).replace(':', '');
    off = `${off[0]}${digits.slice(0, 2)}:${(digits.slice(2) || '00').padEnd(2, '0')}`;
  }
  return `${m[1]}T${time}${m[3] ?? ''}${off === '+00:00' ? '+00:00' : off}`;
}

/**
 * Exact `a - b` on decimal strings (as toDecimalString accepts them), with BigInt
 * arithmetic scaled to the larger of the two scales, so "100.00000" - "25.5" is
 * "74.50000": the result keeps the column's scale, as the source would print it.
 * Zero is never negative ("-0.00" -> "0.00").
 */
export function subtractDecimal(a: string, b: string): string {
  const x = toDecimalString(a);
  const y = toDecimalString(b);
  if (x === null || y === null) throw new TypeError('subtractDecimal needs two decimal strings');
  const scale = Math.max(scaleOf(x), scaleOf(y));
  const diff = scaled(x, scale) - scaled(y, scale);
  const neg = diff < 0n;
  const digits = (neg ? -diff : diff).toString().padStart(scale + 1, '0');
  const int = digits.slice(0, digits.length - scale);
  const frac = digits.slice(digits.length - scale);
  return `${neg ? '-' : ''}${int}${scale > 0 ? `.${frac}` : ''}`;
}

function scaleOf(s: string): number {
  const dot = s.indexOf('.');
  return dot < 0 ? 0 : s.length - dot - 1;
}

/** "-12.5" at scale 3 -> -12500n. */
function scaled(s: string, scale: number): bigint {
  const neg = s.startsWith('-');
  const [int = '0', frac = ''] = (neg ? s.slice(1) : s).split('.');
  const v = BigInt(int + frac.padEnd(scale, '0'));
  return neg ? -v : v;
}
