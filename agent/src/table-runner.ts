/**
 * Runs one table's capture: poll the strategy from the committed position, map and
 * validate each change, and commit events + new position + strategy state in one
 * outbox write. Rows that fail mapping are quarantined with their reason; the rest
 * flow. Progress moves only by commit, so a crash at any point re-polls from the
 * last committed position.
 */
import { DovetailError, isDovetailError, type CanonicalEvent, type Logger } from '@dovetail/shared';
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

const rowKey = (change: RowChange): string => Object.values(change.key).map((v) => String(v).trim()).join('/');

export class TableRunner {
  readonly status: TableStatus;
  private running = false;
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
      logger[retry ? 'warn' : 'error']({ table: table.name, err, retryable: retry }, retry ? 'capture failed, will retry on the next schedule tick' : 'capture failed; fix the cause, it is retried on the next tick');
      return false;
    } finally {
      this.running = false;
    }
  }
}

export function unknownTable(name: string, known: string[]): DovetailError {
  return new DovetailError('AGENT_UNKNOWN_TABLE', `table "${name}" is not in the configuration (known: ${known.join(', ')})`, { table: name });
}
