/**
 * Live fleet state: what the hub knows about each agent's connection and health,
 * taken from the socket (connect, pings, any frame) and from the agent's `status`
 * frames (capture state per table, local buffer). Kept in memory: it describes the
 * present, and an agent re-reports it within one status interval after a hub restart.
 *
 * An agent is online while it has an authenticated socket AND was heard from within
 * offlineAfterMs; a half-open socket that stays silent counts as offline and is
 * closed by the gateway's sweep.
 */
import { redactSecrets } from '@dovetail/shared';

/** Default silence after which a connected agent counts as offline, ms. */
export const DEFAULT_OFFLINE_AFTER_MS = 60_000;
/** Tables kept per agent status; a status listing more is cut here so one agent cannot grow hub memory without bound. */
const MAX_TABLES = 1000;
/** Longest string kept from a status frame (names, error messages). */
const MAX_TEXT = 500;

export type TablePhase = 'snapshotting' | 'streaming' | 'gap' | 'error' | 'idle' | 'unknown';
const PHASES: readonly string[] = ['snapshotting', 'streaming', 'gap', 'error', 'idle'];

export interface ErrorView { code: string; message: string; at: string | null; table?: string }

export interface TableView {
  table: string;
  phase: TablePhase;
  /** Snapshot progress in rows, while snapshotting. */
  progress: { done: number; total: number } | null;
  eventsCaptured: number;
  quarantined: number;
  lastPollAt: string | null;
  lastCommitAt: string | null;
  lastError: ErrorView | null;
}

export interface BufferView {
  /** Batches waiting in the agent's outbox (not yet acked by the hub). */
  depth: number;
  bytes: number;
  nextSeq: number | null;
  lastAckedSeq: number | null;
  lastAckAt: string | null;
  /** Creation time of the oldest unacked batch; null when the buffer is empty or the agent does not say. */
  oldestPendingAt: string | null;
}

export interface LiveView {
  online: boolean;
  connectedAt: string | null;
  /** Last time anything (frame or ping) arrived from the agent. */
  lastHeardAt: string | null;
  /** When the last `status` frame arrived. */
  statusAt: string | null;
  remote: string | null;
  agentState: string | null;
  uplinkState: string | null;
  buffer: BufferView | null;
  /** Age of the oldest unsent change, ms: 0 with an empty buffer, null when unknown. */
  lagMs: number | null;
  tables: TableView[];
  /** Most recent error: a table's capture error or the hub's last refusal of this agent. */
  lastError: ErrorView | null;
  /** Remote config version the agent says it runs (0: its local file only); null until it reports one. */
  configVersion: number | null;
}

interface Entry {
  connected: boolean;
  connectedAt: string | null;
  lastHeard: number | null;
  statusAt: string | null;
  remote: string | null;
  agentState: string | null;
  uplinkState: string | null;
  buffer: BufferView | null;
  tables: TableView[];
  hubError: ErrorView | null;
  configVersion: number | null;
}

export interface FleetOptions {
  now?: () => Date;
  offlineAfterMs?: number;
}

const text = (v: unknown): string | null => (typeof v === 'string' ? redactSecrets(v.slice(0, MAX_TEXT)) : null);
const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);
const countOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : null);
const obj = (v: unknown): Record<string, unknown> | null => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

function errorOf(v: unknown, table?: string): ErrorView | null {
  const e = obj(v);
  if (!e) return null;
  return { code: text(e.code) ?? 'UNKNOWN', message: text(e.message) ?? '', at: text(e.at), ...(table ? { table } : {}) };
}

/** Reads an agent status report defensively: the hub trusts its shape no more than any other input. */
export function parseStatusReport(status: Record<string, unknown>): Pick<Entry, 'agentState' | 'uplinkState' | 'buffer' | 'tables' | 'configVersion'> {
  const tables: TableView[] = [];
  const rawTables = Array.isArray(status.tables) ? status.tables.slice(0, MAX_TABLES) : [];
  for (const t of rawTables) {
    const r = obj(t);
    const name = r && text(r.table);
    if (!r || !name) continue;
    const phase = typeof r.phase === 'string' && PHASES.includes(r.phase) ? (r.phase as TablePhase) : 'unknown';
    const p = obj(r.progress);
    tables.push({
      table: name, phase,
      progress: p ? { done: count(p.done), total: count(p.total) } : null,
      eventsCaptured: count(r.eventsCaptured), quarantined: count(r.quarantined),
      lastPollAt: text(r.lastPollAt), lastCommitAt: text(r.lastCommitAt), lastError: errorOf(r.lastError, name),
    });
  }
  const o = obj(status.outbox);
  const buffer: BufferView | null = o ? {
    depth: count(o.depth), bytes: count(o.bytes), nextSeq: countOrNull(o.nextSeq), lastAckedSeq: countOrNull(o.lastAckedSeq),
    lastAckAt: text(o.lastAckAt), oldestPendingAt: text(o.oldestPendingAt),
  } : null;
  return { agentState: text(status.state), uplinkState: text(status.uplink), buffer, tables, configVersion: countOrNull(status.configVersion) };
}

