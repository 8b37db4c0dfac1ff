/**
 * The agent's one outbound connection to the hub: challenge-response auth, then a
 * window of signed batches from the outbox, forgotten only on the hub's ack.
 *
 * Mutual authentication (when the identity carries the pinned hub public key): the agent
 * puts a fresh nonce of its own in the socket URL and answers the challenge only after
 * the hub's `hub-proof` verifies — a signature over both nonces by the pinned hub key, or
 * by a newer key reached through announcements signed by the pinned one (then pinned).
 *
 * In-flight state belongs to one socket and dies with it; the outbox is never
 * touched except by ack. A batch that was in flight when the socket closed is sent
 * again on the next connection, from the hub's own `ready.lastSeq`, so a batch the
 * hub already holds is never sent twice and one it lacks is never skipped.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import WebSocket, { type ClientOptions, type RawData } from 'ws';
import {
  AGENT_NONCE_PARAM, AGENT_PIN_PARAM, AGENT_WS_PATH, CLOSE, MAX_FRAME_BYTES, PROTOCOL_VERSION, authMessage, backoffDelay, briefError, createLogger, decodeFrame,
  encodeFrame, followKeyChain, hubProofMessage, sign, verify, type ChallengeFrame, type ConfigFrame, type Frame, type HubProofFrame,
  type KeyAnnouncement, type Logger, type PinnedKey,
} from '@dovetail/shared';
import { configFrameProblem } from '../remote-config.ts';
import type { StoredBatch } from '../outbox/types.ts';

export type UplinkState = 'connecting' | 'authenticating' | 'streaming' | 'backoff' | 'revoked' | 'stopped';

/** What the uplink needs from the outbox (the real Outbox satisfies it). */
export interface UplinkOutbox {
  pending(afterSeq: number, limit: number): Promise<StoredBatch[]>;
  ack(seq: number): Promise<void>;
  onCommit(listener: (seqs: number[]) => void): () => void;
}

/** What the uplink needs from the identity (the loaded Identity satisfies it). */
export interface UplinkIdentity {
  agentId: string;
  keyPair: { secretKey: Uint8Array };
  /** Key id of this agent's public key, sent in `auth`. */
  keyId: string;
  /** Hub key id pinned at enrollment; a challenge under any other key is refused. */
  hubKeyId: string;
  /**
   * The pinned hub public key. When present the hub must prove it holds it (or a key
   * announced under it) on every connect before the agent authenticates; a verified
   * rotation updates hubPublicKey and hubKeyId in place.
   */
  hubPublicKey?: Uint8Array;
}

/** Applies a verified remote config; resolves with the verdict reported to the hub. */
export type ConfigHandler = (version: number, document: string) => Promise<{ ok: boolean; reason: string }>;

export interface UplinkTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export type WebSocketFactory = new (url: string, options: ClientOptions) => WebSocket;

export interface UplinkOptions {
  /** Hub base URL, http(s)://host[:port]; the socket goes to ws(s)://host[:port]/v1/agents/connect. */
  hubUrl: string;
  identity: UplinkIdentity;
  outbox: UplinkOutbox;
  /** Agent version sent in `auth`. */
  version: string;
  /** Host name sent in `auth`. Default os.hostname(). */
  host?: string;
  /** Batches sent and not yet acked, at most. */
  maxInFlightBatches: number;
  /** First reconnect delay bound, ms. */
  reconnectInitialMs: number;
  /** Reconnect delay cap before jitter, ms. */
  reconnectMaxMs: number;
  /** Ping interval, ms; two intervals without a pong terminate the socket. */
  heartbeatMs: number;
  /** Heartbeat intervals allowed between open and `ready` before giving up on the handshake. Default 3. */
  handshakeIntervals?: number;
  /** Status frame interval while streaming, ms (only with a status provider). Default 30 000. */
  statusIntervalMs?: number;
  /** How long stop() waits for the close handshake before terminating, ms. Default 5 000. */
  closeTimeoutMs?: number;
  /** Extra ws client options (e.g. an `agent` for an HTTP proxy). */
  wsOptions?: Omit<ClientOptions, 'maxPayload'>;
  WebSocket?: WebSocketFactory;
  timers?: UplinkTimers;
  now?: () => Date;
  random?: () => number;
  logger?: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
  /** Persists a newly pinned hub key (identity.json). Called before the agent authenticates with it. */
  onHubKeyPinned?: (key: PinnedKey) => Promise<void>;
}

