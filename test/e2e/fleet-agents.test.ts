/**
 * Fleet management with real processes: a `dovetail-hub run` process, a real
 * `dovetail-agent run` process capturing from an embedded PostgreSQL (PGlite over a
 * socket), and the `dovetail-hub` CLI. Covers the fleet view from heartbeats, scopes
 * (a read token cannot disable), disable/enable, revoke while streaming (nothing
 * accepted after, the agent stops retrying and says to re-enroll), tenant isolation of
 * writes, the audit log, and no secret in any log.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { WebSocket } from 'ws';
import {
  AGENT_WS_PATH, CLOSE, GENESIS_HASH, PROTOCOL_VERSION, authMessage, decodeFrame, decodePrivateKeyFile, encodeFrame, encodeKey,
  generateKeyPair, keyId, sign, signBatch, type Frame, type KeyPair,
} from '@dovetail/shared';
import { HUB_BIN } from '../helpers/paths.ts';
import { Harness, adminToken, freePort, hubAgent, waitFor, type HubInstance, type Proc } from '../helpers/procs.ts';
import { event } from '../helpers/hub-fixtures.ts';
import { agentYaml } from '../helpers/fleet.ts';

interface FleetAgent {
  id: string; tenant: string; status: string; online: boolean; lastSeq: number; eventsStored: number; lastSeenAt: string | null;
  version: string | null; host: string | null; agentState: string | null; uplinkState: string | null; lagMs: number | null;
  buffer: { depth: number; bytes: number; nextSeq: number | null; lastAckedSeq: number | null } | null;
  tables: Array<{ table: string; phase: string; eventsCaptured: number }>;
}

const h = new Harness('dovetail-e2e-fleet-');
let db: PGlite;
let pg: PGLiteSocketServer;
let hub: HubInstance;
let agentProc: Proc;
let agentId = '';
let agentCfg = '';
let rows = 0;
const secrets: string[] = [];

async function addRows(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    rows++;
    await db.exec(`insert into icitem values ('SKU-${rows}', 'Item ${rows}', 'EA')`);
  }
}

/** Runs the hub CLI; returns stdout, failing the test with stderr on a non-zero exit unless `expectCode` says otherwise. */
async function cli(args: string[], expectCode = 0): Promise<{ stdout: string; stderr: string }> {
  const r = await h.run('hub-cli', [HUB_BIN, ...args]);
  assert.equal(r.code, expectCode, `dovetail-hub ${args.join(' ')} exited ${r.code}\n${r.stderr}${r.stdout}`);
  return r;
}
const cliJson = async <T>(args: string[]): Promise<T> => JSON.parse((await cli([...args, '--json', '--data-dir', hub.dataDir])).stdout) as T;
const agentView = () => hubAgent(hub, agentId) as unknown as Promise<FleetAgent>;
const count = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l)).length;

before(async () => {
  db = await PGlite.create();
  pg = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1' });
  await pg.start();
  await db.exec('create table icitem (item_no varchar(20) primary key, descr varchar(60), uom varchar(4))');
  await addRows(5);
  const port = await freePort();
  const dataDir = h.path('hub-data');
  const cfg = h.write('hub.yaml', `listen: { host: 127.0.0.1, port: ${port} }\ndataDir: ${JSON.stringify(dataDir)}\nlogLevel: info\n`);
  hub = await h.startHub(cfg, port, dataDir);
  secrets.push(adminToken(dataDir));
  agentCfg = h.write('agent.yaml', agentYaml({ dataDir: h.path('agent-data'), erpUrl: `postgres://postgres@${pg.getServerConn()}/postgres`, hubUrl: hub.url }));
  const enrolled = await h.enrollAgent(dataDir, agentCfg, 'plant-a');
  agentId = enrolled.agentId;
  secrets.push(enrolled.token);
  agentProc = h.startAgent(agentCfg);
});

after(async () => {
  await h.cleanup();
  await pg.stop();
  await db.close();
});

