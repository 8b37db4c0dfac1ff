/**
 * `npm run bench`: runs the benchmarks in sequence, prints a summary table and writes
 * bench/results.json. Figures only; nothing here passes or fails on time.
 *
 * Options:
 *   --only B[,B]            run only these: uplink, capture, capture-odbc, fleet
 *   --events N              uplink: events to send (default 100 000)
 *   --rows N                capture, capture-odbc: table rows (default 1 000 000)
 *   --odbc T[,T]            capture-odbc: postgres, mariadb, sqlite (default all three)
 *   --odbc-max-stage-s S    capture-odbc: a stage stops after S seconds (default 240); both stages then cover the same rows
 *   --agents N              fleet: simulated agents (default 1000)
 *   --fleet-idle-s S        fleet: idle time before memory is measured (default 20)
 *   --uplink-mode M         split (hub in its own process, default), inproc, or both
 *   --cpu-prof DIR          uplink: write V8 CPU profiles of the hub child to DIR/hub
 *   --out FILE              results file (default bench/results.json)
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo, fmtInt, fmtNum, table } from './lib.ts';
import { runUplinkBench, type UplinkBenchResult } from './uplink.bench.ts';
import { runCaptureBench, type CaptureBenchResult } from './capture.bench.ts';
import { ODBC_TARGETS, runOdbcCaptureBench, type OdbcTarget, type OdbcTargetResult } from './capture-odbc.bench.ts';
import { runFleetBench, type FleetBenchResult } from './fleet.bench.ts';

/** Targets from the brief; printed beside the figures, never enforced. */
const UPLINK_TARGET_EVENTS_PER_SEC = 50_000;
const CAPTURE_TARGET_RATIO = 0.7;
/** Hub memory per idle agent connection. */
const FLEET_TARGET_BYTES_PER_CONN = 100 * 1024;
const BENCHES = ['uplink', 'capture', 'capture-odbc', 'fleet'] as const;

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    events: { type: 'string' },
    rows: { type: 'string' },
    odbc: { type: 'string' },
    'odbc-max-stage-s': { type: 'string' },
    agents: { type: 'string' },
    'fleet-idle-s': { type: 'string' },
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
const selected = new Set<string>(only === undefined ? BENCHES : only.split(',').map((x) => x.trim()));
for (const b of selected) {
  if (!(BENCHES as readonly string[]).includes(b)) {
    console.error(`--only takes ${BENCHES.join(', ')} (comma-separated), got ${JSON.stringify(only)}`);
    process.exit(2);
  }
}
const odbcTargets = (values.odbc ?? ODBC_TARGETS.join(',')).split(',').map((x) => x.trim());
for (const t of odbcTargets) {
  if (!(ODBC_TARGETS as readonly string[]).includes(t)) {
    console.error(`--odbc takes ${ODBC_TARGETS.join(', ')} (comma-separated), got ${JSON.stringify(values.odbc)}`);
    process.exit(2);
  }
}
const modeArg = values['uplink-mode'] ?? 'split';
if (!['split', 'inproc', 'both'].includes(modeArg)) {
  console.error(`--uplink-mode must be split, inproc or both, got ${JSON.stringify(modeArg)}`);
  process.exit(2);
}
const events = posInt('events', values.events, 100_000);
const rows = posInt('rows', values.rows, 1_000_000);
const odbcMaxStageS = posInt('odbc-max-stage-s', values['odbc-max-stage-s'], 240);
const agents = posInt('agents', values.agents, 1000);
const fleetIdleS = posInt('fleet-idle-s', values['fleet-idle-s'], 20);
const out = values.out ? resolve(values.out) : join(fileURLToPath(new URL('.', import.meta.url)), 'results.json');

const machine = machineInfo();
const started = new Date();
console.log(`dovetail bench  ${started.toISOString()}  node ${machine.node}  ${machine.cpuModel} x${machine.cores}  load ${machine.loadAvg1m}`);

const uplink: UplinkBenchResult[] = [];
let capture: CaptureBenchResult | undefined;
let captureOdbc: OdbcTargetResult[] | undefined;
let fleet: FleetBenchResult | undefined;

