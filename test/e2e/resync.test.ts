/**
 * `dovetail-agent resync --table T` with real processes: while the agent runs, the
 * request re-snapshots that table only (every row sent again, same keys), and the
 * other table keeps its position. Also: `status` reports per-table state and progress.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_BIN } from '../helpers/paths.ts';
import { Harness, agentStatusFile, waitFor } from '../helpers/procs.ts';
import { agentViewX, enrollTestAgent, itemsTableYaml, startErp, startTestHub, type Erp, type TestAgent, type TestHub } from '../helpers/fleet.ts';

const h = new Harness('dovetail-e2e-resync-');
let erp: Erp;
let hub: TestHub;
let agent: TestAgent;

before(async () => {
  erp = await startErp(7);
  hub = await startTestHub(h);
  agent = await enrollTestAgent(h, hub, erp, 'plant-r', `${itemsTableYaml('items')}${itemsTableYaml('items_copy')}`);
  agent.proc = h.startAgent(agent.config);
});

after(async () => {
  await h.cleanup();
  await erp.stop();
});

const stored = async () => (await agentViewX(hub, agent.id)).eventsStored;

test('resync re-sends one table in full and leaves the other alone', { timeout: 60_000 }, async () => {
  await waitFor('both tables snapshotted (7 + 7 events)', async () => (await stored()) === 14 ? true : false, { timeoutMs: 30_000 });

  const bad = await h.run('resync-bad', [AGENT_BIN, 'resync', '--config', agent.config, '--table', 'nope']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /table "nope" is not in the configuration \(known: items, items_copy\)/);

  const r = await h.run('resync', [AGENT_BIN, 'resync', '--config', agent.config, '--table', 'items']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /resync of "items" requested/);

  await waitFor('the items table sent again (14 + 7 events)', async () => (await stored()) === 21 ? true : false, { timeoutMs: 30_000 });
  // Give the schedule a few more ticks: nothing else may arrive.
  await new Promise((res) => setTimeout(res, 1500));
  assert.equal(await stored(), 21);

  const status = await h.run('status', [AGENT_BIN, 'status', '--config', agent.config, '--json']);
  assert.equal(status.code, 0, status.stderr);
  const view = JSON.parse(status.stdout) as { running: boolean; tables: Array<{ table: string; phase: string; eventsCaptured: number }> };
  assert.equal(view.running, true);
  const byName = new Map(view.tables.map((t) => [t.table, t]));
  assert.equal(byName.get('items')?.eventsCaptured, 14, 'items: snapshot + resync');
  assert.equal(byName.get('items_copy')?.eventsCaptured, 7, 'items_copy: snapshot only');
  assert.ok(agentStatusFile(agent.dataDir));
});
