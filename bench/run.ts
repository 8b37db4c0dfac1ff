/**
 * `npm run bench`: runs the benchmarks in sequence, prints a summary table and writes
 * bench/results.json. Figures only; nothing here passes or fails on time.
 *
 * Options:
 *   --only uplink|capture   run one benchmark
 *   --events N              uplink: events to send (default 100 000)
 *   --rows N                capture: table rows (default 1 000 000)
 *   --uplink-mode M         split (hub in its own process, default), inproc, or both
 *   --cpu-prof DIR          uplink: write V8 CPU profiles of the hub child to DIR/hub
 *   --out FILE              results file (default bench/results.json)
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo, fmtInt, fmtNum, table } from './lib.ts';
import { runUplinkBench, type UplinkBenchResult } from './uplink.bench.ts';
import { runCaptureBench, type CaptureBenchResult } from './capture.bench.ts';

/** Targets from the brief; printed beside the figures, never enforced. */
const UPLINK_TARGET_EVENTS_PER_SEC = 50_000;
const CAPTURE_TARGET_RATIO = 0.7;

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    events: { type: 'string' },
    rows: { type: 'string' },
    'uplink-mode': { type: 'string' },
    'cpu-prof': { type: 'string' },
    out: { type: 'string' },
  },
});

function posInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const only = values.only;
if (only !== undefined && only !== 'uplink' && only !== 'capture') {
  console.error(`--only must be "uplink" or "capture", got ${JSON.stringify(only)}`);
  process.exit(2);
}
const modeArg = values['uplink-mode'] ?? 'split';
if (!['split', 'inproc', 'both'].includes(modeArg)) {
  console.error(`--uplink-mode must be split, inproc or both, got ${JSON.stringify(modeArg)}`);
  process.exit(2);
}
const events = posInt('events', values.events, 100_000);
const rows = posInt('rows', values.rows, 1_000_000);
const out = values.out ? resolve(values.out) : join(fileURLToPath(new URL('.', import.meta.url)), 'results.json');

const machine = machineInfo();
const started = new Date();
console.log(`dovetail bench  ${started.toISOString()}  node ${machine.node}  ${machine.cpuModel} x${machine.cores}  load ${machine.loadAvg1m}`);

const uplink: UplinkBenchResult[] = [];
let capture: CaptureBenchResult | undefined;

if (only !== 'capture') {
  const modes = modeArg === 'both' ? (['split', 'inproc'] as const) : [modeArg as 'split' | 'inproc'];
  for (const mode of modes) {
    console.log(`\n== uplink (${mode === 'split' ? 'hub in its own process' : 'hub and agent in one process'}): ${fmtInt(events)} events, batches of 500, 32 in flight`);
    const r = await runUplinkBench({ events, batchEvents: 500, maxInFlightBatches: 32, mode, deadlineMs: 300_000, cpuProfDir: values['cpu-prof'] });
    console.log(`  ${fmtInt(r.eventsPerSec)} events/s, ${fmtNum(r.batchesPerSec, 1)} batches/s, ${fmtNum(r.mbPerSec, 1)} MB/s in ${fmtNum(r.totalMs / 1000)} s (connect ${fmtNum(r.connectMs, 0)} ms); hub log holds ${fmtInt(r.hubLogEvents)} events`);
    console.log(`  CPU while sending: agent ${fmtInt(r.agentCpuMs)} ms${r.hubCpuMs !== null ? `, hub ${fmtInt(r.hubCpuMs)} ms` : ''}`);
    uplink.push(r);
  }
}

if (only !== 'uplink') {
  console.log(`\n== capture: ${fmtInt(rows)} rows, page size 5000`);
  capture = await runCaptureBench({ rows, pageSize: 5000 });
}

console.log('\n== summary');
const lines: (string | number)[][] = [];
for (const u of uplink) {
  lines.push([`uplink ${u.mode}`, `${fmtInt(u.eventsPerSec)} ev/s`, `${fmtNum(u.batchesPerSec, 1)} batch/s, ${fmtNum(u.mbPerSec, 1)} MB/s`,
    `target ${fmtInt(UPLINK_TARGET_EVENTS_PER_SEC)} ev/s: ${u.eventsPerSec >= UPLINK_TARGET_EVENTS_PER_SEC ? 'met' : 'BELOW'}`]);
  lines.push([`  outbox prefill`, `${fmtInt(u.prefillEventsPerSec)} ev/s`, `commit: sign + LevelDB`, '']);
}
if (capture) {
  for (const s of capture.stages) {
    const target = s.ratio === null ? '' : `x${fmtNum(s.ratio)} of raw${['capture', 'capture+map', 'pipeline'].includes(s.stage) ? (s.ratio >= CAPTURE_TARGET_RATIO ? ' (>=0.7 met)' : ' (<0.7)') : ''}`;
    lines.push([`capture ${s.stage}`, `${fmtInt(s.rowsPerSec)} rows/s`, `${fmtNum(s.ms / 1000, 1)} s`, target]);
  }
}
console.log(table(['benchmark', 'rate', 'detail', 'vs target'], lines));
if (capture) console.log(`source: ${capture.source}`);

writeFileSync(out, JSON.stringify({
  date: started.toISOString(),
  machine,
  options: { only: only ?? null, events, rows, uplinkMode: modeArg },
  targets: { uplinkEventsPerSec: UPLINK_TARGET_EVENTS_PER_SEC, captureRatio: CAPTURE_TARGET_RATIO },
  uplink,
  capture: capture ?? null,
}, null, 2) + '\n');
console.log(`\nwrote ${out}`);
