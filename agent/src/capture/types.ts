/**
 * Capture strategies turn a source table into a stream of row changes plus a new
 * position. A strategy never writes state itself: every state change it needs
 * (position, diff hashes) is returned and committed by the outbox in the SAME
 * LevelDB batch as the events it produced (invariant 1).
 */
import type { Row, SourceDriver } from '../sources/types.ts';

export interface RowChange {
  op: 'upsert' | 'delete';
  /** Key column values of the row (raw, as the driver returned them). */
  key: Row;
  /** The full row for upserts; null for deletes (some strategies know only the key). */
  row: Row | null;
  /** Child rows grouped under this row by the mapping's `children` (e.g. order lines), by child name. */
  children?: Record<string, Row[]>;
  /** Position text of this change (CT version, LSN, cursor value, snapshot id). */
  position: string;
  /** When the change happened in the source, if the strategy knows (cursor value, CDC commit time). */
  occurredAt?: string | null;
}

/** A LevelDB operation to commit atomically with the events (namespaced by the outbox). */
export type StateOp =
  | { type: 'put'; key: string; value: string }
  | { type: 'del'; key: string };

/** Capture state of one table, reported in `status` and to the hub. */
export type TablePhase = 'snapshotting' | 'streaming' | 'gap' | 'error' | 'idle';

export interface PollResult<P> {
  changes: RowChange[];
  /** Position after these changes; committed with them. */
  position: P;
  /** Extra state ops committed with the changes (diff hashes, snapshot progress). */
  stateOps: StateOp[];
  /** True when another poll right away would return more (paging). */
  more: boolean;
  phase: TablePhase;
  /** Snapshot progress, when snapshotting. */
  progress?: { done: number; total: number } | undefined;
}

/** Read-only view of committed strategy state (diff hashes) in the agent's LevelDB. */
export interface StateReader {
  get(key: string): Promise<string | undefined>;
  /** Several keys in one read (a page's worth), in the order given. */
  getMany(keys: readonly string[]): Promise<(string | undefined)[]>;
  /** Iterate keys with a prefix in key order. */
  /**
   * Iterate keys with a prefix in key order (LevelDB: UTF-8 byte order), starting
   * strictly after `after` when given, so a long sweep resumes without rescanning.
   */
  entries(prefix: string, after?: string): AsyncIterable<[string, string]>;
}

export interface CaptureContext {
  driver: SourceDriver;
  state: StateReader;
  /** Max rows to return from one poll (a page). */
  pageSize: number;
  signal: AbortSignal;
  now: () => Date;
}

export interface CaptureStrategy<P = unknown> {
  readonly name: string;
  /** Position serialisation: the outbox stores JSON text, round trips must be exact. */
  encodePosition(p: P): string;
  decodePosition(s: string): P;
  /** One poll from the committed position (null: never captured, start with a snapshot). */
  poll(position: P | null, ctx: CaptureContext): Promise<PollResult<P>>;
  /** Position that forces a fresh snapshot on the next poll (resync). */
  resyncPosition(current: P | null): P | null;
}

/** State of a table never captured: nothing stored. For previews, tests and benchmarks. */
export const EMPTY_STATE: StateReader = {
  get: async () => undefined,
  getMany: async (keys) => keys.map(() => undefined),
  entries: async function* () { /* nothing stored */ },
};
