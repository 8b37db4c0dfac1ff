/**
 * Runs one table's capture: poll the strategy from the committed position, map and
 * validate each change, and commit events + new position + strategy state in one
 * outbox write. Rows that fail mapping are quarantined with their reason; the rest
 * flow. Progress moves only by commit, so a crash at any point re-polls from the
 * last committed position.
 */
import { DovetailError, briefError, isDovetailError, type CanonicalEvent, type Logger } from '@dovetail/shared';
import type { CaptureContext, CaptureStrategy, RowChange, StateReader, TablePhase } from './capture/types.ts';
import type { TableConfig } from './config/types.ts';
import type { QuarantineEntry, CommitInput } from './outbox/types.ts';
import type { SourceDriver } from './sources/types.ts';
import { isRetryable } from './sources/errors.ts';

export interface Mapper {
  toEvent(change: RowChange, capturedAt: Date): CanonicalEvent;
}

/** What the runner needs from the outbox (the real one, or a no-op sink for preview). */
export interface CommitSink {
  getPosition(table: string): Promise<string | undefined>;
  stateReader(table: string): StateReader;
  commit(input: CommitInput): Promise<unknown>;
}

export interface TableStatus {
  table: string;
  phase: TablePhase;
  progress?: { done: number; total: number } | undefined;
  position?: string | undefined;
  eventsCaptured: number;
  quarantined: number;
  lastPollAt: string | null;
  lastError: { code: string; message: string; at: string } | null;
  /** Capture time of the oldest change not yet committed (lag); null when caught up. */
  lastCommitAt: string | null;
}

export interface TableRunnerDeps {
  table: TableConfig;
  strategy: CaptureStrategy;
  mapper: Mapper;
  sink: CommitSink;
  driver: () => SourceDriver;
  logger: Logger;
  now?: () => Date;
  /** Called after each commit; returning true ends the run (preview's --limit). */
  onEvents?: (events: CanonicalEvent[], quarantine: QuarantineEntry[]) => boolean | void;
}

/** Columns a table config reads from one source table, with what reads each (for the error message). */
function requiredColumns(keys: readonly string[], map: TableConfig['map'], extra: Record<string, string> = {}): Map<string, string> {
  const need = new Map<string, string>();
  for (const k of keys) need.set(k, 'key');
  for (const [col, what] of Object.entries(extra)) need.set(col, what);
  for (const [path, fm] of Object.entries(map)) {
    for (const c of [fm.column, ...(fm.subtract ?? []), ...(fm.columns ?? [])]) if (c !== undefined && !need.has(c)) need.set(c, `mapped to ${path}`);
  }
  return need;
}

/**
 * Check once, before the first capture, that every column the config names exists,
 * so a typo is one clear error naming the column rather than every row quarantined.
 */
export async function checkColumns(driver: SourceDriver, table: TableConfig): Promise<void> {
  const checks: [string, Map<string, string>][] = [
    [table.table, requiredColumns(table.key, table.map, table.cursor ? { [table.cursor.column]: 'cursor column' } : {})],
  ];
  for (const [name, child] of Object.entries(table.children)) {
    const extra: Record<string, string> = {};
    for (const c of child.orderBy) extra[c] = `children.${name}.orderBy`;
    checks.push([child.table, requiredColumns(child.parentKey, child.map, extra)]);
  }
  for (const [source, need] of checks) {
    const have = (await driver.describe(source)).map((c) => c.name);
    const haveSet = new Set(have);
    const missing = [...need].filter(([c]) => !haveSet.has(c));
    if (missing.length === 0) continue;
    const lower = new Map(have.map((h) => [h.toLowerCase(), h]));
    const detail = missing.map(([c, what]) => {
      const near = lower.get(c.toLowerCase());
      return `"${c}" (${what})${near ? ` — did you mean "${near}"?` : ''}`;
    }).join(', ');
    throw new DovetailError('AGENT_SOURCE_MISSING_OBJECT', `table ${table.name}: ${source} has no column ${detail}; its columns are ${have.join(', ')}`, { table: table.name, source, missing: missing.map(([c]) => c) });
  }
}

