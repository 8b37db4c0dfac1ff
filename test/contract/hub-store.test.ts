import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { isDovetailError, bytesEqual } from '@dovetail/shared';
import { hubStoreContract } from './hub-store-contract.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import { openLevelStore } from '../../hub/src/store/level.ts';
import { tempDir } from '../helpers/paths.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

hubStoreContract('memory', async () => createMemoryStore());

hubStoreContract('level', async () => {
  const dir = tempDir('dovetail-hub-store-');
  const store = await openLevelStore(join(dir, 'db'));
  return { ...store, close: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
});

test('level: data survives reopen and offsets continue gapless', async () => {
  const dir = tempDir('dovetail-hub-store-');
  try {
    const c = new BatchChain('agt_a', seedKey(1));
    let s = await openLevelStore(join(dir, 'db'));
    await s.log.append('agt_a', c.next([event('a1'), event('a2')]), [event('a1'), event('a2')], 'now');
    await s.close();
    s = await openLevelStore(join(dir, 'db'));
    assert.equal(await s.log.lastOffset(), 2);
    const b2 = c.next([event('a3')]);
    assert.deepEqual(await s.log.append('agt_a', b2, [event('a3')], 'now'), { firstOffset: 3, lastOffset: 3 });
    assert.ok(bytesEqual((await s.log.agentCursor('agt_a')).lastHash, b2.hash));
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('level: audit seq continues after reopen', async () => {
  const dir = tempDir('dovetail-hub-store-');
  try {
    const e = { at: 'now', actor: 'admin', actorName: 'admin.token', action: 'agent.disabled', target: 'agt_1', tenant: 'default', remote: null };
    let s = await openLevelStore(join(dir, 'db'));
    await s.audit.append(e);
    await s.audit.append(e);
    await s.close();
    s = await openLevelStore(join(dir, 'db'));
    assert.equal((await s.audit.append(e)).seq, 3);
    assert.deepEqual((await s.audit.list({ limit: 5 })).map((x) => x.seq), [3, 2, 1]);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('level: a second open of the same directory fails with HUB_ALREADY_RUNNING', async () => {
  const dir = tempDir('dovetail-hub-store-');
  const s = await openLevelStore(join(dir, 'db'));
  try {
    await assert.rejects(openLevelStore(join(dir, 'db')), (err: unknown) => isDovetailError(err, 'HUB_ALREADY_RUNNING'));
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
