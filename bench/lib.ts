/**
 * Shared bits of the benchmarks: timing, formatting, machine facts, realistic
 * canonical events. Benchmarks print figures; they never assert on time.
 */
import { cpus, totalmem, loadavg } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import type { CanonicalEvent } from '@dovetail/shared';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  platform: string;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  loadAvg1m: number;
}

export function machineInfo(): MachineInfo {
  const c = cpus();
  return {
    cpuModel: c[0]?.model ?? 'unknown',
    cores: c.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAvg1m: Number(loadavg()[0]!.toFixed(2)),
  };
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export function rate(count: number, ms: number): number {
  return ms > 0 ? count / (ms / 1000) : 0;
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtNum(n: number, digits = 2): string {
  return n.toFixed(digits);
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Prints a fixed-width table (first column left-aligned, the rest right-aligned). */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** Deterministic pseudo-random numbers (the demo's mulberry32), so every run sends the same bytes. */
export { prng } from '../demo/erp.ts';

const CITIES = ['Chicago', 'Milwaukee', 'Des Moines', 'Indianapolis', 'St. Louis', 'Minneapolis', 'Omaha', 'Madison'];
const STATES = ['IL', 'WI', 'IA', 'IN', 'MO', 'MN', 'NE', 'WI'];

function money(r: () => number, max: number): string {
  const cents = Math.floor(r() * max * 100);
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}000`;
}

/**
 * A canonical event as the agent would produce it: alternating sales_order (header +
 * 1-2 lines) and inventory_level, about 500 msgpack bytes (1 or 2 order lines) on average.
 */
export function sampleEvent(i: number, agentId: string, r: () => number): CanonicalEvent {
  const n = String(i).padStart(8, '0');
  const base = {
    id: `evt_${n}_${Math.floor(r() * 1e9).toString(36).padStart(6, '0')}`,
    op: 'upsert' as const,
    occurredAt: '2024-05-01T10:00:00.000-05:00',
    capturedAt: '2024-05-01T15:00:01.123Z',
    correlationId: null,
  };
  if (i % 2 === 0) {
    const city = Math.floor(r() * CITIES.length);
    const lines = 1 + (i % 8 === 0 ? 1 : 0);
    return {
      ...base,
      entity: 'sales_order',
      key: `ORD${n}`,
      schema: 'sales_order/1',
      source: { agent: agentId, system: 'gp', table: 'SOP10100', position: `snapshot:snap-2024-05-01T15:00:00.000Z` },
      data: {
        orderNumber: `ORD${n}`,
        customerId: `CUST${String(Math.floor(r() * 5000)).padStart(5, '0')}`,
        orderDate: '2024-04-30T00:00:00.000-05:00',
        currency: 'USD',
        subtotal: money(r, 20000),
        total: money(r, 21500),
        shipTo: { line1: `${100 + (i % 900)} Industrial Pkwy`, city: CITIES[city]!, region: STATES[city]!, postalCode: '60601' },
        lines: Array.from({ length: lines }, (_, l) => ({
          lineNumber: String((l + 1) * 16384),
          sku: `SKU-${String(Math.floor(r() * 90000)).padStart(6, '0')}`,
          quantity: `${1 + Math.floor(r() * 40)}.00000`,
          unitPrice: money(r, 400),
          extendedPrice: money(r, 16000),
        })),
        updatedAt: '2024-05-01T10:00:00.000-05:00',
        extra: {},
      },
    } as CanonicalEvent;
  }
  const sku = `SKU-${String(Math.floor(r() * 90000)).padStart(6, '0')}`;
  const onHand = Math.floor(r() * 5000);
  const allocated = Math.floor(r() * onHand);
  return {
    ...base,
    entity: 'inventory_level',
    key: `${sku}/MAIN`,
    schema: 'inventory_level/1',
    source: { agent: agentId, system: 'gp', table: 'IV00102', position: `2024-05-01 10:00:00.${String(i % 1000).padStart(3, '0')}` },
    data: {
      sku, warehouse: 'MAIN', onHand: `${onHand}.00000`, allocated: `${allocated}.00000`,
      available: `${onHand - allocated}.00000`, onOrder: '120.00000', uom: 'EA',
      updatedAt: '2024-05-01T10:00:00.000-05:00',
      extra: { binLocation: `A-${String(i % 99).padStart(2, '0')}-${String(i % 7)}`, abcClass: 'B' },
    },
  } as CanonicalEvent;
}

/** The soft limit on open files a child started by bash would inherit (`ulimit -n`). */
export function openFilesLimit(): number {
  try {
    const v = execFileSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
    return v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v);
  } catch {
    return 1024;
  }
}

export interface BenchChild {
  child: ChildProcess;
  /** Sends `msg` and resolves with the next message whose `t` is `reply` (one waiter per reply type). */
  ask(msg: Record<string, unknown>, reply: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves when the child process has exited. */
  exited: Promise<void>;
}

/**
 * A bench child process (a TypeScript file run by tsx) driven over the IPC channel. A child
 * reports failures as {t:'error', message}. With minOpenFiles above the current soft limit,
 * the child is started through `bash -c 'ulimit -n N; exec node ...'` (the IPC channel fd
 * and NODE_CHANNEL_FD survive the exec), so a benchmark holding thousands of sockets does
 * not die of EMFILE.
 */
export function forkBenchChild(script: string, opts: { name: string; execArgv?: string[]; minOpenFiles?: number; onMessage?: (m: Record<string, unknown>) => void }): BenchChild {
  const execArgv = ['--import', 'tsx', ...(opts.execArgv ?? [])];
  const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc'];
  const raise = opts.minOpenFiles !== undefined && openFilesLimit() < opts.minOpenFiles;
  const child = raise
    ? spawn('bash', ['-c', `ulimit -n ${opts.minOpenFiles} 2>/dev/null || echo "${opts.name}: could not raise ulimit -n to ${opts.minOpenFiles}" >&2; exec "$0" "$@"`, process.execPath, ...execArgv, script], { stdio })
    : fork(script, [], { execArgv, stdio });
  const waiters = new Map<string, (m: Record<string, unknown>) => void>();
  let failure: Error | undefined;
  child.on('message', (m: Record<string, unknown>) => {
    if (m.t === 'error') failure = new Error(`${opts.name} failed: ${String(m.message)}`);
    opts.onMessage?.(m);
    const w = waiters.get(String(m.t));
    waiters.delete(String(m.t));
    w?.(m);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ask = (out: Record<string, unknown>, reply: string, timeoutMs = 30_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(failure ?? new Error(`${opts.name} did not answer ${String(out.t)} within ${timeoutMs / 1000} s`)), timeoutMs);
      waiters.set(reply, (m) => { clearTimeout(timer); resolve(m); });
      child.send(out);
    });
  return { child, ask, exited };
}
