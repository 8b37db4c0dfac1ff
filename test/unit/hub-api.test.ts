/** The assembled hub (LevelDB in a temp dir, port 0): enrollment, operator API, and one event from agent to webhook. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { Webhook } from 'standardwebhooks';
import {
  AGENT_WS_PATH, PROTOCOL_VERSION, authMessage, createLogger, decodeFrame, encodeFrame, encodeKey, keyId, sign, type Frame,
} from '@dovetail/shared';
import { parseHubConfig } from '../../hub/src/config.ts';
import { startHub, type Hub } from '../../hub/src/hub.ts';
import { hashToken } from '../../hub/src/identity.ts';
import { tempDir } from '../helpers/paths.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const silent = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });

let dir: string;
let hub: Hub;
let admin: string;
let clock = new Date('2030-01-01T00:00:00.000Z');
const received: Array<{ headers: IncomingMessage['headers']; body: string }> = [];
const rx = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => { received.push({ headers: req.headers, body: Buffer.concat(chunks).toString() }); res.end(); });
});

async function api(method: string, path: string, body?: unknown, token: string | null = admin): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(hub.url + path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

before(async () => {
  dir = tempDir('dovetail-hub-api-');
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(rx.address() as AddressInfo).port}/hook`;
  const config = parseHubConfig(`
listen: { port: 0 }
dataDir: ./data
destinations:
  - { name: crm, type: webhook, url: "${hookUrl}", secret: "\${env:CRM_SECRET}", entities: [customer] }
`, { baseDir: dir, env: { CRM_SECRET: SECRET } });
  hub = await startHub(config, { logger: silent, now: () => clock });
  admin = readFileSync(join(dir, 'data', 'admin.token'), 'utf8').trim();
});

after(async () => {
  await hub.close();
  await new Promise<void>((r) => rx.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

test('data dir: hub.key and admin.token are 0600, hub.json names the URL, only the token hash is in the registry', async () => {
  assert.equal(statSync(join(dir, 'data', 'hub.key')).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'data', 'admin.token')).mode & 0o777, 0o600);
  assert.match(admin, /^dvt_admin_[A-Za-z0-9_-]{43}$/);
  assert.equal(JSON.parse(readFileSync(join(dir, 'data', 'hub.json'), 'utf8')).url, hub.url);
  assert.equal(await hub.store.registry.getSetting('adminTokenHash'), hashToken(admin));
});

test('operator endpoints need the admin bearer token', async () => {
  for (const token of [null, 'dvt_admin_wrong']) {
    const r = await api('GET', '/v1/agents', undefined, token);
    assert.equal(r.status, 401);
    assert.equal(r.json.code, 'HUB_UNAUTHORIZED');
  }
  assert.deepEqual((await api('GET', '/v1/health', undefined, null)).json, { status: 'ok' });
});

test('enrollment: token is one-time (409 HUB_TOKEN_USED), unknown is 401, expired is 410, bad input is 400', async () => {
  const issued = await api('POST', '/v1/enrollment-tokens', { name: 'plant-1' });
  assert.equal(issued.status, 200);
  assert.equal(issued.json.expiresAt, '2030-01-01T01:00:00.000Z', 'default lifetime 1 h');
  const token = String(issued.json.token);
  const pk = encodeKey(seedKey(1).publicKey);
  const ok = await api('POST', '/v1/enroll', { token, publicKey: pk, name: 'x', host: 'erp-01', version: '0.1.0' }, null);
  assert.equal(ok.status, 200);
  assert.match(String(ok.json.agentId), /^agt_[0-9a-f]{16}$/);
  assert.equal(ok.json.tenant, 'default');
  assert.equal(ok.json.hubPublicKey, encodeKey(hub.identity.keyPair.publicKey));
  assert.equal(ok.json.hubKeyId, hub.identity.keyId);
  const again = await api('POST', '/v1/enroll', { token, publicKey: encodeKey(seedKey(2).publicKey) }, null);
  assert.deepEqual([again.status, again.json.code], [409, 'HUB_TOKEN_USED']);
  const unknown = await api('POST', '/v1/enroll', { token: 'dvt_enroll_nope', publicKey: pk }, null);
  assert.deepEqual([unknown.status, unknown.json.code], [401, 'HUB_TOKEN_INVALID']);
  const short = String((await api('POST', '/v1/enrollment-tokens', { name: 'late', ttlSeconds: 60 })).json.token);
  clock = new Date(clock.getTime() + 61_000);
  const expired = await api('POST', '/v1/enroll', { token: short, publicKey: encodeKey(seedKey(3).publicKey) }, null);
  assert.deepEqual([expired.status, expired.json.code], [410, 'HUB_TOKEN_EXPIRED']);
  const badKey = await api('POST', '/v1/enroll', { token: short, publicKey: 'abc' }, null);
  assert.deepEqual([badKey.status, badKey.json.code], [400, 'HUB_BAD_REQUEST']);
  assert.match(String(badKey.json.message), /^publicKey: /);
  const badTtl = await api('POST', '/v1/enrollment-tokens', { name: 'n', ttlSeconds: 1.5 });
  assert.deepEqual([badTtl.status, badTtl.json.code], [400, 'HUB_BAD_REQUEST']);
  const agent = await api('GET', `/v1/agents/${String(ok.json.agentId)}`);
  assert.equal(agent.json.name, 'plant-1', 'the operator-given name wins');
  assert.equal(agent.json.host, 'erp-01');
  assert.equal((await api('GET', '/v1/agents/agt_missing')).json.code, 'HUB_NOT_FOUND');
});

test('an enrolled agent streams a batch; the customer event reaches the webhook, signed; status shows it all', async () => {
  const token = String((await api('POST', '/v1/enrollment-tokens', { name: 'plant-2' })).json.token);
  const key = seedKey(9);
  const { json } = await api('POST', '/v1/enroll', { token, publicKey: encodeKey(key.publicKey), host: 'erp-02', version: '0.1.0' }, null);
  const agentId = String(json.agentId);
  const ws = new WebSocket(hub.url.replace('http', 'ws') + AGENT_WS_PATH);
  const frames: Frame[] = [];
  const next = () => new Promise<Frame>((resolve) => ws.once('message', (d: Buffer) => { const f = decodeFrame(d); frames.push(f); resolve(f); }));
  const ch = await next();
  assert.equal(ch.t, 'challenge');
  if (ch.t !== 'challenge') return;
  assert.equal(ch.hubKeyId, hub.identity.keyId);
  const readyP = next();
  ws.send(encodeFrame({ t: 'auth', v: PROTOCOL_VERSION, agent: agentId, nonce: ch.nonce, sig: sign(authMessage(ch.nonce, agentId, ch.hubKeyId), key.secretKey), version: '0.2.0', host: 'erp-02', keyId: keyId(key.publicKey) }));
  assert.equal((await readyP).t, 'ready');
  const chain = new BatchChain(agentId, key);
  const b = chain.next([event('e-cust-1', 'customer', 'ALFKI', agentId), event('e-prod-1', 'product', 'SKU-1', agentId)]);
  const ackP = next();
  ws.send(encodeFrame({ t: 'batch', v: PROTOCOL_VERSION, seq: b.seq, body: b.body, sig: b.sig }));
  assert.deepEqual(await ackP, { t: 'ack', v: PROTOCOL_VERSION, seq: 1 });
  for (let i = 0; i < 500 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(received.length, 1, 'product is filtered out for this destination');
  const r0 = received[0]!;
  assert.equal(r0.headers['webhook-id'], 'e-cust-1');
  const ts = Number(r0.headers['webhook-timestamp']);
  // standardwebhooks checks the timestamp against the wall clock; the hub's delivery timers use the real clock.
  assert.ok(Math.abs(ts - Date.now() / 1000) < 60);
  assert.deepEqual(new Webhook(SECRET).verify(r0.body, {
    'webhook-id': 'e-cust-1', 'webhook-timestamp': String(ts), 'webhook-signature': String(r0.headers['webhook-signature']),
  }), event('e-cust-1', 'customer', 'ALFKI', agentId));

  const status = await api('GET', '/v1/status');
  const agents = status.json.agents as { online: number; list: Array<{ id: string; lastSeq: number; eventsStored: number; online: boolean; version: string }> };
  const me = agents.list.find((a) => a.id === agentId)!;
  assert.deepEqual([me.lastSeq, me.eventsStored, me.online, me.version], [1, 2, true, '0.2.0']);
  for (let i = 0; i < 200; i++) {
    const d = (await api('GET', '/v1/destinations')).json.destinations as Array<{ name: string; cursor: number; pending: number; dlq: number }>;
    if (d[0]!.cursor === 2) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const dests = (await api('GET', '/v1/destinations')).json.destinations as Array<Record<string, unknown>>;
  assert.deepEqual(dests.map((d) => [d.name, d.cursor, d.pending, d.dlq]), [['crm', 2, 0, 0]]);
  ws.close();
});
