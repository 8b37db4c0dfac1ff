import type { CanonicalEvent } from '@dovetail/shared';
import type { StateOp } from '../capture/types.ts';

export interface QuarantineEntry {
  table: string;
  key: string;
  reason: string;
  code: string;
  row: unknown;
  at: string;
}

export interface CommitInput {
  /** Table config name whose position advances. */
  table: string;
  /** Events in capture order (validated). May be empty: the position still advances. */
  events: CanonicalEvent[];
  /** Encoded new position for the table. */
  position: string;
  stateOps: StateOp[];
  quarantine: QuarantineEntry[];
}

export interface StoredBatch {
  seq: number;
  body: Uint8Array;
  sig: Uint8Array;
  bytes: number;
  eventCount: number;
}

export interface OutboxStats {
  depth: number;
  bytes: number;
  nextSeq: number;
  lastAckedSeq: number;
  lastAckAt: string | null;
}
