/**
 * Delivery router: one worker per destination reads the event log from that
 * destination's committed cursor and hands events to its connector.
 *
 * - Bounded: at most `windowSize` log entries are held per destination, at most
 *   `concurrency` deliveries are in flight.
 * - Per-key order: an event starts only when no earlier unfinished event with the same
 *   entity+key is in the window, so one key's events reach the destination in log
 *   (capture) order, across retries too.
 * - Retries: retryable failures wait backoffDelay(attempt) and are retried, up to
 *   maxAttempts (defaults in ./retry.ts: hours, not seconds); then (or at once for
 *   non-retryable failures) the event goes to the DLQ with its last error and the key's
 *   later events continue.
 * - Replay: DeliveryState.replayDlq moves DLQ entries to a replay queue; the worker loads
 *   it (bounded like the window) and delivers those events again with the same event id
 *   (the receiver dedupes), in log order, with a fresh set of attempts. Replayed and live
 *   events share the per-key lanes, ordered by log offset, so one key's events still arrive
 *   in log order from the moment of the replay. A replay that fails for good goes back to
 *   the DLQ.
 * - Error texts kept for status and the DLQ pass through redactSecrets.
 * - Progress: the cursor advances only over a contiguous prefix of finished events and is
 *   persisted, so a restart re-delivers at most the unfinished tail (at-least-once; the
 *   event id is the idempotency key).
 * - Wake-ups come from log appends (EventLog.watch) and retry timers; a slow periodic
 *   tick is only a fallback.
 */
import { backoffDelay, redactSecrets, type BackoffOptions, type Logger } from '@dovetail/shared';
import type { DeliveryState, EventLog, LogEntry } from '../store/types.ts';
import { realTimers, type Connector, type Timers } from './types.ts';
import { DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BACKOFF } from './retry.ts';

export interface DestinationSpec {
  name: string;
  connector: Connector;
  /** Entities delivered; undefined or empty = all. */
  entities?: readonly string[];
  /** Deliveries in flight at once. Default 4. */
  concurrency?: number;
  /** Attempts before an event goes to the DLQ. Default DEFAULT_MAX_ATTEMPTS (70). */
  maxAttempts?: number;
  /** Retry delays of this destination. Default: the router's backoff. */
  backoff?: BackoffOptions;
  /** Only events from agents of this tenant are delivered (others are skipped). Undefined = every tenant. */
  tenant?: string;
}

export interface RouterOptions {
  log: EventLog;
  state: DeliveryState;
  destinations: DestinationSpec[];
  logger: Logger;
  timers?: Timers;
  /** Retry delays for destinations without their own. Default DEFAULT_RETRY_BACKOFF (5 s doubling to 1 h, full jitter). */
  backoff?: BackoffOptions;
  /** Log entries held per destination. Default 256. */
  windowSize?: number;
  /** Fallback wake-up period in ms (missed notifications). Default 5 000. */
  tickMs?: number;
  /**
   * The tenant of an agent (registry lookup); needed by destinations with a tenant. The
   * router caches answers: an agent's tenant never changes. An unknown agent belongs to no tenant.
   */
  tenantOf?: (agentId: string) => Promise<string | undefined>;
}

export interface DestinationStatus {
  name: string;
  type: string;
  /** Tenant whose events it receives; null = every tenant. */
  tenant: string | null;
  cursor: number;
  inFlight: number;
  /** Events held in memory waiting for delivery or retry (replayed ones included). */
  waiting: number;
  /** Replayed DLQ events held in memory, not yet delivered or back in the DLQ (the router always sets it). */
  replaying?: number;
  lastError: string | null;
}

interface Item {
  entry: LogEntry;
  lane: string;
  state: 'pending' | 'inflight' | 'done';
  attempts: number;
  notBefore: number;
  /** Re-delivery of a DLQ entry (not part of the cursor window). */
  replay: boolean;
}

type WorkerOptions = Required<Omit<RouterOptions, 'destinations' | 'backoff' | 'tenantOf'>> & {
  backoff: BackoffOptions;
  tenantOf: (agentId: string) => Promise<string | undefined>;
  hasTenantOf: boolean;
};

