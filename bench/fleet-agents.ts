/**
 * Simulated agents for the fleet benchmark, in their own process so the hub's memory
 * and CPU figures are its own. Each agent is a real ws client with its own Ed25519 key
 * that does what agent/src/uplink/uplink.ts does on the wire, minus the outbox:
 * connect, answer the hub's challenge with sign(authMessage(nonce, agent, hubKeyId)),
 * wait for `ready`, then send a `status` frame every statusMs and ping every pingMs
 * (ws answers the hub's pings by itself). A close with CLOSE.BUSY (4029), or any other
 * close before `ready`, is retried with the agent's own backoff (backoffDelay, full jitter).
 *
 * IPC with fleet.bench.ts:
 *   parent -> {t:'start', url, hubKeyId, agents, statusMs, pingMs, backoff}   child -> {t:'prepared'}
 *   parent -> {t:'go', deadlineMs}   child -> {t:'connected', ...FleetClientStats} when all are ready or at the deadline
 *   parent -> {t:'stats'}            child -> {t:'stats', ...FleetClientStats}
 *   parent -> {t:'close'}            child -> {t:'closed'} and exits
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import {
  CLOSE, MAX_FRAME_BYTES, PROTOCOL_VERSION, authMessage, backoffDelay, decodeFrame, encodeFrame, fromB64, sign, type Frame,
} from '@dovetail/shared';

export interface SimAgentSpec {
  id: string;
  keyId: string;
  /** base64 of the 64-byte Ed25519 secret key (seed || public key). */
  secretKey: string;
}

export interface FleetClientStats {
  agents: number;
  ready: number;
  /** Epoch ms (sub-ms precision) when `go` arrived, and when each agent got `ready` (null: not yet). */
  goAt: number;
  readyAt: (number | null)[];
  /** Socket opens attempted in total (first tries + retries). */
  attempts: number;
  /** Closes with CLOSE.BUSY (4029) before `ready`. */
  busyCloses: number;
  /** Agents that got at least one BUSY. */
  agentsBusied: number;
  /** Most attempts any one agent needed. */
  maxAttempts: number;
  /** Agents ready on their first attempt. */
  firstTry: number;
  /** Closes before `ready` with another code, by code. */
  otherCloses: Record<string, number>;
  /** Closes after `ready` (the hub dropped an idle agent), by code. */
  dropped: Record<string, number>;
  statusSent: number;
  pingsSent: number;
  pongs: number;
  cpuMs: number;
}

type ParentMsg =
  | { t: 'start'; url: string; hubKeyId: string; agents: SimAgentSpec[]; statusMs: number; pingMs: number; backoff: { initialMs: number; maxMs: number } }
  | { t: 'go'; deadlineMs: number }
  | { t: 'stats' }
  | { t: 'close' };

type StartMsg = Extract<ParentMsg, { t: 'start' }>;

const epochMs = () => performance.timeOrigin + performance.now();

/** What a real agent reports in its status frame (agent.ts hubStatusReport), with three tables caught up. */
function statusReport(n: number): Record<string, unknown> {
  const at = new Date().toISOString();
  return {
    state: 'running', uplink: 'streaming', configVersion: 0,
    tables: ['customers', 'items', 'sales_orders'].map((name, i) => ({
      name, phase: 'streaming', running: false, eventsCaptured: 1000 * (i + 1) + n, rowsQuarantined: 0,
      lastRunAt: at, lastSuccessAt: at, lastError: null, progress: null, position: `{"v":1,"phase":"stream","boundary":"${at}"}`,
    })),
    outbox: { depth: 0, bytes: 0, nextSeq: 100 + n, lastAckedSeq: 99 + n, oldestPendingAt: null },
  };
}

class SimAgent {
  ws: WebSocket | undefined;
  attempts = 0;
  busy = 0;
  readyAt: number | null = null;
  statusTimer: NodeJS.Timeout | undefined;
  pingTimer: NodeJS.Timeout | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  stopping = false;
  readonly secretKey: Uint8Array;

  constructor(readonly spec: SimAgentSpec, readonly cfg: StartMsg, readonly totals: Totals) {
    this.secretKey = fromB64(spec.secretKey);
  }

  connect(): void {
    this.retryTimer = undefined;
    if (this.stopping) return;
    this.attempts++;
    this.totals.attempts++;
    const ws = new WebSocket(this.cfg.url, { maxPayload: MAX_FRAME_BYTES });
    this.ws = ws;
    ws.on('message', (data: Buffer) => this.onFrame(ws, data));
    ws.on('pong', () => { this.totals.pongs++; });
    ws.on('error', () => { /* 'close' follows */ });
    ws.on('close', (code: number) => this.onClose(ws, code));
  }

