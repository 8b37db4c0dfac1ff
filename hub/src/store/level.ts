/**
 * LevelDB backend (`level`), the embedded default: one database at <dataDir>/db for
 * log, registry and delivery state. Appends are single sync batches (fsync before the
 * promise resolves), so an ack sent after append() survives a crash or power loss.
 *
 * Key layout (utf8 keys; numbers zero-padded so key order is numeric order):
 *   logb!<firstOffset>           -> {a: agentId, s: seq, n: count}: the batch's events hold
 *                                   offsets first..first+n-1; the events are read from its body
 *   batch!<agentId>!<seq>        -> StoredBatch
 *   cursor!<agentId>             -> AgentCursor
 *   agent!<id> / agentkey!<pk>   -> AgentRecord / id (one key, one agent)
 *   token!<sha256 hex>           -> EnrollmentTokenRecord
 *   setting!<key>                -> string
 *   apitok!<id> / apitokh!<sha256 hex> -> ApiTokenRecord / id
 *   audit!<seq>                  -> AuditEntry (append-only)
 *   dcur!<dest> / dtry!<dest>!<offset> / dlq!<dest>!<offset> / dlqn!<dest>
 *   rpl!<dest>!<offset>          -> DlqEntry queued for replay
 */
import { Level } from 'level';
import { Packr } from 'msgpackr';
import { DovetailError, decodeBatchBody, type CanonicalEvent } from '@dovetail/shared';
import { EMPTY_CURSOR, Mutex, checkNextSeq, checkRevocable, checkToken, pad } from './common.ts';
import type {
  AgentCursor, AgentRecord, ApiTokenRecord, AppendResult, AttemptRecord, AuditEntry, AuditLog, BatchToAppend, DeliveryState,
  DlqEntry, EnrollmentTokenRecord, EventLog, HubStore, LogEntry, Registry, StoredBatch,
} from './types.ts';

type Db = Level<string, Uint8Array>;
type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });
const enc = (v: unknown): Uint8Array => packr.pack(v);
const dec = <T>(b: Uint8Array): T => packr.unpack(b) as T;
/** Buffers from level and msgpackr are Buffer subclasses; callers compare plain bytes. */
const plain = (b: Uint8Array): Uint8Array => new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
const SYNC = { sync: true } as const;
// Key ranges end at this character: it sorts after every character our ids and digits use.
const END = '\xff';

async function getOr<T>(db: Db, key: string): Promise<T | undefined> {
  const v = await db.get(key);
  return v === undefined ? undefined : dec<T>(v);
}

/** Decoded batches kept for read(): delivery reads the log in order, a window at a time. */
const DECODED_CACHE = 32;

class LevelEventLog implements EventLog {
  private listeners = new Set<() => void>();
  private mutex = new Mutex();
  private decoded = new Map<string, CanonicalEvent[]>();
  constructor(private db: Db, private last: number) {}

  /**
   * One index record per batch, not one key per event: the events are already stored,
   * exactly as signed, in the batch body. Re-encoding each event cost a fifth of the
   * hub's CPU per batch (benchmark profile).
   */
  private async eventsOf(agentId: string, seq: number): Promise<CanonicalEvent[]> {
    const id = `${agentId}!${seq}`;
    let events = this.decoded.get(id);
    if (!events) {
      const b = await getOr<StoredBatch>(this.db, `batch!${agentId}!${pad(seq)}`);
      if (!b) throw new Error(`event log index names batch ${id}, which is not stored`);
      events = decodeBatchBody(b.body).events;
      if (this.decoded.size >= DECODED_CACHE) this.decoded.delete(this.decoded.keys().next().value!);
      this.decoded.set(id, events);
    }
    return events;
  }

  async append(agentId: string, batch: BatchToAppend, events: CanonicalEvent[], receivedAt: string): Promise<AppendResult> {
    return (await this.appendMany(agentId, [{ batch, events }], receivedAt))[0]!;
  }

