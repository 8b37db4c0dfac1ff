/** In-memory backend: tests and throwaway hubs. Same contract as LevelDB, nothing durable. */
import { DovetailError, type CanonicalEvent } from '@dovetail/shared';
import { EMPTY_CURSOR, Mutex, checkNextSeq, checkToken, checkRevocable } from './common.ts';
import type {
  AgentCursor, AgentRecord, ApiTokenRecord, AppendResult, AttemptRecord, AuditEntry, AuditLog, BatchToAppend, DeliveryState,
  DlqEntry, EnrollmentTokenRecord, EventLog, HubStore, LogEntry, Registry, StoredBatch,
} from './types.ts';

class MemoryEventLog implements EventLog {
  private entries: LogEntry[] = [];
  private cursors = new Map<string, AgentCursor>();
  private batches = new Map<string, StoredBatch>();
  private listeners = new Set<() => void>();
  private mutex = new Mutex();

  async append(agentId: string, batch: BatchToAppend, events: CanonicalEvent[], receivedAt: string): Promise<AppendResult> {
    return (await this.appendMany(agentId, [{ batch, events }], receivedAt))[0]!;
  }

  appendMany(agentId: string, items: readonly { batch: BatchToAppend; events: CanonicalEvent[] }[], receivedAt: string): Promise<AppendResult[]> {
    return this.mutex.run(async () => {
      // All or nothing: check the whole run before storing any of it.
      let check = this.cursors.get(agentId) ?? EMPTY_CURSOR;
      for (const { batch } of items) {
        checkNextSeq(agentId, check, batch.seq);
        check = { ...check, lastSeq: batch.seq };
      }
      const results: AppendResult[] = [];
      for (const { batch, events } of items) results.push(this.store(agentId, batch, events, receivedAt));
      for (const l of this.listeners) l();
      return results;
    });
  }

  private store(agentId: string, batch: BatchToAppend, events: CanonicalEvent[], receivedAt: string): AppendResult {
    const cur = this.cursors.get(agentId) ?? EMPTY_CURSOR;
    const firstOffset = this.entries.length + 1;
    // Copies: the caller's buffers may be reused (ws pools them).
    const stored: StoredBatch = {
      seq: batch.seq, body: batch.body.slice(), sig: batch.sig.slice(), hash: batch.hash.slice(),
      firstOffset, count: events.length, receivedAt,
    };
    for (const event of events) this.entries.push({ offset: this.entries.length + 1, agentId, seq: batch.seq, event: structuredClone(event) });
    this.batches.set(`${agentId}\0${batch.seq}`, stored);
    this.cursors.set(agentId, { lastSeq: batch.seq, lastHash: stored.hash, events: cur.events + events.length });
    return { firstOffset, lastOffset: this.entries.length };
  }
  async agentCursor(agentId: string): Promise<AgentCursor> {
    return { ...(this.cursors.get(agentId) ?? EMPTY_CURSOR) };
  }
  async getBatch(agentId: string, seq: number): Promise<StoredBatch | undefined> {
    return this.batches.get(`${agentId}\0${seq}`);
  }
  async read(fromOffset: number, limit: number): Promise<LogEntry[]> {
    const start = Math.max(1, fromOffset) - 1;
    return this.entries.slice(start, start + limit);
  }
  async lastOffset(): Promise<number> {
    return this.entries.length;
  }
  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

class MemoryRegistry implements Registry {
  private tokens = new Map<string, EnrollmentTokenRecord>();
  private agents = new Map<string, AgentRecord>();
  private settings = new Map<string, string>();
  private mutex = new Mutex();

