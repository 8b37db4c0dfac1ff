/** The gateway against a real ws client playing an agent, over a real socket on port 0. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { WebSocket } from 'ws';
import {
  AGENT_WS_PATH, CLOSE, PROTOCOL_VERSION, authMessage, bytesEqual, createLogger, decodeFrame, encodeFrame, encodeKey,
  keyId, sign, type Frame, type KeyPair, type SignedBatch,
} from '@dovetail/shared';
import { AgentGateway } from '../../hub/src/gateway/gateway.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import type { HubStore } from '../../hub/src/store/types.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const HUB_KEY_ID = 'hubkey0000000001';
const silent = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });

let store: HubStore;
let server: Server;
let gateway: AgentGateway;
let url: string;

async function register(id: string, key: KeyPair, status: 'active' | 'revoked' = 'active'): Promise<void> {
  const hash = `tok-${id}`;
  await store.registry.putToken({ hash, name: id, tenant: 'default', createdAt: 'x', expiresAt: '2999-01-01T00:00:00.000Z', usedAt: null, agentId: null });
  await store.registry.enroll(hash, { id, name: id, publicKey: encodeKey(key.publicKey), keyId: keyId(key.publicKey), status, createdAt: '2024-01-01T00:00:00.000Z', lastSeenAt: null, version: null, host: null }, new Date());
}

/** A scripted agent: collects frames, exposes the close code. */
class FakeAgent {
  ws: WebSocket;
  frames: Frame[] = [];
  closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];
  constructor() {
    this.ws = new WebSocket(url + AGENT_WS_PATH);
    this.ws.on('message', (d: Buffer) => {
      this.frames.push(decodeFrame(d));
      for (const w of this.waiters.splice(0)) w();
    });
    this.ws.on('error', () => {});
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }
  async frame<T extends Frame['t']>(t: T, n = 1): Promise<Extract<Frame, { t: T }>> {
    for (;;) {
      const matches = this.frames.filter((f) => f.t === t);
      if (matches.length >= n) return matches[n - 1] as Extract<Frame, { t: T }>;
      await new Promise<void>((resolve, reject) => {
        this.waiters.push(resolve);
        this.closed.then(() => reject(new Error(`closed while waiting for ${t}; got ${this.frames.map((f) => f.t).join(',')}`)));
      });
    }
  }
  sendFrame(f: Frame): void { this.ws.send(encodeFrame(f)); }
  async auth(agentId: string, key: KeyPair, nonceOverride?: Uint8Array): Promise<void> {
    const ch = await this.frame('challenge');
    const nonce = nonceOverride ?? ch.nonce;
    this.sendFrame({ t: 'auth', v: PROTOCOL_VERSION, agent: agentId, nonce, sig: sign(authMessage(nonce, agentId, ch.hubKeyId), key.secretKey), version: '0.1.0', host: 'erp-01', keyId: keyId(key.publicKey) });
  }
  send(b: SignedBatch): void { this.sendFrame({ t: 'batch', v: PROTOCOL_VERSION, seq: b.seq, body: b.body, sig: b.sig }); }
}

async function connected(agentId: string, key: KeyPair): Promise<FakeAgent> {
  const a = new FakeAgent();
  await a.auth(agentId, key);
  await a.frame('ready');
  return a;
}

before(async () => {
  store = createMemoryStore();
  server = createServer((_req, res) => { res.statusCode = 404; res.end(); });
  gateway = new AgentGateway({ store, hubKeyId: HUB_KEY_ID, logger: silent, maxPayloadBytes: 64 * 1024, maxHandshakes: 8 });
  gateway.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await gateway.close();
  await new Promise<void>((r) => server.close(() => r()));
});

test('auth ok: challenge carries a 32-byte nonce and the hub key id; ready carries the cursor; host/version tracked', async () => {
  const key = seedKey(11);
  await register('agt_ok', key);
  const a = new FakeAgent();
  const ch = await a.frame('challenge');
  assert.equal(ch.nonce.byteLength, 32);
  assert.equal(ch.hubKeyId, HUB_KEY_ID);
  await a.auth('agt_ok', key);
  const ready = await a.frame('ready');
  assert.equal(ready.lastSeq, 0);
  assert.ok(bytesEqual(ready.lastHash, new Uint8Array(32)));
  assert.equal(gateway.isOnline('agt_ok'), true);
  const rec = await store.registry.getAgent('agt_ok');
  assert.equal(rec?.host, 'erp-01');
  assert.equal(rec?.version, '0.1.0');
  assert.ok(rec?.lastSeenAt);
  a.ws.close();
  await a.closed;
});

