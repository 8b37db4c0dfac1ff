/**
 * Hub side of key rotation: agent keys announced over HTTP (signature + proof of
 * possession), the old key's grace for auth and buffered batches with an injected clock,
 * the hub's per-connection proof and announcement chain, and the hub key ring's
 * crash-safe rotation.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import {
  AGENT_WS_PATH, CLOSE, PROTOCOL_VERSION, announceKey, announcementToJson, authMessage, createLogger, decodeFrame, encodeFrame,
  encodeKey, encodePrivateKeyFile, followKeyChain, generateKeyPair, hubProofMessage, keyId, sign, verify, type Frame, type KeyPair,
} from '@dovetail/shared';
import { AgentGateway } from '../../hub/src/gateway/gateway.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import type { HubStore } from '../../hub/src/store/types.ts';
import { ADMIN_TOKEN_SETTING, buildApi } from '../../hub/src/http/api.ts';
import { hashToken } from '../../hub/src/identity.ts';
import { HubKeyring, HUB_KEY_CHAIN_FILE, HUB_KEY_NEXT_FILE } from '../../hub/src/keys/hub-keys.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const silent = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });
const HOUR = 3_600_000;
let clock = new Date('2026-03-01T12:00:00.000Z');
const now = () => clock;
const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'dovetail-keys-')); dirs.push(d); return d; };

let store: HubStore;
let server: Server;
let gateway: AgentGateway;
let ring: HubKeyring;
let url: string;
let api: Awaited<ReturnType<typeof buildApi>>;

async function register(id: string, key: KeyPair): Promise<void> {
  const hash = `tok-${id}`;
  await store.registry.putToken({ hash, name: id, tenant: 'default', createdAt: 'x', expiresAt: '2999-01-01T00:00:00.000Z', usedAt: null, agentId: null });
  await store.registry.enroll(hash, { id, name: id, publicKey: encodeKey(key.publicKey), keyId: keyId(key.publicKey), status: 'active', createdAt: '2024-01-01T00:00:00.000Z', lastSeenAt: null, version: null, host: null }, new Date());
}

/** One scripted agent connection: returns the frames it saw and how it closed. */
function session(agentId: string, key: KeyPair, opts: { query?: string; after?: (send: (f: Frame) => void, ready: Extract<Frame, { t: 'ready' }>) => void; waitFor?: number } = {}): Promise<{ frames: Frame[]; close: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url + AGENT_WS_PATH + (opts.query ?? ''));
    const frames: Frame[] = [];
    const send = (f: Frame) => ws.send(encodeFrame(f));
    ws.on('error', () => {});
    ws.on('message', (d: Buffer) => {
      const f = decodeFrame(d);
      frames.push(f);
      if (f.t === 'challenge') send({ t: 'auth', v: PROTOCOL_VERSION, agent: agentId, nonce: f.nonce, sig: sign(authMessage(f.nonce, agentId, f.hubKeyId), key.secretKey), version: '0.1.0', host: 'h', keyId: keyId(key.publicKey) });
      if (f.t === 'ready') {
        opts.after?.(send, f);
        if (!opts.after) ws.close();
      }
      if ((f.t === 'ack' || f.t === 'nack') && frames.filter((x) => x.t === 'ack' || x.t === 'nack').length >= (opts.waitFor ?? 1)) ws.close();
    });
    ws.on('close', (code) => resolve({ frames, close: code }));
  });
}

async function rotateOverHttp(agentId: string, oldKey: KeyPair, newKey: KeyPair, extra: Record<string, unknown> = {}) {
  const announcement = announcementToJson(announceKey({ role: 'agent', subject: agentId, at: clock.toISOString() }, oldKey, newKey));
  const res = await api.inject({ method: 'POST', url: `/v1/agents/${agentId}/keys`, payload: { announcement, ...extra } });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
}

