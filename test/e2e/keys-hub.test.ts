/**
 * Hub key rotation with real processes: `dovetail-hub keys rotate` while one agent streams
 * and another is stopped. The online agent pins the new key at once (announcement signed by
 * the old key); the offline one pins it when it reconnects (the hub presents the chain from
 * its pinned key). Both keep delivering, also after a hub restart on the new key.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodePrivateKeyFile, keyId } from '@dovetail/shared';
import { Harness, hubApi, waitFor } from '../helpers/procs.ts';
import { agentIdentity, agentViewX, enrollTestAgent, hubCli, startErp, startTestHub, type Erp, type TestAgent, type TestHub } from '../helpers/fleet.ts';

const h = new Harness('dovetail-e2e-keys-hub-');
// One embedded ERP per agent: the PGlite socket server serves one connection at a time.
let erp: Erp;
let erp2: Erp;
let hub: TestHub;
let online: TestAgent;
let offline: TestAgent;

const hubKeyId = () => keyId(decodePrivateKeyFile(readFileSync(join(hub.dataDir, 'hub.key'), 'utf8')).publicKey);
const storedBoth = (n: number) => waitFor(`both agents stored ${n} events`, async () => {
  const [a, b] = await Promise.all([agentViewX(hub, online.id), agentViewX(hub, offline.id)]);
  return a.eventsStored === n && b.eventsStored === n && a.online && b.online;
}, { timeoutMs: 30_000 });

before(async () => {
  erp = await startErp(3);
  erp2 = await startErp(3);
  hub = await startTestHub(h);
  online = await enrollTestAgent(h, hub, erp, 'plant-on');
  offline = await enrollTestAgent(h, hub, erp2, 'plant-off');
  online.proc = h.startAgent(online.config);
  offline.proc = h.startAgent(offline.config);
});

after(async () => {
  await h.cleanup();
  await erp.stop();
  await erp2.stop();
});

test('rotating the hub key: the connected agent pins it at once, the offline one on reconnect', { timeout: 60_000 }, async () => {
  await storedBoth(3);
  const k1 = hubKeyId();
  assert.deepEqual([agentIdentity(online.dataDir).hubKeyId, agentIdentity(offline.dataDir).hubKeyId], [k1, k1]);
  await h.stop(offline.proc!);
  await waitFor('offline agent seen offline', async () => !(await agentViewX(hub, offline.id)).online);

  const r = JSON.parse((await hubCli(h, hub, ['keys', 'rotate', '--json'])).stdout) as { keyId: string; previousKeyId: string; agentsNotified: number };
  const k2 = hubKeyId();
  assert.deepEqual([r.previousKeyId, r.keyId, r.agentsNotified], [k1, k2, 1]);
  assert.notEqual(k2, k1);
  assert.equal((await hubApi<{ hubKeyId: string }>(hub, '/v1/status')).hubKeyId, k2);

  await waitFor('online agent pinned the new hub key', () => agentIdentity(online.dataDir).hubKeyId === k2, { timeoutMs: 10_000 });
  assert.match(h.logText('agent'), new RegExp(`hub key rotated: pinned the new hub key.*"hubKeyId":"${k2}"|"hubKeyId":"${k2}".*hub key rotated: pinned the new hub key`));
  assert.equal(agentIdentity(offline.dataDir).hubKeyId, k1, 'the stopped agent still pins the old key');

  // The offline agent comes back: the proof is signed by k2, the chain from k1 leads there.
  offline.proc = h.startAgent(offline.config);
  await erp.addRows(2);
  await erp2.addRows(2);
  await storedBoth(5);
  assert.equal(agentIdentity(offline.dataDir).hubKeyId, k2);
  assert.equal(agentIdentity(offline.dataDir).hubPublicKey, (await hubApi<{ publicKey: string }>(hub, '/v1/hub/keys')).publicKey);

  // Text output of a second rotation, then a hub restart: both agents follow (restart = reconnect with the chain).
  const text = (await hubCli(h, hub, ['keys', 'rotate'])).stdout;
  const k3 = hubKeyId();
  assert.equal(text, `hub key rotated: ${k2} -> ${k3}; announced to 2 connected agent(s), the others on their next connect\n`);
  await h.stop(hub.proc);
  hub = await hub.restart();
  await erp.addRows(1);
  await erp2.addRows(1);
  await storedBoth(6);
  assert.deepEqual([agentIdentity(online.dataDir).hubKeyId, agentIdentity(offline.dataDir).hubKeyId], [k3, k3]);
  const audit = await hubApi<{ entries: Array<{ action: string; detail?: Record<string, unknown> }> }>(hub, '/v1/audit?limit=20');
  assert.deepEqual(audit.entries.filter((e) => e.action === 'hub.key-rotated').map((e) => e.detail?.keyId), [k3, k2]);
  assert.ok(!/AGENT_HUB_UNVERIFIED/.test(h.logText('agent')), 'no agent ever doubted the hub');
});
