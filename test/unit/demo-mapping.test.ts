/**
 * The demo's agent.yaml, run through the agent's real postgres driver, capture
 * strategies and mapper against the demo ERP over its socket, yields events whose
 * data the demo's comparison accepts: the comparison and the mapping agree, so a
 * "lost" count at the end of the demo means the pipeline lost something.
 */
import { EMPTY_STATE } from '../../agent/src/capture/types.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startErp } from '../../demo/erp.ts';
import { Simulator } from '../../demo/simulator.ts';
import { agentYaml } from '../../demo/config.ts';
import { expectedFromErp, compareStates } from '../../demo/compare.ts';
import { stateKey } from '../../demo/receiver.ts';
import { parseAgentConfig } from '../../agent/src/config/index.ts';
import { createDriver } from '../../agent/src/sources/registry.ts';
import { createStrategy } from '../../agent/src/capture/registry.ts';
import { compileMapping } from '../../agent/src/mapping/index.ts';
import { validateEvent } from '@dovetail/shared';

test('demo mapping: a snapshot of the ERP after simulated changes matches the comparison exactly', async (t) => {
  const erp = await startErp({ seed: 5 });
  t.after(() => erp.close());
  const sim = new Simulator(erp, { seed: 5, deleteCustomerAt: 3 });
  for (let i = 0; i < 25; i++) await sim.step();

  const cfg = parseAgentConfig(agentYaml({ erpUrl: erp.url, hubUrl: 'http://127.0.0.1:9', dataDir: '/tmp/unused', timeZone: erp.timeZone }), '/tmp/agent.yaml', {});
  const driver = await createDriver(cfg.source);
  await driver.connect();
  t.after(() => driver.close());
  const received = new Map<string, unknown>();
  let events = 0;
  for (const table of cfg.tables) {
    const strategy = createStrategy(table);
    const mapper = compileMapping(table, { timeZone: cfg.source.timeZone, system: cfg.source.system, agentId: 'test' });
    let position: unknown = null;
    for (let page = 0; page < 50; page++) {
      const r = await strategy.poll(position, { driver, state: EMPTY_STATE, pageSize: 1000, signal: new AbortController().signal, now: () => new Date() });
      for (const c of r.changes) {
        const e = mapper.toEvent(c, new Date());
        assert.deepEqual(validateEvent(e), []);
        received.set(stateKey(e.entity, e.key), e.data);
        events++;
      }
      position = r.position;
      if (!r.more) break;
    }
  }
  const expected = await expectedFromErp(erp);
  assert.equal(events, expected.size, 'one event per ERP record in a snapshot');
  assert.deepEqual(compareStates(expected, received).mismatches, []);

  // The comparison can fail: a stale price and a resurrected customer are both lost.
  const deleted = sim.stats().deletedCustomer!;
  const product = received.get('product:IT-1001') as { listPrice: string };
  received.set('product:IT-1001', { ...product, listPrice: '0.01' });
  received.set(stateKey('customer', deleted), { customerId: deleted, name: 'ghost' });
  const c = compareStates(expected, received);
  assert.deepEqual(c.mismatches.map((m) => `${m.kind} ${m.key}`).sort(), [`present_but_deleted customer:${deleted}`, 'stale product:IT-1001']);
});