before(async () => {
  store = createMemoryStore();
  ring = new HubKeyring(tmp());
  server = createServer((_req, res) => { res.statusCode = 404; res.end(); });
  gateway = new AgentGateway({ store, hubKey: ring, logger: silent, now, sweepIntervalMs: 0 });
  gateway.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  api = await buildApi({ store, identity: ring, hubKeys: ring, logger: silent, isOnline: () => false, destinations: () => [], now, agentKeyGraceMs: 24 * HOUR });
});

after(async () => {
  await gateway.close();
  await api.close();
  await new Promise<void>((r) => server.close(() => r()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('agent key rotation over HTTP: signature by the active key and proof of possession are both required; a retry is idempotent', async () => {
  const old = seedKey(21);
  const next = seedKey(22);
  await register('agt_r1', old);
  // Signed by a key that is not the agent's.
  const wrongOld = await rotateOverHttp('agt_r1', seedKey(29), next);
  assert.deepEqual([wrongOld.status, wrongOld.body.code], [409, 'HUB_CONFLICT']);
  // Right old key but the proof of possession is for another key.
  const a = announcementToJson(announceKey({ role: 'agent', subject: 'agt_r1', at: clock.toISOString() }, old, next));
  const forged = await api.inject({ method: 'POST', url: '/v1/agents/agt_r1/keys', payload: { announcement: { ...a, newPublicKey: encodeKey(seedKey(23).publicKey), newKeyId: keyId(seedKey(23).publicKey) } } });
  assert.deepEqual([forged.statusCode, forged.json().code], [401, 'HUB_AUTH_FAILED']);
  // For another agent.
  const other = await api.inject({ method: 'POST', url: '/v1/agents/agt_nope/keys', payload: { announcement: a } });
  assert.deepEqual([other.statusCode, other.json().code], [400, 'HUB_BAD_REQUEST']);

  const ok = await rotateOverHttp('agt_r1', old, next, { graceSeconds: 7200 });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, { agentId: 'agt_r1', keyId: keyId(next.publicKey), previousKeyId: keyId(old.publicKey), retiresAt: '2026-03-01T14:00:00.000Z', changed: true });
  const again = await rotateOverHttp('agt_r1', old, next);
  assert.deepEqual([again.status, again.body.changed, again.body.keyId], [200, false, keyId(next.publicKey)]);
  // The grace asked for is capped by the hub's (24 h).
  const third = seedKey(24);
  const capped = await rotateOverHttp('agt_r1', next, third, { graceSeconds: 30 * 86400 });
  assert.equal(capped.body.retiresAt, '2026-03-02T12:00:00.000Z');
  const rec = await store.registry.getAgent('agt_r1');
  assert.deepEqual(rec?.previousKeys?.map((k) => k.keyId), [keyId(next.publicKey), keyId(old.publicKey)]);
  const audit = await store.audit.list({ limit: 10 });
  assert.deepEqual(audit.filter((e) => e.action === 'agent.key-rotated').map((e) => [e.actor, e.detail?.keyId]), [
    ['agent:agt_r1', keyId(third.publicKey)], ['agent:agt_r1', keyId(next.publicKey)],
  ]);
});

test('batches signed by the old key are accepted during the grace and refused after it; auth likewise', async () => {
  clock = new Date('2026-03-01T12:00:00.000Z');
  const old = seedKey(31);
  const next = seedKey(32);
  await register('agt_g', old);
  const chainOld = new BatchChain('agt_g', old);
  // Buffered under the old key before the rotation.
  const b1 = chainOld.next([event('g1', 'customer', 'C1', 'agt_g')]);
  const b2 = chainOld.next([event('g2', 'customer', 'C2', 'agt_g')]);
  const b3 = chainOld.next([event('g3', 'customer', 'C3', 'agt_g')]);
  assert.equal((await rotateOverHttp('agt_g', old, next, { graceSeconds: 3600 })).status, 200);

  // Within the grace: the agent still authenticates with the old key (it has not picked the new one up) and sends b1.
  const s1 = await session('agt_g', old, { after: (send) => send({ t: 'batch', v: 1, seq: 1, body: b1.body, sig: b1.sig }) });
  assert.deepEqual(s1.frames.filter((f) => f.t === 'ack').map((f) => (f as { seq: number }).seq), [1]);
  // With the new key: b2 (old signature) still accepted.
  const s2 = await session('agt_g', next, { after: (send) => send({ t: 'batch', v: 1, seq: 2, body: b2.body, sig: b2.sig }) });
  assert.deepEqual(s2.frames.filter((f) => f.t === 'ack').map((f) => (f as { seq: number }).seq), [2]);

  clock = new Date('2026-03-01T13:00:00.001Z'); // the grace (1 h) is over
  const s3 = await session('agt_g', next, { after: (send) => send({ t: 'batch', v: 1, seq: 3, body: b3.body, sig: b3.sig }) });
  const nack = s3.frames.find((f) => f.t === 'nack') as Extract<Frame, { t: 'nack' }>;
  assert.equal(nack.code, 'PROTO_KEY_RETIRED');
  assert.equal(nack.message, `batch seq 3 is signed by agent agt_g's key ${keyId(old.publicKey)}, retired at 2026-03-01T13:00:00.000Z (its rotation grace ended)`);
  const s4 = await session('agt_g', old);
  assert.equal(s4.close, CLOSE.AUTH_FAILED);
  assert.equal((s4.frames.find((f) => f.t === 'error') as { code: string }).code, 'PROTO_KEY_RETIRED');
  // The same events re-signed by the new key go through: the chain is over body bytes, not signatures.
  const resigned = { ...b3, sig: sign(new Uint8Array([...Buffer.from('dovetail/batch/v1\0'), ...b3.body]), next.secretKey) };
  const s5 = await session('agt_g', next, { after: (send) => send({ t: 'batch', v: 1, seq: 3, body: resigned.body, sig: resigned.sig }) });
  assert.deepEqual(s5.frames.filter((f) => f.t === 'ack').map((f) => (f as { seq: number }).seq), [3]);
});

test('mutual auth: with its nonce in the URL the agent gets a hub proof over both nonces, and the chain from its pinned key', async () => {
  const key = seedKey(41);
  await register('agt_m', key);
  const pinned = { publicKey: ring.keyPair.publicKey, keyId: ring.keyId };
  const agentNonce = new Uint8Array(32).fill(5);
  const q = `?nonce=${Buffer.from(agentNonce).toString('base64url')}&pin=${pinned.keyId}`;
  const s = await session('agt_m', key, { query: q });
  const ch = s.frames[0] as Extract<Frame, { t: 'challenge' }>;
  const proof = s.frames[1] as Extract<Frame, { t: 'hub-proof' }>;
  assert.deepEqual([ch.t, proof.t, proof.chain.length], ['challenge', 'hub-proof', 0]);
  assert.equal(verify(hubProofMessage(agentNonce, ch.nonce, ring.keyId), proof.sig, pinned.publicKey), true);

  ring.rotate(clock);
  ring.rotate(clock);
  const s2 = await session('agt_m', key, { query: q });
  const ch2 = s2.frames[0] as Extract<Frame, { t: 'challenge' }>;
  const proof2 = s2.frames[1] as Extract<Frame, { t: 'hub-proof' }>;
  assert.equal(ch2.hubKeyId, ring.keyId);
  assert.equal(proof2.chain.length, 2);
  const reached = followKeyChain(pinned, proof2.chain, 'hub', 'hub');
  assert.equal(reached.keyId, ring.keyId);
  assert.equal(verify(hubProofMessage(agentNonce, ch2.nonce, ring.keyId), proof2.sig, reached.publicKey), true);
  assert.equal(verify(hubProofMessage(agentNonce, ch2.nonce, ring.keyId), proof2.sig, pinned.publicKey), false, 'signed by the new key, not the old');
  assert.ok(s2.frames.some((f) => f.t === 'ready'), 'auth bound to the new hub key id succeeds');
  // Without a nonce in the URL no proof is sent (older agents).
  const s3 = await session('agt_m', key);
  assert.deepEqual(s3.frames.map((f) => f.t), ['challenge', 'ready']);
  // A malformed nonce closes the connection.
  const s4 = await session('agt_m', key, { query: '?nonce=abc' });
  assert.equal(s4.close, CLOSE.PROTOCOL_ERROR);
});

test('hub key ring: rotation writes the chain and the new key (0600); a crash between steps leaves a usable key', () => {
  const dir = tmp();
  const r = new HubKeyring(dir);
  const first = r.keyId;
  const ann = r.rotate(new Date('2026-03-01T00:00:00.000Z'));
  assert.deepEqual([ann.oldKeyId, ann.newKeyId, r.keyId], [first, r.keyId, ann.newKeyId]);
  assert.equal(statSync(join(dir, 'hub.key')).mode & 0o777, 0o600);
  assert.equal(new HubKeyring(dir).keyId, r.keyId, 'reloaded from disk');
  assert.deepEqual(new HubKeyring(dir).chainFrom(first).map((a) => a.newKeyId), [r.keyId]);
  assert.deepEqual(new HubKeyring(dir).chainFrom(r.keyId), []);

  // Crash after writing hub.key.next, before the chain: the next start discards it and keeps the current key.
  writeFileSync(join(dir, HUB_KEY_NEXT_FILE), encodePrivateKeyFile(generateKeyPair()), { mode: 0o600 });
  const r2 = new HubKeyring(dir);
  assert.deepEqual([r2.keyId, r2.recovered, existsSync(join(dir, HUB_KEY_NEXT_FILE))], [r.keyId, 'discarded', false]);

  // Crash after the chain announced it, before the rename: the next start finishes the rotation.
  const next = generateKeyPair();
  writeFileSync(join(dir, HUB_KEY_NEXT_FILE), encodePrivateKeyFile(next), { mode: 0o600 });
  const chain = JSON.parse(readFileSync(join(dir, HUB_KEY_CHAIN_FILE), 'utf8')) as unknown[];
  chain.push(announcementToJson(announceKey({ role: 'hub', subject: 'hub', at: 'x' }, r2.keyPair, next)));
  writeFileSync(join(dir, HUB_KEY_CHAIN_FILE), JSON.stringify(chain));
  const r3 = new HubKeyring(dir);
  assert.deepEqual([r3.keyId, r3.recovered], [keyId(next.publicKey), 'finished']);
  assert.equal(followKeyChain({ publicKey: seedKey(0).publicKey, keyId: first }, r3.chainFrom(first), 'hub', 'hub').keyId, first, 'a chain is only followed from the real key');
});

test('POST /v1/hub/keys/rotate (admin) rotates and is audited; GET /v1/hub/keys lists rotations', async () => {
  await store.registry.putSetting(ADMIN_TOKEN_SETTING, hashToken('dvt_admin_test'));
  const before = ring.keyId;
  const noAuth = await api.inject({ method: 'POST', url: '/v1/hub/keys/rotate' });
  assert.equal(noAuth.statusCode, 401);
  const res = await api.inject({ method: 'POST', url: '/v1/hub/keys/rotate', headers: { authorization: 'Bearer dvt_admin_test' } });
  assert.equal(res.statusCode, 200);
  const body = res.json() as { keyId: string; previousKeyId: string; agentsNotified: number };
  assert.deepEqual([body.previousKeyId, body.keyId, body.agentsNotified], [before, ring.keyId, 0]);
  const keys = (await api.inject({ method: 'GET', url: '/v1/hub/keys', headers: { authorization: 'Bearer dvt_admin_test' } })).json() as { keyId: string; rotations: Array<{ newKeyId: string }> };
  assert.equal(keys.keyId, ring.keyId);
  assert.equal(keys.rotations.at(-1)?.newKeyId, ring.keyId);
  const audit = await store.audit.list({ limit: 1 });
  assert.deepEqual([audit[0]?.action, audit[0]?.actor, audit[0]?.detail?.previousKeyId], ['hub.key-rotated', 'admin', before]);
});
