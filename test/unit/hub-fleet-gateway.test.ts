/** Gateway + fleet tracker over a real socket: heartbeats and status frames, silence, tenant isolation of writes, disable/revoke. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { WebSocket } from 'ws';
import {
  AGENT_WS_PATH, CLOSE, PROTOCOL_VERSION, authMessage, createLogger, decodeFrame, encodeFrame, encodeKey, keyId, sign,
  type Frame, type KeyPair, type SignedBatch,
} from '@dovetail/shared';
import { AgentGateway } from '../../hub/src/gateway/gateway.ts';
import { FleetTracker } from '../../hub/src/fleet/fleet.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import type { HubStore } from '../../hub/src/store/types.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const HUB_KEY_ID = 'hubkey0000000001';
const silent = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });

let clock = new Date('2030-01-01T00:00:00.000Z');
let store: HubStore;
let server: Server;
let gateway: AgentGateway;
let fleet: FleetTracker;
let url: string;

async function register(id: string, key: KeyPair, tenant: string): Promise<void> {
  const hash = `tok-${id}`;
  await store.registry.putToken({ hash, name: id, tenant, createdAt: 'x', expiresAt: '2999-01-01T00:00:00.000Z', usedAt: null, agentId: null });
  await store.registry.enroll(hash, { id, name: id, publicKey: encodeKey(key.publicKey), keyId: keyId(key.publicKey), status: 'active', createdAt: '2024-01-01T00:00:00.000Z', lastSeenAt: null, version: null, host: null }, new Date('2024-01-01'));
}

class FakeAgent {
  ws = new WebSocket(url + AGENT_WS_PATH);
  frames: Frame[] = [];
  closed: Promise<{ code: number; reason: string }>;
  constructor() {
    this.ws.on('message', (d: Buffer) => this.frames.push(decodeFrame(d)));
    this.ws.on('error', () => {});
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }
  async frame<T extends Frame['t']>(t: T): Promise<Extract<Frame, { t: T }>> {
    for (let i = 0; i < 400; i++) {
      const f = this.frames.find((x) => x.t === t);
      if (f) return f as Extract<Frame, { t: T }>;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`no ${t} frame; got ${this.frames.map((f) => f.t).join(',')}`);
  }
  send(f: Frame): void { this.ws.send(encodeFrame(f)); }
  batch(b: SignedBatch): void { this.send({ t: 'batch', v: PROTOCOL_VERSION, seq: b.seq, body: b.body, sig: b.sig }); }
}

async function connect(id: string, key: KeyPair): Promise<FakeAgent> {
  const a = new FakeAgent();
  const ch = await a.frame('challenge');
  a.send({ t: 'auth', v: PROTOCOL_VERSION, agent: id, nonce: ch.nonce, sig: sign(authMessage(ch.nonce, id, ch.hubKeyId), key.secretKey), version: '0.3.0', host: 'erp-01', keyId: keyId(key.publicKey) });
  return a;
}

const until = async (what: string, check: () => boolean | Promise<boolean>) => {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`never happened: ${what}`);
};

before(async () => {
  store = createMemoryStore();
  fleet = new FleetTracker({ now: () => clock, offlineAfterMs: 60_000 });
  server = createServer((_req, res) => { res.statusCode = 404; res.end(); });
  // sweepIntervalMs 0: the test calls sweep() itself after moving the clock.
  gateway = new AgentGateway({ store, fleet, hubKeyId: HUB_KEY_ID, logger: silent, now: () => clock, sweepIntervalMs: 0 });
  gateway.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await register('agt_acme', seedKey(1), 'acme');
  await register('agt_beta', seedKey(2), 'beta');
  await register('agt_hb', seedKey(3), 'acme');
  await register('agt_off', seedKey(4), 'acme');
});

after(async () => {
  await gateway.close();
  await new Promise<void>((r) => server.close(() => r()));
});

test('status frames and pings keep an agent online; 60 s of silence makes it offline and the sweep closes its socket', async () => {
  const a = await connect('agt_hb', seedKey(3));
  await a.frame('ready');
  assert.equal(gateway.isOnline('agt_hb'), true);
  a.send({ t: 'status', v: PROTOCOL_VERSION, status: { state: 'running', uplink: 'streaming', outbox: { depth: 2, bytes: 900, nextSeq: 5, lastAckedSeq: 2, lastAckAt: null, oldestPendingAt: '2029-12-31T23:59:50.000Z' }, tables: [{ table: 'items', phase: 'streaming', eventsCaptured: 7, quarantined: 0, lastPollAt: null, lastError: null, lastCommitAt: null }] } });
  await until('status recorded', () => fleet.view('agt_hb').statusAt !== null);
  const v = fleet.view('agt_hb');
  assert.deepEqual([v.buffer?.depth, v.buffer?.bytes, v.lagMs, v.tables[0]?.phase, v.agentState, v.remote], [2, 900, 10_000, 'streaming', 'running', '127.0.0.1']);

  clock = new Date(clock.getTime() + 50_000);
  a.ws.ping();
  await until('ping noted', () => fleet.view('agt_hb').lastHeardAt === clock.toISOString());
  clock = new Date(clock.getTime() + 50_000);
  assert.equal(gateway.isOnline('agt_hb'), true, 'the ping 50 s ago counts as a heartbeat');
  assert.deepEqual(gateway.sweep(), []);
  clock = new Date(clock.getTime() + 10_000);
  assert.equal(gateway.isOnline('agt_hb'), false, '60 s without a frame or ping');
  assert.deepEqual(gateway.sweep(), ['agt_hb']);
  assert.deepEqual(await a.closed, { code: CLOSE.GOING_AWAY, reason: 'no heartbeat' });
  await until('registry last-seen written', async () => (await store.registry.getAgent('agt_hb'))?.lastSeenAt === new Date(clock.getTime() - 60_000).toISOString());
});

test('an agent cannot write events claiming another registered agent (another tenant) as their source', async () => {
  const a = await connect('agt_acme', seedKey(1));
  await a.frame('ready');
  const chain = new BatchChain('agt_acme', seedKey(1));
  a.batch(chain.next([event('own-1', 'customer', 'C1', 'agt_acme'), event('forged-1', 'customer', 'C2', 'agt_beta')]));
  const nack = await a.frame('nack');
  assert.equal(nack.code, 'HUB_TENANT_MISMATCH');
  assert.match(nack.message, /from agent agt_acme \(tenant acme\) has events claiming agent agt_beta \(tenant beta\)/);
  assert.equal((await a.closed).code, CLOSE.PROTOCOL_ERROR);
  assert.equal(await store.log.lastOffset(), 0, 'nothing of the batch was stored');
  assert.equal((await store.log.agentCursor('agt_beta')).events, 0);
  assert.equal(fleet.view('agt_acme').lastError?.code, 'HUB_TENANT_MISMATCH', 'operators see why');
});

test('disable: the next batch on an open socket is refused with 4003; disconnect closes at once; reconnects are refused', async () => {
  const a = await connect('agt_off', seedKey(4));
  await a.frame('ready');
  const chain = new BatchChain('agt_off', seedKey(4));
  a.batch(chain.next([event('off-1', 'customer', 'C1', 'agt_off')]));
  await a.frame('ack');
  await store.registry.updateAgent('agt_off', { status: 'disabled' });
  a.batch(chain.next([event('off-2', 'customer', 'C2', 'agt_off')]));
  assert.equal((await a.frame('error')).code, 'HUB_AGENT_DISABLED');
  assert.equal((await a.closed).code, CLOSE.REVOKED);
  assert.equal((await store.log.agentCursor('agt_off')).lastSeq, 1, 'the batch after disabling is not stored');

  await store.registry.updateAgent('agt_off', { status: 'active' });
  const b = await connect('agt_off', seedKey(4));
  await b.frame('ready');
  await store.registry.updateAgent('agt_off', { status: 'revoked' });
  gateway.disconnect('agt_off', CLOSE.REVOKED, 'agent revoked by operator');
  assert.deepEqual(await b.closed, { code: CLOSE.REVOKED, reason: 'agent revoked by operator' });
  assert.equal(gateway.isOnline('agt_off'), false);
  const c = await connect('agt_off', seedKey(4));
  assert.equal((await c.frame('error')).code, 'HUB_AGENT_DISABLED');
  assert.equal((await c.closed).code, CLOSE.REVOKED);
});