  onFrame(ws: WebSocket, data: Buffer): void {
    let f: Frame;
    try {
      f = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch {
      ws.close(CLOSE.PROTOCOL_ERROR, 'malformed frame');
      return;
    }
    if (f.t === 'challenge') {
      if (f.hubKeyId !== this.cfg.hubKeyId) { ws.close(CLOSE.AUTH_FAILED, 'hub key id mismatch'); return; }
      ws.send(encodeFrame({
        t: 'auth', v: PROTOCOL_VERSION, agent: this.spec.id, nonce: f.nonce,
        sig: sign(authMessage(f.nonce, this.spec.id, f.hubKeyId), this.secretKey),
        version: 'bench-fleet', host: 'bench', keyId: this.spec.keyId,
      }));
    } else if (f.t === 'ready') {
      this.readyAt = epochMs();
      this.totals.ready++;
      this.totals.onReady();
      // Real agents start at different moments: spread the first status over one interval.
      const n = this.totals.ready;
      this.statusTimer = setTimeout(() => {
        this.sendStatus(ws, n);
        this.statusTimer = setInterval(() => this.sendStatus(ws, n), this.cfg.statusMs);
      }, Math.floor(Math.random() * this.cfg.statusMs));
      this.pingTimer = setInterval(() => { ws.ping(); this.totals.pingsSent++; }, this.cfg.pingMs);
    }
    // ack/nack/config/hub-key do not occur: these agents send no batches and the hub pushes no config.
  }

  sendStatus(ws: WebSocket, n: number): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(encodeFrame({ t: 'status', v: PROTOCOL_VERSION, status: statusReport(n) }));
    this.totals.statusSent++;
  }

  onClose(ws: WebSocket, code: number): void {
    if (ws !== this.ws) return;
    clearTimeout(this.statusTimer);
    clearInterval(this.statusTimer);
    clearInterval(this.pingTimer);
    if (this.stopping) return;
    if (this.readyAt !== null) {
      this.totals.dropped[code] = (this.totals.dropped[code] ?? 0) + 1;
      this.readyAt = null;
      this.totals.ready--;
    } else if (code === CLOSE.BUSY) {
      this.busy++;
      this.totals.busyCloses++;
    } else {
      this.totals.otherCloses[code] = (this.totals.otherCloses[code] ?? 0) + 1;
    }
    // Same schedule as Uplink.scheduleReconnect: attempt counts failed tries since the last success.
    const delay = backoffDelay(this.attempts - 1, this.cfg.backoff);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.statusTimer);
    clearInterval(this.statusTimer);
    clearInterval(this.pingTimer);
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.OPEN) ws.close(CLOSE.NORMAL, 'bench done');
      else ws.terminate();
      setTimeout(() => { ws.terminate(); resolve(); }, 5000).unref();
    });
  }
}

interface Totals {
  attempts: number;
  ready: number;
  busyCloses: number;
  otherCloses: Record<string, number>;
  dropped: Record<string, number>;
  statusSent: number;
  pingsSent: number;
  pongs: number;
  onReady(): void;
}

async function main(): Promise<void> {
  let cfg: StartMsg | undefined;
  let agents: SimAgent[] = [];
  let goAt = 0;
  let cpuAtGo = process.cpuUsage();
  let allReady: () => void = () => {};
  const totals: Totals = {
    attempts: 0, ready: 0, busyCloses: 0, otherCloses: {}, dropped: {}, statusSent: 0, pingsSent: 0, pongs: 0,
    onReady: () => { if (totals.ready >= agents.length) allReady(); },
  };
  const stats = (): FleetClientStats => {
    const cpu = process.cpuUsage(cpuAtGo);
    return {
      agents: agents.length, ready: totals.ready, goAt, readyAt: agents.map((a) => a.readyAt),
      attempts: totals.attempts, busyCloses: totals.busyCloses, agentsBusied: agents.filter((a) => a.busy > 0).length,
      maxAttempts: Math.max(0, ...agents.map((a) => a.attempts)),
      firstTry: agents.filter((a) => a.attempts === 1 && a.readyAt !== null).length, otherCloses: totals.otherCloses, dropped: totals.dropped,
      statusSent: totals.statusSent, pingsSent: totals.pingsSent, pongs: totals.pongs, cpuMs: (cpu.user + cpu.system) / 1000,
    };
  };
  const send = (m: unknown) => process.send!(m);
  process.on('message', (m: ParentMsg) => {
    void (async () => {
      if (m.t === 'start') {
        cfg = m;
        agents = m.agents.map((spec) => new SimAgent(spec, m, totals));
        send({ t: 'prepared' });
      } else if (m.t === 'go') {
        if (!cfg) throw new Error('go before start');
        const done = new Promise<void>((resolve) => {
          allReady = resolve;
          setTimeout(resolve, m.deadlineMs).unref();
        });
        goAt = epochMs();
        cpuAtGo = process.cpuUsage();
        // All at once: every socket is opened in this one tick.
        for (const a of agents) a.connect();
        await done;
        send({ t: 'connected', ...stats() });
      } else if (m.t === 'stats') {
        send({ t: 'stats', ...stats() });
      } else if (m.t === 'close') {
        await Promise.all(agents.map((a) => a.stop()));
        send({ t: 'closed' });
        process.exit(0);
      }
    })().catch((err: unknown) => {
      send({ t: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err) });
      process.exit(1);
    });
  });
  process.on('disconnect', () => process.exit(0));
}

if (process.send) await main();
