/**
 * Preview's commit sink: positions and strategy state live in memory on top of the
 * agent's committed ones (when the data directory can be read), so `preview` shows
 * exactly what the next capture would send and changes nothing on disk.
 */
import type { StateReader } from './capture/types.ts';
import type { CommitInput } from './outbox/types.ts';
import type { CommitSink } from './table-runner.ts';

export class PreviewSink implements CommitSink {
  private readonly positions = new Map<string, string>();
  /** Per table: key -> value, or null for a deleted key. */
  private readonly overlay = new Map<string, Map<string, string | null>>();

  constructor(private readonly base?: CommitSink) {}

  async getPosition(table: string): Promise<string | undefined> {
    return this.positions.get(table) ?? (await this.base?.getPosition(table));
  }

  stateReader(table: string): StateReader {
    const baseReader = this.base?.stateReader(table);
    const overlay = this.overlayFor(table);
    return {
      async get(key) {
        if (overlay.has(key)) return overlay.get(key) ?? undefined;
        return baseReader?.get(key);
      },
      async getMany(keys) {
        const base = baseReader ? await baseReader.getMany(keys) : keys.map(() => undefined);
        return keys.map((k, i) => (overlay.has(k) ? overlay.get(k) ?? undefined : base[i]));
      },
      async *entries(prefix, after) {
        // Preview runs once over small data; merging in memory keeps it simple.
        const merged = new Map<string, string | null>();
        if (baseReader) for await (const [k, v] of baseReader.entries(prefix, after)) merged.set(k, v);
        const past = (k: string) => after === undefined || Buffer.compare(Buffer.from(k), Buffer.from(after)) > 0;
        for (const [k, v] of overlay) if (k.startsWith(prefix) && past(k)) merged.set(k, v);
        for (const k of [...merged.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
          const v = merged.get(k);
          if (v !== null && v !== undefined) yield [k, v] as [string, string];
        }
      },
    };
  }

  async commit(input: CommitInput): Promise<void> {
    this.positions.set(input.table, input.position);
    const overlay = this.overlayFor(input.table);
    for (const op of input.stateOps) overlay.set(op.key, op.type === 'put' ? op.value : null);
  }

  private overlayFor(table: string): Map<string, string | null> {
    let m = this.overlay.get(table);
    if (!m) this.overlay.set(table, (m = new Map()));
    return m;
  }
}