class DestinationWorker {
  private window: Item[] = [];
  /** Replayed DLQ events in offset order; at most windowSize. */
  private replays: Item[] = [];
  /** The replay queue in the store may hold events not loaded yet. */
  private replayDirty = true;
  /** The last load filled the room: more may wait in the store once some finish. */
  private replayMore = false;
  private cursor = 0;
  private nextRead = 1;
  private inflight = new Set<Promise<void>>();
  private pumping = false;
  private rerun = false;
  private stopped = false;
  private retryTimer: unknown = null;
  private retryAt = Infinity;
  private lastError: string | null = null;
  private readonly abort = new AbortController();
  private readonly entities: Set<string> | null;
  private readonly concurrency: number;
  private readonly maxAttempts: number;
  private readonly backoff: BackoffOptions;

  get name(): string {
    return this.spec.name;
  }

  constructor(private spec: DestinationSpec, private o: WorkerOptions) {
    if (spec.tenant !== undefined && !o.hasTenantOf) throw new TypeError(`destination ${spec.name} has a tenant; the router needs tenantOf`);
    this.entities = spec.entities && spec.entities.length ? new Set(spec.entities) : null;
    this.concurrency = spec.concurrency ?? 4;
    this.maxAttempts = spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.backoff = spec.backoff ?? o.backoff;
    if (this.concurrency < 1 || this.maxAttempts < 1) throw new RangeError(`destination ${spec.name}: concurrency and maxAttempts must be >= 1`);
  }

  async start(): Promise<void> {
    this.cursor = await this.o.state.getCursor(this.spec.name);
    this.nextRead = this.cursor + 1;
    this.wake();
  }

  status(): DestinationStatus {
    return {
      name: this.spec.name, type: this.spec.connector.type, tenant: this.spec.tenant ?? null, cursor: this.cursor, inFlight: this.inflight.size,
      waiting: this.window.filter((i) => i.state !== 'done').length + this.replays.filter((i) => i.state !== 'done').length,
      replaying: this.replays.filter((i) => i.state !== 'done').length, lastError: this.lastError,
    };
  }

  /** The replay queue grew (DeliveryState.replayDlq): load it and deliver. */
  replayQueued(): void {
    this.replayDirty = true;
    this.wake();
  }

