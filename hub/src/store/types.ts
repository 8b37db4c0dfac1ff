/**
 * Storage seams of the hub. Three small interfaces (event log, registry, delivery
 * state) so a backend (LevelDB, in-memory, later NATS JetStream) is one folder.
 * Nothing here names a storage technology: offsets are plain numbers, bytes are
 * Uint8Array, records are plain objects.
 */
import type { CanonicalEvent } from '@dovetail/shared';

/** Where an agent's chain stands in the hub log. lastSeq 0 / GENESIS_HASH before its first batch. */
export interface AgentCursor {
  lastSeq: number;
  lastHash: Uint8Array;
  /** Events stored for this agent (all batches). */
  events: number;
}

/** The verified batch as received: the exact body and signature bytes. */
export interface BatchToAppend {
  seq: number;
  body: Uint8Array;
  sig: Uint8Array;
  /** sha256(body); becomes the agent's lastHash. */
  hash: Uint8Array;
}

export interface StoredBatch extends BatchToAppend {
  /** Hub offset of the batch's first event (its events take firstOffset..firstOffset+count-1). */
  firstOffset: number;
  count: number;
  receivedAt: string;
}

export interface LogEntry {
  /** Global, gapless hub offset, starting at 1. */
  offset: number;
  agentId: string;
  seq: number;
  event: CanonicalEvent;
}

export interface AppendResult {
  /** Offset of the first event of the batch; equals lastOffset + 1 for an empty batch. */
  firstOffset: number;
  lastOffset: number;
}

export interface EventLog {
  /**
   * Stores the batch bytes, each event under the next global offsets, and the agent's
   * new cursor {seq, hash} in ONE atomic, durable write. Rejects (PROTO_SEQ_GAP /
   * PROTO_SEQ_CONFLICT) when batch.seq is not the agent's lastSeq + 1, so two writers
   * can never store the same seq twice. Resolves only once the write is durable.
   */
  append(agentId: string, batch: BatchToAppend, events: CanonicalEvent[], receivedAt: string): Promise<AppendResult>;
  /**
   * Several consecutive batches of one agent in ONE atomic, durable write (group commit:
   * one fsync for all of them). Same checks as append, in order; all or nothing.
   */
  appendMany(agentId: string, items: readonly { batch: BatchToAppend; events: CanonicalEvent[] }[], receivedAt: string): Promise<AppendResult[]>;
  agentCursor(agentId: string): Promise<AgentCursor>;
  getBatch(agentId: string, seq: number): Promise<StoredBatch | undefined>;
  /** Entries with offset >= fromOffset, in offset order, at most `limit`. */
  read(fromOffset: number, limit: number): Promise<LogEntry[]>;
  /** Highest offset stored; 0 when the log is empty. */
  lastOffset(): Promise<number>;
  /** Called after every append that becomes visible to this process. Returns an unsubscribe function. */
  watch(listener: () => void): () => void;
}

export type AgentStatus = 'active' | 'disabled' | 'revoked';

export interface AgentRecord {
  id: string;
  tenant: string;
  name: string;
  /** base64 of the 32-byte Ed25519 public key. */
  publicKey: string;
  keyId: string;
  status: AgentStatus;
  createdAt: string;
  lastSeenAt: string | null;
  version: string | null;
  host: string | null;
  /** Site name from the enrollment token, when the operator gave one. */
  site?: string | null;
  /**
   * The name the agent gave itself (its config's agent.name) when it enrolled; `name` is the
   * operator's label from the enrollment token. Null for agents enrolled before this was kept.
   */
  agentName?: string | null;
  /**
   * Keys this agent rotated away from, newest first. Each still verifies auth and batches
   * until retiresAt (the grace for batches buffered under it), and is refused after.
   */
  previousKeys?: PreviousAgentKey[];
}

export interface PreviousAgentKey {
  /** base64 of the 32-byte Ed25519 public key. */
  publicKey: string;
  keyId: string;
  rotatedAt: string;
  retiresAt: string;
}

export interface EnrollmentTokenRecord {
  /** hex sha256 of the token; the token itself is never stored. */
  hash: string;
  name: string;
  tenant: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
  agentId: string | null;
  /** Optional site name the enrolled agent is tied to. */
  site?: string | null;
}