if (selected.has('uplink')) {
  const modes = modeArg === 'both' ? (['split', 'inproc'] as const) : [modeArg as 'split' | 'inproc'];
  for (const mode of modes) {
    console.log(`\n== uplink (${mode === 'split' ? 'hub in its own process' : 'hub and agent in one process'}): ${fmtInt(events)} events, batches of 500, 32 in flight`);
    const r = await runUplinkBench({ events, batchEvents: 500, maxInFlightBatches: 32, mode, deadlineMs: 300_000, cpuProfDir: values['cpu-prof'] });
    console.log(`  ${fmtInt(r.eventsPerSec)} events/s, ${fmtNum(r.batchesPerSec, 1)} batches/s, ${fmtNum(r.mbPerSec, 1)} MB/s in ${fmtNum(r.totalMs / 1000)} s (connect ${fmtNum(r.connectMs, 0)} ms); hub log holds ${fmtInt(r.hubLogEvents)} events`);
    console.log(`  CPU while sending: agent ${fmtInt(r.agentCpuMs)} ms${r.hubCpuMs !== null ? `, hub ${fmtInt(r.hubCpuMs)} ms` : ''}`);
    uplink.push(r);
  }
}

if (selected.has('capture')) {
  console.log(`\n== capture: ${fmtInt(rows)} rows, page size 5000`);
  capture = await runCaptureBench({ rows, pageSize: 5000 });
}

if (selected.has('capture-odbc')) {
  console.log(`\n== capture via ODBC: ${fmtInt(rows)} rows, page size 5000, ${odbcTargets.join(', ')} (load ${loadavg()[0]!.toFixed(2)})`);
  captureOdbc = await runOdbcCaptureBench({ rows, pageSize: 5000, targets: odbcTargets as OdbcTarget[], maxStageMs: odbcMaxStageS * 1000 });
}

if (selected.has('fleet')) {
  console.log(`\n== fleet: ${fmtInt(agents)} agents on one hub (load ${loadavg()[0]!.toFixed(2)})`);
  fleet = await runFleetBench({ agents, idleMs: fleetIdleS * 1000 });
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
for (const t of captureOdbc ?? []) {
  if (t.skipped) { lines.push([`capture-odbc ${t.target}`, 'skipped', t.skipped, '']); continue; }
  for (const s of t.stages) {
    const target = s.ratio === null ? '' : `x${fmtNum(s.ratio)} of raw${s.ratio >= CAPTURE_TARGET_RATIO ? ' (>=0.7 met)' : ' (<0.7)'}`;
    lines.push([`capture-odbc ${t.target} ${s.stage}`, `${fmtInt(s.rowsPerSec)} rows/s`, `${fmtNum(s.ms / 1000, 1)} s, ${fmtInt(s.rows)} rows`, target]);
  }
}
if (fleet) {
  const kib = (b: number) => `${fmtNum(b / 1024, 1)} KiB`;
  lines.push([`fleet memory/conn`, kib(fleet.perConnection.rss) + ' rss', `heap ${kib(fleet.perConnection.heapUsed)}, external ${kib(fleet.perConnection.external)}, ${fleet.idle.online} online`,
    `target 100 KiB: ${Math.max(fleet.perConnection.rss, fleet.perConnection.heapUsed) < FLEET_TARGET_BYTES_PER_CONN ? 'met' : 'ABOVE'}`]);
  const h = fleet.handshake;
  lines.push([`fleet handshakes`, `${fmtInt(h.perSec)} /s`, `${h.ready}/${fleet.agents} in ${fmtNum(h.allReadyMs / 1000)} s, best 1 s ${h.peakPerSec}, ${h.busyCloses} BUSY on ${h.agentsBusied} agents`, `limit ${fleet.maxHandshakes} in flight`]);
}
console.log(table(['benchmark', 'rate', 'detail', 'vs target'], lines));
console.log(`load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(' ')} (1, 5, 15 min; ${machine.cores} cores, shared)`);
if (capture) console.log(`source: ${capture.source}`);

writeFileSync(out, JSON.stringify({
  date: started.toISOString(),
  machine,
  loadAvgEnd: loadavg().map((l) => Number(l.toFixed(2))),
  options: { only: only ?? null, events, rows, uplinkMode: modeArg, odbc: odbcTargets, odbcMaxStageS, agents, fleetIdleS },
  targets: { uplinkEventsPerSec: UPLINK_TARGET_EVENTS_PER_SEC, captureRatio: CAPTURE_TARGET_RATIO, fleetBytesPerConnection: FLEET_TARGET_BYTES_PER_CONN },
  uplink,
  capture: capture ?? null,
  captureOdbc: captureOdbc ?? null,
  fleet: fleet ?? null,
}, null, 2) + '\n');
console.log(`\nwrote ${out}`);
