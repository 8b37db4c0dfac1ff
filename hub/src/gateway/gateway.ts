/**
 * Agent gateway: the hub end of the agent WebSocket.
 *
 * Per connection: challenge -> auth (signature over authMessage with the registered
 * key, over the nonce sent on THIS connection) -> ready {lastSeq, lastHash} -> batches,
 * each verified (signature, body, agent/seq, seq order, chain) and acked only after the
 * event log says it is durable. Any verification failure closes that connection only.
 *
 * Mutual authentication: an agent that puts its own nonce in the socket URL gets, right
 * after the challenge, a `hub-proof` frame: the hub key's signature over both nonces, and
 * the announcement chain from the hub key the agent pinned (URL `pin`) to the current one.
 *
 * Keys: auth and batches verify with the agent's active key or a previous key still in
 * its rotation grace; a key past its grace is refused (PROTO_KEY_RETIRED).
 *
 * Remote config: after `ready`, a pending config for the agent is signed with the current
 * hub key and sent; the agent's `config-result` is recorded.
 *
 * Ordering: all work for one agent runs on one promise chain (per-agent queue), so a
 * replacing connection's `ready` is computed only after the old connection's appends
 * finished, and appends never interleave.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  AGENT_NONCE_PARAM, AGENT_PIN_PARAM, AGENT_WS_PATH, CLOSE, DovetailError, MAX_FRAME_BYTES, PROTOCOL_VERSION, authMessage, bytesEqual, decodeBatchBody,
  decodeFrame, encodeFrame, hubProofMessage, isDovetailError, sha256, sign, signConfig, verify, verifyBatchSignature,
  type AuthFrame, type BatchBody, type BatchFrame, type CanonicalEvent, type ConfigResultFrame, type HubFrame, type KeyAnnouncement, type Logger,
} from '@dovetail/shared';
import type { AgentRecord, HubStore } from '../store/types.ts';
import { FleetTracker } from '../fleet/fleet.ts';
import { agentKeys, findAgentKey } from '../keys/agent-keys.ts';
import type { HubKeySource } from '../keys/hub-keys.ts';
import type { RemoteConfigRecord } from '../remote/remote-config.ts';

/** What the gateway needs from the remote config store (RemoteConfigs satisfies it). */
export interface GatewayConfigs {
  pending(agentId: string): Promise<RemoteConfigRecord | undefined>;
  result(agentId: string, version: number, ok: boolean, reason: string, now: Date): Promise<RemoteConfigRecord | undefined>;
}

export interface GatewayOptions {
  store: HubStore;
  /**
   * The hub key (read at each use, so a rotation takes effect on the next connection):
   * signs the hub's proof and remote configs, and its id is bound into every auth signature.
   */
  hubKey?: HubKeySource;
  /** Key id bound into auth signatures when no hubKey is given (tests of the agent side of auth only). */
  hubKeyId?: string;
  /** Remote configs to send after `ready` and to record verdicts in. */
  configs?: GatewayConfigs;
  /** Called with each recorded config verdict (audit). */
  onConfigResult?: (agent: AgentRecord, rec: RemoteConfigRecord) => void;
  logger: Logger;
  /** Injected clock. Default: () => new Date(). */
  now?: () => Date;
  /** Connections allowed between upgrade and successful auth. Default 64; extras are closed with CLOSE.BUSY. */
  maxHandshakes?: number;
  /** Time an agent has to answer the challenge, ms. Default 10 000. */
  handshakeTimeoutMs?: number;
  /** Frames queued per connection before the socket is paused (backpressure). Default 16. */
  maxQueuedFrames?: number;
  /** Largest frame accepted, bytes. Default MAX_FRAME_BYTES; larger frames close with 1009. */
  maxPayloadBytes?: number;
  /** Injected for tests. Default node:crypto randomBytes. */
  randomBytes?: (n: number) => Uint8Array;
  /** Live fleet state (heartbeats, status frames). Default: a tracker with the default offline silence (60 s). */
  fleet?: FleetTracker;
  /** How often silent connections are looked for and closed, ms. Default min(5 000, offlineAfterMs / 4); 0 disables the sweep. */
  sweepIntervalMs?: number;
}

/** lastSeenAt is written to the registry at most this often per agent (status frames arrive every few seconds). */
const LAST_SEEN_WRITE_MS = 30_000;

const NONCE_BYTES = 32;

