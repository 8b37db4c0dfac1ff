/**
 * The agent's durable outbox: signed batches waiting for the hub's ack, plus the
 * capture offsets and strategy state they were produced from, all in one LevelDB.
 *
 * Invariant 1 lives here: a commit writes the batches, the table's new position,
 * its strategy state, its quarantine entries and the seq/hash chain head in ONE
 * db.batch(), so a crash leaves either all of it or none of it. A batch leaves the
 * outbox only on the hub's (cumulative) ack.
 */
import { join } from 'node:path';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { Level, type BatchOperation } from 'level';
import {
  DovetailError, GENESIS_HASH, MAX_FRAME_BYTES, packr, packEvent, signPackedBatch, toHex, fromHex,
  BATCH_VERSION, type CanonicalEvent,
} from '@dovetail/shared';
import type { StateReader } from '../capture/types.ts';
import type { CommitInput, OutboxStats, QuarantineEntry, StoredBatch } from './types.ts';

export interface OutboxOptions {
  agentId: string;
  /** 64-byte Ed25519 secret key (tweetnacl layout) that signs every batch. */
  secretKey: Uint8Array;
  /** Events per batch, at most. */
  maxBatchEvents: number;
  /** Msgpack bytes of a batch's events, at most (a single larger event still gets its own batch). */
  maxBatchBytes: number;
  /** Clock for batch createdAt and ack times. Default: () => new Date(). */
  now?: () => Date;
}

/** Opening without signing material: `preview`/`status` read offsets, state and stats; commit() is refused. */
export interface ReadOnlyOutboxOptions {
  readOnly: true;
  now?: () => Date;
}

/** Snapshot the running agent writes for `status` (the CLI cannot open a locked LevelDB). */
export interface StatusSnapshot {
  pid: number;
  updatedAt: string;
  outbox: OutboxStats;
  offsets: Record<string, string>;
  [extra: string]: unknown;
}

export type CommitListener = (seqs: number[]) => void;

/** Seq keys sort as text: 16 digits hold every safe integer. */
const SEQ_DIGITS = 16;
const seqKey = (seq: number): string => String(seq).padStart(SEQ_DIGITS, '0');
/** Separates a table name from its state keys inside the one `state` sublevel. */
const SEP = '\x00';
/**
 * Room for the batch envelope (v, agent, seq, prev, createdAt and map headers) on top of
 * the events' own msgpack size, so a body never exceeds the frame limit.
 */
const ENVELOPE_BYTES = 1024;
/** A batch body bigger than this could not cross the wire (frame = body + sig + frame header). */
const MAX_BODY_BYTES = MAX_FRAME_BYTES - 4 * ENVELOPE_BYTES;

const META = {
  nextSeq: 'nextSeq',
  lastHash: 'lastHash',
  lastAckedSeq: 'lastAckedSeq',
  lastAckAt: 'lastAckAt',
  depth: 'depth',
  bytes: 'bytes',
  quarantineSeq: 'quarantineSeq',
  /** The agent id whose seq chain the outbox holds. */
  agentId: 'agentId',
} as const;

/** What opening under a new agent id (a re-enrollment) dropped. */
export interface IdentityChange {
  previousAgentId: string;
  droppedBatches: number;
  resetTables: string[];
}

type Db = Level<string, string>;
/** Values differ per sublevel (bytes for batches, text elsewhere); each sublevel encodes its own. */
type Op = BatchOperation<Db, string, string | Uint8Array>;

interface StoredRecord { body: Uint8Array; sig: Uint8Array; n: number }

function checkTable(table: string): void {
  if (typeof table !== 'string' || table.length === 0 || table.includes(SEP)) {
    throw new TypeError(`table name must be a non-empty string without NUL, got ${JSON.stringify(table)}`);
  }
}

function isLocked(err: unknown): boolean {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  return e?.code === 'LEVEL_LOCKED' || e?.cause?.code === 'LEVEL_LOCKED';
}

