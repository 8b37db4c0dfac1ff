/**
 * Invariant 1 from the hub's side, with real processes: the hub is SIGKILLed while the
 * agent keeps capturing and sending, and restarted on the same port and data dir. The
 * first kill lands the moment the hub's log grows during the snapshot, i.e. with the
 * agent's next batches in flight on the socket (they must stay in the agent's outbox
 * and be stored once after the reconnect); the others at random, seeded instants.
 * In the end the hub log holds every change exactly once and the receiver (which may
 * see redeliveries: delivery is at-least-once) holds exactly the ERP's state.
 *
 * Replay a failure with DOVETAIL_E2E_SEED=<seed> node --import tsx --test test/e2e/kill-hub.test.ts
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { hubStatus, runSeed, seededRandom, waitFor } from '../helpers/procs.ts';
import { startScenario, type Scenario } from '../helpers/erp-scenario.ts';

const seed = runSeed();
let sc: Scenario | undefined;
after(async () => { await sc?.cleanup(); });

test(`hub SIGKILLed 4 times while the agent sends: nothing lost, nothing stored twice (seed ${seed})`, { timeout: 90_000 }, async (t) => {
  t.diagnostic(`seed ${seed}`);
  const rnd = seededRandom(seed);
  sc = await startScenario({ seed });
  const agent = await sc.startAgent();
  sc.sim.start(20, (err) => t.diagnostic(`simulator: ${String(err)}`));

  // Kill 1: batches in flight. Wait for the log to start growing, then kill at once.
  const first = await waitFor('the hub stores the first batch', async () => {
    const n = (await hubStatus(sc!.hub)).eventsStored;
    return n > 0 ? n : undefined;
  }, { timeoutMs: 30_000, intervalMs: 10 });
  let exit = await sc.h.kill(sc.hub.proc, 'SIGKILL');
  assert.equal(exit.signal, 'SIGKILL');
  const kills = [`in flight (hub had ${first} of ${sc.seedRecords} snapshot events)`];

  for (let i = 0; i < 3; i++) {
    await sc.startHub();
    const delayMs = 100 + Math.floor(rnd() * 1400);
    await new Promise((r) => setTimeout(r, delayMs));
    const stored = (await hubStatus(sc.hub)).eventsStored;
    exit = await sc.h.kill(sc.hub.proc, 'SIGKILL');
    assert.equal(exit.signal, 'SIGKILL', `the hub was still running at the kill\n${sc.h.logText('hub')}`);
    kills.push(`${delayMs}ms (hub had ${stored} events)`);
  }
  t.diagnostic(`kills: ${kills.join(', ')}`);
  await sc.startHub();
  await new Promise((r) => setTimeout(r, 1000));
  await sc.sim.stop();
  t.diagnostic(`${sc.sim.stats().changes} ERP changes made`);
  assert.ok(agent.alive(), `the agent survives hub crashes\n${sc.h.logText('agent')}`);

  await sc.converge(45_000);
  assert.equal(sc.receiver.stats().rejected, 0);
  const report = await sc.finish(agent);
  assert.deepEqual(report.problems, [], `seed ${seed}`);
  assert.ok(report.events >= sc.seedRecords, `the log holds at least the snapshot (${report.events} >= ${sc.seedRecords})`);
  t.diagnostic(`hub log: ${report.events} events in ${report.batches} batches; receiver ${JSON.stringify(sc.receiver.stats())}`);
});
