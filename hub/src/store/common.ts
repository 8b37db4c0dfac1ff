/** Rules every backend applies the same way, so the contract suite tests one behaviour. */
import { DovetailError, GENESIS_HASH } from '@dovetail/shared';
import type { AgentCursor, ApiTokenRecord, EnrollmentTokenRecord } from './types.ts';

export const EMPTY_CURSOR: AgentCursor = Object.freeze({ lastSeq: 0, lastHash: GENESIS_HASH, events: 0 }) as AgentCursor;

export function checkNextSeq(agentId: string, cursor: AgentCursor, seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError(`batch seq must be a positive integer, got ${seq}`);
  if (seq <= cursor.lastSeq) {
    throw new DovetailError('PROTO_SEQ_CONFLICT', `agent ${agentId} already has seq ${seq} stored (last ${cursor.lastSeq})`, { agentId, seq });
  }
  if (seq !== cursor.lastSeq + 1) {
    throw new DovetailError('PROTO_SEQ_GAP', `agent ${agentId} sent seq ${seq}, expected ${cursor.lastSeq + 1}`, { agentId, seq });
  }
}

export function checkToken(tok: EnrollmentTokenRecord | undefined, now: Date): EnrollmentTokenRecord {
  if (!tok) throw new DovetailError('HUB_TOKEN_INVALID', 'enrollment token is not known to this hub');
  if (tok.usedAt !== null) throw new DovetailError('HUB_TOKEN_USED', `enrollment token for "${tok.name}" was already used at ${tok.usedAt}`);
  if (Date.parse(tok.expiresAt) <= now.getTime()) {
    throw new DovetailError('HUB_TOKEN_EXPIRED', `enrollment token for "${tok.name}" expired at ${tok.expiresAt}`);
  }
  return tok;
}

/** Serialises async critical sections (read-check-write) within one process. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/** Fixed-width decimal so lexicographic key order equals numeric order. */
export function pad(n: number): string {
  return n.toString().padStart(16, '0');
}

export function checkRevocable(id: string, tok: ApiTokenRecord | undefined): ApiTokenRecord {
  if (!tok) throw new DovetailError('HUB_NOT_FOUND', `API token ${id} does not exist`, { tokenId: id });
  if (tok.revokedAt !== null) throw new DovetailError('HUB_CONFLICT', `API token ${id} was already revoked at ${tok.revokedAt}`, { tokenId: id });
  return tok;
}
