/**
 * Invariants 5 and 7 with real processes: bad input gets a clear error and loses
 * nothing, and no secret reaches a log.
 *
 * One agent lives through: a database that is not there yet (it stays up, says what
 * is unreachable, retries), a hub that is down (it captures into its buffer), a row
 * that fails mapping (quarantined with its reason, the others flow), a second `run` on
 * its data dir (refused: already running), a SIGKILL (the directory opens again with
 * its data and capture resumes without a re-snapshot). Then every log file of the run
 * is scanned for the database password and the enrollment token.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { AGENT_BIN } from '../helpers/paths.ts';
import {
  Harness, agentStatusFile, freePort, hubStatus, startRecorder, waitFor, type HubInstance, type Recorder,
} from '../helpers/procs.ts';
import { newWebhookSecret } from '../../demo/receiver.ts';

const PASSWORD = 'Sup3r-S3cret-Pw-4711';
const GOOD_ROWS = 40;

const h = new Harness('dovetail-bad-input-');
let db: PGlite | undefined;
let pgServer: PGLiteSocketServer | undefined;
let rec: Recorder | undefined;
after(async () => {
  await h.cleanup();
  await rec?.close();
  await pgServer?.stop().catch(() => undefined);
  await db?.close().catch(() => undefined);
});

function agentYaml(o: { dataDir: string; hubUrl: string; pgPort: number; strategy?: string }): string {
  return `agent: { name: bad-input, dataDir: ${JSON.stringify(o.dataDir)} }
hub: { url: ${JSON.stringify(o.hubUrl)}, reconnectInitialMs: 100, reconnectMaxMs: 500 }
source:
  type: postgres
  system: erp
  url: postgres://postgres:${PASSWORD}@127.0.0.1:${o.pgPort}/postgres
  timeZone: UTC
  maxConnections: 1
tables:
  - name: items
    table: public.items
    key: [sku]
    entity: product
    strategy: ${o.strategy ?? 'diff'}
    schedule: { every: 300ms }
    map:
      sku: { column: sku, type: code }
      description: { column: descr, type: string }
      uom.base: { const: EA }
      listPrice: { column: price, type: decimal }
`;
}

test('a malformed agent config exits 1 and names the key path', { timeout: 30_000 }, async () => {
  const cfg = h.write('bad.yaml', agentYaml({ dataDir: h.path('bad-data'), hubUrl: 'http://127.0.0.1:1', pgPort: 1, strategy: 'snapshot' }));
  const r = await h.run('agent-badconfig', [AGENT_BIN, 'run', '--config', cfg]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /CONFIG_INVALID/);
  assert.match(r.stderr, /tables\[0\]\.strategy/);
  assert.match(r.stderr, /must be one of cursor, diff, mssql-ct, mssql-cdc/);
  assert.ok(!r.stderr.includes(PASSWORD), 'no password in the config error');
});

test('unreachable database, unreachable hub, a bad row, a second run, a SIGKILL: clear errors, nothing lost, no secret logged', { timeout: 90_000 }, async () => {
  // The ERP exists in memory but is not listening yet.
  db = await PGlite.create();
  const rows = Array.from({ length: GOOD_ROWS }, (_, i) => `('SKU-${String(i + 1).padStart(3, '0')}', 'Item ${i + 1}', '${i + 1}.25')`);
  await db.exec(`CREATE TABLE items (sku text PRIMARY KEY, descr text NOT NULL, price text NOT NULL);
    INSERT INTO items VALUES ${rows.join(', ')}, ('SKU-BAD', 'Priced on request', 'call us');`);
  const pgPort = await freePort();

  const secret = newWebhookSecret();
  rec = await startRecorder(secret);
  const hubPort = await freePort();
  const hubData = h.path('hub-data');
  const hubConfig = h.writeHubConfig({ port: hubPort, dataDir: hubData, webhooks: [{ name: 'crm', url: rec.url, secret }] });
  let hub: HubInstance = await h.startHub(hubConfig, hubPort, hubData);
  const agentData = h.path('agent-data');
  const agentConfig = h.write('agent.yaml', agentYaml({ dataDir: agentData, hubUrl: hub.url, pgPort }));
  const { token } = await h.enrollAgent(hubData, agentConfig, 'bad-input');
  assert.equal((await h.stop(hub.proc)).code, 0, 'the hub stops cleanly');

  // 1. No database, no hub: the agent stays up, says what it cannot reach, retries.
  const agent = h.startAgent(agentConfig);
  const unreachable = /cannot reach the ERP database/g;
  await waitFor('two "cannot reach the ERP database" attempts', () => {
    if (!agent.alive()) throw new Error(`agent exited: ${h.logText('agent')}`);
    return (h.logText('agent').match(unreachable)?.length ?? 0) >= 2 || undefined;
  }, { timeoutMs: 20_000, intervalMs: 100 });
  const errLine = h.logText('agent').split('\n').find((l) => l.includes('cannot reach the ERP database'))!;
  assert.match(errLine, /AGENT_SOURCE_UNREACHABLE/);
  assert.match(errLine, /postgres source/);
  assert.ok(errLine.includes(`127.0.0.1:${pgPort}`), `the error names the database it cannot reach: ${errLine}`);
  assert.ok(agent.alive());

  // 2. A second agent on the same data dir is refused while the first one runs.
  const second = await h.run('agent-second', [AGENT_BIN, 'run', '--config', agentConfig]);
  assert.equal(second.code, 1, second.stderr);
  assert.match(second.stderr, /already running/);

  // 3. The database appears on the configured port: capture starts; the hub is still
  //    down, so the batches wait in the buffer.
  pgServer = new PGLiteSocketServer({ db, host: '127.0.0.1', port: pgPort, maxConnections: 1 });
  await pgServer.start();
  const buffered = await waitFor('captured batches waiting in the buffer', () => {
    const s = agentStatusFile(agentData);
    return s && s.pid === agent.pid && s.outbox.depth > 0 && (s.tables?.[0]?.quarantined ?? 0) >= 1 ? s : undefined;
  }, { timeoutMs: 20_000, intervalMs: 100 });
  assert.equal(buffered.outbox.lastAckedSeq, 0, 'nothing acknowledged: the hub is down');
  const status = await h.run('agent-status', [AGENT_BIN, 'status', '--config', agentConfig, '--json']);
  assert.equal(status.code, 0, status.stderr);
  const view = JSON.parse(status.stdout) as { running: boolean; buffer: { depth: number } };
  assert.equal(view.running, true);
  assert.ok(view.buffer.depth > 0, status.stdout);

  // 4. The bad row is quarantined with its reason; it names the row and the field.
  const quarantinedLines = h.logText('agent').split('\n').filter((l) => l.includes('row quarantined'));
  assert.equal(quarantinedLines.length, 1, 'quarantined once, not again on every poll');
  const quarantined = quarantinedLines[0]!;
  assert.match(quarantined, /SKU-BAD/);
  assert.match(quarantined, /listPrice|price/);
  assert.match(quarantined, /not a decimal/);

  // 5. The hub comes up: everything buffered is delivered, once; the bad row is not.
  hub = await h.startHub(hubConfig, hubPort, hubData);
  await waitFor(`${GOOD_ROWS} products at the receiver`, () => rec!.arrivals.length >= GOOD_ROWS || undefined, { timeoutMs: 30_000, intervalMs: 100 });
  await waitFor('the buffer drains', () => {
    const s = agentStatusFile(agentData);
    return s && s.outbox.depth === 0 && s.outbox.lastAckedSeq > 0 ? s : undefined;
  }, { timeoutMs: 20_000, intervalMs: 100 });
  const keys = rec.arrivals.map((a) => a.event.key).sort();
  assert.equal(keys.length, GOOD_ROWS, 'each product once');
  assert.equal(new Set(keys).size, GOOD_ROWS);
  assert.ok(!keys.includes('SKU-BAD'));
  assert.equal(rec.of('product', 'SKU-007')[0]!.event.data!.listPrice, '7.25');

  // 6. SIGKILL: the directory opens again with its data (positions, acked seq)...
  await h.kill(agent, 'SIGKILL');
  const reopened = await h.run('agent-status', [AGENT_BIN, 'status', '--config', agentConfig, '--json']);
  assert.equal(reopened.code, 0, reopened.stderr);
  const afterView = JSON.parse(reopened.stdout) as { running: boolean; buffer: { depth: number; lastAckedSeq: number }; offsets: Record<string, string> };
  assert.equal(afterView.running, false);
  assert.equal(afterView.buffer.depth, 0);
  assert.ok(afterView.buffer.lastAckedSeq > 0, reopened.stdout);
  assert.ok(afterView.offsets.items, `the items position survived: ${reopened.stdout}`);
  // ...and a restarted agent carries on from there: no re-snapshot, nothing re-sent.
  const again = h.startAgent(agentConfig);
  const firstPoll = await waitFor('the restarted agent polled the table', () => {
    const t = agentStatusFile(agentData)?.pid === again.pid ? agentStatusFile(agentData)?.tables?.[0] : undefined;
    return t?.lastPollAt ? Date.parse(t.lastPollAt) : undefined;
  }, { timeoutMs: 20_000, intervalMs: 100 });
  // Several polls later (every 300 ms) it has still captured nothing: the hashes survived.
  const settled = await waitFor('more polls of the restarted agent', () => {
    const t = agentStatusFile(agentData)?.tables?.[0];
    return t?.lastPollAt && Date.parse(t.lastPollAt) - firstPoll >= 1000 ? t : undefined;
  }, { timeoutMs: 20_000, intervalMs: 100 });
  assert.equal(settled.eventsCaptured, 0, JSON.stringify(settled));
  assert.equal(settled.lastError, null);
  const stored = (await hubStatus(hub)).eventsStored;
  assert.equal(stored, GOOD_ROWS, 'the hub log holds each good row once');
  assert.equal(rec.arrivals.length, GOOD_ROWS);
  assert.equal(rec.rejected, 0);
  await h.stop(again);
  await h.stop(hub.proc);

  // 7. No secret in any log of this run (agent, hub, CLI output).
  const logs = h.logs();
  assert.ok(logs.size >= 8, [...logs.keys()].join(', '));
  for (const [file, text] of logs) {
    assert.ok(!text.includes(PASSWORD), `${file} contains the database password`);
    // The token appears exactly where the operator asked for it: the hub CLI's own output.
    if (!file.startsWith('hub-enroll-')) assert.ok(!text.includes(token), `${file} contains the enrollment token`);
  }
});
