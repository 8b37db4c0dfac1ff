/**
 * `cursor` strategy: for tables with a rising column (updated_at, identity, rowversion).
 *
 * 1. Snapshot: keyset pages by key (resumable: the position holds the last key, rows
 *    done, total and the snapshot id). Before the first page it records the cursor's
 *    maximum, where streaming starts.
 * 2. Streaming: each sweep reads `WHERE col >= boundary - overlap ORDER BY col, key`,
 *    paging by (col, key), so pages split safely inside runs of equal cursor values.
 *    Rows re-read inside the overlap window are deduplicated by key + version (a hash
 *    of the row and its children; for rowversion the cursor value itself), kept in the
 *    position. So a row committed later with the SAME value as the boundary, or a late
 *    commit with a value inside the window, is captured exactly once.
 *
 * Limits (by design): deletes are not seen (use diff or CT/CDC for that); a commit
 * older than the overlap window is missed; rows whose cursor is NULL are only seen by
 * snapshots.
 */
import type { CursorConfig, TableConfig } from '../config/types.ts';
import type { Row, Value } from '../sources/types.ts';
import type { CaptureContext, CaptureStrategy, PollResult, RowChange } from './types.ts';
import { atLeast, compareCursor, cursorOrdinal, cursorParamExpr, cursorParamValue, minusOverlap } from './cursor-values.ts';
import { decodeJson, encodeJson, snapshotId } from './position.ts';
import { Params, col, hasChildren, keyJson, keyRow, keyValues, loadChildren, rowHasher, type RowHasher, scanPage, seekAfter, whereClause } from './sql.ts';

/**
 * Most dedupe entries kept in a position. Past this the oldest are dropped: a row in
 * the window may then be emitted twice (harmless upsert), never lost; the cap keeps
 * the position (written with every batch) small even after a mass update.
 */
export const MAX_SEEN = 20_000;

/** [key JSON, version, cursor value] of a row already emitted inside the window. */
export type SeenEntry = [string, string, Value];

export interface CursorSnapshot {
  id: string;
  /** Last key of the last committed page; null before the first. */
  after: Value[] | null;
  done: number;
  total: number;
}

export interface CursorPosition {
  v: 1;
  phase: 'snapshot' | 'stream';
  snapshot: CursorSnapshot | null;
  /** Highest cursor value captured; streaming reads from boundary - overlap. Null: no rows yet. */
  boundary: Value;
  /** Continuation inside a sweep of the window (cursor value + key of the last row read). */
  page: { cursor: Value; key: Value[] } | null;
  seen: SeenEntry[];
}

function isPosition(v: Record<string, unknown>): boolean {
  return v.v === 1 && (v.phase === 'snapshot' || v.phase === 'stream') && Array.isArray(v.seen) && 'boundary' in v;
}

export class CursorStrategy implements CaptureStrategy<CursorPosition> {
  readonly name = 'cursor';
  readonly #table: TableConfig;
  readonly #hash: RowHasher;
  readonly #cursor: CursorConfig;

  constructor(table: TableConfig) {
    if (!table.cursor) throw new TypeError(`table ${table.name}: strategy cursor needs a cursor config`);
    if (table.key.length === 0) throw new TypeError(`table ${table.name}: strategy cursor needs key columns`);
    this.#table = table;
    this.#hash = rowHasher(table);
    this.#cursor = table.cursor;
  }

  encodePosition(p: CursorPosition): string {
    return encodeJson(p);
  }

  decodePosition(s: string): CursorPosition {
    return decodeJson<CursorPosition>('cursor', s, isPosition);
  }

  resyncPosition(_current: CursorPosition | null): CursorPosition | null {
    // Null is "never captured": the next poll starts a fresh snapshot and re-reads the boundary.
    return null;
  }

