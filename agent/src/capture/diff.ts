/**
 * `diff` strategy: for legacy tables with nothing to track. Every run scans the table
 * by key in pages and compares a hash of each row (and its children) with the hash
 * committed in the agent's LevelDB; new or changed rows are upserts. When the scan
 * completes, a sweep walks the stored hashes in LevelDB order and asks the source
 * which of those keys no longer exist (a keyed lookup per chunk): those are deletes.
 *
 * Asking the source in the sweep, rather than merging the two ordered streams, makes
 * delete detection independent of collation: SQL ORDER BY on text follows the
 * database collation, LevelDB orders bytes, and the two disagree for ordinary ERP
 * codes ("A-1" vs "A1"). Memory stays bounded by the page size in both phases.
 *
 * Resumable: the position carries the run id, the scan's last key or the sweep's last
 * state key. A poll whose result was never committed is simply polled again; since
 * its hash puts were not committed either, it recomputes the same changes.
 *
 * The first run (and a resync) reports phase 'snapshotting'. A resync re-emits every
 * row regardless of stored hashes.
 */
import type { TableConfig } from '../config/types.ts';
import type { Row, Value } from '../sources/types.ts';
import type { CaptureContext, CaptureStrategy, PollResult, RowChange, StateOp } from './types.ts';
import { decodeJson, encodeJson, snapshotId } from './position.ts';
import { Params, hasChildren, keyJson, keyRow, keyValues, loadChildren, rowHasher, type RowHasher, scanPage, whereClause } from './sql.ts';

/** Stored keys checked per existence query in the sweep (SQL Server allows 2100 parameters). */
export const SWEEP_CHECK_CHUNK = 500;
/** Existence queries per sweep poll before yielding (keeps one poll short on huge tables). */
export const SWEEP_QUERIES_PER_POLL = 20;

export interface DiffPosition {
  v: 1;
  /** Run id: changes carry "diff:<run>" as their position. */
  run: string;
  stage: 'scan' | 'sweep';
  /** scan: last key of the last committed page (null: run not started). */
  after: Value[] | null;
  /** sweep: last state key checked (null: from the beginning). */
  sweepAfter: string | null;
  done: number;
  total: number;
  /** First run or a resync: reported as snapshotting. */
  snapshot: boolean;
  /** Resync: emit every row even when its hash is unchanged. */
  full: boolean;
}

function isPosition(v: Record<string, unknown>): boolean {
  return v.v === 1 && (v.stage === 'scan' || v.stage === 'sweep') && typeof v.run === 'string' && typeof v.done === 'number';
}

export class DiffStrategy implements CaptureStrategy<DiffPosition> {
  readonly name = 'diff';
  readonly #table: TableConfig;
  readonly #hash: RowHasher;
  /** State key prefix of this table's hashes; the JSON-quoted name cannot prefix another table's. */
  readonly prefix: string;

  constructor(table: TableConfig) {
    if (table.key.length === 0) throw new TypeError(`table ${table.name}: strategy diff needs key columns`);
    this.#table = table;
    this.#hash = rowHasher(table);
    this.prefix = `h:${JSON.stringify(table.name)}:`;
  }

  stateKey(key: readonly Value[]): string {
    return this.prefix + keyJson(key);
  }

  encodePosition(p: DiffPosition): string {
    return encodeJson(p);
  }

  decodePosition(s: string): DiffPosition {
    return decodeJson<DiffPosition>('diff', s, isPosition);
  }

  resyncPosition(_current: DiffPosition | null): DiffPosition | null {
    return { v: 1, run: '', stage: 'scan', after: null, sweepAfter: null, done: 0, total: -1, snapshot: true, full: true };
  }

