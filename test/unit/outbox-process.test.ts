/**
 * Real processes: LevelDB's LOCK against a second agent, and a SIGKILL in the middle of
 * a tight commit loop leaving a store where every committed position has its batch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  decodeBatchBody, verifyBatchSignature, sha256, bytesEqual, GENESIS_HASH, keyPairFromSeed, isDovetailError,
} from '@dovetail/shared';
import { Outbox, inspectOutbox } from '../../agent/src/outbox/outbox.ts';
import { REPO, tempDir } from '../helpers/paths.ts';

const kp = keyPairFromSeed(new Uint8Array(32).fill(9));
const outboxUrl = pathToFileURL(join(REPO, 'agent/src/outbox/outbox.ts')).href;
const sharedUrl = pathToFileURL(join(REPO, 'shared/index.ts')).href;

const CHILD = `
import { Outbox } from ${JSON.stringify(outboxUrl)};
import { keyPairFromSeed } from ${JSON.stringify(sharedUrl)};
const [dir, mode] = process.argv.slice(2);
const kp = keyPairFromSeed(new Uint8Array(32).fill(9));
const ob = await Outbox.open(dir, { agentId: 'agt_kill', secretKey: kp.secretKey, maxBatchEvents: 2, maxBatchBytes: 1 << 20 });
if (mode === 'hold') {
  await ob.commit({ table: 't', events: [], position: 'held', stateOps: [], quarantine: [] });
  await ob.writeStatusFile({ state: 'streaming' });
  process.stdout.write('ready\\n');
  setInterval(() => {}, 1000);
} else {
  const start = Number((await ob.getPosition('t')) ?? '0');
  for (let i = start + 1; ; i++) {
    const n = 1 + (i % 3);
    const events = Array.from({ length: n }, (_, j) => ({
      id: 'ev-' + i + '-' + j, entity: 'customer', op: 'upsert', key: 'C' + j, data: { n: String(i) },
      source: { agent: 'agt_kill', system: 'erp', table: 't', position: String(i) },
      occurredAt: '2024-05-01T12:00:00Z', capturedAt: '2024-05-01T12:00:00Z', correlationId: null, schema: 'customer/1',
    }));
    await ob.commit({ table: 't', events, position: String(i), stateOps: [{ type: 'put', key: 'last', value: String(i) }], quarantine: [] });
    process.stdout.write('c' + i + '\\n');
  }
}
`;

function startChild(dir: string, mode: 'hold' | 'loop'): { child: ChildProcess; lines: string[]; waitFor: (pred: (l: string[]) => boolean) => Promise<void> } {
  const script = join(dir, '..', `child-${process.pid}-${Math.random().toString(36).slice(2)}.mts`);
  writeFileSync(script, CHILD);
  const child = spawn(process.execPath, ['--import', 'tsx', script, dir, mode], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  let buf = '';
  const waiters: (() => void)[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
    for (const w of waiters) w();
  });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const waitFor = (pred: (l: string[]) => boolean) => new Promise<void>((resolve, reject) => {
    const check = () => { if (pred(lines)) resolve(); };
    waiters.push(check);
    child.once('exit', (code) => { if (!pred(lines)) reject(new Error(`child exited ${code}: ${stderr}`)); });
    check();
  });
  return { child, lines, waitFor };
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

test('a second agent on the same data dir gets AGENT_ALREADY_RUNNING; status reads the snapshot file', async () => {
  const dir = join(tempDir(), 'data');
  const { child, waitFor } = startChild(dir, 'hold');
  try {
    await waitFor((l) => l.includes('ready'));
    await assert.rejects(
      Outbox.open(dir, { agentId: 'agt_kill', secretKey: kp.secretKey, maxBatchEvents: 2, maxBatchBytes: 1000 }),
      (err: unknown) => {
        assert.ok(isDovetailError(err, 'AGENT_ALREADY_RUNNING'));
        assert.match(err.message, new RegExp(`another dovetail-agent is already running on ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
        return true;
      },
    );
    const info = await inspectOutbox(dir);
    assert.equal(info.live, true);
    assert.equal(info.snapshot?.state, 'streaming');
    assert.equal(info.snapshot?.pid, child.pid);
    assert.deepEqual(info.snapshot?.offsets, { t: 'held' });
  } finally {
    await killed(child);
  }
  // After SIGKILL the lock is gone and the data is there.
  const ob = await Outbox.open(dir, { readOnly: true });
  assert.equal(await ob.getPosition('t'), 'held');
  await ob.close();
});

test('SIGKILL in a tight commit loop leaves a consistent store that reopens and continues', async () => {
  const dir = join(tempDir(), 'data');
  for (let round = 0; round < 2; round++) {
    const { child, lines, waitFor } = startChild(dir, 'loop');
    const target = 40 * (round + 1);
    try {
      await waitFor((l) => l.some((x) => x === `c${target}`));
    } finally {
      await killed(child);
    }
    const lastPrinted = Math.max(...lines.filter((l) => l.startsWith('c')).map((l) => Number(l.slice(1))));

    const ob = await Outbox.open(dir, { agentId: 'agt_kill', secretKey: kp.secretKey, maxBatchEvents: 2, maxBatchBytes: 1 << 20 });
    const pos = Number(await ob.getPosition('t'));
    assert.ok(pos >= lastPrinted, `position ${pos} is at least the last commit reported (${lastPrinted})`);
    assert.equal(await ob.stateReader('t').get('last'), String(pos), 'state moved with the position');
    const stats = await ob.stats();
    const batches = await ob.pending(0, 100_000);
    assert.deepEqual(batches.map((b) => b.seq), Array.from({ length: stats.nextSeq - 1 }, (_, i) => i + 1), 'seqs gapless');
    assert.equal(stats.depth, batches.length);
    assert.equal(stats.bytes, batches.reduce((n, b) => n + b.bytes, 0));
    let prev: Uint8Array = GENESIS_HASH;
    let expected = 1;
    for (const b of batches) {
      assert.ok(verifyBatchSignature(b.body, b.sig, kp.publicKey));
      const body = decodeBatchBody(b.body);
      assert.ok(bytesEqual(body.prev, prev), `batch ${b.seq} links to its predecessor`);
      prev = sha256(b.body);
      for (const e of body.events) {
        // Positions are consecutive commits; every one of them 1..pos has its events, none beyond.
        const p = Number(e.source.position);
        if (p !== expected) { assert.equal(p, expected + 1); expected = p; }
      }
    }
    assert.equal(expected, pos, 'the last batch carries the committed position, not one more or less');
    await ob.close();
  }
});