export class FleetTracker {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => Date;
  readonly offlineAfterMs: number;

  constructor(opts: FleetOptions = {}) {
    this.now = opts.now ?? (() => new Date());
    this.offlineAfterMs = opts.offlineAfterMs ?? DEFAULT_OFFLINE_AFTER_MS;
    if (!(this.offlineAfterMs > 0)) throw new RangeError(`offlineAfterMs must be positive, got ${this.offlineAfterMs}`);
  }

  private entry(agentId: string): Entry {
    let e = this.entries.get(agentId);
    if (!e) {
      e = { connected: false, connectedAt: null, lastHeard: null, statusAt: null, remote: null, agentState: null, uplinkState: null, buffer: null, tables: [], hubError: null, configVersion: null };
      this.entries.set(agentId, e);
    }
    return e;
  }

  connected(agentId: string, remote: string | null): void {
    const e = this.entry(agentId);
    const at = this.now();
    e.connected = true;
    e.connectedAt = at.toISOString();
    e.lastHeard = at.getTime();
    e.remote = remote;
    // A successful authentication supersedes whatever refused the previous connection.
    e.hubError = null;
  }

  /** Anything arrived from the agent (a frame or a ws ping). */
  heard(agentId: string): void {
    const e = this.entries.get(agentId);
    if (e) e.lastHeard = this.now().getTime();
  }

  status(agentId: string, status: Record<string, unknown>): void {
    const e = this.entry(agentId);
    Object.assign(e, parseStatusReport(status));
    e.statusAt = this.now().toISOString();
    e.lastHeard = this.now().getTime();
  }

  /** The hub refused something from this agent (nack, auth failure, revocation). */
  error(agentId: string, code: string, message: string): void {
    this.entry(agentId).hubError = { code, message: redactSecrets(message.slice(0, MAX_TEXT)), at: this.now().toISOString() };
  }

  disconnected(agentId: string): void {
    const e = this.entries.get(agentId);
    if (e) e.connected = false;
  }

  /** Connected agents not heard from for offlineAfterMs. */
  silent(): string[] {
    const limit = this.now().getTime() - this.offlineAfterMs;
    return [...this.entries].filter(([, e]) => e.connected && (e.lastHeard ?? 0) <= limit).map(([id]) => id);
  }

  isOnline(agentId: string): boolean {
    const e = this.entries.get(agentId);
    return !!e && e.connected && e.lastHeard !== null && this.now().getTime() - e.lastHeard < this.offlineAfterMs;
  }

  view(agentId: string): LiveView {
    const e = this.entries.get(agentId);
    if (!e) {
      return { online: false, connectedAt: null, lastHeardAt: null, statusAt: null, remote: null, agentState: null, uplinkState: null, buffer: null, lagMs: null, tables: [], lastError: null, configVersion: null };
    }
    const now = this.now().getTime();
    let lagMs: number | null = null;
    if (e.buffer) {
      if (e.buffer.depth === 0) lagMs = 0;
      else if (e.buffer.oldestPendingAt && Number.isFinite(Date.parse(e.buffer.oldestPendingAt))) lagMs = Math.max(0, now - Date.parse(e.buffer.oldestPendingAt));
    }
    const errors = [e.hubError, ...e.tables.map((t) => t.lastError)].filter((x): x is ErrorView => x !== null);
    errors.sort((a, b) => (b.at ?? '').localeCompare(a.at ?? ''));
    return {
      online: this.isOnline(agentId),
      connectedAt: e.connectedAt,
      lastHeardAt: e.lastHeard === null ? null : new Date(e.lastHeard).toISOString(),
      statusAt: e.statusAt, remote: e.remote, agentState: e.agentState, uplinkState: e.uplinkState,
      buffer: e.buffer && { ...e.buffer }, lagMs, tables: e.tables.map((t) => ({ ...t })), lastError: errors[0] ?? null,
      configVersion: e.configVersion,
    };
  }
}