  async poll(position: DiffPosition | null, ctx: CaptureContext): Promise<PollResult<DiffPosition>> {
    ctx.signal.throwIfAborted();
    let pos = position ?? { v: 1, run: '', stage: 'scan', after: null, sweepAfter: null, done: 0, total: -1, snapshot: true, full: false };
    if (pos.stage === 'scan' && pos.after === null && pos.done === 0 && (pos.run === '' || pos.total < 0)) {
      // A run starts: name it and count for progress.
      pos = { ...pos, run: pos.run || snapshotId(ctx.now()).replace(/^snap-/, ''), total: await ctx.driver.count(this.#table.table) };
    }
    return pos.stage === 'scan' ? this.#scan(pos, ctx) : this.#sweep(pos, ctx);
  }

  #phase(pos: DiffPosition): 'snapshotting' | 'streaming' {
    return pos.snapshot ? 'snapshotting' : 'streaming';
  }

  async #scan(pos: DiffPosition, ctx: CaptureContext): Promise<PollResult<DiffPosition>> {
    const t = this.#table;
    const rows = await scanPage(ctx.driver, t, pos.after, ctx.pageSize);
    ctx.signal.throwIfAborted();
    const kids = hasChildren(t) ? await loadChildren(ctx.driver, t, rows) : null;
    const changes: RowChange[] = [];
    const stateOps: StateOp[] = [];
    let last = pos.after;
    const keys = rows.map((row) => keyValues(row, t.key, t.table));
    const stateKeys = keys.map((key) => this.stateKey(key));
    // One read per page, not one per row.
    const stored = pos.full ? [] : await ctx.state.getMany(stateKeys);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      const key = keys[i]!;
      const sk = stateKeys[i]!;
      const children = kids?.get(keyJson(key));
      const hash = this.#hash(row, children);
      last = key;
      if (!pos.full && stored[i] === hash) continue;
      changes.push({ op: 'upsert', key: keyRow(key, t.key), row, ...(children ? { children } : {}), position: `diff:${pos.run}`, occurredAt: null });
      stateOps.push({ type: 'put', key: sk, value: hash });
    }
    const done = pos.done + rows.length;
    const total = Math.max(pos.total, done);
    const next: DiffPosition = rows.length < ctx.pageSize
      ? { ...pos, stage: 'sweep', after: null, sweepAfter: null, done, total: done }
      : { ...pos, after: last, done, total };
    return { changes, position: next, stateOps, more: true, phase: this.#phase(pos), progress: { done, total: next.total } };
  }

  async #sweep(pos: DiffPosition, ctx: CaptureContext): Promise<PollResult<DiffPosition>> {
    const t = this.#table;
    const changes: RowChange[] = [];
    const stateOps: StateOp[] = [];
    let chunk: [string, Value[]][] = [];
    let lastChecked = pos.sweepAfter;
    let queries = 0;
    let exhausted = true;

    const check = async (): Promise<void> => {
      const present = await this.#existing(chunk.map((c) => c[1]), ctx);
      for (const [sk, key] of chunk) {
        if (!present.has(keyJson(key))) {
          changes.push({ op: 'delete', key: keyRow(key, t.key), row: null, position: `diff:${pos.run}`, occurredAt: null });
          stateOps.push({ type: 'del', key: sk });
        }
      }
      lastChecked = chunk[chunk.length - 1]![0];
      chunk = [];
      queries++;
    };

    const chunkSize = Math.min(SWEEP_CHECK_CHUNK, ctx.pageSize);
    for await (const [sk] of ctx.state.entries(this.prefix, pos.sweepAfter ?? undefined)) {
      if (queries >= SWEEP_QUERIES_PER_POLL || changes.length >= ctx.pageSize) {
        exhausted = false;
        break;
      }
      chunk.push([sk, JSON.parse(sk.slice(this.prefix.length)) as Value[]]);
      if (chunk.length >= chunkSize) {
        ctx.signal.throwIfAborted();
        await check();
      }
    }
    if (chunk.length > 0) await check();

    if (!exhausted) {
      return { changes, position: { ...pos, sweepAfter: lastChecked }, stateOps, more: true, phase: this.#phase(pos) };
    }
    // Run complete: the next poll (on schedule) starts a new run.
    const next: DiffPosition = { v: 1, run: '', stage: 'scan', after: null, sweepAfter: null, done: 0, total: -1, snapshot: false, full: false };
    return { changes, position: next, stateOps, more: false, phase: this.#phase(pos), progress: { done: pos.done, total: pos.done } };
  }

  /** Key JSONs of the given keys that still exist (and still match the table's where). */
  async #existing(keys: Value[][], ctx: CaptureContext): Promise<Set<string>> {
    const t = this.#table;
    const d = ctx.driver.dialect;
    const params = new Params(d);
    const cols = t.key.map((k) => d.quoteIdent(k));
    const match = cols.length === 1
      ? `${cols[0]} IN (${keys.map((k) => params.add(k[0]!)).join(', ')})`
      : keys.map((k) => `(${cols.map((c, i) => `${c} = ${params.add(k[i]!)}`).join(' AND ')})`).join(' OR ');
    const rows: Row[] = await ctx.driver.query(`SELECT ${cols.join(', ')} FROM ${d.quoteTable(t.table)}${whereClause([t.where, match])}`, params.values);
    return new Set(rows.map((r) => keyJson(keyValues(r, t.key, t.table))));
  }
}