export interface Registry {
  putToken(token: EnrollmentTokenRecord): Promise<void>;
  getToken(hash: string): Promise<EnrollmentTokenRecord | undefined>;
  /**
   * Consumes the token and registers the agent in one atomic step. Throws
   * HUB_TOKEN_INVALID (unknown), HUB_TOKEN_USED, HUB_TOKEN_EXPIRED (expiresAt <= now),
   * HUB_KEY_IN_USE (public key already registered). The agent takes the token's tenant.
   */
  enroll(tokenHash: string, agent: Omit<AgentRecord, 'tenant'>, now: Date): Promise<AgentRecord>;
  getAgent(id: string): Promise<AgentRecord | undefined>;
  listAgents(): Promise<AgentRecord[]>;
  /** Throws HUB_NOT_FOUND for an unknown agent. */
  updateAgent(id: string, patch: Partial<Omit<AgentRecord, 'id'>>): Promise<AgentRecord>;
  getSetting(key: string): Promise<string | undefined>;
  putSetting(key: string, value: string): Promise<void>;
  /** Stores a new operator API token record (by id; its hash is indexed). */
  putApiToken(token: ApiTokenRecord): Promise<void>;
  getApiToken(id: string): Promise<ApiTokenRecord | undefined>;
  getApiTokenByHash(hash: string): Promise<ApiTokenRecord | undefined>;
  /** Oldest first. */
  listApiTokens(): Promise<ApiTokenRecord[]>;
  /** Sets revokedAt. Throws HUB_NOT_FOUND (unknown id) or HUB_CONFLICT (already revoked). */
  revokeApiToken(id: string, at: Date): Promise<ApiTokenRecord>;
}

/** read: GETs; operate: + disable/enable agents, issue enrollment tokens; admin: + revoke, API tokens, keys. */
export type ApiScope = 'read' | 'operate' | 'admin';

export interface ApiTokenRecord {
  /** Public id ("tok_<hex>"), shown in lists and the audit log. */
  id: string;
  name: string;
  scope: ApiScope;
  /** The one tenant the token sees; null = every tenant (global). */
  tenant: string | null;
  /** hex sha256 of the token; the token itself is never stored. */
  hash: string;
  createdAt: string;
  /** Principal id that created it. */
  createdBy: string;
  revokedAt: string | null;
}

/** One operator or admin action. The audit log is append-only: no update, no delete. */
export interface AuditEntry {
  /** Assigned by the store: 1, 2, 3... */
  seq: number;
  at: string;
  /** Principal id: an API token id, "admin" (bootstrap admin.token), or "enroll:<agent name>". */
  actor: string;
  actorName: string;
  /** e.g. enroll-token.issued, agent.enrolled, agent.disabled, agent.enabled, agent.revoked, api-token.created, api-token.revoked. */
  action: string;
  /** Id of what was acted on (agent id, token id, enrollment token name). */
  target: string;
  /** Tenant of the target; null for hub-wide targets (a global token). */
  tenant: string | null;
  /** Remote address of the request. */
  remote: string | null;
  /** Small extra facts (never secrets). */
  detail?: Record<string, string | number | boolean | null>;
}

export interface AuditLog {
  /** Appends durably and returns the entry with its seq. */
  append(entry: Omit<AuditEntry, 'seq'>): Promise<AuditEntry>;
  /** Newest first, at most `limit`; only `tenant`'s entries when given. */
  list(opts: { limit: number; tenant?: string }): Promise<AuditEntry[]>;
}

export interface AttemptRecord {
  offset: number;
  eventId: string;
  attempts: number;
  lastError: string;
  lastAttemptAt: string;
}

export interface DlqEntry {
  offset: number;
  eventId: string;
  agentId: string;
  entity: string;
  key: string;
  attempts: number;
  lastError: string;
  failedAt: string;
}

export interface DeliveryState {
  /** Highest offset whose event and all before it are finished for this destination; 0 at start. */
  getCursor(destination: string): Promise<number>;
  /** Persists the cursor and drops attempt records at or below it. */
  commit(destination: string, offset: number): Promise<void>;
  getAttempt(destination: string, offset: number): Promise<AttemptRecord | undefined>;
  recordAttempt(destination: string, record: AttemptRecord): Promise<void>;
  /** Adds the DLQ entry and drops the event's attempt record and replay record (if any) in one write. */
  addDlq(destination: string, entry: DlqEntry): Promise<void>;
  /** DLQ entries in offset (log) order, at most `limit`. */
  listDlq(destination: string, limit: number): Promise<DlqEntry[]>;
  dlqCount(destination: string): Promise<number>;
  /**
   * Moves DLQ entries to the destination's replay queue in one write: those whose eventId is
   * in `eventIds`, or all when it is undefined; at most `limit`, lowest offsets first.
   * Returns the moved entries in offset order (ids not in the DLQ are simply not moved).
   */
  replayDlq(destination: string, select: { eventIds?: readonly string[]; limit: number }): Promise<DlqEntry[]>;
  /** The replay queue in offset order, at most `limit`; entries stay until finishReplay or addDlq. */
  listReplay(destination: string, limit: number): Promise<DlqEntry[]>;
  /** Drops a replay record: the replayed event was delivered. */
  finishReplay(destination: string, offset: number): Promise<void>;
}

export interface HubStore {
  log: EventLog;
  registry: Registry;
  delivery: DeliveryState;
  audit: AuditLog;
  close(): Promise<void>;
}