export class Outbox {
  readonly dataDir: string;
  private readonly db: Db;
  private readonly batches;
  private readonly meta;
  private readonly offsets;
  private readonly state;
  private readonly quarantineDb;
  private readonly opts: OutboxOptions | undefined;
  /** Signs new batches; replaced by setSigningKey after an agent key rotation. */
  private signingKey: Uint8Array | undefined;
  private readonly now: () => Date;
  private readonly listeners = new Set<CommitListener>();
  /** Writers (commit, ack, resetTable) run one at a time: seq and the hash chain must stay gapless. */
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  // In-memory mirror of meta, loaded once at open and written through on every change.
  private nextSeq = 1;
  private lastHash: Uint8Array = GENESIS_HASH;
  private lastAckedSeq = 0;
  private lastAckAt: string | null = null;
  private depth = 0;
  private bytes = 0;
  private quarantineSeq = 0;

  private constructor(dataDir: string, db: Db, opts: OutboxOptions | undefined, now: () => Date) {
    this.dataDir = dataDir;
    this.db = db;
    this.batches = db.sublevel<string, Uint8Array>('outbox', { valueEncoding: 'view' });
    this.meta = db.sublevel<string, string>('meta', { valueEncoding: 'utf8' });
    this.offsets = db.sublevel<string, string>('offsets', { valueEncoding: 'utf8' });
    this.state = db.sublevel<string, string>('state', { valueEncoding: 'utf8' });
    this.quarantineDb = db.sublevel<string, string>('quarantine', { valueEncoding: 'utf8' });
    this.opts = opts;
    this.signingKey = opts?.secretKey;
    this.now = now;
  }

  /**
   * Signs batches committed from now on with `secretKey` (after an agent key rotation).
   * Batches already stored keep their bytes and old signature: the
   * hub accepts them under the old key until its grace ends. Takes effect between commits.
   */
  setSigningKey(secretKey: Uint8Array): Promise<void> {
    this.assertOpen();
    if (!this.opts) throw new TypeError('outbox was opened read-only; it signs nothing');
    if (!(secretKey instanceof Uint8Array) || secretKey.byteLength !== 64) throw new TypeError('setSigningKey: secretKey must be a 64-byte Ed25519 secret key');
    return this.serial(async () => {
      this.signingKey = secretKey;
    });
  }