export type StatusProvider = () => Record<string, unknown> | Promise<Record<string, unknown>>;

/** One socket's life. Callbacks from an old socket see `closed` and do nothing. */
interface Conn {
  ws: WebSocket;
  closed: boolean;
  authSent: boolean;
  streaming: boolean;
  /** Seqs sent on this socket and not yet acked, ascending; length <= maxInFlightBatches. */
  inFlight: number[];
  /** Highest seq sent (or held by the hub) on this socket; the next pending() starts after it. */
  lastSent: number;
  pumping: boolean;
  pumpAgain: boolean;
  missedPongs: number;
  ticks: number;
  heartbeat: unknown;
  statusTimer: unknown;
  /** Frames are handled one at a time, in arrival order. */
  inbox: Promise<void>;
  /** This connection's own nonce (mutual auth), sent in the URL. */
  myNonce: Uint8Array | undefined;
  /** The challenge, held until the hub's proof arrives (mutual auth). */
  challenge: ChallengeFrame | undefined;
}

const realTimers: UplinkTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export function hubSocketUrl(hubUrl: string): string {
  const base = hubUrl.replace(/\/+$/, '');
  if (/^https:\/\//i.test(base)) return 'wss://' + base.slice(8) + AGENT_WS_PATH;
  if (/^http:\/\//i.test(base)) return 'ws://' + base.slice(7) + AGENT_WS_PATH;
  if (/^wss?:\/\//i.test(base)) return base + AGENT_WS_PATH;
  throw new TypeError(`hub url must start with http://, https://, ws:// or wss://, got ${JSON.stringify(hubUrl)}`);
}

export class Uplink extends EventEmitter {
  private readonly opts: UplinkOptions;
  private readonly url: string;
  private readonly timers: UplinkTimers;
  private readonly now: () => Date;
  private readonly random: () => number;
  private readonly log: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
  private readonly WS: WebSocketFactory;
  private _state: UplinkState = 'stopped';
  private started = false;
  private stopping = false;
  private conn: Conn | undefined;
  private attempt = 0;
  private reconnectTimer: unknown;
  private unsubscribe: (() => void) | undefined;
  private statusProvider: StatusProvider | undefined;
  /** Outbox acks in order; stop() waits for them. */
  private acks: Promise<void> = Promise.resolve();
  private _lastAckAt: Date | null = null;
  private closeWaiters: (() => void)[] = [];
  private configHandler: ConfigHandler | undefined;
  /** Remote configs are applied one at a time, off the frame inbox (applying waits for capture runs to finish). */
  private configs: Promise<void> = Promise.resolve();

  constructor(opts: UplinkOptions) {
    super();
    if (!Number.isSafeInteger(opts.maxInFlightBatches) || opts.maxInFlightBatches < 1) {
      throw new RangeError(`maxInFlightBatches must be a positive integer, got ${opts.maxInFlightBatches}`);
    }
    if (!(opts.heartbeatMs > 0)) throw new RangeError(`heartbeatMs must be positive, got ${opts.heartbeatMs}`);
    this.opts = opts;
    this.url = hubSocketUrl(opts.hubUrl);
    this.timers = opts.timers ?? realTimers;
    this.now = opts.now ?? (() => new Date());
    this.random = opts.random ?? Math.random;
    this.log = opts.logger ?? createLogger({ name: 'dovetail-agent' }).child({ component: 'uplink' });
    this.WS = opts.WebSocket ?? WebSocket;
  }

  get state(): UplinkState {
    return this._state;
  }

  /** When the hub last acked a batch (this process), or null. */
  get lastAckAt(): Date | null {
    return this._lastAckAt;
  }

  /** Handles verified `config` frames; without one, remote configs are refused. */
  setConfigHandler(fn: ConfigHandler | undefined): void {
    this.configHandler = fn;
  }

  /** Sends `status` frames with what fn returns every statusIntervalMs while streaming. */
  setStatusProvider(fn: StatusProvider | undefined): void {
    this.statusProvider = fn;
  }

  start(): void {
    if (this.started) throw new TypeError('uplink already started');
    this.started = true;
    this.unsubscribe = this.opts.outbox.onCommit(() => {
      const c = this.conn;
      if (c && c.streaming) void this.pump(c);
    });
    this.connect();
  }

  async stop(): Promise<void> {
    if (this._state === 'stopped') {
      await this.acks;
      return;
    }
    this.stopping = true;
    this.setState('stopped');
    this.unsubscribe?.();
    if (this.reconnectTimer !== undefined) this.timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const c = this.conn;
    if (c && !c.closed) {
      const closed = new Promise<void>((resolve) => this.closeWaiters.push(resolve));
      const deadline = this.timers.setTimeout(() => c.ws.terminate(), this.opts.closeTimeoutMs ?? 5_000);
      if (c.ws.readyState === WebSocket.CONNECTING) c.ws.terminate();
      else c.ws.close(CLOSE.NORMAL, 'agent stopping');
      await closed;
      this.timers.clearTimeout(deadline);
    }
    await this.acks;
  }

  private setState(s: UplinkState): void {
    if (this._state === s) return;
    this._state = s;
    this.emit('state', s);
  }

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.stopping) return;
    this.setState('connecting');
    let ws: WebSocket;
    const mutual = this.opts.identity.hubPublicKey !== undefined;
    const myNonce = mutual ? new Uint8Array(randomBytes(32)) : undefined;
    const url = myNonce
      ? `${this.url}?${AGENT_NONCE_PARAM}=${Buffer.from(myNonce).toString('base64url')}&${AGENT_PIN_PARAM}=${encodeURIComponent(this.opts.identity.hubKeyId)}`
      : this.url;
    try {
      ws = new this.WS(url, { ...this.opts.wsOptions, maxPayload: MAX_FRAME_BYTES });
    } catch (err) {
      this.log.error({ err, url: this.url }, 'cannot create the hub socket');
      this.scheduleReconnect();
      return;
    }
    const c: Conn = {
      ws, closed: false, authSent: false, streaming: false, inFlight: [], lastSent: 0,
      pumping: false, pumpAgain: false, missedPongs: 0, ticks: 0, heartbeat: undefined, statusTimer: undefined,
      inbox: Promise.resolve(), myNonce, challenge: undefined,
    };
    this.conn = c;
    ws.on('open', () => {
      if (c.closed) return;
      this.setState('authenticating');
      c.heartbeat = this.timers.setInterval(() => this.tick(c), this.opts.heartbeatMs);
    });
    ws.on('pong', () => { c.missedPongs = 0; });
    ws.on('message', (data: RawData) => {
      const bytes = toBytes(data);
      c.inbox = c.inbox.then(() => this.onFrame(c, bytes)).catch((err: unknown) => {
        this.log.error({ err }, 'hub frame handling failed; reconnecting');
        this.closeConn(c, CLOSE.PROTOCOL_ERROR, 'agent error');
      });
    });
    ws.on('error', (err) => {
      // 'close' always follows; reconnecting happens there.
      if (!c.closed) this.log.warn({ ...briefError(err), url: this.url }, 'hub connection error');
    });
    ws.on('close', (code: number, reason: Buffer) => this.onClose(c, code, reason.toString('utf8')));
  }

  private tick(c: Conn): void {
    if (c.closed) return;
    c.ticks++;
    if (c.missedPongs >= 2) {
      this.log.warn({ heartbeatMs: this.opts.heartbeatMs }, 'no pong from the hub for two heartbeat intervals; reconnecting');
      c.ws.terminate();
      return;
    }
    if (!c.streaming && c.ticks >= (this.opts.handshakeIntervals ?? 3)) {
      this.log.warn({ state: this._state }, 'hub did not complete the handshake in time; reconnecting');
      c.ws.terminate();
      return;
    }
    c.missedPongs++;
    c.ws.ping();
  }

  private send(c: Conn, frame: Frame, onError?: (err: Error) => void): void {
    // After a close, ws reports the failure only to this callback; the close handler does the cleanup.
    c.ws.send(encodeFrame(frame), (err) => {
      if (err) {
        this.log.debug({ err, t: frame.t }, 'frame not sent: socket closed');
        onError?.(err);
      }
    });
  }

  private closeConn(c: Conn, code: number, reason: string): void {
    if (c.closed) return;
    if (c.ws.readyState === WebSocket.OPEN) c.ws.close(code, reason);
    else c.ws.terminate();
  }

  private async onFrame(c: Conn, data: Uint8Array): Promise<void> {
    if (c.closed) return;
    let f: Frame;
    try {
      f = decodeFrame(data);
    } catch (err) {
      this.log.error({ err }, 'hub sent a frame this agent cannot read; reconnecting');
      this.closeConn(c, CLOSE.PROTOCOL_ERROR, 'malformed frame');
      return;
    }
    switch (f.t) {
      case 'challenge': {
        if (c.authSent || c.streaming || c.challenge) return this.unexpected(c, f.t);
        const { identity } = this.opts;
        if (c.myNonce) {
          // Mutual auth: answer only once the hub proved its key (next frame).
          c.challenge = f;
          return;
        }
        if (f.hubKeyId !== identity.hubKeyId) {
          this.log.error(
            { hubKeyId: f.hubKeyId, pinnedHubKeyId: identity.hubKeyId },
            'the hub presented a key id this agent did not pin at enrollment; refusing to authenticate (retrying)',
          );
          this.closeConn(c, CLOSE.AUTH_FAILED, 'hub key id mismatch');
          return;
        }
        c.authSent = true;
        this.send(c, {
          t: 'auth', v: PROTOCOL_VERSION, agent: identity.agentId, nonce: f.nonce,
          sig: sign(authMessage(f.nonce, identity.agentId, f.hubKeyId), identity.keyPair.secretKey),
          version: this.opts.version, host: this.opts.host ?? hostname(), keyId: identity.keyId,
        });
        return;
      }
      case 'hub-proof': {
        if (!c.myNonce || !c.challenge || c.authSent) return this.unexpected(c, f.t);
        if (!(await this.checkProof(c, f, c.challenge))) return;
        if (c.closed) return;
        const { identity } = this.opts;
        c.authSent = true;
        this.send(c, {
          t: 'auth', v: PROTOCOL_VERSION, agent: identity.agentId, nonce: c.challenge.nonce,
          sig: sign(authMessage(c.challenge.nonce, identity.agentId, c.challenge.hubKeyId), identity.keyPair.secretKey),
          version: this.opts.version, host: this.opts.host ?? hostname(), keyId: identity.keyId,
        });
        return;
      }
      case 'hub-key': {
        if (!c.streaming) return this.unexpected(c, f.t);
        await this.followHubKey(f.chain);
        return;
      }
      case 'config': {
        if (!c.streaming) return this.unexpected(c, f.t);
        const frame = f;
        this.configs = this.configs.then(() => this.handleConfig(c, frame)).catch((err: unknown) => {
          this.log.error({ err, version: frame.version }, 'remote config handling failed');
        });
        return;
      }
      case 'ready': {
        if (!c.authSent || c.streaming) return this.unexpected(c, f.t);
        // Whatever the hub holds is acked: the outbox forgets it and sending resumes after it.
        if (f.lastSeq > 0) await this.ackOutbox(f.lastSeq);
        if (c.closed) return;
        c.lastSent = f.lastSeq;
        c.streaming = true;
        this.attempt = 0;
        this.setState('streaming');
        this.log.info({ lastSeq: f.lastSeq }, 'connected to the hub');
        this.emit('ready', { lastSeq: f.lastSeq });
        this.startStatus(c);
        void this.pump(c);
        return;
      }
      case 'ack': {
        if (!c.streaming) return this.unexpected(c, f.t);
        if (f.seq > c.lastSent) {
          this.log.warn({ seq: f.seq, lastSent: c.lastSent }, 'hub acked a seq this connection did not send; ignored');
          return;
        }
        c.inFlight = c.inFlight.filter((s) => s > f.seq);
        this._lastAckAt = this.now();
        void this.pump(c);
        await this.ackOutbox(f.seq);
        this.emit('ack', f.seq);
        return;
      }
      case 'nack':
        this.log.warn({ seq: f.seq, code: f.code, message: f.message }, 'hub rejected a batch; it stays in the outbox, reconnecting');
        this.emit('nack', { seq: f.seq, code: f.code, message: f.message });
        this.closeConn(c, CLOSE.PROTOCOL_ERROR, 'nack');
        return;
      case 'error':
        this.log.warn({ code: f.code, message: f.message }, 'hub reported an error');
        return;
      default:
        return this.unexpected(c, f.t);
    }
  }

  /** Verifies the hub's proof for this connection; pins a newer hub key it reached through the chain. False: closed. */
  private async checkProof(c: Conn, f: HubProofFrame, ch: ChallengeFrame): Promise<boolean> {
    const { identity } = this.opts;
    const pinned: PinnedKey = { publicKey: identity.hubPublicKey!, keyId: identity.hubKeyId };
    const reached = followKeyChain(pinned, f.chain, 'hub', 'hub');
    const ok = f.hubKeyId === ch.hubKeyId && reached.keyId === f.hubKeyId &&
      verify(hubProofMessage(c.myNonce!, ch.nonce, f.hubKeyId), f.sig, reached.publicKey);
    if (!ok) {
      this.log.error(
        { code: 'AGENT_HUB_UNVERIFIED', hubKeyId: f.hubKeyId, pinnedHubKeyId: pinned.keyId },
        reached.keyId !== f.hubKeyId
          ? 'the hub presented a key that is neither the pinned hub key nor announced under it; refusing to authenticate (retrying)'
          : 'the hub could not prove it holds its key (bad signature over this connection\'s nonces); refusing to authenticate (retrying)',
      );
      this.closeConn(c, CLOSE.AUTH_FAILED, 'hub not verified');
      return false;
    }
    if (reached.keyId !== pinned.keyId) await this.pin(reached, pinned.keyId);
    return true;
  }

  /** A hub key rotation announced while connected: pin the new key if the chain leads there from the pinned one. */
  private async followHubKey(chain: KeyAnnouncement[]): Promise<void> {
    const { identity } = this.opts;
    if (!identity.hubPublicKey) return;
    const pinned: PinnedKey = { publicKey: identity.hubPublicKey, keyId: identity.hubKeyId };
    const reached = followKeyChain(pinned, chain, 'hub', 'hub');
    if (reached.keyId === pinned.keyId) {
      this.log.warn({ pinnedHubKeyId: pinned.keyId, announced: chain.map((a) => a.newKeyId) }, 'hub key announcement does not follow from the pinned hub key; ignored');
      return;
    }
    await this.pin(reached, pinned.keyId);
  }

  private async pin(key: PinnedKey, previous: string): Promise<void> {
    const { identity } = this.opts;
    // Persist first: an agent that crashes right after still trusts the key it authenticated with.
    await this.opts.onHubKeyPinned?.(key);
    identity.hubPublicKey = key.publicKey;
    identity.hubKeyId = key.keyId;
    this.log.info({ hubKeyId: key.keyId, previousHubKeyId: previous }, 'hub key rotated: pinned the new hub key (announced under the old one)');
    this.emit('hub-key', key);
  }

  private async handleConfig(c: Conn, f: ConfigFrame): Promise<void> {
    const { identity } = this.opts;
    let verdict: { ok: boolean; reason: string };
    const problem = identity.hubPublicKey
      ? configFrameProblem(f, { agentId: identity.agentId, hubKeyId: identity.hubKeyId, hubPublicKey: identity.hubPublicKey })
      : 'this agent has no pinned hub public key to verify remote config with';
    if (problem) {
      verdict = { ok: false, reason: `AGENT_CONFIG_REFUSED: ${problem}` };
    } else if (!this.configHandler) {
      verdict = { ok: false, reason: 'AGENT_CONFIG_REFUSED: this agent does not accept remote config' };
    } else {
      let text: string | undefined;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(f.doc);
      } catch { /* refused below */ }
      verdict = text === undefined
        ? { ok: false, reason: 'AGENT_CONFIG_REFUSED: remote config is not valid UTF-8 text' }
        : await this.configHandler(f.version, text);
    }
    if (!verdict.ok) this.log.warn({ version: f.version, reason: verdict.reason }, 'remote config refused; the running config is unchanged');
    // The socket may have closed meanwhile: the hub resends a config without a verdict on the next connect.
    if (!c.closed) this.send(c, { t: 'config-result', v: PROTOCOL_VERSION, version: f.version, ok: verdict.ok, reason: verdict.reason });
  }

  private unexpected(c: Conn, t: string): void {
    this.log.error({ t, state: this._state }, 'hub sent a frame not allowed in this state; reconnecting');
    this.closeConn(c, CLOSE.PROTOCOL_ERROR, `unexpected ${t}`);
  }

  private ackOutbox(seq: number): Promise<void> {
    const run = this.acks.then(() => this.opts.outbox.ack(seq));
    this.acks = run.catch((err: unknown) => {
      this.log.error({ err, seq }, 'could not record the hub ack in the outbox; the batch will be resent and deduplicated by the hub');
    });
    return this.acks;
  }

  /** Fills the window from the outbox. Re-entrant calls coalesce into one more round. */
  private async pump(c: Conn): Promise<void> {
    if (c.pumping) {
      c.pumpAgain = true;
      return;
    }
    c.pumping = true;
    try {
      do {
        c.pumpAgain = false;
        while (!c.closed && c.streaming) {
          const room = this.opts.maxInFlightBatches - c.inFlight.length;
          if (room <= 0) break;
          const batches = await this.opts.outbox.pending(c.lastSent, room);
          if (c.closed || batches.length === 0) break;
          for (const b of batches) {
            c.inFlight.push(b.seq);
            c.lastSent = b.seq;
            this.send(c, { t: 'batch', v: PROTOCOL_VERSION, seq: b.seq, body: b.body, sig: b.sig });
          }
        }
      } while (c.pumpAgain && !c.closed);
    } catch (err) {
      this.log.error({ err }, 'reading the outbox failed; reconnecting');
      this.closeConn(c, CLOSE.GOING_AWAY, 'outbox error');
    } finally {
      c.pumping = false;
    }
  }

  private startStatus(c: Conn): void {
    c.statusTimer = this.timers.setInterval(() => {
      const provider = this.statusProvider;
      if (!provider || c.closed || !c.streaming) return;
      Promise.resolve()
        .then(provider)
        .then((status) => { if (!c.closed) this.send(c, { t: 'status', v: PROTOCOL_VERSION, status }); })
        .catch((err: unknown) => this.log.warn({ err }, 'status provider failed'));
    }, this.opts.statusIntervalMs ?? 30_000);
  }

  private onClose(c: Conn, code: number, reason: string): void {
    if (c.closed) return;
    c.closed = true;
    c.streaming = false;
    c.inFlight = [];
    if (c.heartbeat !== undefined) this.timers.clearInterval(c.heartbeat);
    if (c.statusTimer !== undefined) this.timers.clearInterval(c.statusTimer);
    if (this.conn === c) this.conn = undefined;
    if (this.stopping) {
      for (const w of this.closeWaiters.splice(0)) w();
      return;
    }
    if (code === CLOSE.REVOKED) {
      this.setState('revoked');
      this.unsubscribe?.();
      this.log.error(
        { agentId: this.opts.identity.agentId, reason },
        // One close code (4003) covers both: the hub's reason says which.
        'the hub disabled or revoked this agent (see reason); it will not reconnect. If an operator re-enables it (`dovetail-hub agents enable`), restart this agent; if it was revoked, Re-enroll it with `dovetail-agent enroll --force --hub <url> --token <new token>` and restart',
      );
      this.emit('revoked', { reason });
      return;
    }
    this.log.info({ code, reason }, code === CLOSE.BUSY ? 'hub is busy; retrying with backoff' : 'hub connection closed');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delayMs = backoffDelay(this.attempt, {
      initialMs: this.opts.reconnectInitialMs, maxMs: this.opts.reconnectMaxMs, random: this.random,
    });
    this.attempt++;
    this.setState('backoff');
    this.emit('backoff', { attempt: this.attempt, delayMs });
    this.reconnectTimer = this.timers.setTimeout(() => this.connect(), delayMs);
  }
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data));
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}