test('wrong key, unknown agent and revoked agent are refused with their close codes', async () => {
  await register('agt_wk', seedKey(12));
  await register('agt_rev', seedKey(13), 'revoked');
  const wrong = new FakeAgent();
  await wrong.auth('agt_wk', seedKey(99));
  assert.equal((await wrong.frame('error')).code, 'HUB_AUTH_FAILED');
  assert.equal((await wrong.closed).code, CLOSE.AUTH_FAILED);
  const unknown = new FakeAgent();
  await unknown.auth('agt_nobody', seedKey(12));
  assert.equal((await unknown.closed).code, CLOSE.AUTH_FAILED);
  const rev = new FakeAgent();
  await rev.auth('agt_rev', seedKey(13));
  assert.equal((await rev.frame('error')).code, 'HUB_AGENT_DISABLED');
  assert.equal((await rev.closed).code, CLOSE.REVOKED);
});

test('an auth replayed from an earlier connection fails', async () => {
  const key = seedKey(14);
  await register('agt_replay', key);
  const first = new FakeAgent();
  const ch = await first.frame('challenge');
  await first.auth('agt_replay', key);
  await first.frame('ready');
  first.ws.close();
  await first.closed;
  // The attacker replays the recorded nonce + signature on a fresh connection.
  const second = new FakeAgent();
  await second.auth('agt_replay', key, ch.nonce);
  assert.equal((await second.frame('error')).code, 'HUB_AUTH_FAILED');
  assert.equal((await second.closed).code, CLOSE.AUTH_FAILED);
});

test('batch is acked only after it is in the log; a duplicate seq is re-acked with one copy stored', async () => {
  const key = seedKey(15);
  await register('agt_dur', key);
  const a = await connected('agt_dur', key);
  const chain = new BatchChain('agt_dur', key);
  const b1 = chain.next([event('d1', 'customer', 'C1', 'agt_dur'), event('d2', 'customer', 'C2', 'agt_dur')]);
  const before = await store.log.lastOffset();
  a.send(b1);
  assert.equal((await a.frame('ack')).seq, 1);
  // At the moment the ack is seen, the batch is already readable from the store.
  const stored = await store.log.getBatch('agt_dur', 1);
  assert.ok(stored && bytesEqual(stored.body, b1.body));
  assert.equal(await store.log.lastOffset(), before + 2);
  a.send(b1);
  assert.equal((await a.frame('ack', 2)).seq, 1);
  assert.equal(await store.log.lastOffset(), before + 2, 'no second copy');
  const ids = (await store.log.read(1, 1000)).filter((e) => e.agentId === 'agt_dur').map((e) => e.event.id);
  assert.deepEqual(ids, ['d1', 'd2']);
  // Reconnect: ready reports the stored cursor.
  a.ws.close();
  await a.closed;
  const again = new FakeAgent();
  await again.auth('agt_dur', key);
  const ready = await again.frame('ready');
  assert.equal(ready.lastSeq, 1);
  assert.ok(bytesEqual(ready.lastHash, b1.hash));
  again.ws.close();
  await again.closed;
});

test('a newer authenticated connection replaces the old one', async () => {
  const key = seedKey(16);
  await register('agt_twice', key);
  const a = await connected('agt_twice', key);
  const b = await connected('agt_twice', key);
  assert.equal((await a.closed).code, CLOSE.NORMAL);
  b.send(new BatchChain('agt_twice', key).next([event('t1')]));
  assert.equal((await b.frame('ack')).seq, 1);
  b.ws.close();
  await b.closed;
});

