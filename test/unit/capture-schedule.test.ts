/** Scheduler with fake timers and a fake cron: no sleeping, no overlap per table. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, type Timers, type CronFactory } from '../../agent/src/schedule/index.ts';

class FakeTimers implements Timers {
  now = 0;
  #next = 1;
  readonly pending = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.pending.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  /** Advance time, firing due timers in order. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.pending.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.pending.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
      await flush();
    }
    this.now = end;
  }
}
const flush = () => new Promise<void>((r) => setImmediate(r));

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => { resolve = r; });
  return { promise, resolve };
}

it('runs every N ms after the previous run ends, never overlapping', async () => {
  const timers = new FakeTimers();
  const s = new Scheduler({ timers });
  const starts: number[] = [];
  let gate = deferred();
  s.add('customers', { everyMs: 1000 }, async () => { starts.push(timers.now); await gate.promise; });
  await timers.advance(5000);
  assert.deepEqual(starts, [], 'nothing runs before start()');
  timers.now = 0;
  s.start();
  await timers.advance(999);
  assert.deepEqual(starts, []);
  await timers.advance(1);
  assert.deepEqual(starts, [1000]);
  await timers.advance(5000); // still running: nothing else starts
  assert.deepEqual(starts, [1000]);
  gate.resolve(); gate = deferred(); await flush();
  await timers.advance(1000);
  assert.deepEqual(starts, [1000, 7000]);
  gate.resolve(); await flush();
  await s.stop();
  await timers.advance(10_000);
  assert.equal(starts.length, 2, 'no runs after stop');
});

it('cron ticks while a run is busy are skipped; trigger queues one follow-up', async () => {
  const ticks: (() => void)[] = [];
  let stopped = 0;
  const cron: CronFactory = (_expr, onTick) => { ticks.push(onTick); return { stop: () => { stopped++; } }; };
  const errors: string[] = [];
  const s = new Scheduler({ cron, timers: new FakeTimers(), onError: (name, e) => errors.push(`${name}: ${(e as Error).message}`) });
  let runs = 0;
  let gate = deferred();
  s.add('orders', { cron: '*/5 * * * *' }, async () => { runs++; await gate.promise; if (runs === 2) throw new Error('boom'); });
  assert.equal(ticks.length, 0);
  s.start();
  ticks[0]!();
  ticks[0]!();
  ticks[0]!();
  assert.equal(runs, 1);
  assert.deepEqual(s.stats('orders'), { runs: 1, skipped: 2, running: true });
  void s.trigger('orders'); // queued behind the running one
  gate.resolve(); gate = deferred(); gate.resolve();
  await flush(); await flush();
  assert.equal(runs, 2);
  assert.deepEqual(errors, ['orders: boom']);
  await s.stop();
  assert.equal(stopped, 1);
  assert.throws(() => s.add('x', { cron: 'not a cron' }, async () => {}), TypeError);
});

it('rejects invalid schedules', () => {
  const s = new Scheduler({ timers: new FakeTimers(), cron: () => ({ stop() {} }) });
  assert.throws(() => s.add('a', { everyMs: 0 }, async () => {}), RangeError);
  assert.throws(() => s.add('b', { cron: '99 * * * *' }, async () => {}), RangeError);
});
