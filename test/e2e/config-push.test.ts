/**
 * Remote config with real processes: `dovetail-hub agents push-config` sends a signed
 * `tables` section; the running agent verifies it, validates it with its own loader and
 * applies it (a new table starts capturing, the unchanged table keeps its position), or
 * refuses it with the reason while the old config keeps running. An accepted config is
 * re-applied after an agent restart; one pushed while the agent is offline arrives on connect.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, hubApi, waitFor } from '../helpers/procs.ts';
import { agentViewX, enrollTestAgent, hubCli, itemsTableYaml, startErp, startTestHub, type AgentViewX, type Erp, type TestAgent, type TestHub } from '../helpers/fleet.ts';

const h = new Harness('dovetail-e2e-config-');
let erp: Erp;
let hub: TestHub;
let agent: TestAgent;

const view = () => agentViewX(hub, agent.id);
const until = (what: string, pred: (a: AgentViewX) => boolean) => waitFor(what, async () => { const a = await view(); return pred(a) ? a : false; }, { timeoutMs: 30_000 });
const push = async (file: string, yaml: string) => (await hubCli(h, hub, ['agents', 'push-config', agent.id, '--file', h.write(file, yaml)])).stdout;

before(async () => {
  erp = await startErp(5);
  hub = await startTestHub(h);
  agent = await enrollTestAgent(h, hub, erp, 'plant-c');
  agent.proc = h.startAgent(agent.config);
});

after(async () => {
  await h.cleanup();
  await erp.stop();
});

test('a pushed config with a new table is applied; an invalid one is refused with its reason and the old one keeps running', { timeout: 60_000 }, async () => {
  await until('5 rows stored from the local config', (a) => a.eventsStored === 5 && a.configVersion === 0);

  const out1 = await push('tables-v1.yaml', `tables:\n${itemsTableYaml()}${itemsTableYaml('items_b')}`);
  assert.equal(out1, `config version 1 for agent ${agent.id} stored and signed; sent to the agent now (see "agents show ${agent.id}")\n`);
  const v1 = await until('v1 applied and the new table snapshotted', (a) => a.config?.status === 'applied' && a.configVersion === 1 && a.eventsStored === 10);
  assert.deepEqual(v1.tables.map((t) => t.table).sort(), ['items', 'items_b']);
  // The unchanged table kept its position: it did not snapshot again.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await view()).eventsStored, 10);

  // Invalid mapping: refused with the loader's key path; nothing changes.
  const bad = `tables:\n${itemsTableYaml()}${itemsTableYaml('items_b').replace('type: code }\n      description', 'type: money }\n      description')}`;
  await push('tables-v2.yaml', bad);
  const v2 = await until('v2 refused', (a) => a.config?.version === 2 && a.config.status === 'refused');
  assert.match(v2.config!.reason!, /^pushed version 2: CONFIG_INVALID: tables\[1\]\.map\.sku\.type: /);
  assert.equal(v2.configVersion, 1);
  await erp.addRows(1);
  await until('the old config (two tables) keeps capturing', (a) => a.eventsStored === 12);
  const show = (await hubCli(h, hub, ['agents', 'show', agent.id])).stdout;
  assert.match(show, /\nconfig: running version 1; latest pushed version 2 refused: pushed version 2: CONFIG_INVALID: /);
  // The hub refuses documents that carry more than tables.
  const r = await hubCli(h, hub, ['agents', 'push-config', agent.id, '--file', h.write('src.yaml', 'source: {}\ntables: []\n')], 1);
  assert.match(r.stderr, /HUB_BAD_REQUEST: .*only "tables" can be pushed/);

  // A restart re-applies the accepted version 1.
  await h.stop(agent.proc!);
  agent.proc = h.startAgent(agent.config);
  await until('v1 running again after restart', (a) => a.online && a.configVersion === 1 && a.tables.length === 2);

  // Pushed while the agent is offline: arrives on its next connect. Drops items_b, keeps items.
  await h.stop(agent.proc);
  await until('agent offline', (a) => !a.online);
  const out3 = await push('tables-v3.yaml', `tables:\n${itemsTableYaml('items', '300ms')}`);
  assert.match(out3, /^config version 3 for agent \S+ stored and signed; the agent gets it on its next connect/);
  agent.proc = h.startAgent(agent.config);
  await until('v3 applied on connect', (a) => a.config?.status === 'applied' && a.config.version === 3 && a.configVersion === 3);
  await erp.addRows(1);
  const end = await until('only the items table captures now', (a) => a.eventsStored === 13 && a.tables.length === 1);
  assert.deepEqual(end.tables.map((t) => t.table), ['items']);

  const audit = await hubApi<{ entries: Array<{ action: string; actor: string; detail?: Record<string, unknown> }> }>(hub, '/v1/audit?limit=50');
  assert.deepEqual(audit.entries.filter((e) => e.action.startsWith('agent.config')).map((e) => `${e.action} v${String(e.detail?.version)} by ${e.actor.split(':')[0]}`).reverse(), [
    'agent.config-pushed v1 by admin', 'agent.config-applied v1 by agent', 'agent.config-pushed v2 by admin', 'agent.config-refused v2 by agent',
    'agent.config-pushed v3 by admin', 'agent.config-applied v3 by agent',
  ]);
});