  appendMany(agentId: string, items: readonly { batch: BatchToAppend; events: CanonicalEvent[] }[], receivedAt: string): Promise<AppendResult[]> {
    return this.mutex.run(async () => {
      let cur = await this.agentCursor(agentId);
      let last = this.last;
      const ops: Op[] = [];
      const results: AppendResult[] = [];
      for (const { batch, events } of items) {
        checkNextSeq(agentId, cur, batch.seq);
        const firstOffset = last + 1;
        if (events.length > 0) ops.push({ type: 'put', key: `logb!${pad(firstOffset)}`, value: enc({ a: agentId, s: batch.seq, n: events.length }) });
        const stored: StoredBatch = { seq: batch.seq, body: batch.body, sig: batch.sig, hash: batch.hash, firstOffset, count: events.length, receivedAt };
        ops.push({ type: 'put', key: `batch!${agentId}!${pad(batch.seq)}`, value: enc(stored) });
        last += events.length;
        cur = { lastSeq: batch.seq, lastHash: batch.hash, events: cur.events + events.length };
        results.push({ firstOffset, lastOffset: last });
      }
      if (items.length === 0) return results;
      ops.push({ type: 'put', key: `cursor!${agentId}`, value: enc(cur) });
      // One durable write for the whole run: an ack for any of them is sent only after it.
      await this.db.batch(ops, SYNC);
      this.last = last;
      for (const l of this.listeners) l();
      return results;
    });
  }
  async agentCursor(agentId: string): Promise<AgentCursor> {
    const c = await getOr<AgentCursor>(this.db, `cursor!${agentId}`);
    return c ? { lastSeq: c.lastSeq, lastHash: plain(c.lastHash), events: c.events } : { ...EMPTY_CURSOR };
  }
  async getBatch(agentId: string, seq: number): Promise<StoredBatch | undefined> {
    const b = await getOr<StoredBatch>(this.db, `batch!${agentId}!${pad(seq)}`);
    return b && { ...b, body: plain(b.body), sig: plain(b.sig), hash: plain(b.hash) };
  }
  async read(fromOffset: number, limit: number): Promise<LogEntry[]> {
    const out: LogEntry[] = [];
    if (limit <= 0) return out;
    const from = Math.max(1, fromOffset);
    // Start at the batch holding `from`: the last index record at or before it.
    let start = `logb!${pad(from)}`;
    for await (const k of this.db.keys({ lte: start, gte: 'logb!', reverse: true, limit: 1 })) start = k;
    for await (const [k, v] of this.db.iterator({ gte: start, lt: `logb!${END}` })) {
      const r = dec<{ a: string; s: number; n: number }>(v);
      const first = Number(k.slice(5));
      if (first + r.n <= from) continue;
      const events = await this.eventsOf(r.a, r.s);
      for (let i = Math.max(0, from - first); i < r.n; i++) {
        out.push({ offset: first + i, agentId: r.a, seq: r.s, event: events[i]! });
        if (out.length >= limit) return out;
      }
    }
    return out;
  }
  async lastOffset(): Promise<number> {
    return this.last;
  }
  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

class LevelRegistry implements Registry {
  private mutex = new Mutex();
  constructor(private db: Db) {}

