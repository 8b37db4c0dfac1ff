/** `dovetail-agent status`: positions, buffer depth and bytes, last ack, per-table capture state. */
import { inspectOutbox } from './outbox/outbox.ts';

export interface AgentStatusView {
  running: boolean;
  dataDir: string;
  updatedAt: string | null;
  buffer: { depth: number; bytes: number; nextSeq: number; lastAckedSeq: number; lastAckAt: string | null } | null;
  offsets: Record<string, string>;
  tables: unknown[];
  uplink: unknown;
}

export async function collectStatus(dataDir: string): Promise<AgentStatusView> {
  const { live, snapshot } = await inspectOutbox(dataDir);
  return {
    running: live,
    dataDir,
    updatedAt: snapshot?.updatedAt ?? null,
    buffer: snapshot?.outbox ?? null,
    offsets: snapshot?.offsets ?? {},
    tables: (snapshot?.tables as unknown[] | undefined) ?? [],
    uplink: snapshot?.uplink ?? null,
  };
}

const fmtBytes = (n: number) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);

export function formatStatus(s: AgentStatusView): string {
  const lines = [
    `agent: ${s.running ? 'running' : 'not running'} (data ${s.dataDir}${s.updatedAt ? `, as of ${s.updatedAt}` : ''})`,
  ];
  if (s.uplink) lines.push(`uplink: ${String(s.uplink)}`);
  if (s.buffer) {
    lines.push(`buffer: ${s.buffer.depth} batches, ${fmtBytes(s.buffer.bytes)} waiting; next seq ${s.buffer.nextSeq}; last ack seq ${s.buffer.lastAckedSeq}${s.buffer.lastAckAt ? ` at ${s.buffer.lastAckAt}` : ' (never)'}`);
  } else {
    lines.push('buffer: no data yet');
  }
  const tables = s.tables as Array<{ table: string; phase: string; progress?: { done: number; total: number }; eventsCaptured: number; quarantined: number; lastError: { code: string; message: string } | null }>;
  const byName = new Map(tables.map((t) => [t.table, t]));
  const names = new Set([...Object.keys(s.offsets), ...byName.keys()]);
  for (const name of [...names].sort()) {
    const t = byName.get(name);
    const pos = s.offsets[name];
    let line = `table ${name}: ${t?.phase ?? (pos ? 'captured' : 'not started')}`;
    if (t?.progress) line += ` ${t.progress.done}/${t.progress.total} rows`;
    if (t) line += `, ${t.eventsCaptured} events this run, ${t.quarantined} quarantined`;
    if (pos) line += `, position ${pos.length > 80 ? pos.slice(0, 77) + '...' : pos}`;
    if (t?.lastError) line += `\n  last error ${t.lastError.code}: ${t.lastError.message}`;
    lines.push(line);
  }
  return lines.join('\n') + '\n';
}
