/**
 * The uplink against a real `ws` server on port 0 that plays the hub's side of the
 * protocol. Timers are injected: reconnect delays are recorded and run at once, and
 * heartbeat ticks run only when a test asks for them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer, WebSocket, type RawData, type ClientOptions } from 'ws';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import {
  AGENT_WS_PATH, CLOSE, PROTOCOL_VERSION, authMessage, decodeFrame, encodeFrame, keyId, keyPairFromSeed, verify,
  createLogger, type Frame, type CanonicalEvent, type AuthFrame,
} from '@dovetail/shared';
import { Outbox } from '../../agent/src/outbox/outbox.ts';
import { Uplink, hubSocketUrl, type UplinkTimers, type UplinkOptions } from '../../agent/src/uplink/uplink.ts';
import { tempDir } from '../helpers/paths.ts';

const agentKp = keyPairFromSeed(new Uint8Array(32).fill(3));
const hubKp = keyPairFromSeed(new Uint8Array(32).fill(4));
const HUB_KEY_ID = keyId(hubKp.publicKey);
const AGENT = 'agt_up';
const silent = createLogger({ name: 'test', level: 'silent' });

interface HubConn { ws: WebSocket; batches: number[]; auth?: AuthFrame; index: number }

/** Hub side of the protocol; behaviour per test through the hooks. */
class HubStub {
  wss!: WebSocketServer;
  url = '';
  /** Highest seq the hub holds (stored); ready.lastSeq. */
  lastSeq = 0;
  conns: HubConn[] = [];
  /** Every batch frame received, across connections, in order. */
  received: number[] = [];
  statuses: Record<string, unknown>[] = [];
  maxUnacked = 0;
  hubKeyId = HUB_KEY_ID;
  /** Called on each connection before the challenge; return false to skip the handshake. */
  onConnect: (c: HubConn) => boolean = () => true;
  /** Called after auth verified; return false to not send ready. */
  onAuth: (c: HubConn) => boolean = () => true;
  /** Default: store and ack every batch at once. */
  onBatch: (c: HubConn, seq: number) => void = (c, seq) => { this.store(seq); this.ack(c, seq); };
  acked = new Map<HubConn, number>();
  private waiters: (() => void)[] = [];

  async start(opts: { autoPong?: boolean } = {}): Promise<void> {
    this.wss = new WebSocketServer({ port: 0, host: '127.0.0.1', path: AGENT_WS_PATH, autoPong: opts.autoPong ?? true });
    await new Promise<void>((r) => this.wss.once('listening', () => r()));
    this.url = `http://127.0.0.1:${(this.wss.address() as AddressInfo).port}`;
    this.wss.on('connection', (ws) => {
      const c: HubConn = { ws, batches: [], index: this.conns.length };
      this.conns.push(c);
      this.acked.set(c, this.lastSeq);
      let nonce: Uint8Array | undefined;
      ws.on('message', (data: RawData) => {
        const f = decodeFrame(new Uint8Array(data as Buffer));
        if (f.t === 'auth') {
          assert.ok(nonce);
          assert.ok(verify(authMessage(nonce, f.agent, this.hubKeyId), f.sig, agentKp.publicKey), 'auth signature verifies');
          c.auth = f;
          if (this.onAuth(c)) this.send(ws, { t: 'ready', v: PROTOCOL_VERSION, lastSeq: this.lastSeq, lastHash: new Uint8Array(32) });
        } else if (f.t === 'batch') {
          c.batches.push(f.seq);
          this.received.push(f.seq);
          this.maxUnacked = Math.max(this.maxUnacked, f.seq - this.acked.get(c)!);
          this.onBatch(c, f.seq);
        } else if (f.t === 'status') {
          this.statuses.push(f.status);
        }
        this.notify();
      });
      ws.on('close', () => this.notify());
      this.notify();
      if (!this.onConnect(c)) return;
      nonce = new Uint8Array(randomBytes(32));
      this.send(ws, { t: 'challenge', v: PROTOCOL_VERSION, nonce, hubKeyId: this.hubKeyId, ts: new Date().toISOString() });
    });
  }

  send(ws: WebSocket, f: Frame): void { ws.send(encodeFrame(f)); }
  store(seq: number): void { if (seq === this.lastSeq + 1) this.lastSeq = seq; }
  ack(c: HubConn, seq: number): void {
    this.acked.set(c, Math.max(this.acked.get(c)!, seq));
    this.send(c.ws, { t: 'ack', v: PROTOCOL_VERSION, seq });
  }
  notify(): void { for (const w of this.waiters.splice(0)) w(); }
  /** Resolves when pred holds; checked after each hub event. Fails after 5s with `what`. */
  async until(what: string, pred: () => boolean): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 20); });
    }
  }
  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }
}

