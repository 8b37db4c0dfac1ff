/**
 * Agent key rotation with real processes. Batches buffered under the old key while the hub
 * was down are rotated past while the agent is stopped (`dovetail-agent keys rotate` talks
 * to the hub over HTTP), then delivered: the hub accepts them under the old key (grace) and
 * everything captured after is signed by the new key. A second rotation while the agent
 * runs is picked up by the running process for its next batches.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decodePrivateKeyFile, keyId, verifyBatchSignature, type KeyPair } from '@dovetail/shared';
import { openLevelStore } from '../../hub/src/store/level.ts';
import { AGENT_BIN } from '../helpers/paths.ts';
import { Harness, agentStatusFile, waitFor } from '../helpers/procs.ts';
import { agentViewX, enrollTestAgent, hubCli, startErp, startTestHub, type Erp, type TestAgent, type TestHub } from '../helpers/fleet.ts';

const h = new Harness('dovetail-e2e-keys-agent-');
let erp: Erp;
let hub: TestHub;
let agent: TestAgent;

const readKey = (): KeyPair => decodePrivateKeyFile(readFileSync(join(agent.dataDir, 'agent.key'), 'utf8'));
const stored = (n: number) => waitFor(`hub stores ${n} events of the agent`, async () => {
  const a = await agentViewX(hub, agent.id);
  return a.eventsStored === n ? a : false;
}, { timeoutMs: 30_000 });

async function rotate(): Promise<string> {
  const r = await h.run('agent-keys', [AGENT_BIN, 'keys', 'rotate', '--config', agent.config]);
  assert.equal(r.code, 0, `keys rotate failed: ${r.stderr}`);
  return r.stdout;
}

before(async () => {
  erp = await startErp(5);
  hub = await startTestHub(h);
  agent = await enrollTestAgent(h, hub, erp, 'plant-k');
  agent.proc = h.startAgent(agent.config);
});

after(async () => {
  await h.cleanup();
  await erp.stop();
});

test('batches buffered under the old key are accepted after an offline rotation; new batches carry the new key; a running agent picks up the next one', { timeout: 60_000 }, async () => {
  await stored(5);
  const k1 = readKey();

  // The hub goes away; the agent captures 3 more rows into its buffer, signed with k1.
  await h.stop(hub.proc);
  await erp.addRows(3);
  await waitFor('3 changes buffered in the agent outbox', () => (agentStatusFile(agent.dataDir)?.outbox.depth ?? 0) > 0, { timeoutMs: 20_000 });
  await h.stop(agent.proc!);
  const buffered = agentStatusFile(agent.dataDir)!.outbox;

  // Hub back, agent stopped: rotate over HTTP.
  hub = await hub.restart();
  const out = await rotate();
  const k2 = readKey();
  assert.notEqual(keyId(k2.publicKey), keyId(k1.publicKey));
  assert.match(out, new RegExp(`^agent ${agent.id} key rotated: ${keyId(k1.publicKey)} -> ${keyId(k2.publicKey)}; the hub accepts the old key until \\S+Z\\n$`));
  assert.equal(statSync(join(agent.dataDir, 'agent.key')).mode & 0o777, 0o600);
  assert.equal(existsSync(join(agent.dataDir, 'agent.key.next')), false);
  const rotated = await agentViewX(hub, agent.id);
  assert.equal(rotated.keyId, keyId(k2.publicKey));
  assert.deepEqual(rotated.previousKeys.map((k) => [k.keyId, k.retired]), [[keyId(k1.publicKey), false]]);
  const show = (await hubCli(h, hub, ['agents', 'show', agent.id])).stdout;
  assert.match(show, new RegExp(`\\nkey: ${keyId(k2.publicKey)}; previous: ${keyId(k1.publicKey)} valid until \\S+Z\\n`));

  // The agent restarts with k2: its old-key batches go through, then new captures under k2.
  agent.proc = h.startAgent(agent.config);
  await stored(8);
  await erp.addRows(2);
  await stored(10);

  // While the agent runs: a second rotation, picked up by the process for its next batches.
  await rotate();
  const k3 = readKey();
  await waitFor('running agent switched to the new key', () => /agent key rotated: new batches and connections use the new key/.test(h.logText('agent')), { timeoutMs: 15_000 });
  await erp.addRows(1);
  const last = await stored(11);

  await h.stop(agent.proc);
  await h.stop(hub.proc);
  const store = await openLevelStore(join(hub.dataDir, 'db'));
  try {
    const signers: string[] = [];
    for (let seq = 1; seq <= last.lastSeq; seq++) {
      const b = (await store.log.getBatch(agent.id, seq))!;
      const by = [k1, k2, k3].findIndex((k) => verifyBatchSignature(b.body, b.sig, k.publicKey));
      signers.push(`${seq}:k${by + 1}`);
    }
    const firstBuffered = buffered.lastAckedSeq + 1;
    const bufferedSeqs = signers.filter((s) => Number(s.split(':')[0]) >= firstBuffered && Number(s.split(':')[0]) < buffered.nextSeq);
    assert.ok(bufferedSeqs.length >= 1 && bufferedSeqs.every((s) => s.endsWith(':k1')), `buffered batches keep the old key: ${signers.join(' ')}`);
    const afterRestart = signers.filter((s) => Number(s.split(':')[0]) >= buffered.nextSeq);
    assert.ok(afterRestart.length >= 2, signers.join(' '));
    assert.ok(afterRestart.slice(0, -1).every((s) => s.endsWith(':k2') || s.endsWith(':k3')), signers.join(' '));
    assert.equal(afterRestart.at(-1)!.split(':')[1], 'k3', `the last capture is signed by the newest key: ${signers.join(' ')}`);
    assert.ok(!signers.some((s) => s.endsWith(':k0')), `every stored batch verifies with one of the keys: ${signers.join(' ')}`);
    const audit = await store.audit.list({ limit: 50 });
    assert.deepEqual(audit.filter((e) => e.action === 'agent.key-rotated').map((e) => [e.actor, e.detail?.keyId]).reverse(), [
      [`agent:${agent.id}`, keyId(k2.publicKey)], [`agent:${agent.id}`, keyId(k3.publicKey)],
    ]);
  } finally {
    await store.close();
  }
  // No private key material in any log line.
  const logs = [...h.logs().values()].join('\n');
  for (const k of [k1, k2, k3]) assert.ok(!logs.includes(Buffer.from(k.secretKey.subarray(0, 32)).toString('base64')), 'a private key leaked into a log');
});