type Bad = { name: string; code: string | null; closeCode: number; act: (a: FakeAgent, chain: BatchChain, key: KeyPair) => void };
const BAD: Bad[] = [
  { name: 'seq gap', code: 'PROTO_SEQ_GAP', closeCode: CLOSE.PROTOCOL_ERROR, act: (a, c) => { c.next([]); a.send(c.next([event('g')])); } },
  {
    name: 'chain mismatch', code: 'PROTO_CHAIN_MISMATCH', closeCode: CLOSE.PROTOCOL_ERROR,
    act: (a, c) => { c.prev = new Uint8Array(32).fill(7); a.send(c.next([event('c')])); },
  },
  { name: 'bad signature', code: 'PROTO_BAD_SIGNATURE', closeCode: CLOSE.PROTOCOL_ERROR, act: (a, c) => { const b = c.next([event('s')]); b.sig[0]! ^= 1; a.send(b); } },
  {
    // The same signature with S + L: valid for tweetnacl alone, refused here (malleability).
    name: 'non-canonical signature (S + L)', code: 'PROTO_BAD_SIGNATURE', closeCode: CLOSE.PROTOCOL_ERROR,
    act: (a, c) => {
      const b = c.next([event('m')]);
      const L = [0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
      let carry = 0;
      for (let i = 0; i < 32; i++) {
        const v = b.sig[32 + i]! + L[i]! + carry;
        b.sig[32 + i] = v & 0xff;
        carry = v >> 8;
      }
      a.send(b);
    },
  },
  {
    name: 'body names another agent', code: 'PROTO_BODY_MISMATCH', closeCode: CLOSE.PROTOCOL_ERROR,
    act: (a, _c, key) => a.send(new BatchChain('agt_other', key).next([event('m')])),
  },
  {
    name: 'same seq different bytes', code: 'PROTO_SEQ_CONFLICT', closeCode: CLOSE.PROTOCOL_ERROR,
    act: (a, c, key) => a.send(new BatchChain(c.agentId, key).next([event('conflict')])),
  },
  { name: 'garbage bytes', code: 'PROTO_MALFORMED', closeCode: CLOSE.PROTOCOL_ERROR, act: (a) => a.ws.send(Buffer.from([0xc1, 0xff, 0x00])) },
  { name: 'oversized frame', code: null, closeCode: CLOSE.TOO_LARGE, act: (a) => a.ws.send(Buffer.alloc(64 * 1024 + 1)) },
];

for (const bad of BAD) {
  test(`${bad.name}: closes that connection only while a second agent keeps streaming`, async () => {
    const slug = bad.name.replace(/\W+/g, '_');
    const badKey = seedKey(40 + BAD.indexOf(bad));
    const goodKey = seedKey(60 + BAD.indexOf(bad));
    await register(`agt_bad_${slug}`, badKey);
    await register(`agt_good_${slug}`, goodKey);
    const good = await connected(`agt_good_${slug}`, goodKey);
    const goodChain = new BatchChain(`agt_good_${slug}`, goodKey);
    good.send(goodChain.next([event(`${slug}-g1`)]));
    assert.equal((await good.frame('ack', 1)).seq, 1);

    const badAgent = await connected(`agt_bad_${slug}`, badKey);
    const badChain = new BatchChain(`agt_bad_${slug}`, badKey);
    badAgent.send(badChain.next([event(`${slug}-b1`)]));
    assert.equal((await badAgent.frame('ack')).seq, 1);
    bad.act(badAgent, badChain, badKey);
    const closed = await badAgent.closed;
    assert.equal(closed.code, bad.closeCode);
    if (bad.code) {
      const told = badAgent.frames.find((f) => f.t === 'nack' || f.t === 'error') as { code: string } | undefined;
      assert.equal(told?.code, bad.code);
    }
    assert.equal((await store.log.agentCursor(`agt_bad_${slug}`)).lastSeq, 1, 'nothing past seq 1 stored');

    good.send(goodChain.next([event(`${slug}-g2`)]));
    assert.equal((await good.frame('ack', 2)).seq, 2);
    assert.equal((await store.log.agentCursor(`agt_good_${slug}`)).lastSeq, 2);
    good.ws.close();
    await good.closed;
  });
}

test('handshakes beyond the limit are closed with CLOSE.BUSY', async () => {
  const waiting: FakeAgent[] = [];
  for (let i = 0; i < 8; i++) {
    const a = new FakeAgent();
    await a.frame('challenge');
    waiting.push(a);
  }
  const extra = new FakeAgent();
  assert.equal((await extra.closed).code, CLOSE.BUSY);
  for (const a of waiting) a.ws.close();
  await Promise.all(waiting.map((a) => a.closed));
  // Slots are released once those handshakes end.
  const key = seedKey(17);
  await register('agt_after_busy', key);
  const ok = await connected('agt_after_busy', key);
  ok.ws.close();
  await ok.closed;
});

test('batches sent back to back are stored as a run and each acked; a bad one in the run stops it there', async () => {
  const key = seedKey(90);
  await register('agt_run', key);
  const a = await connected('agt_run', key);
  const chain = new BatchChain('agt_run', key);
  // Forty batches in one go: the hub takes them as runs (group commit), but every seq is acked, in order.
  for (let i = 1; i <= 40; i++) a.send(chain.next([event(`run-${i}`)]));
  assert.equal((await a.frame('ack', 40)).seq, 40);
  assert.deepEqual(a.frames.filter((f) => f.t === 'ack').map((f) => (f as { seq: number }).seq), Array.from({ length: 40 }, (_, i) => i + 1));
  assert.equal((await store.log.agentCursor('agt_run')).lastSeq, 40);

  // 41 and 42 good, 43 with a broken signature, 44 good: 41-42 stored and acked, then the connection fails on 43.
  a.send(chain.next([event('run-41')]));
  a.send(chain.next([event('run-42')]));
  const broken = chain.next([event('run-43')]);
  broken.sig[0]! ^= 1;
  a.send(broken);
  a.send(chain.next([event('run-44')]));
  const closed = await a.closed;
  assert.equal(closed.code, CLOSE.PROTOCOL_ERROR);
  const acks = a.frames.filter((f) => f.t === 'ack').map((f) => (f as { seq: number }).seq);
  assert.deepEqual(acks.slice(40), [41, 42]);
  assert.equal((a.frames.find((f) => f.t === 'nack') as { seq: number; code: string }).code, 'PROTO_BAD_SIGNATURE');
  assert.equal((await store.log.agentCursor('agt_run')).lastSeq, 42, 'nothing after the bad batch is stored');
});
