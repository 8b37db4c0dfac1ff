/**
 * Agent side of issue 4 against the real gateway (port 0, memory store): mutual auth (the
 * agent refuses a hub that cannot prove the pinned key, follows a rotation chain and pins
 * the new key), hub key announced while connected, signed remote config verified, applied
 * or refused with the verdict recorded at the hub; remote config content rules; agent key
 * rotation over HTTP with the crash-safe key file dance; outbox signing key switch.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createLogger, encodeKey, generateKeyPair, keyId, signConfig, verifyBatchSignature, type ConfigFrame, type KeyPair,
} from '@dovetail/shared';
import { AgentGateway } from '../../hub/src/gateway/gateway.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import type { HubStore } from '../../hub/src/store/types.ts';
import { buildApi } from '../../hub/src/http/api.ts';
import { HubKeyring } from '../../hub/src/keys/hub-keys.ts';
import { RemoteConfigs } from '../../hub/src/remote/remote-config.ts';
import { Uplink, type UplinkIdentity } from '../../agent/src/uplink/uplink.ts';
import { Outbox } from '../../agent/src/outbox/outbox.ts';
import { writeKeyFile, rotateAgentKey, keyNextPath, keyPath, loadIdentity, pinHubKey } from '../../agent/src/identity/identity.ts';
import { configFrameProblem, mergeRemoteConfig } from '../../agent/src/remote-config.ts';
import { tempDir } from '../helpers/paths.ts';
import { seedKey } from '../helpers/hub-fixtures.ts';

const silent = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });
let store: HubStore;
let server: Server;
let gateway: AgentGateway;
let ring: HubKeyring;
let configs: RemoteConfigs;
let hubUrl: string;
let api: Awaited<ReturnType<typeof buildApi>>;
const uplinks: Uplink[] = [];

async function register(id: string, key: KeyPair): Promise<void> {
  const hash = `tok-${id}`;
  await store.registry.putToken({ hash, name: id, tenant: 'default', createdAt: 'x', expiresAt: '2999-01-01T00:00:00.000Z', usedAt: null, agentId: null });
  await store.registry.enroll(hash, { id, name: id, publicKey: encodeKey(key.publicKey), keyId: keyId(key.publicKey), status: 'active', createdAt: '2024-01-01T00:00:00.000Z', lastSeenAt: null, version: null, host: null }, new Date());
}

const noOutbox = { pending: async () => [], ack: async () => {}, onCommit: () => () => {} };

function uplink(identity: UplinkIdentity, pinned: string[] = []): Uplink {
  const u = new Uplink({
    hubUrl, identity, outbox: noOutbox, version: '1.0.0', host: 'erp', maxInFlightBatches: 4,
    reconnectInitialMs: 20, reconnectMaxMs: 50, heartbeatMs: 60_000, logger: silent,
    onHubKeyPinned: async (k) => { pinned.push(k.keyId); },
  });
  uplinks.push(u);
  return u;
}

async function eventually<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

before(async () => {
  store = createMemoryStore();
  ring = new HubKeyring(tempDir());
  configs = new RemoteConfigs(store.registry);
  server = createServer((_req, res) => { res.statusCode = 404; res.end(); });
  gateway = new AgentGateway({ store, hubKey: ring, configs, logger: silent, sweepIntervalMs: 0 });
  api = await buildApi({ store, identity: ring, hubKeys: ring, configs, logger: silent, isOnline: (a) => gateway.isOnline(a), destinations: () => [], offerConfig: (a) => gateway.offerConfig(a) });
  gateway.attach(api.server);
  await api.listen({ host: '127.0.0.1', port: 0 });
  hubUrl = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const u of uplinks) await u.stop();
  await gateway.close();
  await api.close();
  server.close();
});

test('mutual auth: an agent pinned to another hub key refuses to authenticate and keeps retrying', async () => {
  const key = seedKey(51);
  await register('agt_mx', key);
  const impostor = generateKeyPair();
  const u = uplink({ agentId: 'agt_mx', keyPair: key, keyId: keyId(key.publicKey), hubKeyId: keyId(impostor.publicKey), hubPublicKey: impostor.publicKey });
  let backoffs = 0;
  u.on('backoff', () => backoffs++);
  u.start();
  await eventually('two refused handshakes', () => backoffs >= 2);
  assert.notEqual(u.state, 'streaming');
  assert.equal(gateway.isOnline('agt_mx'), false, 'the agent never sent auth');
  await u.stop();
});

test('mutual auth with the pinned key, a rotation announced while connected and one learnt on reconnect are both pinned', async () => {
  const key = seedKey(52);
  await register('agt_mk', key);
  const identity: UplinkIdentity = { agentId: 'agt_mk', keyPair: key, keyId: keyId(key.publicKey), hubKeyId: ring.keyId, hubPublicKey: ring.keyPair.publicKey };
  const pinned: string[] = [];
  const u = uplink(identity, pinned);
  u.start();
  await eventually('streaming', () => u.state === 'streaming');

  // Online: the hub rotates and announces; the agent pins at once.
  const ann = ring.rotate(new Date());
  assert.equal(gateway.announceHubKey([ann]), 1);
  await eventually('new hub key pinned', () => identity.hubKeyId === ring.keyId);
  assert.deepEqual(pinned, [ring.keyId]);

  // Offline: two rotations while disconnected; on reconnect the proof carries the chain.
  await u.stop();
  ring.rotate(new Date());
  ring.rotate(new Date());
  const u2 = uplink(identity, pinned);
  u2.start();
  await eventually('streaming after reconnect', () => u2.state === 'streaming');
  assert.equal(identity.hubKeyId, ring.keyId);
  assert.equal(encodeKey(identity.hubPublicKey!), encodeKey(ring.keyPair.publicKey));
  assert.equal(pinned.length, 2, 'pinned once more, at the newest key');
  await u2.stop();
});

test('remote config: verified and applied, refused with its reason, and a forged one refused before the handler runs', async () => {
  const key = seedKey(53);
  await register('agt_rc', key);
  const identity: UplinkIdentity = { agentId: 'agt_rc', keyPair: key, keyId: keyId(key.publicKey), hubKeyId: ring.keyId, hubPublicKey: ring.keyPair.publicKey };
  const seen: Array<[number, string]> = [];
  const u = uplink(identity);
  u.setConfigHandler(async (version, doc) => {
    seen.push([version, doc]);
    return doc.includes('bad') ? { ok: false, reason: 'CONFIG_INVALID: tables[0].map: bad' } : { ok: true, reason: '' };
  });
  // Pushed while offline: sent on connect.
  await configs.push('agt_rc', 'tables: []\n', 'admin', new Date());
  u.start();
  await eventually('v1 applied', async () => (await configs.get('agt_rc'))?.status === 'applied');
  // Pushed while online via the API: sent now, refused, the reason recorded.
  const r = await api.inject({ method: 'POST', url: '/v1/agents/agt_rc/config', headers: { authorization: 'Bearer x' }, payload: { document: 'tables: [bad]\n' } });
  assert.equal(r.statusCode, 401, 'operator scope required');
  await configs.push('agt_rc', 'tables: [bad]\n', 'admin', new Date());
  assert.equal(await gateway.offerConfig('agt_rc'), true);
  const refused = await eventually('v2 refused', async () => { const c = await configs.get('agt_rc'); return c?.status === 'refused' ? c : false; });
  assert.deepEqual([refused.version, refused.reason], [2, 'CONFIG_INVALID: tables[0].map: bad']);
  assert.deepEqual(seen, [[1, 'tables: []\n'], [2, 'tables: [bad]\n']]);

  // A hub key rotation this connection was not told about: the config comes with the announcement, so it still verifies.
  ring.rotate(new Date());
  await configs.push('agt_rc', 'tables: []\n# v3\n', 'admin', new Date());
  assert.equal(await gateway.offerConfig('agt_rc'), true);
  await eventually('v3 applied', async () => { const c = await configs.get('agt_rc'); return c?.version === 3 && c.status === 'applied'; });
  assert.equal(identity.hubKeyId, ring.keyId);

  // A frame not signed by the pinned key never reaches the handler.
  const doc = new TextEncoder().encode('tables: []\n');
  const forged: ConfigFrame = { t: 'config', v: 1, agent: 'agt_rc', version: 3, doc, hubKeyId: ring.keyId, sig: signConfig('agt_rc', 3, doc, generateKeyPair().secretKey) };
  const pinned = { agentId: 'agt_rc', hubKeyId: ring.keyId, hubPublicKey: ring.keyPair.publicKey };
  assert.match(configFrameProblem(forged, pinned)!, /^config version 3 signature does not verify with the pinned hub key/);
  assert.match(configFrameProblem({ ...forged, agent: 'agt_other' }, pinned)!, /addressed to agent agt_other/);
  const real: ConfigFrame = { ...forged, sig: signConfig('agt_rc', 3, doc, ring.keyPair.secretKey) };
  assert.equal(configFrameProblem(real, pinned), null);
  assert.match(configFrameProblem({ ...real, version: 4 }, pinned)!, /does not verify/, 'the version is bound');
  await u.stop();
});

const LOCAL = `agent:
  name: plant
  dataDir: ./data
hub:
  url: http://127.0.0.1:8700
source:
  type: postgres
  system: erp
  url: postgres://erp:s3cret@127.0.0.1:5432/erp
  timeZone: UTC
tables:
  - name: items
    table: public.items
    key: [item_no]
    entity: product
    strategy: diff
    where: "active = true"
    map:
      sku: { column: item_no, type: code }
      description: { column: descr, type: string }
      uom.base: { column: uom, type: code }
`;

test('remote config content: tables only, merged into the local file and validated by the same loader', () => {
  const ok = mergeRemoteConfig(LOCAL, '/etc/dovetail/agent.yaml', `tables:
  - name: items
    table: public.items
    key: [item_no]
    entity: product
    strategy: diff
    where: "active = true"
    schedule: { every: 2s }
    map:
      sku: { column: item_no, type: code }
      description: { column: descr, type: string }
      uom.base: { column: uom, type: code }
  - name: items2
    table: public.items2
    key: [item_no]
    entity: product
    strategy: diff
    map:
      sku: { column: item_no, type: code }
      description: { column: descr, type: string }
      uom.base: { column: uom, type: code }
`, {});
  assert.deepEqual(ok.tables.map((t) => [t.name, t.schedule]), [['items', { everyMs: 2000 }], ['items2', { everyMs: 5000 }]]);
  assert.equal(ok.source.url, 'postgres://erp:s3cret@127.0.0.1:5432/erp', 'source stays local');
  assert.equal(ok.agent.dataDir, '/etc/dovetail/data');
  const refused = (doc: string, code: string, re: RegExp) => assert.throws(() => mergeRemoteConfig(LOCAL, '/etc/dovetail/agent.yaml', doc, { X: 'y' }), (err: { code?: string; message?: string }) => {
    assert.equal(err.code, code);
    assert.match(err.message!, re);
    return true;
  });
  refused('source: { type: postgres }\ntables: []\n', 'AGENT_CONFIG_REFUSED', /may set only "tables" .*found source/);
  refused('tables:\n  - name: items\n    where: "1=1; drop table x"\n', 'AGENT_CONFIG_REFUSED', /SQL filter at items \(where\) that the local config does not have/);
  refused('tables:\n  - name: t\n    map: { a: { const: "${env:X}" } }\n', 'AGENT_CONFIG_REFUSED', /\$\{env:\.\.\.\}/);
  refused('tables: {}\n', 'AGENT_CONFIG_REFUSED', /"tables" must be a list/);
  refused('tables:\n  - name: items\n    table: public.items\n    key: [item_no]\n    entity: product\n    strategy: diff\n    map:\n      sku: { column: item_no, type: money }\n', 'CONFIG_INVALID', /tables\[0\]\.map\.sku\.type/);
});

test('keys rotate: agent.key.next (0600) until the hub confirms, then it replaces agent.key; a refused key is dropped; the outbox switches keys', async () => {
  const dir = tempDir();
  await mkdir(dir, { recursive: true });
  const old = generateKeyPair();
  await register('agt_kr', old);
  await writeKeyFile(keyPath(dir), old);
  writeFileSync(join(dir, 'identity.json'), JSON.stringify({ agentId: 'agt_kr', tenant: 'default', name: 'kr', hubUrl, hubPublicKey: encodeKey(ring.keyPair.publicKey), hubKeyId: ring.keyId, enrolledAt: 'x' }));

  // The hub is unreachable: the new key waits in agent.key.next, the old one stays.
  const down = (async () => { throw new TypeError('fetch failed', { cause: new Error('ECONNREFUSED') }); }) as unknown as typeof fetch;
  await assert.rejects(rotateAgentKey({ dataDir: dir, fetch: down }), { code: 'AGENT_KEY_ROTATION_FAILED' });
  assert.equal(statSync(keyNextPath(dir)).mode & 0o777, 0o600);
  const pendingId = keyId((await import('@dovetail/shared')).decodePrivateKeyFile(readFileSync(keyNextPath(dir), 'utf8')).publicKey);
  assert.equal((await loadIdentity(dir)).keyId, keyId(old.publicKey));
  // Run again: the same pending key is announced and confirmed.
  const r = (await rotateAgentKey({ dataDir: dir, graceSeconds: 60 }))!;
  assert.deepEqual([r.resumed, r.oldKeyId, r.newKeyId], [true, keyId(old.publicKey), pendingId]);
  assert.equal(existsSync(keyNextPath(dir)), false);
  assert.equal((await loadIdentity(dir)).keyId, pendingId);
  assert.equal((await store.registry.getAgent('agt_kr'))?.keyId, pendingId);
  assert.equal(await rotateAgentKey({ dataDir: dir, resumeOnly: true }), undefined, 'nothing to resume');

  // The agent is disabled: the hub refuses, the unannounced key is dropped, the current key stays.
  await store.registry.updateAgent('agt_kr', { status: 'disabled' });
  await assert.rejects(rotateAgentKey({ dataDir: dir }), (err: { code?: string; message?: string }) => err.code === 'AGENT_KEY_ROTATION_FAILED' && /HTTP 403\) HUB_AGENT_DISABLED/.test(err.message!));
  assert.equal(existsSync(keyNextPath(dir)), false);
  assert.equal((await loadIdentity(dir)).keyId, pendingId);

  // Pinning a new hub key rewrites identity.json.
  const hk = generateKeyPair();
  await pinHubKey(dir, hk.publicKey);
  assert.equal((await loadIdentity(dir)).hubKeyId, keyId(hk.publicKey));

  // The outbox signs new batches with the key it was last given.
  const ob = await Outbox.open(join(dir, 'ob'), { agentId: 'agt_kr', secretKey: old.secretKey, maxBatchEvents: 10, maxBatchBytes: 1 << 20 });
  const ev = { id: 'e1', entity: 'customer', op: 'upsert', key: 'C1', data: {}, source: { agent: 'agt_kr', system: 's', table: 't', position: '1' }, occurredAt: null, capturedAt: 'x', correlationId: null, schema: 'customer/1' } as never;
  await ob.commit({ table: 't', events: [ev], position: '1', stateOps: [], quarantine: [] });
  const nk = generateKeyPair();
  await ob.setSigningKey(nk.secretKey);
  await ob.commit({ table: 't', events: [ev], position: '2', stateOps: [], quarantine: [] });
  const [b1, b2] = await ob.pending(0, 10);
  assert.deepEqual([verifyBatchSignature(b1!.body, b1!.sig, old.publicKey), verifyBatchSignature(b2!.body, b2!.sig, nk.publicKey), verifyBatchSignature(b2!.body, b2!.sig, old.publicKey)], [true, true, false]);
  await ob.close();
});