  async putToken(token: EnrollmentTokenRecord): Promise<void> {
    this.tokens.set(token.hash, { ...token });
  }
  async getToken(hash: string): Promise<EnrollmentTokenRecord | undefined> {
    const t = this.tokens.get(hash);
    return t && { ...t };
  }
  enroll(tokenHash: string, agent: Omit<AgentRecord, 'tenant'>, now: Date): Promise<AgentRecord> {
    return this.mutex.run(async () => {
      const tok = checkToken(this.tokens.get(tokenHash), now);
      for (const a of this.agents.values()) {
        if (a.publicKey === agent.publicKey) throw new DovetailError('HUB_KEY_IN_USE', `public key ${agent.keyId} is already registered to agent ${a.id}`);
      }
      const rec: AgentRecord = { ...agent, tenant: tok.tenant, site: tok.site ?? null };
      this.tokens.set(tokenHash, { ...tok, usedAt: now.toISOString(), agentId: agent.id });
      this.agents.set(rec.id, rec);
      return { ...rec };
    });
  }
  async getAgent(id: string): Promise<AgentRecord | undefined> {
    const a = this.agents.get(id);
    return a && { ...a };
  }
  async listAgents(): Promise<AgentRecord[]> {
    return [...this.agents.values()].map((a) => ({ ...a })).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }
  updateAgent(id: string, patch: Partial<Omit<AgentRecord, 'id'>>): Promise<AgentRecord> {
    return this.mutex.run(async () => {
      const a = this.agents.get(id);
      if (!a) throw new DovetailError('HUB_NOT_FOUND', `agent ${id} is not registered`, { agentId: id });
      const next = { ...a, ...patch, id };
      this.agents.set(id, next);
      return { ...next };
    });
  }
  async getSetting(key: string): Promise<string | undefined> {
    return this.settings.get(key);
  }
  async putSetting(key: string, value: string): Promise<void> {
    this.settings.set(key, value);
  }
  private apiTokens = new Map<string, ApiTokenRecord>();
  async putApiToken(token: ApiTokenRecord): Promise<void> {
    this.apiTokens.set(token.id, { ...token });
  }
  async getApiToken(id: string): Promise<ApiTokenRecord | undefined> {
    const t = this.apiTokens.get(id);
    return t && { ...t };
  }
  async getApiTokenByHash(hash: string): Promise<ApiTokenRecord | undefined> {
    for (const t of this.apiTokens.values()) if (t.hash === hash) return { ...t };
    return undefined;
  }
  async listApiTokens(): Promise<ApiTokenRecord[]> {
    return [...this.apiTokens.values()].map((t) => ({ ...t })).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }
  revokeApiToken(id: string, at: Date): Promise<ApiTokenRecord> {
    return this.mutex.run(async () => {
      const next = { ...checkRevocable(id, this.apiTokens.get(id)), revokedAt: at.toISOString() };
      this.apiTokens.set(id, next);
      return { ...next };
    });
  }
}

class MemoryAuditLog implements AuditLog {
  private entries: AuditEntry[] = [];
  async append(entry: Omit<AuditEntry, 'seq'>): Promise<AuditEntry> {
    const e: AuditEntry = structuredClone({ ...entry, seq: this.entries.length + 1 });
    this.entries.push(e);
    return structuredClone(e);
  }
  async list(opts: { limit: number; tenant?: string }): Promise<AuditEntry[]> {
    const out: AuditEntry[] = [];
    for (let i = this.entries.length - 1; i >= 0 && out.length < opts.limit; i--) {
      const e = this.entries[i]!;
      if (opts.tenant === undefined || e.tenant === opts.tenant) out.push(structuredClone(e));
    }
    return out;
  }
}

class MemoryDeliveryState implements DeliveryState {
  private cursors = new Map<string, number>();
  private attempts = new Map<string, Map<number, AttemptRecord>>();
  private dlq = new Map<string, DlqEntry[]>();
  private replay = new Map<string, Map<number, DlqEntry>>();

  private attemptsOf(dest: string): Map<number, AttemptRecord> {
    let m = this.attempts.get(dest);
    if (!m) this.attempts.set(dest, (m = new Map()));
    return m;
  }
  async getCursor(destination: string): Promise<number> {
    return this.cursors.get(destination) ?? 0;
  }
  async commit(destination: string, offset: number): Promise<void> {
    this.cursors.set(destination, offset);
    const m = this.attemptsOf(destination);
    for (const k of m.keys()) if (k <= offset) m.delete(k);
  }
  async getAttempt(destination: string, offset: number): Promise<AttemptRecord | undefined> {
    const r = this.attemptsOf(destination).get(offset);
    return r && { ...r };
  }
  async recordAttempt(destination: string, record: AttemptRecord): Promise<void> {
    this.attemptsOf(destination).set(record.offset, { ...record });
  }
  async addDlq(destination: string, entry: DlqEntry): Promise<void> {
    const list = (this.dlq.get(destination) ?? []).filter((e) => e.offset !== entry.offset);
    list.push({ ...entry });
    list.sort((a, b) => a.offset - b.offset);
    this.dlq.set(destination, list);
    this.attemptsOf(destination).delete(entry.offset);
    this.replayOf(destination).delete(entry.offset);
  }
  private replayOf(dest: string): Map<number, DlqEntry> {
    let m = this.replay.get(dest);
    if (!m) this.replay.set(dest, (m = new Map()));
    return m;
  }
  async replayDlq(destination: string, select: { eventIds?: readonly string[]; limit: number }): Promise<DlqEntry[]> {
    const ids = select.eventIds === undefined ? null : new Set(select.eventIds);
    const list = this.dlq.get(destination) ?? [];
    const moved = list.filter((e) => ids === null || ids.has(e.eventId)).slice(0, Math.max(0, select.limit));
    const gone = new Set(moved.map((e) => e.offset));
    this.dlq.set(destination, list.filter((e) => !gone.has(e.offset)));
    const q = this.replayOf(destination);
    for (const e of moved) q.set(e.offset, { ...e });
    return moved.map((e) => ({ ...e }));
  }
  async listReplay(destination: string, limit: number): Promise<DlqEntry[]> {
    return [...this.replayOf(destination).values()].sort((a, b) => a.offset - b.offset).slice(0, Math.max(0, limit)).map((e) => ({ ...e }));
  }
  async finishReplay(destination: string, offset: number): Promise<void> {
    this.replayOf(destination).delete(offset);
  }
  async listDlq(destination: string, limit: number): Promise<DlqEntry[]> {
    return (this.dlq.get(destination) ?? []).slice(0, limit).map((e) => ({ ...e }));
  }
  async dlqCount(destination: string): Promise<number> {
    return this.dlq.get(destination)?.length ?? 0;
  }
}

export function createMemoryStore(): HubStore {
  return { log: new MemoryEventLog(), registry: new MemoryRegistry(), delivery: new MemoryDeliveryState(), audit: new MemoryAuditLog(), async close() {} };
}