  async putToken(token: EnrollmentTokenRecord): Promise<void> {
    await this.db.put(`token!${token.hash}`, enc(token), SYNC);
  }
  getToken(hash: string): Promise<EnrollmentTokenRecord | undefined> {
    return getOr(this.db, `token!${hash}`);
  }
  enroll(tokenHash: string, agent: Omit<AgentRecord, 'tenant'>, now: Date): Promise<AgentRecord> {
    return this.mutex.run(async () => {
      const tok = checkToken(await this.getToken(tokenHash), now);
      const holder = await getOr<string>(this.db, `agentkey!${agent.publicKey}`);
      if (holder !== undefined) throw new DovetailError('HUB_KEY_IN_USE', `public key ${agent.keyId} is already registered to agent ${holder}`);
      const rec: AgentRecord = { ...agent, tenant: tok.tenant, site: tok.site ?? null };
      await this.db.batch([
        { type: 'put', key: `token!${tokenHash}`, value: enc({ ...tok, usedAt: now.toISOString(), agentId: agent.id }) },
        { type: 'put', key: `agent!${rec.id}`, value: enc(rec) },
        { type: 'put', key: `agentkey!${rec.publicKey}`, value: enc(rec.id) },
      ], SYNC);
      return rec;
    });
  }
  getAgent(id: string): Promise<AgentRecord | undefined> {
    return getOr(this.db, `agent!${id}`);
  }
  async listAgents(): Promise<AgentRecord[]> {
    const out: AgentRecord[] = [];
    for await (const v of this.db.values({ gte: 'agent!', lt: `agent!${END}` })) out.push(dec<AgentRecord>(v));
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }
  updateAgent(id: string, patch: Partial<Omit<AgentRecord, 'id'>>): Promise<AgentRecord> {
    return this.mutex.run(async () => {
      const a = await this.getAgent(id);
      if (!a) throw new DovetailError('HUB_NOT_FOUND', `agent ${id} is not registered`, { agentId: id });
      const next = { ...a, ...patch, id };
      // Synced: a key rotation the hub confirmed must survive a crash (the agent drops its old key on the confirmation).
      await this.db.put(`agent!${id}`, enc(next), SYNC);
      return next;
    });
  }
  getSetting(key: string): Promise<string | undefined> {
    return getOr(this.db, `setting!${key}`);
  }
  async putSetting(key: string, value: string): Promise<void> {
    await this.db.put(`setting!${key}`, enc(value), SYNC);
  }
  async putApiToken(token: ApiTokenRecord): Promise<void> {
    await this.db.batch([
      { type: 'put', key: `apitok!${token.id}`, value: enc(token) },
      { type: 'put', key: `apitokh!${token.hash}`, value: enc(token.id) },
    ], SYNC);
  }
  getApiToken(id: string): Promise<ApiTokenRecord | undefined> {
    return getOr(this.db, `apitok!${id}`);
  }
  async getApiTokenByHash(hash: string): Promise<ApiTokenRecord | undefined> {
    const id = await getOr<string>(this.db, `apitokh!${hash}`);
    return id === undefined ? undefined : this.getApiToken(id);
  }
  async listApiTokens(): Promise<ApiTokenRecord[]> {
    const out: ApiTokenRecord[] = [];
    for await (const v of this.db.values({ gte: 'apitok!', lt: `apitok!${END}` })) out.push(dec<ApiTokenRecord>(v));
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }
  revokeApiToken(id: string, at: Date): Promise<ApiTokenRecord> {
    return this.mutex.run(async () => {
      const next = { ...checkRevocable(id, await this.getApiToken(id)), revokedAt: at.toISOString() };
      await this.db.put(`apitok!${id}`, enc(next), SYNC);
      return next;
    });
  }
}

class LevelAuditLog implements AuditLog {
  private mutex = new Mutex();
  constructor(private db: Db, private last: number) {}
  append(entry: Omit<AuditEntry, 'seq'>): Promise<AuditEntry> {
    return this.mutex.run(async () => {
      const e: AuditEntry = { ...entry, seq: this.last + 1 };
      await this.db.put(`audit!${pad(e.seq)}`, enc(e), SYNC);
      this.last = e.seq;
      return e;
    });
  }
  async list(opts: { limit: number; tenant?: string }): Promise<AuditEntry[]> {
    const out: AuditEntry[] = [];
    if (opts.limit <= 0) return out;
    for await (const v of this.db.values({ gte: 'audit!', lt: `audit!${END}`, reverse: true })) {
      const e = dec<AuditEntry>(v);
      if (opts.tenant === undefined || e.tenant === opts.tenant) out.push(e);
      if (out.length >= opts.limit) break;
    }
    return out;
  }
}

class LevelDeliveryState implements DeliveryState {
  private mutex = new Mutex();
  constructor(private db: Db) {}

