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
 *   maxAttempts; then (or at once for non-retryable failures) the event goes to the DLQ
 *   with its last error and the key's later events continue.
 * - Progress: the cursor advances only over a contiguous prefix of finished events and is
 *   persisted, so a restart re-delivers at most the unfinished tail (at-least-once; the
 *   event id is the idempotency key).
 * - Wake-ups come from log appends (EventLog.watch) and retry timers; a slow periodic
 *   tick is only a fallback.
 */
import { backoffDelay, type BackoffOptions, type Logger } from '@dovetail/shared';
import type { DeliveryState, EventLog, LogEntry } from '../store/types.ts';
import { realTimers, type Connector, type Timers } from './types.ts';

export interface DestinationSpec {
  name: string;
  connector: Connector;
  /** Entities delivered; undefined or empty = all. */
  entities?: readonly string[];
  /** Deliveries in flight at once. Default 4. */
  concurrency?: number;
  /** Attempts before an event goes to the DLQ. Default 10. */
  maxAttempts?: number;
  /** Only events from agents of this tenant are delivered (others are skipped). Undefined = every tenant. */
  tenant?: string;
}

export interface RouterOptions {
  log: EventLog;
  state: DeliveryState;
  destinations: DestinationSpec[];
  logger: Logger;
  timers?: Timers;
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
  /** Events held in memory waiting for delivery or retry. */
  waiting: number;
  lastError: string | null;
}

interface Item {
  entry: LogEntry;
  lane: string;
  state: 'pending' | 'inflight' | 'done';
  attempts: number;
  notBefore: number;
}

type WorkerOptions = Required<Omit<RouterOptions, 'destinations' | 'backoff' | 'tenantOf'>> & {
  backoff: BackoffOptions;
  tenantOf: (agentId: string) => Promise<string | undefined>;
  hasTenantOf: boolean;
};

class DestinationWorker {
  private window: Item[] = [];
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

  constructor(private spec: DestinationSpec, private o: WorkerOptions) {
    if (spec.tenant !== undefined && !o.hasTenantOf) throw new TypeError(`destination ${spec.name} has a tenant; the router needs tenantOf`);
    this.entities = spec.entities && spec.entities.length ? new Set(spec.entities) : null;
    this.concurrency = spec.concurrency ?? 4;
    this.maxAttempts = spec.maxAttempts ?? 10;
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
      waiting: this.window.filter((i) => i.state !== 'done').length, lastError: this.lastError,
    };
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
      const item: Item = { entry, lane: `${entry.event.entity}\0${entry.event.key}`, state: wanted ? 'pending' : 'done', attempts: 0, notBefore: 0 };
      if (wanted) {
        // Attempts survive a restart, so maxAttempts counts every try, not every try since boot.
        const prior = await this.o.state.getAttempt(this.spec.name, entry.offset);
        if (prior) item.attempts = prior.attempts;
      }
      this.window.push(item);
      this.nextRead = entry.offset + 1;
    }
  }

  private launch(): void {
    const now = this.o.timers.now();
    const busyLanes = new Set<string>();
    let earliest = Infinity;
    for (const item of this.window) {
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
        item.state = 'done';
        return;
      }
      item.attempts = attempt;
      this.lastError = result.error;
      const nowIso = new Date(this.o.timers.now()).toISOString();
      if (!result.retryable || attempt >= this.maxAttempts) {
        await this.o.state.addDlq(name, {
          offset, eventId: event.id, agentId, entity: event.entity, key: event.key, attempts: attempt, lastError: result.error, failedAt: nowIso,
        });
        this.o.logger.warn({ destination: name, eventId: event.id, offset, attempts: attempt, error: result.error }, 'event moved to DLQ');
        item.state = 'done';
        return;
      }
      await this.o.state.recordAttempt(name, { offset, eventId: event.id, attempts: attempt, lastError: result.error, lastAttemptAt: nowIso });
      item.notBefore = this.o.timers.now() + backoffDelay(attempt - 1, this.o.backoff);
      item.state = 'pending';
      this.o.logger.debug({ destination: name, eventId: event.id, attempt, error: result.error }, 'delivery failed; will retry');
    } catch (err) {
      // The state store failed: try the event again later rather than lose the outcome.
      this.o.logger.error({ err, destination: name, offset }, 'could not record delivery outcome');
      item.state = 'pending';
      item.notBefore = this.o.timers.now() + 1000;
    }
  }

  /** Drops the finished prefix of the window and persists the new cursor. Returns true if it moved. */
  private async advance(): Promise<boolean> {
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
    const shared = { log: opts.log, state: opts.state, logger: opts.logger.child({ component: 'delivery' }), timers: this.timers, backoff: opts.backoff ?? {}, windowSize: opts.windowSize ?? 256, tickMs: this.tickMs, tenantOf, hasTenantOf: lookup !== undefined };
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