test('agents list/show --json: online, version, host, buffer and table state from heartbeats; offline once the agent dies', { timeout: 60_000 }, async () => {
  const live = await waitFor('agent online, all 5 rows stored, a status heartbeat with an empty buffer', async () => {
    const a = await agentView();
    return a.online && a.eventsStored >= 5 && a.buffer !== null && a.buffer.depth === 0 && a.buffer.lastAckedSeq === a.lastSeq ? a : false;
  }, { timeoutMs: 40_000 });
  const list = await cliJson<FleetAgent[]>(['agents', 'list']);
  const me = list.find((a) => a.id === agentId)!;
  assert.deepEqual([me.status, me.online, me.tenant, me.version, me.agentState, me.uplinkState], ['active', true, 'default', '0.1.0', 'running', 'streaming']);
  assert.ok(me.host && me.host.length > 0);
  assert.equal(me.eventsStored, 5);
  assert.equal(me.buffer?.depth, 0);
  assert.equal(me.buffer?.bytes, 0);
  assert.equal(me.buffer?.nextSeq, me.lastSeq + 1, 'the agent has nothing the hub does not hold');
  assert.equal(me.lagMs, 0);
  assert.deepEqual(me.tables.map((t) => [t.table, t.eventsCaptured >= 5]), [['items', true]]);
  const show = await cliJson<FleetAgent>(['agents', 'show', agentId]);
  assert.deepEqual([show.id, show.online, show.lastSeq >= live.lastSeq], [agentId, true, true]);
  const text = (await cli(['agents', 'show', agentId, '--data-dir', hub.dataDir])).stdout;
  assert.match(text, new RegExp(`^agent ${agentId} "plant-a" \\(tenant default\\)\\nstatus: active, online`));
  assert.match(text, /\nbuffer: 0 batches, 0 B waiting; lag 0 ms/);

  // A killed agent process closes its socket: offline at once, last seen kept.
  await h.kill(agentProc, 'SIGKILL');
  const off = await waitFor('agent offline after its process died', async () => { const a = await agentView(); return a.online ? false : a; });
  assert.ok(off.lastSeenAt !== null);
  agentProc = h.startAgent(agentCfg);
  await waitFor('agent back online', async () => (await agentView()).online, { timeoutMs: 30_000 });
});

test('a token with read scope can list but cannot disable', { timeout: 60_000 }, async () => {
  const t = JSON.parse((await cli(['tokens', 'create', '--scope', 'read', '--name', 'dashboard', '--json', '--data-dir', hub.dataDir])).stdout) as { id: string; token: string; scope: string };
  secrets.push(t.token);
  assert.equal(t.scope, 'read');
  const listed = await cli(['agents', 'list', '--json', '--hub', hub.url, '--admin-token', t.token]);
  assert.ok((JSON.parse(listed.stdout) as FleetAgent[]).some((a) => a.id === agentId));
  const refused = await cli(['agents', 'disable', agentId, '--hub', hub.url, '--admin-token', t.token], 1);
  assert.match(refused.stderr, new RegExp(`^dovetail-hub: HUB_FORBIDDEN: POST /v1/agents/${agentId}/disable: token ${t.id} \\("dashboard"\\) has scope read; POST /v1/agents/:id/disable needs operate\\n$`));
  const a = await agentView();
  assert.deepEqual([a.status, a.online], ['active', true]);
});