  async getCursor(destination: string): Promise<number> {
    return (await getOr<number>(this.db, `dcur!${destination}`)) ?? 0;
  }
  commit(destination: string, offset: number): Promise<void> {
    return this.mutex.run(async () => {
      const ops: Op[] = [{ type: 'put', key: `dcur!${destination}`, value: enc(offset) }];
      for await (const k of this.db.keys({ gte: `dtry!${destination}!`, lte: `dtry!${destination}!${pad(offset)}` })) ops.push({ type: 'del', key: k });
      await this.db.batch(ops, SYNC);
    });
  }
  getAttempt(destination: string, offset: number): Promise<AttemptRecord | undefined> {
    return getOr(this.db, `dtry!${destination}!${pad(offset)}`);
  }
  async recordAttempt(destination: string, record: AttemptRecord): Promise<void> {
    await this.db.put(`dtry!${destination}!${pad(record.offset)}`, enc(record));
  }
  addDlq(destination: string, entry: DlqEntry): Promise<void> {
    return this.mutex.run(async () => {
      const key = `dlq!${destination}!${pad(entry.offset)}`;
      const exists = (await this.db.get(key)) !== undefined;
      const n = await this.dlqCount(destination);
      await this.db.batch([
        { type: 'put', key, value: enc(entry) },
        { type: 'put', key: `dlqn!${destination}`, value: enc(exists ? n : n + 1) },
        { type: 'del', key: `dtry!${destination}!${pad(entry.offset)}` },
        { type: 'del', key: `rpl!${destination}!${pad(entry.offset)}` },
      ], SYNC);
    });
  }
  async listDlq(destination: string, limit: number): Promise<DlqEntry[]> {
    const out: DlqEntry[] = [];
    if (limit <= 0) return out;
    for await (const v of this.db.values({ gte: `dlq!${destination}!`, lt: `dlq!${destination}!${END}`, limit })) out.push(dec<DlqEntry>(v));
    return out;
  }
  replayDlq(destination: string, select: { eventIds?: readonly string[]; limit: number }): Promise<DlqEntry[]> {
    return this.mutex.run(async () => {
      const ids = select.eventIds === undefined ? null : new Set(select.eventIds);
      const moved: DlqEntry[] = [];
      if (select.limit <= 0) return moved;
      for await (const v of this.db.values({ gte: `dlq!${destination}!`, lt: `dlq!${destination}!${END}` })) {
        const e = dec<DlqEntry>(v);
        if (ids === null || ids.has(e.eventId)) moved.push(e);
        if (moved.length >= select.limit) break;
      }
      if (moved.length === 0) return moved;
      const n = await this.dlqCount(destination);
      const ops: Op[] = [{ type: 'put', key: `dlqn!${destination}`, value: enc(Math.max(0, n - moved.length)) }];
      for (const e of moved) {
        ops.push({ type: 'del', key: `dlq!${destination}!${pad(e.offset)}` }, { type: 'put', key: `rpl!${destination}!${pad(e.offset)}`, value: enc(e) });
      }
      await this.db.batch(ops, SYNC);
      return moved;
    });
  }
  async listReplay(destination: string, limit: number): Promise<DlqEntry[]> {
    const out: DlqEntry[] = [];
    if (limit <= 0) return out;
    for await (const v of this.db.values({ gte: `rpl!${destination}!`, lt: `rpl!${destination}!${END}`, limit })) out.push(dec<DlqEntry>(v));
    return out;
  }
  async finishReplay(destination: string, offset: number): Promise<void> {
    // Not synced: a delete lost in a crash only re-delivers the event once (the receiver dedupes by id).
    await this.db.del(`rpl!${destination}!${pad(offset)}`);
  }
  async dlqCount(destination: string): Promise<number> {
    return (await getOr<number>(this.db, `dlqn!${destination}`)) ?? 0;
  }
}

/**
 * Opens (creating if needed) the LevelDB store at `location` (normally <dataDir>/db).
 * Throws HUB_ALREADY_RUNNING when another process holds the LOCK.
 */
export async function openLevelStore(location: string): Promise<HubStore> {
  const db: Db = new Level<string, Uint8Array>(location, { keyEncoding: 'utf8', valueEncoding: 'view' });
  try {
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new DovetailError('HUB_ALREADY_RUNNING', `another hub process holds ${location} (LevelDB LOCK)`, { location }, { cause: err });
    }
    throw err;
  }
  let last = 0;
  for await (const [k, v] of db.iterator({ gte: 'logb!', lt: `logb!${END}`, reverse: true, limit: 1 })) {
    last = Number(k.slice(5)) + dec<{ n: number }>(v).n - 1;
  }
  let lastAudit = 0;
  for await (const k of db.keys({ gte: 'audit!', lt: `audit!${END}`, reverse: true, limit: 1 })) lastAudit = Number(k.slice(6));
  return {
    log: new LevelEventLog(db, last),
    registry: new LevelRegistry(db),
    delivery: new LevelDeliveryState(db),
    audit: new LevelAuditLog(db, lastAudit),
    close: () => db.close(),
  };
}