  static async open(dataDir: string, opts: OutboxOptions | ReadOnlyOutboxOptions): Promise<Outbox> {
    const signing = 'readOnly' in opts ? undefined : opts;
    if (signing) {
      if (!signing.agentId) throw new TypeError('Outbox.open: agentId is required');
      if (!(signing.secretKey instanceof Uint8Array) || signing.secretKey.byteLength !== 64) {
        throw new TypeError('Outbox.open: secretKey must be a 64-byte Ed25519 secret key');
      }
      if (!Number.isSafeInteger(signing.maxBatchEvents) || signing.maxBatchEvents < 1) {
        throw new RangeError(`Outbox.open: maxBatchEvents must be a positive integer, got ${signing.maxBatchEvents}`);
      }
      if (!Number.isSafeInteger(signing.maxBatchBytes) || signing.maxBatchBytes < 1) {
        throw new RangeError(`Outbox.open: maxBatchBytes must be a positive integer, got ${signing.maxBatchBytes}`);
      }
    }
    await mkdir(dataDir, { recursive: true });
    const location = join(dataDir, 'db');
    const db = new Level<string, string>(location, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    try {
      await db.open();
    } catch (err) {
      if (isLocked(err)) {
        throw new DovetailError(
          'AGENT_ALREADY_RUNNING',
          `another dovetail-agent is already running on ${dataDir} (LevelDB lock held on ${location})`,
          { dataDir },
          { cause: err },
        );
      }
      throw err;
    }
    const outbox = new Outbox(dataDir, db, signing, opts.now ?? (() => new Date()));
    await outbox.loadMeta();
    if (signing) outbox.identityChange = await outbox.adoptAgent(signing.agentId);
    return outbox;
  }

  /** Set by open() when the data directory held another agent id's chain (see adoptAgent). */
  identityChange: IdentityChange | undefined;

  /**
   * A re-enrolled agent (`enroll --force`) gets a new id, and the hub starts its chain at
   * seq 1. Batches of the old id can never be accepted under the new one, and the old
   * capture positions advanced past them: drop both, so every table is re-snapshotted and
   * nothing captured is lost. Quarantine is kept. Safe to repeat after a crash midway:
   * the id is recorded last.
   */
  private async adoptAgent(agentId: string): Promise<IdentityChange | undefined> {
    const stored = await this.meta.get(META.agentId);
    if (stored === agentId) return undefined;
    if (stored === undefined && this.nextSeq === 1) {
      await this.meta.put(META.agentId, agentId);
      return undefined;
    }
    const resetTables = [...new Set([...(await this.offsets.keys().all())])];
    const droppedBatches = this.depth;
    await this.batches.clear();
    await this.offsets.clear();
    await this.state.clear();
    await this.db.batch([
      { type: 'put', sublevel: this.meta, key: META.nextSeq, value: '1' },
      { type: 'put', sublevel: this.meta, key: META.lastHash, value: toHex(GENESIS_HASH) },
      { type: 'put', sublevel: this.meta, key: META.lastAckedSeq, value: '0' },
      { type: 'del', sublevel: this.meta, key: META.lastAckAt },
      { type: 'put', sublevel: this.meta, key: META.depth, value: '0' },
      { type: 'put', sublevel: this.meta, key: META.bytes, value: '0' },
      { type: 'put', sublevel: this.meta, key: META.agentId, value: agentId },
    ] as BatchOperation<Db, string, string>[]);
    await this.loadMeta();
    return { previousAgentId: stored ?? '(unrecorded)', droppedBatches, resetTables };
  }

  private async loadMeta(): Promise<void> {
    const m = this.meta;
    const num = async (k: string, dflt: number) => {
      const v = await m.get(k);
      return v === undefined ? dflt : Number(v);
    };
    this.nextSeq = await num(META.nextSeq, 1);
    const h = await m.get(META.lastHash);
    this.lastHash = h === undefined ? GENESIS_HASH : fromHex(h);
    this.lastAckedSeq = await num(META.lastAckedSeq, 0);
    this.lastAckAt = (await m.get(META.lastAckAt)) ?? null;
    this.depth = await num(META.depth, 0);
    this.bytes = await num(META.bytes, 0);
    this.quarantineSeq = await num(META.quarantineSeq, 0);
  }

  /** Runs fn after every earlier writer finished; a failure does not poison later writers. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private assertOpen(): void {
    if (this.closed) throw new TypeError('outbox is closed');
  }

  /** Called after each commit that stored batches (the uplink wakes up). Returns an unsubscribe function. */
  onCommit(listener: CommitListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  commit(input: CommitInput): Promise<{ seqs: number[] }> {
    this.assertOpen();
    const opts = this.opts;
    if (!opts) throw new TypeError('outbox was opened read-only; commit() needs agentId and secretKey');
    checkTable(input.table);
    if (typeof input.position !== 'string') throw new TypeError('commit: position must be an encoded string');
    return this.serial(async () => {
      const { groups, oversized } = splitEvents(input.events, opts.maxBatchEvents, opts.maxBatchBytes);
      const createdAt = this.now().toISOString();
      const quarantine: QuarantineEntry[] = [...input.quarantine];
      for (const ev of oversized) {
        quarantine.push({
          table: input.table, key: String(ev.key), code: 'PROTO_TOO_LARGE',
          reason: `event ${ev.id} encodes to more than the ${MAX_BODY_BYTES}-byte batch body limit`,
          row: null, at: createdAt,
        });
      }

      const ops: Op[] = [];
      let seq = this.nextSeq;
      let prev = this.lastHash;
      let addedBytes = 0;
      const seqs: number[] = [];
      for (const events of groups) {
        const signed = signPackedBatch({ v: BATCH_VERSION, agent: opts.agentId, seq, prev, createdAt }, events, this.signingKey!);
        const record: StoredRecord = { body: signed.body, sig: signed.sig, n: events.length };
        ops.push({ type: 'put', sublevel: this.batches, key: seqKey(seq), value: packr.pack(record) });
        addedBytes += signed.body.byteLength;
        seqs.push(seq);
        prev = signed.hash;
        seq++;
      }
      ops.push({ type: 'put', sublevel: this.offsets, key: input.table, value: input.position });
      for (const op of input.stateOps) {
        const key = input.table + SEP + op.key;
        if (op.type === 'put') ops.push({ type: 'put', sublevel: this.state, key, value: op.value });
        else ops.push({ type: 'del', sublevel: this.state, key });
      }
      let qSeq = this.quarantineSeq;
      for (const q of quarantine) {
        qSeq++;
        ops.push({ type: 'put', sublevel: this.quarantineDb, key: seqKey(qSeq), value: JSON.stringify(q) });
      }
      const depth = this.depth + seqs.length;
      const bytes = this.bytes + addedBytes;
      ops.push(
        { type: 'put', sublevel: this.meta, key: META.nextSeq, value: String(seq) },
        { type: 'put', sublevel: this.meta, key: META.lastHash, value: toHex(prev) },
        { type: 'put', sublevel: this.meta, key: META.depth, value: String(depth) },
        { type: 'put', sublevel: this.meta, key: META.bytes, value: String(bytes) },
        { type: 'put', sublevel: this.meta, key: META.quarantineSeq, value: String(qSeq) },
      );
      await this.db.batch(ops as BatchOperation<Db, string, string>[]);
      // Only after the write is durable does memory move on; a failed write leaves both unchanged.
      this.nextSeq = seq;
      this.lastHash = prev;
      this.depth = depth;
      this.bytes = bytes;
      this.quarantineSeq = qSeq;
      if (seqs.length > 0) for (const l of this.listeners) l(seqs);
      return { seqs };
    });
  }

  async getPosition(table: string): Promise<string | undefined> {
    this.assertOpen();
    checkTable(table);
    return this.offsets.get(table);
  }

  /** All committed positions, by table name. */
  async positions(): Promise<Record<string, string>> {
    this.assertOpen();
    const out: Record<string, string> = {};
    for await (const [k, v] of this.offsets.iterator()) out[k] = v;
    return out;
  }

  stateReader(table: string): StateReader {
    checkTable(table);
    const state = this.state;
    const ns = table + SEP;
    return {
      get: (key: string) => state.get(ns + key),
      getMany: (keys: readonly string[]) => state.getMany(keys.map((k) => ns + k)),
      async *entries(prefix: string, after?: string): AsyncIterable<[string, string]> {
        const from = ns + prefix;
        const range = after !== undefined && after.startsWith(prefix) ? { gt: ns + after } : { gte: from };
        for await (const [k, v] of state.iterator(range)) {
          // Stop at the first key past the prefix; avoids computing an exclusive upper bound over UTF-8.
          if (!k.startsWith(from)) break;
          yield [k.slice(ns.length), v];
        }
      },
    };
  }

  /** Batches with seq > afterSeq, in seq order, at most `limit`. */
  async pending(afterSeq: number, limit: number): Promise<StoredBatch[]> {
    this.assertOpen();
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`pending: limit must be a non-negative integer, got ${limit}`);
    if (limit === 0) return [];
    const out: StoredBatch[] = [];
    for await (const [k, v] of this.batches.iterator({ gt: seqKey(Math.max(0, afterSeq)), limit })) {
      const r = packr.unpack(v) as StoredRecord;
      out.push({ seq: Number(k), body: r.body, sig: r.sig, bytes: r.body.byteLength, eventCount: r.n });
    }
    return out;
  }

  /** Cumulative: forgets every batch with seq <= `seq`. Idempotent; an unknown or old seq is harmless. */
  ack(seq: number): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`ack: seq must be a non-negative integer, got ${seq}`);
    return this.serial(async () => {
      // Never beyond what was committed: an ack for a future seq cannot delete batches made later.
      const upTo = Math.min(seq, this.nextSeq - 1);
      if (upTo <= this.lastAckedSeq) return;
      const ops: Op[] = [];
      let removedBytes = 0;
      let removed = 0;
      for await (const [k, v] of this.batches.iterator({ lte: seqKey(upTo) })) {
        const r = packr.unpack(v) as StoredRecord;
        removedBytes += r.body.byteLength;
        removed++;
        ops.push({ type: 'del', sublevel: this.batches, key: k });
      }
      const at = this.now().toISOString();
      const depth = Math.max(0, this.depth - removed);
      const bytes = Math.max(0, this.bytes - removedBytes);
      ops.push(
        { type: 'put', sublevel: this.meta, key: META.lastAckedSeq, value: String(upTo) },
        { type: 'put', sublevel: this.meta, key: META.lastAckAt, value: at },
        { type: 'put', sublevel: this.meta, key: META.depth, value: String(depth) },
        { type: 'put', sublevel: this.meta, key: META.bytes, value: String(bytes) },
      );
      await this.db.batch(ops as BatchOperation<Db, string, string>[]);
      this.lastAckedSeq = upTo;
      this.lastAckAt = at;
      this.depth = depth;
      this.bytes = bytes;
    });
  }

  async stats(): Promise<OutboxStats> {
    return {
      depth: this.depth,
      bytes: this.bytes,
      nextSeq: this.nextSeq,
      lastAckedSeq: this.lastAckedSeq,
      lastAckAt: this.lastAckAt,
    };
  }

  async *quarantine(): AsyncIterable<QuarantineEntry> {
    this.assertOpen();
    for await (const v of this.quarantineDb.values()) yield JSON.parse(v) as QuarantineEntry;
  }

  /** Forgets a table's position and strategy state (resync: the next poll snapshots again). One write. */
  resetTable(table: string): Promise<void> {
    this.assertOpen();
    checkTable(table);
    return this.serial(async () => {
      const ops: Op[] = [{ type: 'del', sublevel: this.offsets, key: table }];
      const ns = table + SEP;
      for await (const k of this.state.keys({ gte: ns })) {
        if (!k.startsWith(ns)) break;
        ops.push({ type: 'del', sublevel: this.state, key: k });
      }
      await this.db.batch(ops as BatchOperation<Db, string, string>[]);
    });
  }

  /** Writes `<dataDir>/status.json` atomically (write + rename) for `status` while the DB is locked. */
  async writeStatusFile(extra: Record<string, unknown> = {}): Promise<StatusSnapshot> {
    const snapshot: StatusSnapshot = {
      ...extra,
      pid: process.pid,
      updatedAt: this.now().toISOString(),
      outbox: await this.stats(),
      offsets: await this.positions(),
    };
    const path = statusPath(this.dataDir);
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(snapshot, null, 2) + '\n', { mode: 0o600 });
    await rename(tmp, path);
    return snapshot;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    await this.chain;
    await this.db.close();
  }
}