test('disable closes the socket at once and nothing is accepted; enable lets a restarted agent catch up', { timeout: 60_000 }, async () => {
  const out = (await cli(['agents', 'disable', agentId, '--data-dir', hub.dataDir])).stdout;
  assert.equal(out, `agent ${agentId} ("plant-a") is now disabled; its connection was closed\n`);
  const before = await agentView();
  assert.deepEqual([before.status, before.online], ['disabled', false]);
  await waitFor('agent logs that it stops and must be re-enrolled or re-enabled', () => /Re-enroll it with `dovetail-agent enroll --force/.test(h.logText('agent')));
  await addRows(3);
  // The agent keeps capturing into its local buffer but does not reconnect.
  await waitFor('agent buffered the 3 new rows locally', () => {
    const s = JSON.parse(readFileSync(join(h.path('agent-data'), 'status.json'), 'utf8')) as { outbox: { depth: number } };
    return s.outbox.depth > 0;
  });
  await new Promise((r) => setTimeout(r, 1500));
  const during = await agentView();
  assert.deepEqual([during.lastSeq, during.eventsStored, during.online], [before.lastSeq, before.eventsStored, false], 'nothing accepted while disabled');

  assert.match((await cli(['agents', 'enable', agentId, '--data-dir', hub.dataDir])).stdout, /is now active; restart the agent process/);
  await h.stop(agentProc);
  agentProc = h.startAgent(agentCfg);
  const after = await waitFor('restarted agent delivers what it buffered', async () => {
    const a = await agentView();
    return a.online && a.eventsStored === before.eventsStored + 3 ? a : false;
  }, { timeoutMs: 40_000 });
  assert.equal(after.status, 'active');
});

test('revoke while streaming: no frame accepted after, the agent stops retrying and says to re-enroll', { timeout: 60_000 }, async () => {
  await waitFor('agent streaming', async () => (await agentView()).online);
  let inserting = true;
  const writer = (async () => { while (inserting) { await addRows(1); await new Promise((r) => setTimeout(r, 100)); } })();
  try {
    await waitFor('changes flowing', async () => (await agentView()).eventsStored >= 15, { timeoutMs: 30_000 });
    const revoked = (await cli(['agents', 'revoke', agentId, '--json', '--data-dir', hub.dataDir])).stdout;
    assert.equal((JSON.parse(revoked) as FleetAgent).status, 'revoked');
    const atRevoke = await agentView();
    const connectsAtRevoke = count(h.logText('agent'), /connected to the hub/);
    await waitFor('agent logs the revocation with the re-enroll hint', () =>
      count(h.logText('agent'), /the hub disabled or revoked this agent \(see reason\); it will not reconnect\..*Re-enroll it/) >= 2);
    await new Promise((r) => setTimeout(r, 2500));
    const later = await agentView();
    assert.deepEqual([later.lastSeq, later.eventsStored, later.online, later.status], [atRevoke.lastSeq, atRevoke.eventsStored, false, 'revoked']);
    assert.equal(count(h.logText('agent'), /connected to the hub/), connectsAtRevoke, 'the agent did not reconnect');
    assert.ok(agentProc.alive(), 'the agent keeps running (capturing locally) and does not crash-loop');
  } finally {
    inserting = false;
    await writer;
  }
  // Its key is refused from now on, whoever presents it.
  const key = decodePrivateKeyFile(readFileSync(join(h.path('agent-data'), 'agent.key'), 'utf8'));
  const s = await session(agentId, key);
  assert.equal(s.error?.code, 'HUB_AGENT_DISABLED');
  assert.equal(s.closeCode, CLOSE.REVOKED);
  assert.match((await cli(['agents', 'enable', agentId, '--data-dir', hub.dataDir], 1)).stderr, /HUB_CONFLICT: .* is revoked; it cannot be enabled \(re-enroll it with a new token\)/);
});

/** Connects as an agent over the real hub socket; sends `frames(ready)` after ready and collects what comes back. */
async function session(id: string, key: KeyPair, frames?: () => Frame[]): Promise<{ closeCode: number; error?: { code: string }; nacks: Array<{ code: string; seq: number }>; acks: number[] }> {
  const ws = new WebSocket(hub.url.replace('http', 'ws') + AGENT_WS_PATH);
  const result: { closeCode: number; error?: { code: string }; nacks: Array<{ code: string; seq: number }>; acks: number[] } = { closeCode: 0, nacks: [], acks: [] };
  ws.on('error', () => {});
  ws.on('message', (d: Buffer) => {
    const f = decodeFrame(d);
    if (f.t === 'challenge') ws.send(encodeFrame({ t: 'auth', v: PROTOCOL_VERSION, agent: id, nonce: f.nonce, sig: sign(authMessage(f.nonce, id, f.hubKeyId), key.secretKey), version: '9.9.9', host: 'intruder', keyId: keyId(key.publicKey) }));
    if (f.t === 'ready') for (const x of frames?.() ?? []) ws.send(encodeFrame(x));
    if (f.t === 'error') result.error = { code: f.code };
    if (f.t === 'nack') result.nacks.push({ code: f.code, seq: f.seq });
    if (f.t === 'ack') { result.acks.push(f.seq); ws.close(); }
  });
  result.closeCode = await new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  return result;
}

test('an agent cannot write into another agent\'s or tenant\'s stream', { timeout: 60_000 }, async () => {
  const issued = JSON.parse((await cli(['agents', 'enroll', '--name', 'plant-b', '--tenant', 'beta', '--json', '--data-dir', hub.dataDir])).stdout) as { token: string; tenant: string };
  secrets.push(issued.token);
  assert.equal(issued.tenant, 'beta');
  const key = generateKeyPair();
  const res = await fetch(`${hub.url}/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: issued.token, publicKey: encodeKey(key.publicKey) }) });
  const b = (await res.json()) as { agentId: string; tenant: string };
  assert.equal(b.tenant, 'beta');
  const victim = await agentView();

  // body.agent names the default-tenant agent: refused, nothing stored anywhere.
  const asOther = signBatch({ v: 1, agent: agentId, seq: victim.lastSeq + 1, prev: GENESIS_HASH, createdAt: new Date().toISOString(), events: [event('forged-1', 'product', 'SKU-X', agentId)] }, key.secretKey);
  const s1 = await session(b.agentId, key, () => [{ t: 'batch', v: PROTOCOL_VERSION, seq: 1, body: asOther.body, sig: asOther.sig }]);
  assert.deepEqual(s1.nacks, [{ code: 'PROTO_BODY_MISMATCH', seq: 1 }]);
  // Its own stream, but events claiming the other agent as source: refused too.
  const claims = signBatch({ v: 1, agent: b.agentId, seq: 1, prev: GENESIS_HASH, createdAt: new Date().toISOString(), events: [event('forged-2', 'product', 'SKU-Y', agentId)] }, key.secretKey);
  const s2 = await session(b.agentId, key, () => [{ t: 'batch', v: PROTOCOL_VERSION, seq: 1, body: claims.body, sig: claims.sig }]);
  assert.deepEqual(s2.nacks, [{ code: 'HUB_TENANT_MISMATCH', seq: 1 }]);
  // A well-formed batch of its own is accepted: the refusals were about the target, not the connection.
  const own = signBatch({ v: 1, agent: b.agentId, seq: 1, prev: GENESIS_HASH, createdAt: new Date().toISOString(), events: [event('own-1', 'product', 'SKU-Z', b.agentId)] }, key.secretKey);
  const s3 = await session(b.agentId, key, () => [{ t: 'batch', v: PROTOCOL_VERSION, seq: 1, body: own.body, sig: own.sig }]);
  assert.deepEqual(s3.acks, [1]);

  const after = await agentView();
  assert.deepEqual([after.lastSeq, after.eventsStored], [victim.lastSeq, victim.eventsStored], 'the victim stream is untouched');
  const bView = await hubAgent(hub, b.agentId);
  assert.deepEqual([bView.lastSeq, bView.eventsStored], [1, 1]);
});