const rowKey = (change: RowChange): string => Object.values(change.key).map((v) => String(v).trim()).join('/');

export class TableRunner {
  readonly status: TableStatus;
  private running = false;
  private columnsChecked = false;
  private readonly now: () => Date;

  constructor(private readonly deps: TableRunnerDeps) {
    this.now = deps.now ?? (() => new Date());
    this.status = {
      table: deps.table.name, phase: 'idle', eventsCaptured: 0, quarantined: 0,
      lastPollAt: null, lastError: null, lastCommitAt: null,
    };
  }

  /**
   * Poll until the strategy has nothing more right now. Never overlaps itself.
   * Returns false when a retryable error stopped the run (the next tick retries).
   */
  async runOnce(signal: AbortSignal): Promise<boolean> {
    if (this.running) return true;
    this.running = true;
    const { table, strategy, mapper, sink, logger } = this.deps;
    try {
      if (!this.columnsChecked) {
        await checkColumns(this.deps.driver(), table);
        this.columnsChecked = true;
      }
      for (;;) {
        if (signal.aborted) return true;
        const posText = await sink.getPosition(table.name);
        const position = posText === undefined ? null : strategy.decodePosition(posText);
        const ctx: CaptureContext = {
          driver: this.deps.driver(), state: sink.stateReader(table.name), pageSize: table.pageSize, signal, now: this.now,
        };
        const result = await strategy.poll(position, ctx);
        const capturedAt = this.now();
        const events: CanonicalEvent[] = [];
        const quarantine: QuarantineEntry[] = [];
        for (const change of result.changes) {
          try {
            events.push(mapper.toEvent(change, capturedAt));
          } catch (err) {
            if (!isDovetailError(err, 'AGENT_MAPPING') && !isDovetailError(err, 'AGENT_VALIDATION')) throw err;
            quarantine.push({
              table: table.name, key: rowKey(change), reason: err.message, code: err.code,
              row: change.row, at: capturedAt.toISOString(),
            });
            logger.warn({ key: rowKey(change), code: err.code, reason: err.message }, 'row quarantined');
          }
        }
        const encoded = strategy.encodePosition(result.position);
        await sink.commit({ table: table.name, events, position: encoded, stateOps: result.stateOps, quarantine });
        this.status.phase = result.phase;
        this.status.progress = result.progress;
        this.status.position = encoded;
        this.status.eventsCaptured += events.length;
        this.status.quarantined += quarantine.length;
        this.status.lastPollAt = capturedAt.toISOString();
        this.status.lastCommitAt = capturedAt.toISOString();
        this.status.lastError = null;
        if (this.deps.onEvents?.(events, quarantine)) return true;
        if (result.phase === 'gap' && table.onGap === 'stop') {
          logger.error({ table: table.name }, 'capture position is no longer valid and onGap is "stop": capture for this table is paused until `dovetail-agent resync`');
          return false;
        }
        if (!result.more) return true;
      }
    } catch (err) {
      const code = isDovetailError(err) ? err.code : 'AGENT_SOURCE_QUERY';
      const message = err instanceof Error ? err.message : String(err);
      this.status.lastError = { code, message, at: this.now().toISOString() };
      this.status.phase = 'error';
      const retry = isRetryable(err);
      if (retry) logger.warn({ ...briefError(err), retryable: true }, 'capture failed, will retry on the next schedule tick');
      else logger.error({ err, retryable: false }, 'capture failed; fix the cause, it is retried on the next tick');
      return false;
    } finally {
      this.running = false;
    }
  }
}

export function unknownTable(name: string, known: string[]): DovetailError {
  return new DovetailError('AGENT_UNKNOWN_TABLE', `table "${name}" is not in the configuration (known: ${known.join(', ')})`, { table: name });
}
