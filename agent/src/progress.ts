/**
 * Terminal progress for initial snapshots: one line per snapshotting table with rows
 * done / total, rate and ETA, redrawn in place on a TTY (stderr, so JSON logs on
 * stdout stay machine-readable). Off when stderr is not a terminal.
 */
import type { TableStatus } from './table-runner.ts';

interface Sample { at: number; done: number }

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '--:--';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

/** One progress line: `customers  [#######.............]  45,000/91,000  12,345 rows/s  ETA 0:04`. */
export function progressLine(table: string, done: number, total: number, rowsPerSec: number, width = 20): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(frac * width);
  const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
  const eta = rowsPerSec > 0 && total > done ? formatDuration((total - done) / rowsPerSec) : total > 0 && done >= total ? '0:00' : '--:--';
  const n = (x: number) => x.toLocaleString('en-US');
  return `${table.padEnd(16)} [${bar}] ${n(done)}/${n(total)}  ${n(Math.round(rowsPerSec))} rows/s  ETA ${eta}`;
}

export class SnapshotProgress {
  private readonly samples = new Map<string, Sample>();
  private readonly rates = new Map<string, number>();
  private lines = 0;

  constructor(private readonly out: NodeJS.WriteStream, private readonly now: () => number = Date.now) {}

  /** Redraw from the tables' current status; finished snapshots print a final line once. */
  render(tables: readonly TableStatus[]): void {
    const active = tables.filter((t) => t.phase === 'snapshotting' && t.progress);
    const text: string[] = [];
    for (const t of active) {
      const p = t.progress!;
      const prev = this.samples.get(t.table);
      const at = this.now();
      if (prev && at > prev.at) {
        const inst = ((p.done - prev.done) * 1000) / (at - prev.at);
        // Smooth the rate so the ETA does not jump with every page.
        const old = this.rates.get(t.table);
        this.rates.set(t.table, old === undefined ? inst : old * 0.7 + inst * 0.3);
      }
      this.samples.set(t.table, { at, done: p.done });
      text.push(progressLine(t.table, p.done, p.total, this.rates.get(t.table) ?? 0));
    }
    if (!this.out.isTTY) return;
    // Move up over the previous block, clear it, draw the new one.
    let s = this.lines > 0 ? `\x1b[${this.lines}A` : '';
    for (const line of text) s += `\r\x1b[2K${line}\n`;
    for (let i = text.length; i < this.lines; i++) s += '\r\x1b[2K\n';
    if (this.lines > text.length) s += `\x1b[${this.lines - text.length}A`;
    this.lines = text.length;
    if (s) this.out.write(s);
  }
}