export function statusPath(dataDir: string): string {
  return join(dataDir, 'status.json');
}

/** The last snapshot a running agent wrote, or undefined when there is none. */
export async function readStatus(dataDir: string): Promise<StatusSnapshot | undefined> {
  let text: string;
  try {
    text = await readFile(statusPath(dataDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as StatusSnapshot;
}

/**
 * Outbox state for `status`: read the DB directly when no agent runs, otherwise the
 * snapshot file the running agent keeps fresh (`live` tells which one it is).
 */
export async function inspectOutbox(dataDir: string): Promise<{ live: boolean; snapshot: StatusSnapshot | undefined }> {
  let outbox: Outbox;
  try {
    outbox = await Outbox.open(dataDir, { readOnly: true });
  } catch (err) {
    if (err instanceof DovetailError && err.code === 'AGENT_ALREADY_RUNNING') {
      return { live: true, snapshot: await readStatus(dataDir) };
    }
    throw err;
  }
  try {
    return {
      live: false,
      snapshot: { pid: 0, updatedAt: new Date().toISOString(), outbox: await outbox.stats(), offsets: await outbox.positions() },
    };
  } finally {
    await outbox.close();
  }
}

/**
 * Splits events into batches by count and by msgpack size. An event that alone could
 * not fit a frame is returned in `oversized` (quarantined by the caller), never sent.
 */
export function splitEvents(
  events: CanonicalEvent[], maxEvents: number, maxBytes: number,
): { groups: Uint8Array[][]; oversized: CanonicalEvent[] } {
  const groups: Uint8Array[][] = [];
  const oversized: CanonicalEvent[] = [];
  let cur: Uint8Array[] = [];
  let curBytes = 0;
  for (const ev of events) {
    // Packed once: these bytes are measured here and become the batch body as they are.
    const packed = packEvent(ev);
    const size = packed.byteLength;
    if (size > MAX_BODY_BYTES) {
      oversized.push(ev);
      continue;
    }
    if (cur.length > 0 && (cur.length >= maxEvents || curBytes + size > maxBytes)) {
      groups.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(packed);
    curBytes += size;
  }
  if (cur.length > 0) groups.push(cur);
  return { groups, oversized };
}