interface Conn {
  ws: WebSocket;
  remote: string | null;
  nonce: Uint8Array;
  /** Hub key id named in this connection's challenge (the auth signature binds it); after auth, the newest one this agent was told about. */
  hubKeyId: string;
  agent: AgentRecord | null;
  publicKey: Uint8Array | null;
  queued: number;
  /** Batch frames received and prepared, waiting for the next drain (group commit). */
  batches: { f: BatchFrame; pre: PreparedBatch }[];
  closed: boolean;
  handshaking: boolean;
  timer: NodeJS.Timeout | null;
}

export class AgentGateway {
  private readonly wss: WebSocketServer;
  private readonly live = new Map<string, Conn>();
  private readonly conns = new Set<Conn>();
  private readonly queues = new Map<string, Promise<void>>();
  private handshakes = 0;
  private readonly now: () => Date;
  private readonly maxHandshakes: number;
  private readonly handshakeTimeoutMs: number;
  private readonly maxQueuedFrames: number;
  private readonly random: (n: number) => Uint8Array;
  private readonly log: Logger;
  private closing = false;
  readonly fleet: FleetTracker;
  private readonly lastSeenWritten = new Map<string, number>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(private readonly opts: GatewayOptions) {
    this.now = opts.now ?? (() => new Date());
    this.maxHandshakes = opts.maxHandshakes ?? 64;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.maxQueuedFrames = opts.maxQueuedFrames ?? 16;
    this.random = opts.randomBytes ?? ((n) => new Uint8Array(nodeRandomBytes(n)));
    this.log = opts.logger.child({ component: 'gateway' });
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayloadBytes ?? MAX_FRAME_BYTES });
    if (!opts.hubKey && opts.hubKeyId === undefined) throw new TypeError('AgentGateway needs hubKey or hubKeyId');
    this.fleet = opts.fleet ?? new FleetTracker({ now: this.now });
    const sweepMs = opts.sweepIntervalMs ?? Math.min(5000, Math.max(10, Math.floor(this.fleet.offlineAfterMs / 4)));
    if (sweepMs > 0) {
      this.sweeper = setInterval(() => this.sweep(), sweepMs);
      this.sweeper.unref?.();
    }
  }

  /** Closes connections that stayed silent past the offline threshold (half-open sockets, hung agents); they reconnect. */
  sweep(): string[] {
    const silent = this.fleet.silent();
    for (const id of silent) {
      const c = this.live.get(id);
      if (c) {
        this.log.warn({ agentId: id, offlineAfterMs: this.fleet.offlineAfterMs }, 'agent silent past the offline threshold; closing its socket');
        this.closeConn(c, CLOSE.GOING_AWAY, 'no heartbeat');
      } else {
        this.fleet.disconnected(id);
      }
    }
    return silent;
  }

  /** Routes HTTP upgrades on AGENT_WS_PATH to the gateway; other upgrade paths get 404. */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== AGENT_WS_PATH || this.closing) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
    });
  }

  isOnline(agentId: string): boolean {
    return this.live.has(agentId) && this.fleet.isOnline(agentId);
  }

  onlineAgents(): string[] {
    return [...this.live.keys()];
  }

  /** Closes the agent's live connection (e.g. after revocation). */
  disconnect(agentId: string, code: number = CLOSE.REVOKED, reason = 'agent disconnected by operator'): void {
    const c = this.live.get(agentId);
    if (c) this.closeConn(c, code, reason);
  }

  /** Closes every connection with `code` (default 1001) and waits for queued appends to finish. */
  async close(code: number = CLOSE.GOING_AWAY): Promise<void> {
    this.closing = true;
    if (this.sweeper) clearInterval(this.sweeper);
    for (const c of this.conns) this.closeConn(c, code, 'hub shutting down');
    await Promise.allSettled([...this.queues.values()]);
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private get hubKeyId(): string {
    return this.opts.hubKey?.keyId ?? this.opts.hubKeyId!;
  }

  /** Tells every connected agent about a hub key rotation (the announcement is signed by the old key). Returns how many were told. */
  announceHubKey(chain: KeyAnnouncement[]): number {
    let n = 0;
    const newest = chain.at(-1)?.newKeyId;
    for (const c of this.live.values()) {
      if (c.closed) continue;
      this.send(c, { t: 'hub-key', v: PROTOCOL_VERSION, chain });
      if (newest) c.hubKeyId = newest;
      n++;
    }
    return n;
  }

  /** Sends the agent's pending remote config now if it is connected. Returns whether it was sent. */
  async offerConfig(agentId: string): Promise<boolean> {
    const c = this.live.get(agentId);
    if (!c || c.closed || !this.opts.configs) return false;
    const rec = await this.opts.configs.pending(agentId);
    if (!rec || c.closed) return false;
    this.sendConfig(c, rec);
    return true;
  }

  private sendConfig(conn: Conn, rec: RemoteConfigRecord): void {
    const key = this.opts.hubKey;
    if (!key) return;
    // Signed at send time with the current hub key, so a config pushed before a hub key rotation still verifies after it.
    // An agent that authenticated just before a rotation missed the announcement: tell it first, or it refuses the signature.
    if (conn.hubKeyId !== key.keyId) {
      const chain = key.chainFrom(conn.hubKeyId);
      if (chain.length) this.send(conn, { t: 'hub-key', v: PROTOCOL_VERSION, chain });
      conn.hubKeyId = key.keyId;
    }
    const doc = new TextEncoder().encode(rec.document);
    this.send(conn, { t: 'config', v: PROTOCOL_VERSION, agent: rec.agentId, version: rec.version, doc, hubKeyId: key.keyId, sig: signConfig(rec.agentId, rec.version, doc, key.keyPair.secretKey) });
    this.log.info({ agentId: rec.agentId, version: rec.version }, 'remote config sent to agent');
  }

  private onConnection(ws: WebSocket, req: IncomingMessage): void {
    const conn: Conn = { ws, remote: req.socket.remoteAddress ?? null, nonce: this.random(NONCE_BYTES), hubKeyId: this.hubKeyId, agent: null, publicKey: null, queued: 0, batches: [], closed: false, handshaking: true, timer: null };
    this.conns.add(conn);
    ws.on('error', (err) => this.log.debug({ err, remote: req.socket.remoteAddress }, 'agent socket error'));
    ws.on('close', () => this.onClose(conn));
    // The agent's uplink pings every heartbeat interval; ws answers with a pong, we only note the agent is alive.
    ws.on('ping', () => { if (conn.agent && !conn.closed) this.fleet.heard(conn.agent.id); });
    if (this.handshakes >= this.maxHandshakes) {
      conn.handshaking = false;
      this.closeConn(conn, CLOSE.BUSY, 'too many handshakes in progress; retry later');
      return;
    }
    this.handshakes++;
    conn.timer = setTimeout(() => this.closeConn(conn, CLOSE.AUTH_FAILED, 'no auth within the handshake timeout'), this.handshakeTimeoutMs);
    conn.timer.unref?.();
    ws.on('message', (data, isBinary) => this.onMessage(conn, data, isBinary));
    this.send(conn, { t: 'challenge', v: PROTOCOL_VERSION, nonce: conn.nonce, hubKeyId: conn.hubKeyId, ts: this.now().toISOString() });
    this.sendProof(conn, req);
  }

  /** The hub's half of mutual auth, for agents that asked (sent their nonce in the URL). */
  private sendProof(conn: Conn, req: IncomingMessage): void {
    const key = this.opts.hubKey;
    if (!key) return;
    const q = new URL(req.url ?? '/', 'http://hub').searchParams;
    const nonceText = q.get(AGENT_NONCE_PARAM);
    if (nonceText === null) return;
    const agentNonce = new Uint8Array(Buffer.from(nonceText, 'base64url'));
    if (agentNonce.byteLength !== NONCE_BYTES) {
      this.fail(conn, new DovetailError('PROTO_MALFORMED', `the ${AGENT_NONCE_PARAM} URL parameter must be ${NONCE_BYTES} bytes in base64url`), null);
      return;
    }
    const pin = q.get(AGENT_PIN_PARAM) ?? undefined;
    this.send(conn, {
      t: 'hub-proof', v: PROTOCOL_VERSION, hubKeyId: conn.hubKeyId,
      sig: sign(hubProofMessage(agentNonce, conn.nonce, conn.hubKeyId), key.keyPair.secretKey),
      chain: pin === conn.hubKeyId ? [] : key.chainFrom(pin),
    });
  }

  private endHandshake(conn: Conn): void {
    if (conn.handshaking) {
      conn.handshaking = false;
      this.handshakes--;
    }
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = null;
  }

  private onClose(conn: Conn): void {
    conn.closed = true;
    this.endHandshake(conn);
    this.conns.delete(conn);
    this.forget(conn);
  }

  /** The agent's live connection ends: fleet shows it offline, the registry keeps when it was last heard. */
  private forget(conn: Conn): void {
    const agent = conn.agent;
    if (!agent || this.live.get(agent.id) !== conn) return;
    this.live.delete(agent.id);
    this.fleet.disconnected(agent.id);
    const heard = this.fleet.view(agent.id).lastHeardAt;
    if (heard) {
      this.opts.store.registry.updateAgent(agent.id, { lastSeenAt: heard }).catch((err) => this.log.warn({ err, agentId: agent.id }, 'could not record agent last-seen'));
    }
  }

  private onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    if (conn.closed) return;
    let frame;
    try {
      if (!isBinary) throw new DovetailError('PROTO_MALFORMED', 'text frames are not part of the protocol');
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      frame = decodeFrame(bytes);
    } catch (err) {
      this.fail(conn, err, null);
      return;
    }
    if (frame.t === 'auth') {
      if (conn.agent || !conn.handshaking) return this.fail(conn, new DovetailError('PROTO_UNEXPECTED', 'auth after the connection was authenticated'), null);
      // Auth is handled once; later frames wait in the agent queue set up by it.
      conn.queued++;
      void this.handleAuth(conn, frame).finally(() => { conn.queued--; });
      return;
    }
    if (!conn.agent) return this.fail(conn, new DovetailError('PROTO_UNEXPECTED', `"${frame.t}" frame before auth`), null);
    this.fleet.heard(conn.agent.id);
    if (frame.t === 'batch') {
      const f = frame;
      // Stateless work (copy, decode, hash) runs now, while the previous batch's durable
      // write is in flight; the checks that need the agent's state run in order below.
      conn.batches.push({ f, pre: prepareBatch(f) });
      // Bounded: past the limit the socket stops reading until a drain takes some.
      if (conn.batches.length >= this.maxQueuedFrames) conn.ws.pause();
      // One drain per run of queued batches: they are checked in order and stored with one durable write.
      if (conn.batches.length === 1) this.enqueue(conn, () => this.drainBatches(conn));
      return;
    }
    if (frame.t === 'config-result') {
      const f = frame;
      this.enqueue(conn, () => this.handleConfigResult(conn, f));
      return;
    }
    if (frame.t === 'status') {
      // Heartbeat with health: kept in memory for the fleet view; the registry's lastSeenAt is written sparingly.
      const agentId = conn.agent.id;
      this.fleet.status(agentId, frame.status);
      const at = this.now().getTime();
      if (at - (this.lastSeenWritten.get(agentId) ?? 0) >= LAST_SEEN_WRITE_MS) {
        this.lastSeenWritten.set(agentId, at);
        this.opts.store.registry.updateAgent(agentId, { lastSeenAt: new Date(at).toISOString() }).catch((err) => this.log.warn({ err, agentId }, 'could not record agent last-seen'));
      }
      return;
    }
    this.fail(conn, new DovetailError('PROTO_UNEXPECTED', `agents do not send "${frame.t}" frames`), null);
  }

  /** Runs fn on the agent's queue; pauses the socket while too many frames wait. */
  private enqueue(conn: Conn, fn: () => Promise<void>): void {
    const agentId = conn.agent!.id;
    conn.queued++;
    if (conn.queued >= this.maxQueuedFrames) conn.ws.pause();
    const prev = this.queues.get(agentId) ?? Promise.resolve();
    const next = prev.then(async () => {
      if (conn.closed) return;
      try {
        await fn();
      } catch (err) {
        this.fail(conn, err, null);
      }
    }).finally(() => {
      conn.queued--;
      if (conn.queued < this.maxQueuedFrames && conn.ws.isPaused) conn.ws.resume();
      if (this.queues.get(agentId) === next) this.queues.delete(agentId);
    });
    this.queues.set(agentId, next);
  }

  private async handleAuth(conn: Conn, f: AuthFrame): Promise<void> {
    let agent: AgentRecord | undefined;
    try {
      agent = await this.opts.store.registry.getAgent(f.agent);
    } catch (err) {
      this.log.error({ err }, 'registry lookup failed during auth');
      return this.closeConn(conn, CLOSE.GOING_AWAY, 'hub registry unavailable');
    }
    if (conn.closed) return;
    if (!agent) return this.reject(conn, CLOSE.AUTH_FAILED, 'HUB_UNKNOWN_AGENT', `agent ${f.agent} is not registered`);
    if (agent.status !== 'active') {
      this.fleet.error(agent.id, 'HUB_AGENT_DISABLED', `connection refused: agent is ${agent.status}`);
      return this.reject(conn, CLOSE.REVOKED, 'HUB_AGENT_DISABLED', `agent ${agent.id} is ${agent.status}`);
    }
    // Any key of the agent that is not retired: after a rotation the agent may still run on the old one for a while.
    const key = findAgentKey(agent, f.keyId, this.now());
    if (key?.retired) {
      this.fleet.error(agent.id, 'PROTO_KEY_RETIRED', `auth with key ${key.keyId}, retired at ${key.retiresAt}`);
      return this.reject(conn, CLOSE.AUTH_FAILED, 'PROTO_KEY_RETIRED', `agent ${agent.id} authenticated with key ${key.keyId}, retired at ${key.retiresAt} (its rotation grace ended)`);
    }
    const publicKey = key?.publicKey;
    // The nonce must be the one sent on this connection: an auth frame recorded elsewhere is useless here.
    const ok = publicKey !== undefined && bytesEqual(f.nonce, conn.nonce) &&
      verify(authMessage(conn.nonce, agent.id, conn.hubKeyId), f.sig, publicKey);
    if (!ok) {
      this.fleet.error(agent.id, 'HUB_AUTH_FAILED', 'challenge signature does not verify');
      return this.reject(conn, CLOSE.AUTH_FAILED, 'HUB_AUTH_FAILED', `challenge signature from agent ${agent.id} does not verify`);
    }

    this.endHandshake(conn);
    conn.agent = agent;
    conn.publicKey = publicKey!;
    const old = this.live.get(agent.id);
    this.live.set(agent.id, conn);
    if (old && old !== conn) this.closeConn(old, CLOSE.NORMAL, 'replaced by a newer connection of the same agent');
    this.fleet.connected(agent.id, conn.remote);
    this.lastSeenWritten.set(agent.id, this.now().getTime());
    this.log.info({ agentId: agent.id, version: f.version, host: f.host }, 'agent connected');
    const tracked = this.opts.store.registry.updateAgent(agent.id, { lastSeenAt: this.now().toISOString(), version: f.version, host: f.host });
    tracked.catch((err) => this.log.warn({ err, agentId: agent.id }, 'could not record agent last-seen'));
    this.enqueue(conn, async () => {
      const cur = await this.opts.store.log.agentCursor(agent.id);
      this.send(conn, { t: 'ready', v: PROTOCOL_VERSION, lastSeq: cur.lastSeq, lastHash: cur.lastHash });
      const pending = await this.opts.configs?.pending(agent.id);
      if (pending && !conn.closed) this.sendConfig(conn, pending);
    });
  }

  private async handleConfigResult(conn: Conn, f: ConfigResultFrame): Promise<void> {
    const agent = conn.agent!;
    const rec = await this.opts.configs?.result(agent.id, f.version, f.ok, f.reason, this.now());
    if (!rec) {
      this.log.debug({ agentId: agent.id, version: f.version }, 'config result for a version that is not the latest; ignored');
      return;
    }
    this.log[f.ok ? 'info' : 'warn']({ agentId: agent.id, version: f.version, ok: f.ok, reason: f.ok ? undefined : rec.reason }, f.ok ? 'agent applied remote config' : 'agent refused remote config');
    this.opts.onConfigResult?.(agent, rec);
  }

  /** Most batches stored by one write; bounds the work (and memory) held before an ack. */
  private static readonly MAX_GROUP = 64;

  /**
   * Group commit: every batch queued for this connection is verified in order against a
   * running cursor, the valid run is stored in ONE durable write, then each is acked. The
   * first bad batch stops the run: the ones before it are stored and acked, then that
   * connection is failed with the bad batch's code.
   */
  private async drainBatches(conn: Conn): Promise<void> {
    const items = conn.batches.splice(0, AgentGateway.MAX_GROUP);
    if (conn.ws.isPaused && conn.batches.length < this.maxQueuedFrames) conn.ws.resume();
    // More arrived than one group takes: the rest get a drain of their own, after this one.
    if (conn.batches.length > 0) this.enqueue(conn, () => this.drainBatches(conn));
    if (items.length === 0 || conn.closed) return;
    const agent = conn.agent!;
    // Revocation takes effect on the next frame.
    const current = await this.opts.store.registry.getAgent(agent.id);
    if (!current || current.status !== 'active') {
      return this.reject(conn, CLOSE.REVOKED, 'HUB_AGENT_DISABLED', `agent ${agent.id} is ${current?.status ?? 'unregistered'}`);
    }
    const durable = await this.opts.store.log.agentCursor(agent.id);
    let cur = { lastSeq: durable.lastSeq, lastHash: durable.lastHash };
    const run: { f: BatchFrame; pre: PreparedBatch; events: CanonicalEvent[] }[] = [];
    let failure: { err: unknown; seq: number } | undefined;
    for (const { f, pre } of items) {
      const verdict = await this.checkBatch(conn, current, f, pre, cur, durable.lastSeq);
      if (verdict.t === 'fail') {
        failure = { err: verdict.err, seq: f.seq };
        break;
      }
      if (verdict.t === 'duplicate') {
        // Already durable (an earlier connection stored it): re-ack, no second copy.
        if (run.length === 0) this.send(conn, { t: 'ack', v: PROTOCOL_VERSION, seq: f.seq });
        continue;
      }
      run.push({ f, pre, events: verdict.events });
      cur = { lastSeq: f.seq, lastHash: pre.hash };
    }
    if (run.length > 0) {
      await this.opts.store.log.appendMany(
        agent.id,
        run.map((r) => ({ batch: { seq: r.f.seq, body: r.pre.bytes, sig: r.pre.sig, hash: r.pre.hash }, events: r.events })),
        this.now().toISOString(),
      );
      for (const r of run) this.send(conn, { t: 'ack', v: PROTOCOL_VERSION, seq: r.f.seq });
    }
    if (failure) this.fail(conn, failure.err, failure.seq);
  }

  /** The checks of one batch against the agent's record and the cursor the run so far leads to. */
  private async checkBatch(
    conn: Conn, current: AgentRecord, f: BatchFrame, pre: PreparedBatch, cur: { lastSeq: number; lastHash: Uint8Array }, durableSeq: number,
  ): Promise<{ t: 'fail'; err: unknown } | { t: 'duplicate' } | { t: 'append'; events: CanonicalEvent[] }> {
    const agent = conn.agent!;
    const fail = (code: 'PROTO_BAD_SIGNATURE' | 'PROTO_BODY_MISMATCH' | 'PROTO_SEQ_GAP' | 'PROTO_CHAIN_MISMATCH' | 'PROTO_SEQ_CONFLICT' | 'PROTO_MALFORMED' | 'PROTO_KEY_RETIRED' | 'HUB_TENANT_MISMATCH', msg: string) =>
      ({ t: 'fail' as const, err: new DovetailError(code, msg, { agentId: agent.id, seq: f.seq }) });
    // The active key, or an older one within its rotation grace (batches signed and buffered before the rotation).
    const signer = agentKeys(current, this.now()).find((k) => verifyBatchSignature(f.body, f.sig, k.publicKey));
    if (!signer) return fail('PROTO_BAD_SIGNATURE', `batch seq ${f.seq} signature does not verify with agent ${agent.id}'s key`);
    if (signer.retired) {
      return fail('PROTO_KEY_RETIRED', `batch seq ${f.seq} is signed by agent ${agent.id}'s key ${signer.keyId}, retired at ${signer.retiresAt} (its rotation grace ended)`);
    }
    if (!pre.body) return { t: 'fail', err: pre.error };
    const body = pre.body;
    if (body.agent !== agent.id || body.seq !== f.seq) {
      return fail('PROTO_BODY_MISMATCH', `batch body names agent ${body.agent} seq ${body.seq}, frame is agent ${agent.id} seq ${f.seq}`);
    }
    const bad = body.events.findIndex((e) => !isEventShape(e));
    if (bad >= 0) return fail('PROTO_MALFORMED', `batch seq ${f.seq} event #${bad} lacks id/entity/key`);
    const claimed = await this.claimedOtherAgent(agent, body.events);
    if (claimed) {
      return fail('HUB_TENANT_MISMATCH', `batch seq ${f.seq} from agent ${agent.id} (tenant ${current.tenant}) has events claiming agent ${claimed.id} (tenant ${claimed.tenant}) as their source; an agent writes only its own stream`);
    }
    if (f.seq <= cur.lastSeq) {
      const stored = f.seq <= durableSeq ? await this.opts.store.log.getBatch(agent.id, f.seq) : undefined;
      if (stored && bytesEqual(stored.body, pre.bytes)) return { t: 'duplicate' };
      return fail('PROTO_SEQ_CONFLICT', `seq ${f.seq} is already stored for agent ${agent.id} with different bytes`);
    }
    if (f.seq > cur.lastSeq + 1) return fail('PROTO_SEQ_GAP', `batch seq ${f.seq} from agent ${agent.id}, expected ${cur.lastSeq + 1}`);
    if (!bytesEqual(body.prev, cur.lastHash)) return fail('PROTO_CHAIN_MISMATCH', `batch seq ${f.seq} prev hash does not match the hash of seq ${cur.lastSeq}`);
    return { t: 'append', events: body.events };
  }

  /**
   * An event's source.agent is informational, but it must not name a different REGISTERED agent:
   * that would let one agent (or tenant) inject events that look like another's.
   */
  private async claimedOtherAgent(agent: AgentRecord, events: CanonicalEvent[]): Promise<AgentRecord | undefined> {
    const names = new Set<string>();
    for (const e of events) {
      const src = (e as { source?: { agent?: unknown } }).source?.agent;
      if (typeof src === 'string' && src !== agent.id) names.add(src);
    }
    for (const id of names) {
      const other = await this.opts.store.registry.getAgent(id);
      if (other) return other;
    }
    return undefined;
  }

  private reject(conn: Conn, closeCode: number, code: 'HUB_UNKNOWN_AGENT' | 'HUB_AGENT_DISABLED' | 'HUB_AUTH_FAILED' | 'PROTO_KEY_RETIRED', message: string): void {
    this.log.warn({ code }, message);
    this.send(conn, { t: 'error', v: PROTOCOL_VERSION, code, message });
    this.closeConn(conn, closeCode, code);
  }

  /** Verification/protocol failure: tell the agent why (nack for a batch, error otherwise), then close this connection only. */
  private fail(conn: Conn, err: unknown, seq: number | null): void {
    if (conn.closed) return;
    if (!isDovetailError(err)) {
      // Store failures are ours, not the agent's: it reconnects and resends.
      this.log.error({ err, agentId: conn.agent?.id }, 'gateway internal error');
      return this.closeConn(conn, CLOSE.GOING_AWAY, 'hub internal error');
    }
    this.log.warn({ code: err.code, agentId: conn.agent?.id, seq }, err.message);
    if (conn.agent) this.fleet.error(conn.agent.id, err.code, err.message);
    const frame: HubFrame = seq === null
      ? { t: 'error', v: PROTOCOL_VERSION, code: err.code, message: err.message }
      : { t: 'nack', v: PROTOCOL_VERSION, seq, code: err.code, message: err.message };
    this.send(conn, frame);
    this.closeConn(conn, CLOSE.PROTOCOL_ERROR, err.code);
  }

  private send(conn: Conn, frame: HubFrame): void {
    if (conn.closed || conn.ws.readyState !== conn.ws.OPEN) return;
    conn.ws.send(encodeFrame(frame));
  }

  private closeConn(conn: Conn, code: number, reason: string): void {
    if (conn.closed) return;
    conn.closed = true;
    this.endHandshake(conn);
    this.forget(conn);
    // Close reasons are limited to 123 bytes by the WebSocket spec.
    conn.ws.close(code, reason.slice(0, 120));
    const t = setTimeout(() => conn.ws.terminate(), 2000);
    t.unref?.();
  }
}

interface PreparedBatch {
  bytes: Uint8Array;
  sig: Uint8Array;
  hash: Uint8Array;
  body?: BatchBody;
  error?: unknown;
}

function prepareBatch(f: BatchFrame): PreparedBatch {
  // Copy: ws may reuse the frame's buffer once the message handler returns.
  const bytes = new Uint8Array(f.body);
  const out: PreparedBatch = { bytes, sig: new Uint8Array(f.sig), hash: sha256(bytes) };
  try {
    out.body = decodeBatchBody(bytes);
  } catch (err) {
    out.error = err;
  }
  return out;
}

function isEventShape(e: unknown): e is CanonicalEvent {
  const r = e as Record<string, unknown> | null;
  return !!r && typeof r === 'object' && typeof r.id === 'string' && typeof r.entity === 'string' && typeof r.key === 'string';
}
