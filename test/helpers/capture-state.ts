/**
 * Test doubles for running capture strategies without the outbox: an in-memory
 * StateReader ordered like LevelDB (UTF-8 bytes), and a loop that polls, round-trips
 * the position through its JSON text and commits state ops, as the outbox would.
 */
import type { CaptureContext, CaptureStrategy, PollResult, RowChange, StateOp, StateReader } from '../../agent/src/capture/types.ts';
import type { SourceDriver } from '../../agent/src/sources/types.ts';

export class MemoryState implements StateReader {
  readonly map = new Map<string, string>();
  async get(key: string): Promise<string | undefined> {
    return this.map.get(key);
  }
  async getMany(keys: readonly string[]): Promise<(string | undefined)[]> {
    return keys.map((k) => this.map.get(k));
  }
  async *entries(prefix: string, after?: string): AsyncIterable<[string, string]> {
    const keys = [...this.map.keys()]
      .filter((k) => k.startsWith(prefix) && (after === undefined || Buffer.compare(Buffer.from(k), Buffer.from(after)) > 0))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const k of keys) {
      const v = this.map.get(k);
      if (v !== undefined) yield [k, v];
    }
  }
  apply(ops: readonly StateOp[]): void {
    for (const op of ops) {
      if (op.type === 'put') this.map.set(op.key, op.value);
      else this.map.delete(op.key);
    }
  }
}

export function context(driver: SourceDriver, state: StateReader, pageSize: number, now = () => new Date('2024-05-01T12:00:00.000Z')): CaptureContext {
  return { driver, state, pageSize, signal: new AbortController().signal, now };
}

/** Committed capture of one table: position text + state, advanced only by commit(). */
export class Harness<P> {
  position: string | null = null;
  readonly state = new MemoryState();
  constructor(readonly strategy: CaptureStrategy<P>, readonly driver: SourceDriver, public pageSize: number) {}

  /** One poll from the committed position, not committed (simulate a crash by dropping it). */
  async poll(): Promise<PollResult<P>> {
    const pos = this.position === null ? null : this.strategy.decodePosition(this.position);
    return this.strategy.poll(pos, context(this.driver, this.state, this.pageSize));
  }

  commit(r: PollResult<P>): void {
    const text = this.strategy.encodePosition(r.position);
    // The outbox stores the text: it must decode to an equal position.
    if (this.strategy.encodePosition(this.strategy.decodePosition(text)) !== text) throw new Error('position does not round-trip');
    this.position = text;
    this.state.apply(r.stateOps);
  }

  /** Poll and commit until a poll says no more; returns every change in order. */
  async drain(maxPolls = 1000): Promise<{ changes: RowChange[]; polls: PollResult<P>[] }> {
    const changes: RowChange[] = [];
    const polls: PollResult<P>[] = [];
    for (let i = 0; i < maxPolls; i++) {
      const r = await this.poll();
      this.commit(r);
      polls.push(r);
      changes.push(...r.changes);
      if (!r.more) return { changes, polls };
    }
    throw new Error(`capture did not settle within ${maxPolls} polls`);
  }
}

/** "op key" lines, easy to compare exactly. */
export function summary(changes: readonly RowChange[]): string[] {
  return changes.map((c) => `${c.op} ${JSON.stringify(Object.values(c.key))}`);
}