  wake(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.rerun = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch((err) => {
        this.o.logger.error({ err, destination: this.spec.name }, 'delivery pump failed; retrying on next tick');
      })
      .finally(() => {
        this.pumping = false;
        if (this.rerun) this.wake();
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer !== null) this.o.timers.clearTimeout(this.retryTimer);
    this.abort.abort();
    await Promise.allSettled([...this.inflight]);
  }

  private async pump(): Promise<void> {
    for (;;) {
      this.rerun = false;
      await this.load();
      await this.loadReplays();
      this.launch();
      const advanced = await this.advance();
      if (this.stopped || (!this.rerun && !advanced)) return;
    }
  }

  private async load(): Promise<void> {
    const room = this.o.windowSize - this.window.length;
    if (room <= 0) return;
    const entries = await this.o.log.read(this.nextRead, room);
    for (const entry of entries) {
      const wanted = (!this.entities || this.entities.has(entry.event.entity)) &&
        (this.spec.tenant === undefined || (await this.o.tenantOf(entry.agentId)) === this.spec.tenant);
      const item: Item = { entry, lane: laneOf(entry), state: wanted ? 'pending' : 'done', attempts: 0, notBefore: 0, replay: false };
      if (wanted) {
        // Attempts survive a restart, so maxAttempts counts every try, not every try since boot.
        const prior = await this.o.state.getAttempt(this.spec.name, entry.offset);
        if (prior) item.attempts = prior.attempts;
      }
      this.window.push(item);
      this.nextRead = entry.offset + 1;
    }
  }

  private async loadReplays(): Promise<void> {
    if (!this.replayDirty) return;
    this.replays = this.replays.filter((i) => i.state !== 'done');
    const room = this.o.windowSize - this.replays.length;
    if (room <= 0) return;
    // Loaded items are still in the store's queue (removed only when finished), so list past them.
    const held = new Set(this.replays.map((i) => i.entry.offset));
    const queued = await this.o.state.listReplay(this.spec.name, this.replays.length + room);
    const fresh = queued.filter((e) => !held.has(e.offset));
    // Every queued entry is in memory now unless the load was full: no store read until the next replay.
    this.replayMore = queued.length >= this.replays.length + room;
    this.replayDirty = false;
    for (const q of fresh) {
      const [entry] = await this.o.log.read(q.offset, 1);
      if (!entry || entry.offset !== q.offset) {
        // Nothing to deliver (cannot happen with an append-only log); drop it so it does not stay queued forever.
        this.o.logger.error({ destination: this.spec.name, offset: q.offset, eventId: q.eventId }, 'replayed event is not in the log; dropped');
        await this.o.state.finishReplay(this.spec.name, q.offset);
        continue;
      }
      this.replays.push({ entry, lane: laneOf(entry), state: 'pending', attempts: 0, notBefore: 0, replay: true });
    }
    this.replays.sort((a, b) => a.entry.offset - b.entry.offset);
  }

  /** Replayed and window items merged in offset order: lanes then follow log order across both. */
  private *inOrder(): Generator<Item> {
    let r = 0;
    for (const item of this.window) {
      while (r < this.replays.length && this.replays[r]!.entry.offset < item.entry.offset) yield this.replays[r++]!;
      yield item;
    }
    while (r < this.replays.length) yield this.replays[r++]!;
  }

  private launch(): void {
    const now = this.o.timers.now();
    const busyLanes = new Set<string>();
    let earliest = Infinity;
    for (const item of this.inOrder()) {
      if (item.state === 'done') continue;
      if (busyLanes.has(item.lane)) continue;
      busyLanes.add(item.lane);
      if (item.state !== 'pending') continue;
      if (item.notBefore > now) {
        earliest = Math.min(earliest, item.notBefore);
        continue;
      }
      if (this.inflight.size >= this.concurrency) continue;
      const p = this.deliver(item).finally(() => {
        this.inflight.delete(p);
        this.wake();
      });
      this.inflight.add(p);
    }
    this.armRetry(earliest, now);
  }

  private armRetry(at: number, now: number): void {
    if (at === Infinity || at >= this.retryAt) return;
    if (this.retryTimer !== null) this.o.timers.clearTimeout(this.retryTimer);
    this.retryAt = at;
    this.retryTimer = this.o.timers.setTimeout(() => {
      this.retryTimer = null;
      this.retryAt = Infinity;
      this.wake();
    }, at - now);
  }

  private async deliver(item: Item): Promise<void> {
    item.state = 'inflight';
    const attempt = item.attempts + 1;
    const { event, offset, agentId } = item.entry;
    const name = this.spec.name;
    let result;
    try {
      result = await this.spec.connector.deliver(event, { attempt, signal: this.abort.signal });
    } catch (err) {
      result = { ok: false as const, retryable: true, error: `connector threw: ${(err as Error).message}` };
    }
    if (this.stopped) {
      item.state = 'pending';
      return;
    }
    try {
      if (result.ok) {
        if (item.replay) {
          await this.o.state.finishReplay(name, offset);
          this.o.logger.info({ destination: name, eventId: event.id, offset, attempts: attempt }, 'replayed event delivered');
        }
        item.state = 'done';
        // The destination answers again: an old failure is no longer its state.
        this.lastError = null;
        return;
      }
      item.attempts = attempt;
      // Connector errors may quote a URL with a query key; status, API and DLQ show this text.
      const error = redactSecrets(result.error);
      this.lastError = error;
      const nowIso = new Date(this.o.timers.now()).toISOString();
      if (!result.retryable || attempt >= this.maxAttempts) {
        await this.o.state.addDlq(name, {
          offset, eventId: event.id, agentId, entity: event.entity, key: event.key, attempts: attempt, lastError: error, failedAt: nowIso,
        });
        this.o.logger.warn({ destination: name, eventId: event.id, offset, attempts: attempt, error, replay: item.replay }, 'event moved to DLQ');
        item.state = 'done';
        return;
      }
      // A replay's attempts stay in memory: the attempt records belong to the cursor window.
      if (!item.replay) await this.o.state.recordAttempt(name, { offset, eventId: event.id, attempts: attempt, lastError: error, lastAttemptAt: nowIso });
      item.notBefore = this.o.timers.now() + backoffDelay(attempt - 1, this.backoff);
      item.state = 'pending';
      this.o.logger.debug({ destination: name, eventId: event.id, attempt, error }, 'delivery failed; will retry');
    } catch (err) {
      // The state store failed: try the event again later rather than lose the outcome.
      this.o.logger.error({ err, destination: name, offset }, 'could not record delivery outcome');
      item.state = 'pending';
      item.notBefore = this.o.timers.now() + 1000;
    }
  }

  /** Drops the finished prefix of the window and persists the new cursor. Returns true if it moved. */
  private async advance(): Promise<boolean> {
    // Finished replays leave memory here (delivery already removed them from the store's queue),
    // making room for queued ones the last load could not take.
    const held = this.replays.length;
    this.replays = this.replays.filter((i) => i.state !== 'done');
    if (this.replays.length < held && this.replayMore) this.replayDirty = true;
    let n = 0;
    while (n < this.window.length && this.window[n]!.state === 'done') n++;
    if (n === 0) return false;
    const to = this.window[n - 1]!.entry.offset;
    await this.o.state.commit(this.spec.name, to);
    this.window.splice(0, n);
    this.cursor = to;
    return true;
  }
}

export class DeliveryRouter {
  private readonly workers: DestinationWorker[];
  private unwatch: (() => void) | null = null;
  private tickTimer: unknown = null;
  private readonly timers: Timers;
  private readonly tickMs: number;

