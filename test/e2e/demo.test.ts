/**
 * The first thing a new user runs: `npm run demo -- --duration 8` as a real process
 * (embedded ERP, simulator, hub and agent as child processes, webhook receiver).
 * Nothing may be lost or duplicated between the ERP and the receiver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { REPO } from '../helpers/paths.ts';

const SUMMARY_RE = /^demo: (\d+) changes made, (\d+) events captured, (\d+) delivered, (\d+) duplicates, (\d+) lost$/;

test('npm run demo -- --duration 8: everything made in the ERP reaches the receiver once', { timeout: 180_000 }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'demo', 'demo.ts'), '--duration', '8'], {
    cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const [code] = await once(child, 'exit');
  const lines = out.trim().split('\n');
  const last = lines.at(-1) ?? '';
  const m = SUMMARY_RE.exec(last);
  assert.ok(m, `last line is the summary, got ${JSON.stringify(last)}\nstdout:\n${out}\nstderr:\n${err}`);
  const [changes, captured, delivered, duplicates, lost] = m.slice(1).map(Number) as [number, number, number, number, number];
  assert.ok(changes > 0, 'the simulator made changes');
  assert.ok(captured > 0, 'the agent captured events');
  assert.ok(delivered > 0, 'the receiver got deliveries');
  assert.equal(duplicates, 0, out);
  assert.equal(lost, 0, out);
  assert.equal(code, 0, `exit code 0 when nothing is lost or duplicated\n${err}`);
  // Progress lines appear while it runs.
  assert.ok(lines.some((l) => /^\[\s*\d+s\] run\s+changes \d+ \| captured/.test(l)), out);
});
