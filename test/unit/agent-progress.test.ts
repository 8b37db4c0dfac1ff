import { test } from 'node:test';
import assert from 'node:assert/strict';
import { progressLine, formatDuration, SnapshotProgress } from '../../agent/src/progress.ts';

test('a progress line shows rows done/total, rate and ETA', () => {
  assert.equal(progressLine('customers', 45_000, 90_000, 15_000, 10), 'customers        [#####.....] 45,000/90,000  15,000 rows/s  ETA 0:03');
  assert.equal(progressLine('items', 0, 0, 0, 4), 'items            [....] 0/0  0 rows/s  ETA --:--');
  assert.equal(formatDuration(3725), '1:02:05');
});

test('the rate comes from successive samples and the block redraws in place on a TTY', () => {
  let t = 0;
  const written: string[] = [];
  const out = { isTTY: true, write: (s: string) => { written.push(s); return true; } } as unknown as NodeJS.WriteStream;
  const p = new SnapshotProgress(out, () => t);
  const status = (done: number) => [{ table: 'orders', phase: 'snapshotting' as const, progress: { done, total: 10_000 }, eventsCaptured: 0, quarantined: 0, lastPollAt: null, lastError: null, lastCommitAt: null }];
  p.render(status(0));
  t = 1000;
  p.render(status(2000));
  assert.match(written[1]!, /2,000\/10,000  2,000 rows\/s  ETA 0:04/);
  assert.ok(written[1]!.startsWith('\x1b[1A'), 'moves up over the previous line');
});