/** Reconnect delays are recorded and fire at once; long timeouts (stop deadline) never fire; intervals are manual. */
function fakeTimers() {
  const delays: number[] = [];
  const intervals = new Set<{ fn: () => void }>();
  const timers: UplinkTimers = {
    setTimeout: (fn, ms) => {
      if (ms >= 5_000) return undefined;
      delays.push(ms);
      return setTimeout(fn, 0);
    },
    clearTimeout: (h) => { if (h) clearTimeout(h as NodeJS.Timeout); },
    setInterval: (fn) => { const h = { fn }; intervals.add(h); return h; },
    clearInterval: (h) => { intervals.delete(h as { fn: () => void }); },
  };
  return { timers, delays, tick: () => { for (const h of [...intervals]) h.fn(); } };
}

async function eventually(what: string, pred: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function event(i: number): CanonicalEvent {
  return {
    id: `ev-${i}`, entity: 'customer', op: 'upsert', key: `C${i}`, data: { creditLimit: '10.00' },
    source: { agent: AGENT, system: 'erp', table: 't', position: String(i) },
    occurredAt: '2024-05-01T12:00:00Z', capturedAt: '2024-05-01T12:00:00Z', correlationId: null, schema: 'customer/1',
  } as CanonicalEvent;
}

async function setup(hub: HubStub, batches: number, extra: Partial<UplinkOptions> = {}) {
  const outbox = await Outbox.open(tempDir(), { agentId: AGENT, secretKey: agentKp.secretKey, maxBatchEvents: 1, maxBatchBytes: 1 << 20 });
  if (batches > 0) await outbox.commit({ table: 't', events: Array.from({ length: batches }, (_, i) => event(i + 1)), position: 'p', stateOps: [], quarantine: [] });
  const ft = fakeTimers();
  const uplink = new Uplink({
    hubUrl: hub.url, outbox, version: '1.2.3', host: 'erp-box',
    identity: { agentId: AGENT, keyPair: agentKp, keyId: keyId(agentKp.publicKey), hubKeyId: HUB_KEY_ID },
    maxInFlightBatches: 3, reconnectInitialMs: 100, reconnectMaxMs: 500, heartbeatMs: 1000,
    timers: ft.timers, random: () => 0.5, logger: silent, ...extra,
  });
  return { outbox, uplink, ...ft };
}

test('hubSocketUrl maps http(s) to ws(s) and appends the agent path', () => {
  assert.equal(hubSocketUrl('http://hub:8700/'), 'ws://hub:8700/v1/agents/connect');
  assert.equal(hubSocketUrl('https://hub.example.com'), 'wss://hub.example.com/v1/agents/connect');
  assert.throws(() => hubSocketUrl('ftp://x'), TypeError);
});

test('handshake, windowed streaming, cumulative acks delete, new commits wake the uplink', async () => {
  const hub = new HubStub();
  await hub.start();
  // The hub stores everything but acks only every third batch (cumulative).
  hub.onBatch = (c, seq) => { hub.store(seq); if (seq % 3 === 0) hub.ack(c, seq); };
  const { outbox, uplink } = await setup(hub, 10);
  const states: string[] = [];
  uplink.on('state', (s) => states.push(s));
  try {
    uplink.start();
    await hub.until('9 batches', () => hub.received.length === 9);
    assert.equal(uplink.state, 'streaming');
    assert.deepEqual(states.slice(0, 3), ['connecting', 'authenticating', 'streaming']);
    const auth = hub.conns[0]!.auth!;
    assert.deepEqual([auth.agent, auth.version, auth.host, auth.keyId], [AGENT, '1.2.3', 'erp-box', keyId(agentKp.publicKey)]);
    // seq 10 is in flight, unacked (not a multiple of 3): it must stay.
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(hub.received, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.ok(hub.maxUnacked <= 3, `window exceeded: ${hub.maxUnacked}`);
    assert.equal(hub.maxUnacked, 3);
    await eventually('outbox acked to 9', async () => (await outbox.stats()).lastAckedSeq === 9);
    const s = await outbox.stats();
    assert.equal(s.lastAckedSeq, 9);
    assert.deepEqual((await outbox.pending(0, 100)).map((b) => b.seq), [10]);
    assert.ok(uplink.lastAckAt instanceof Date);

    // Two more commits: 11 fills the window (10, 11 unacked), 12 makes it 3 -> acked.
    await outbox.commit({ table: 't', events: [event(11), event(12)], position: 'p2', stateOps: [], quarantine: [] });
    await hub.until('12 received', () => hub.received.includes(12));
    const acked = new Promise<void>((r) => uplink.on('ack', (seq) => { if (seq === 12) r(); }));
    await acked;
    assert.equal((await outbox.stats()).depth, 0);
    assert.deepEqual(hub.received, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
  assert.equal(uplink.state, 'stopped');
});

test('the window never exceeds maxInFlightBatches when the hub is slow to ack', async () => {
  const hub = new HubStub();
  await hub.start();
  hub.onBatch = (_c, seq) => hub.store(seq); // no ack
  const { outbox, uplink } = await setup(hub, 8);
  try {
    uplink.start();
    await hub.until('3 batches', () => hub.received.length === 3);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(hub.received, [1, 2, 3], 'a 4th batch must wait for an ack');
    hub.ack(hub.conns[0]!, 1);
    await hub.until('4th batch', () => hub.received.length === 4);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(hub.received, [1, 2, 3, 4]);
    hub.ack(hub.conns[0]!, 4);
    await hub.until('7 batches', () => hub.received.length === 7);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(hub.received, [1, 2, 3, 4, 5, 6, 7]);
    assert.equal(hub.maxUnacked, 3);
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
});

test('server drop: resend starts after the hub lastSeq; unacked batches are sent again exactly once', async () => {
  const hub = new HubStub();
  await hub.start();
  // First connection: the hub stores 1..3, acks 1..2, then dies with 4..5 in flight (not stored).
  hub.onBatch = (c, seq) => {
    if (c.index === 0) {
      if (seq <= 3) hub.store(seq);
      if (seq <= 2) hub.ack(c, seq);
      if (seq === 5) c.ws.terminate();
    } else {
      hub.store(seq);
      hub.ack(c, seq);
    }
  };
  const { outbox, uplink, delays } = await setup(hub, 6);
  try {
    uplink.start();
    await hub.until('second connection done', () => hub.conns.length === 2 && hub.received.includes(6));
    assert.deepEqual(hub.conns[0]!.batches, [1, 2, 3, 4, 5]);
    assert.deepEqual(hub.conns[1]!.batches, [4, 5, 6], 'no seq the hub holds is sent again; 4 and 5 once more');
    assert.deepEqual(delays, [50], 'one reconnect, full jitter: floor(0.5 * 100)');
    await eventually('outbox empty', async () => (await outbox.stats()).depth === 0);
    assert.equal((await outbox.stats()).lastAckedSeq, 6);
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
});

test('socket closing while a batch is in flight keeps it in the outbox and sends it once after reconnect', async () => {
  const hub = new HubStub();
  await hub.start();
  let dropNextSend = false;
  let failedSends = 0;
  // ws reports a send on a closing socket only to the callback: make that happen deterministically.
  function DroppingWebSocket(url: string, opts: ClientOptions): WebSocket {
    const ws = new WebSocket(url, opts);
    const send = ws.send.bind(ws) as (data: Uint8Array, cb?: (err?: Error) => void) => void;
    ws.send = ((data: Uint8Array, cb?: (err?: Error) => void) => {
      if (!dropNextSend) return send(data, cb);
      dropNextSend = false;
      ws.terminate();
      send(data, (err) => { if (err) failedSends++; cb?.(err); });
    }) as WebSocket['send'];
    return ws;
  }
  const { outbox, uplink } = await setup(hub, 0, { WebSocket: DroppingWebSocket as unknown as UplinkOptions['WebSocket'] });
  try {
    uplink.start();
    await new Promise<void>((r) => uplink.once('ready', () => r()));
    dropNextSend = true;
    await outbox.commit({ table: 't', events: [event(1)], position: 'p', stateOps: [], quarantine: [] });
    await hub.until('batch 1 on the second connection', () => hub.conns.length === 2 && hub.received.includes(1));
    await new Promise<void>((r) => uplink.once('ack', () => r()));
    assert.equal(failedSends, 1);
    assert.deepEqual(hub.conns[0]!.batches, [], 'never reached the hub the first time');
    assert.deepEqual(hub.received, [1], 'sent exactly once after reconnect');
    assert.equal((await outbox.stats()).depth, 0);
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
});

test('nack: the batch stays, the uplink reconnects and resends it', async () => {
  const hub = new HubStub();
  await hub.start();
  hub.onBatch = (c, seq) => {
    if (c.index === 0) hub.send(c.ws, { t: 'nack', v: PROTOCOL_VERSION, seq, code: 'PROTO_SEQ_GAP', message: 'expected seq 1' });
    else { hub.store(seq); hub.ack(c, seq); }
  };
  const { outbox, uplink } = await setup(hub, 1);
  const nacks: unknown[] = [];
  uplink.on('nack', (n) => nacks.push(n));
  try {
    uplink.start();
    await new Promise<void>((r) => uplink.once('ack', () => r()));
    assert.deepEqual(nacks, [{ seq: 1, code: 'PROTO_SEQ_GAP', message: 'expected seq 1' }]);
    assert.deepEqual(hub.conns.map((c) => c.batches), [[1], [1]]);
    assert.equal((await outbox.stats()).depth, 0);
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
});

test('REVOKED close stops retrying and emits revoked', async () => {
  const hub = new HubStub();
  await hub.start();
  hub.onAuth = (c) => { c.ws.close(CLOSE.REVOKED, 'agent revoked'); return false; };
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ name: 'test', level: 'info', destination: { write: (l: string) => { lines.push(JSON.parse(l)); } } });
  const { outbox, uplink, delays } = await setup(hub, 1, { logger });
  try {
    const revoked = new Promise<unknown>((r) => uplink.once('revoked', r));
    uplink.start();
    assert.deepEqual(await revoked, { reason: 'agent revoked' });
    assert.equal(uplink.state, 'revoked');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(hub.conns.length, 1, 'no reconnect after revocation');
    assert.deepEqual(delays, []);
    assert.equal((await outbox.stats()).depth, 1, 'buffered batch kept for after re-enrollment');
    const msg = lines.find((l) => l.level === 50);
    assert.match(String(msg?.msg), /revoked this agent.*dovetail-agent enroll --force/);
    assert.equal(msg?.agentId, AGENT);
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
});

test('BUSY and failed handshakes back off with full jitter after the cap; ready resets the attempt', async () => {
  const hub = new HubStub();
  await hub.start();
  let busy = 4;
  hub.onConnect = (c) => {
    if (busy > 0) { busy--; c.ws.close(CLOSE.BUSY, 'busy'); return false; }
    return true;
  };
  const { outbox, uplink, delays } = await setup(hub, 0);
  try {
    uplink.start();
    await new Promise<void>((r) => uplink.once('ready', () => r()));
    // initial 100, cap 500, random 0.5: floor(0.5 * min(500, 100 * 2^n))
    assert.deepEqual(delays, [50, 100, 200, 250]);
    hub.conns.at(-1)!.ws.terminate();
    await hub.until('reconnected', () => hub.conns.length === 6 && uplink.state === 'streaming');
    assert.deepEqual(delays, [50, 100, 200, 250, 50], 'attempt counter reset by ready');
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
});

test('a challenge under a hub key id that was not pinned gets no auth and is retried', async () => {
  const hub = new HubStub();
  await hub.start();
  hub.hubKeyId = 'ffffffffffffffff';
  const { outbox, uplink, delays } = await setup(hub, 0);
  try {
    uplink.start();
    await hub.until('two attempts', () => hub.conns.length >= 2);
    assert.equal(hub.conns[0]!.auth, undefined);
    assert.ok(delays.length >= 1);
    assert.notEqual(uplink.state, 'streaming');
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
});

test('heartbeat: two intervals without a pong terminate and reconnect; status frames flow', async () => {
  const hub = new HubStub();
  await hub.start({ autoPong: false });
  const { outbox, uplink, tick } = await setup(hub, 0, { statusIntervalMs: 1000 });
  uplink.setStatusProvider(async () => ({ depth: (await outbox.stats()).depth }));
  try {
    uplink.start();
    await new Promise<void>((r) => uplink.once('ready', () => r()));
    tick(); // pings, status
    await hub.until('status frame', () => hub.statuses.length >= 1);
    assert.deepEqual(hub.statuses[0], { depth: 0 });
    tick(); // second ping unanswered
    assert.equal(hub.conns.length, 1);
    tick(); // two missed: terminate
    await hub.until('reconnected', () => hub.conns.length === 2 && uplink.state === 'streaming');
  } finally {
    await uplink.stop();
    await outbox.close();
    await hub.close();
  }
});

test('stop closes with 1000 and does not reconnect', async () => {
  const hub = new HubStub();
  await hub.start();
  const { outbox, uplink, delays } = await setup(hub, 0);
  try {
    uplink.start();
    await new Promise<void>((r) => uplink.once('ready', () => r()));
    const code = new Promise<number>((r) => hub.conns[0]!.ws.once('close', (c: number) => r(c)));
    await uplink.stop();
    assert.equal(await code, 1000);
    assert.equal(uplink.state, 'stopped');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(hub.conns.length, 1);
    assert.deepEqual(delays, []);
  } finally {
    await outbox.close();
    await hub.close();
  }
});