  async poll(position: CursorPosition | null, ctx: CaptureContext): Promise<PollResult<CursorPosition>> {
    ctx.signal.throwIfAborted();
    const pos = position ?? (await this.#startSnapshot(ctx));
    return pos.phase === 'snapshot' ? this.#snapshotPage(pos, ctx) : this.#streamPage(pos, ctx);
  }

  async #startSnapshot(ctx: CaptureContext): Promise<CursorPosition> {
    const d = ctx.driver.dialect;
    const t = this.#table;
    const total = await ctx.driver.count(t.table);
    // Streaming starts at the highest cursor value before the snapshot: anything changed
    // after this (or committed late inside the overlap) is picked up by streaming.
    // ORDER BY ... DESC rather than MAX(): not every type has MAX (PostgreSQL bytea does not).
    const q = d.quoteIdent(this.#cursor.column);
    const rows = await ctx.driver.query(d.limit(`SELECT ${q} FROM ${d.quoteTable(t.table)}${whereClause([t.where, `${q} IS NOT NULL`])} ORDER BY ${q} DESC`, 1));
    const hw = rows[0] ? col(rows[0], this.#cursor.column, t.table) : null;
    return {
      v: 1,
      phase: 'snapshot',
      snapshot: { id: snapshotId(ctx.now()), after: null, done: 0, total },
      boundary: hw,
      page: null,
      seen: [],
    };
  }

  async #rowsWithChildren(rows: Row[], ctx: CaptureContext): Promise<Map<string, Record<string, Row[]>> | null> {
    return hasChildren(this.#table) ? loadChildren(ctx.driver, this.#table, rows) : null;
  }

  #version(row: Row, children: Record<string, Row[]> | undefined): string {
    if (this.#cursor.type === 'rowversion') return String(col(row, this.#cursor.column, this.#table.table));
    return this.#hash(row, children);
  }

  async #snapshotPage(pos: CursorPosition, ctx: CaptureContext): Promise<PollResult<CursorPosition>> {
    const t = this.#table;
    const snap = pos.snapshot!;
    const rows = await scanPage(ctx.driver, t, snap.after, ctx.pageSize);
    ctx.signal.throwIfAborted();
    const kids = await this.#rowsWithChildren(rows, ctx);
    const seen = new Map(pos.seen.map((e) => [e[0], e]));
    const inWindow = atLeast(this.#cursor.type, minusOverlap(this.#cursor, pos.boundary));
    const changes: RowChange[] = [];
    let last: Value[] | null = snap.after;
    for (const row of rows) {
      const key = keyValues(row, t.key, t.table);
      const kj = keyJson(key);
      const children = kids?.get(kj);
      changes.push({ op: 'upsert', key: keyRow(key, t.key), row, ...(children ? { children } : {}), position: `snapshot:${snap.id}`, occurredAt: null });
      // Rows inside the first streaming window are remembered so streaming does not re-emit them.
      const c = col(row, this.#cursor.column, t.table);
      if (c !== null && inWindow(c)) {
        seen.set(kj, [kj, this.#version(row, children), c]);
      }
      last = key;
    }
    const done = snap.done + rows.length;
    const total = Math.max(snap.total, done);
    const finished = rows.length < ctx.pageSize;
    const next: CursorPosition = finished
      ? { v: 1, phase: 'stream', snapshot: null, boundary: pos.boundary, page: null, seen: this.#prune([...seen.values()], pos.boundary) }
      : { ...pos, snapshot: { ...snap, after: last, done, total }, seen: this.#prune([...seen.values()], pos.boundary) };
    return {
      changes,
      position: next,
      stateOps: [],
      // After the last page, stream right away to pick up what changed during the snapshot.
      more: true,
      phase: 'snapshotting',
      progress: { done, total: finished ? done : total },
    };
  }

  async #streamPage(pos: CursorPosition, ctx: CaptureContext): Promise<PollResult<CursorPosition>> {
    const t = this.#table;
    const c = this.#cursor;
    const d = ctx.driver.dialect;
    const params = new Params(d);
    const q = d.quoteIdent(c.column);
    const low = minusOverlap(c, pos.boundary);
    const conds: (string | null | undefined)[] = [t.where];
    conds.push(low === null ? `${q} IS NOT NULL` : `${q} >= ${cursorParamExpr(d, c.type, params.add(cursorParamValue(d, c.type, low)))}`);
    if (pos.page) {
      conds.push(seekAfter(d, [c.column, ...t.key], [cursorParamValue(d, c.type, pos.page.cursor), ...pos.page.key], params,
        (i, ph) => (i === 0 ? cursorParamExpr(d, c.type, ph) : ph)));
    }
    const order = [c.column, ...t.key].map((k) => d.quoteIdent(k)).join(', ');
    const sql = d.limit(`SELECT * FROM ${d.quoteTable(t.table)}${whereClause(conds)} ORDER BY ${order}`, ctx.pageSize);
    const rows = await ctx.driver.query(sql, params.values);
    ctx.signal.throwIfAborted();
    const kids = await this.#rowsWithChildren(rows, ctx);

    const seen = new Map(pos.seen.map((e) => [e[0], e]));
    const changes: RowChange[] = [];
    let boundary = pos.boundary;
    let lastRow: { cursor: Value; key: Value[] } | null = null;
    for (const row of rows) {
      const key = keyValues(row, t.key, t.table);
      const kj = keyJson(key);
      const cv = col(row, c.column, t.table);
      const children = kids?.get(kj);
      const version = this.#version(row, children);
      lastRow = { cursor: cv, key };
      if (boundary === null || compareCursor(c.type, cv, boundary) > 0) boundary = cv;
      if (seen.get(kj)?.[1] === version) continue;
      seen.set(kj, [kj, version, cv]);
      changes.push({ op: 'upsert', key: keyRow(key, t.key), row, ...(children ? { children } : {}), position: String(cv), occurredAt: this.#occurredAt(cv) });
    }
    const full = rows.length >= ctx.pageSize;
    return {
      changes,
      position: { v: 1, phase: 'stream', snapshot: null, boundary, page: full ? lastRow : null, seen: this.#prune([...seen.values()], boundary) },
      stateOps: [],
      more: full,
      phase: 'streaming',
    };
  }

  /** Only offset timestamps say when they happened; naive ones need the source time zone (mapping's job). */
  #occurredAt(v: Value): string | null {
    return this.#cursor.type === 'timestamp' && typeof v === 'string' && /T.*([+-]\d{2}:\d{2}|Z)$/.test(v) ? v : null;
  }

  /** Keep entries that can still be re-read (cursor >= boundary - overlap), newest first up to MAX_SEEN. */
  #prune(entries: SeenEntry[], boundary: Value): SeenEntry[] {
    const type = this.#cursor.type;
    const low = minusOverlap(this.#cursor, boundary);
    const lowOrd = low === null ? null : cursorOrdinal(type, low);
    let kept = lowOrd === null ? entries : entries.filter((e) => e[2] !== null && cursorOrdinal(type, e[2]) >= lowOrd);
    if (kept.length > MAX_SEEN) {
      kept = kept.sort((a, b) => compareCursor(type, b[2], a[2])).slice(0, MAX_SEEN);
    }
    // A stable order keeps the encoded position deterministic.
    return kept.sort((a, b) => compareCursor(type, a[2], b[2]) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}
