/**
 * Enrollment and connection authentication with real processes: a one-time token
 * enrolls once (key pair made locally, private key 0600), a reused or expired token is
 * refused with its code, and an authentication message recorded from one connection is
 * refused when replayed on another.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import {
  AGENT_WS_PATH, PROTOCOL_VERSION, authMessage, decodeFrame, decodePrivateKeyFile, encodeFrame, keyId, sign,
  type AuthFrame, type ChallengeFrame, type Frame,
} from '@dovetail/shared';
import { AGENT_BIN, HUB_BIN } from '../helpers/paths.ts';
import { Harness } from '../helpers/procs.ts';
import { agentIdentity, agentYaml, startErp, startTestHub, type Erp, type TestHub } from '../helpers/fleet.ts';

const h = new Harness('dovetail-e2e-enroll-');
let erp: Erp;
let hub: TestHub;

before(async () => {
  erp = await startErp(1);
  hub = await startTestHub(h);
});
after(async () => {
  await h.cleanup();
  await erp.stop();
});

async function issueToken(name: string, ttl = '1h'): Promise<string> {
  const r = await h.run('issue', [HUB_BIN, 'agents', 'enroll', '--name', name, '--ttl', ttl, '--data-dir', hub.dataDir]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n')[0]!.trim();
}

function agentConfig(name: string): { config: string; dataDir: string } {
  const dataDir = h.path(`${name}-data`);
  return { dataDir, config: h.write(`${name}.yaml`, agentYaml({ name, dataDir, erpUrl: erp.url, hubUrl: hub.url })) };
}

const enroll = (config: string, token: string) => h.run('enroll', [AGENT_BIN, 'enroll', '--config', config, '--token', token]);

test('a token enrolls one agent; reusing it or an expired one is refused with its code', { timeout: 60_000 }, async () => {
  const token = await issueToken('plant-1');
  const a = agentConfig('plant-1');
  const ok = await enroll(a.config, token);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^enrolled as agt_[0-9a-f]+ \(tenant default\)/);
  assert.equal(statSync(join(a.dataDir, 'agent.key')).mode & 0o777, 0o600, 'private key readable by its owner only');
  assert.doesNotMatch(ok.stdout + ok.stderr, new RegExp(token), 'the token is not echoed');

  const b = agentConfig('plant-2');
  const reused = await enroll(b.config, token);
  assert.equal(reused.code, 1);
  assert.match(reused.stderr, /HUB_TOKEN_USED/);

  const shortLived = await issueToken('plant-3', '1s');
  await new Promise((r) => setTimeout(r, 1500));
  const expired = await enroll(b.config, shortLived);
  assert.equal(expired.code, 1);
  assert.match(expired.stderr, /HUB_TOKEN_EXPIRED/);

  const garbage = await enroll(b.config, 'dvt_enroll_not-a-token');
  assert.equal(garbage.code, 1);
  assert.match(garbage.stderr, /HUB_TOKEN_INVALID/);
});

/** One connection: read the challenge, let `answer` build the auth frame, return the hub's reply and close code. */
function connect(answer: (c: ChallengeFrame) => AuthFrame): Promise<{ auth: AuthFrame; reply: Frame | null; closeCode: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(hub.url.replace(/^http/, 'ws') + AGENT_WS_PATH);
    let auth: AuthFrame | undefined;
    let reply: Frame | null = null;
    ws.on('message', (data: Buffer) => {
      const f = decodeFrame(new Uint8Array(data));
      if (f.t === 'challenge') {
        auth = answer(f);
        ws.send(encodeFrame(auth));
      } else if (auth && reply === null && (f.t === 'ready' || f.t === 'error')) {
        reply = f;
        if (f.t === 'ready') ws.close(1000);
      }
    });
    ws.on('close', (code) => (auth ? resolve({ auth, reply, closeCode: code }) : reject(new Error(`closed ${code} before auth`))));
    ws.on('error', reject);
  });
}

test('an authentication message replayed on a new connection is refused', { timeout: 60_000 }, async () => {
  const token = await issueToken('plant-9');
  const a = agentConfig('plant-9');
  assert.equal((await enroll(a.config, token)).code, 0);
  const id = agentIdentity(a.dataDir);
  const kp = decodePrivateKeyFile(readFileSync(join(a.dataDir, 'agent.key'), 'utf8'));
  const honest = (c: ChallengeFrame): AuthFrame => ({
    t: 'auth', v: PROTOCOL_VERSION, agent: id.agentId, nonce: c.nonce, sig: sign(authMessage(c.nonce, id.agentId, c.hubKeyId), kp.secretKey),
    version: 'test', host: 'test', keyId: keyId(kp.publicKey),
  });
  const first = await connect(honest);
  assert.equal(first.reply?.t, 'ready', 'the honest answer is accepted');

  const replay = await connect(() => first.auth);
  assert.equal(replay.reply?.t, 'error');
  assert.equal((replay.reply as { code: string }).code, 'HUB_AUTH_FAILED');
  assert.equal(replay.closeCode, 4001);
});

test('after a revoke, re-enrolling with --force starts a new chain: everything is captured again under the new id and new changes flow', { timeout: 90_000 }, async () => {
  const { hubApi, waitFor } = await import('../helpers/procs.ts');
  const a = agentConfig('plant-5');
  assert.equal((await enroll(a.config, await issueToken('plant-5'))).code, 0);
  const oldId = agentIdentity(a.dataDir).agentId;
  const stored = async (id: string) => (await hubApi<{ eventsStored: number }>(hub, `/v1/agents/${id}`)).eventsStored;
  let proc = h.startAgent(a.config);
  await waitFor('the first snapshot stored under the old id', async () => (await stored(oldId)) >= erp.rows());
  await erp.addRows(2);
  await waitFor('two more changes stored (the chain is past seq 1)', async () => (await stored(oldId)) >= erp.rows());

  const revoked = await h.run('revoke', [HUB_BIN, 'agents', 'revoke', oldId, '--data-dir', hub.dataDir]);
  assert.equal(revoked.code, 0, revoked.stderr);
  await h.stop(proc);
  await erp.addRows(1); // captured by nobody yet

  const again = await h.run('enroll', [AGENT_BIN, 'enroll', '--config', a.config, '--token', await issueToken('plant-5b'), '--force']);
  assert.equal(again.code, 0, again.stderr);
  const newId = agentIdentity(a.dataDir).agentId;
  assert.notEqual(newId, oldId);
  proc = h.startAgent(a.config);
  await waitFor(`every row stored under the new id ${newId}`, async () => (await stored(newId)) === erp.rows(), { timeoutMs: 30_000 });
  await erp.addRows(1);
  await waitFor('a new change flows', async () => (await stored(newId)) === erp.rows(), { timeoutMs: 30_000 });
  assert.match(h.logText('agent'), /re-enrolled under a new agent id/);
  assert.doesNotMatch(h.logText('agent'), /PROTO_SEQ_GAP/);
  await h.stop(proc);
});
