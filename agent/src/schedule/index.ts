/**
 * Runs one callback per table on its schedule ({everyMs} or {cron}), never two runs of
 * the same table at once. Time is injected: `timers` for intervals and a `cron`
 * factory for cron expressions (node-cron by default), so tests drive it without
 * sleeping.
 *
 * Interval semantics: the next run is due `everyMs` after the previous run ENDED, so a
 * slow run delays the next instead of stacking. Cron semantics: a tick that fires while
 * the table's run is still going is skipped (counted in `skipped`).
 * `trigger(name)` runs a table now (used when a poll says `more`); if it is running, one
 * follow-up run is queued.
 */
import cron from 'node-cron';
import type { Schedule } from '../config/types.ts';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** A started cron job; `stop` ends it. */
export interface CronJob {
  stop(): void;
}
export type CronFactory = (expression: string, onTick: () => void) => CronJob;

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export const nodeCron: CronFactory = (expression, onTick) => {
  const task = cron.schedule(expression, () => onTick(), { noOverlap: false });
  return { stop: () => void task.stop() };
};

export interface SchedulerOptions {
  timers?: Timers;
  cron?: CronFactory;
  /** Called with a run's error; the schedule continues. Default: ignore. */
  onError?: (name: string, err: unknown) => void;
}

interface Entry {
  name: string;
  schedule: Schedule;
  run: () => Promise<void>;
  running: Promise<void> | null;
  pending: boolean;
  timer: unknown;
  job: CronJob | null;
  runs: number;
  skipped: number;
}

export class Scheduler {
  readonly #timers: Timers;
  readonly #cron: CronFactory;
  readonly #onError: (name: string, err: unknown) => void;
  readonly #entries = new Map<string, Entry>();
  #stopped = false;
  #started = false;

  constructor(opts: SchedulerOptions = {}) {
    this.#timers = opts.timers ?? realTimers;
    this.#cron = opts.cron ?? nodeCron;
    this.#onError = opts.onError ?? (() => {});
  }

  /** Register a table's schedule; it runs once start() was called. The first interval run is due `everyMs` after start. */
  add(name: string, schedule: Schedule, run: () => Promise<void>): void {
    if (this.#stopped) throw new TypeError('scheduler is stopped');
    if (this.#entries.has(name)) throw new TypeError(`table ${name} is already scheduled`);
    if ('everyMs' in schedule) {
      if (!Number.isFinite(schedule.everyMs) || schedule.everyMs <= 0) throw new RangeError(`table ${name}: everyMs must be > 0`);
    } else if (!cron.validate(schedule.cron)) {
      throw new RangeError(`table ${name}: invalid cron expression ${JSON.stringify(schedule.cron)}`);
    }
    const e: Entry = { name, schedule, run, running: null, pending: false, timer: null, job: null, runs: 0, skipped: 0 };
    this.#entries.set(name, e);
    if (this.#started) this.#begin(e);
  }

  /** Start every registered schedule (and those added later). */
  start(): void {
    if (this.#stopped) throw new TypeError('scheduler is stopped');
    if (this.#started) return;
    this.#started = true;
    for (const e of this.#entries.values()) this.#begin(e);
  }

  #begin(e: Entry): void {
    const schedule = e.schedule;
    if ('everyMs' in schedule) {
      this.#arm(e);
    } else {
      e.job = this.#cron(schedule.cron, () => {
        if (e.running) e.skipped++;
        else void this.#start(e);
      });
    }
  }

  /** Run a table now; if it is running, run once more right after. */
  trigger(name: string): Promise<void> {
    const e = this.#entries.get(name);
    if (!e) throw new TypeError(`table ${name} is not scheduled`);
    if (e.running) {
      e.pending = true;
      return e.running;
    }
    return this.#start(e);
  }

  stats(name: string): { runs: number; skipped: number; running: boolean } | undefined {
    const e = this.#entries.get(name);
    return e && { runs: e.runs, skipped: e.skipped, running: e.running !== null };
  }

  #arm(e: Entry): void {
    if (this.#stopped || !this.#started || !('everyMs' in e.schedule)) return;
    if (e.timer !== null) this.#timers.clearTimeout(e.timer);
    e.timer = this.#timers.setTimeout(() => {
      e.timer = null;
      void this.#start(e);
    }, e.schedule.everyMs);
  }

  #start(e: Entry): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (e.timer !== null) {
      this.#timers.clearTimeout(e.timer);
      e.timer = null;
    }
    e.runs++;
    const p = (async () => {
      try {
        await e.run();
      } catch (err) {
        this.#onError(e.name, err);
      }
    })().finally(() => {
      e.running = null;
      if (this.#stopped) return;
      if (e.pending) {
        e.pending = false;
        void this.#start(e);
      } else {
        this.#arm(e);
      }
    });
    e.running = p;
    return p;
  }

  /** Stop all schedules and wait for runs in progress (they are not interrupted here; abort them via their own signal). */
  async stop(): Promise<void> {
    this.#stopped = true;
    const running: Promise<void>[] = [];
    for (const e of this.#entries.values()) {
      if (e.timer !== null) this.#timers.clearTimeout(e.timer);
      e.timer = null;
      e.job?.stop();
      e.pending = false;
      if (e.running) running.push(e.running);
    }
    await Promise.allSettled(running);
  }
}