test('audit log via the CLI, and no token in any log line', { timeout: 60_000 }, async () => {
  const entries = await cliJson<Array<{ action: string; target: string; actor: string; actorName: string; remote: string | null; tenant: string | null }>>(['audit', '--limit', '100']);
  const mine = entries.filter((e) => e.target === agentId).map((e) => `${e.action} by ${e.actor}`).reverse();
  assert.deepEqual(mine.map((m) => m.replace(/enroll-token:[0-9a-f]{12}/, 'enroll-token')), [
    'agent.enrolled by enroll-token', 'agent.disabled by admin', 'agent.enabled by admin', 'agent.revoked by admin',
  ]);
  assert.ok(entries.every((e) => e.remote === '127.0.0.1'), 'from where');
  assert.deepEqual(entries.filter((e) => e.action === 'api-token.created').map((e) => e.actorName), ['admin.token']);
  assert.ok(entries.some((e) => e.action === 'enroll-token.issued' && e.target === 'plant-b' && e.tenant === 'beta'));
  const text = (await cli(['audit', '--limit', '3', '--data-dir', hub.dataDir])).stdout;
  assert.match(text, /^SEQ\s+AT\s+ACTOR\s+ACTION\s+TARGET\s+TENANT\s+FROM\n/);
  assert.equal(text.trim().split('\n').length, 4);
  const logs = [...h.logs()].filter(([f]) => !f.startsWith('hub-cli') && !f.startsWith('hub-enroll')).map(([, t]) => t).join('\n');
  assert.ok(logs.length > 1000);
  for (const s of secrets) assert.ok(!logs.includes(s), `a token leaked into a log: ${s.slice(0, 12)}...`);
});