  constructor(private readonly opts: RouterOptions) {
    this.timers = opts.timers ?? realTimers;
    this.tickMs = opts.tickMs ?? 5000;
    const names = new Set<string>();
    for (const d of opts.destinations) {
      if (names.has(d.name)) throw new RangeError(`destination name "${d.name}" is used twice`);
      names.add(d.name);
    }
    const tenants = new Map<string, string | undefined>();
    const lookup = opts.tenantOf;
    const tenantOf = async (agentId: string): Promise<string | undefined> => {
      if (!lookup) return undefined;
      if (tenants.has(agentId)) return tenants.get(agentId);
      const t = await lookup(agentId);
      // Only a known agent is cached: one enrolled later must not stay tenantless.
      if (t !== undefined) tenants.set(agentId, t);
      return t;
    };
    const shared = { log: opts.log, state: opts.state, logger: opts.logger.child({ component: 'delivery' }), timers: this.timers, backoff: opts.backoff ?? DEFAULT_RETRY_BACKOFF, windowSize: opts.windowSize ?? 256, tickMs: this.tickMs, tenantOf, hasTenantOf: lookup !== undefined };
    this.workers = opts.destinations.map((d) => new DestinationWorker(d, shared));
  }

  async start(): Promise<void> {
    for (const w of this.workers) await w.start();
    this.unwatch = this.opts.log.watch(() => this.wake());
    this.tick();
  }

  wake(): void {
    for (const w of this.workers) w.wake();
  }

  status(): DestinationStatus[] {
    return this.workers.map((w) => w.status());
  }

  /** Tells the destination's worker that DeliveryState.replayDlq queued events. Returns false for an unknown destination. */
  replayQueued(destination: string): boolean {
    const w = this.workers.find((x) => x.name === destination);
    w?.replayQueued();
    return w !== undefined;
  }

  /** Stops reading, aborts in-flight requests and waits for them; unfinished events are re-delivered after restart. */
  async stop(): Promise<void> {
    this.unwatch?.();
    this.unwatch = null;
    if (this.tickTimer !== null) this.timers.clearTimeout(this.tickTimer);
    this.tickTimer = null;
    await Promise.all(this.workers.map((w) => w.stop()));
  }

  private tick(): void {
    this.tickTimer = this.timers.setTimeout(() => {
      this.wake();
      this.tick();
    }, this.tickMs);
  }
}

function laneOf(entry: LogEntry): string {
  return `${entry.event.entity}\0${entry.event.key}`;
}
