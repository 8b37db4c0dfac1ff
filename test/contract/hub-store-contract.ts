/**
 * One behaviour suite for every hub store backend (memory, LevelDB, later NATS).
 * makeBackend returns a fresh, empty store; the suite closes it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GENESIS_HASH, bytesEqual, isDovetailError, type ErrorCode } from '@dovetail/shared';
import type { AgentRecord, HubStore } from '../../hub/src/store/types.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const NOW = new Date('2024-05-01T08:00:00.000Z');

function agentRec(id: string, pk: string): Omit<AgentRecord, 'tenant'> {
  return { id, name: id, publicKey: pk, keyId: `kid-${id}`, status: 'active', createdAt: NOW.toISOString(), lastSeenAt: null, version: null, host: null };
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => isDovetailError(err, code) || assert.fail(`expected ${code}, got ${String((err as { code?: string }).code)}: ${String(err)}`));
}

export function hubStoreContract(name: string, makeBackend: () => Promise<HubStore>): void {
  const withStore = (title: string, fn: (s: HubStore) => Promise<void>) =>
    test(`${name}: ${title}`, async () => {
      const s = await makeBackend();
      try { await fn(s); } finally { await s.close(); }
    });

  withStore('empty log has offset 0 and genesis cursor', async (s) => {
    assert.equal(await s.log.lastOffset(), 0);
    const c = await s.log.agentCursor('agt_a');
    assert.equal(c.lastSeq, 0);
    assert.ok(bytesEqual(c.lastHash, GENESIS_HASH));
    assert.deepEqual(await s.log.read(1, 10), []);
    assert.equal(await s.log.getBatch('agt_a', 1), undefined);
  });

  withStore('appendMany stores a run of batches in one write; a run with a gap stores none of it', async (s) => {
    const a = new BatchChain('agt_m', seedKey(5));
    const b1 = a.next([event('m1'), event('m2')]);
    const b2 = a.next([]);
    const b3 = a.next([event('m3')]);
    const r = await s.log.appendMany('agt_m', [
      { batch: b1, events: [event('m1'), event('m2')] }, { batch: b2, events: [] }, { batch: b3, events: [event('m3')] },
    ], NOW.toISOString());
    assert.deepEqual(r, [{ firstOffset: 1, lastOffset: 2 }, { firstOffset: 3, lastOffset: 2 }, { firstOffset: 3, lastOffset: 3 }]);
    assert.deepEqual((await s.log.read(1, 10)).map((e) => [e.offset, e.seq, e.event.id]), [[1, 1, 'm1'], [2, 1, 'm2'], [3, 3, 'm3']]);
    const c = await s.log.agentCursor('agt_m');
    assert.equal(c.lastSeq, 3);
    assert.equal(c.events, 3);
    assert.ok(bytesEqual(c.lastHash, b3.hash));

    const b4 = a.next([event('m4')]);
    a.next([]); // seq 5 is never sent
    const b6 = a.next([event('m6')]);
    await assert.rejects(
      s.log.appendMany('agt_m', [{ batch: b4, events: [event('m4')] }, { batch: b6, events: [event('m6')] }], NOW.toISOString()),
      (err: { code?: string }) => err.code === 'PROTO_SEQ_GAP',
    );
    assert.equal((await s.log.agentCursor('agt_m')).lastSeq, 3, 'nothing of the failed run is stored');
    assert.equal(await s.log.lastOffset(), 3);
  });

  withStore('append stores exact bytes, gapless offsets across agents, and the cursor', async (s) => {
    const a = new BatchChain('agt_a', seedKey(1));
    const b = new BatchChain('agt_b', seedKey(2));
    const a1 = a.next([event('a1'), event('a2')]);
    const b1 = b.next([event('b1')]);
    const a2 = a.next([event('a3', 'sales_order', 'SO-1')]);
    assert.deepEqual(await s.log.append('agt_a', a1, [event('a1'), event('a2')], NOW.toISOString()), { firstOffset: 1, lastOffset: 2 });
    assert.deepEqual(await s.log.append('agt_b', b1, [event('b1')], NOW.toISOString()), { firstOffset: 3, lastOffset: 3 });
    assert.deepEqual(await s.log.append('agt_a', a2, [event('a3', 'sales_order', 'SO-1')], NOW.toISOString()), { firstOffset: 4, lastOffset: 4 });
    assert.equal(await s.log.lastOffset(), 4);
    const all = await s.log.read(1, 100);
    assert.deepEqual(all.map((e) => [e.offset, e.agentId, e.seq, e.event.id]), [[1, 'agt_a', 1, 'a1'], [2, 'agt_a', 1, 'a2'], [3, 'agt_b', 1, 'b1'], [4, 'agt_a', 2, 'a3']]);
    assert.deepEqual(all[3]!.event, event('a3', 'sales_order', 'SO-1'));
    assert.deepEqual((await s.log.read(2, 2)).map((e) => e.offset), [2, 3]);
    assert.deepEqual(await s.log.read(5, 10), []);
    const ca = await s.log.agentCursor('agt_a');
    assert.equal(ca.lastSeq, 2);
    assert.equal(ca.events, 3);
    assert.ok(bytesEqual(ca.lastHash, a2.hash));
    const stored = await s.log.getBatch('agt_a', 1);
    assert.ok(stored);
    assert.ok(bytesEqual(stored.body, a1.body));
    assert.ok(bytesEqual(stored.sig, a1.sig));
    assert.equal(stored.firstOffset, 1);
    assert.equal(stored.count, 2);
  });

  withStore('append refuses a seq already stored or out of order, storing nothing', async (s) => {
    const a = new BatchChain('agt_a', seedKey(1));
    const a1 = a.next([event('a1')]);
    await s.log.append('agt_a', a1, [event('a1')], NOW.toISOString());
    await rejectsCode(s.log.append('agt_a', a1, [event('a1')], NOW.toISOString()), 'PROTO_SEQ_CONFLICT');
    a.next([]);
    const a3 = a.next([event('a3')]);
    await rejectsCode(s.log.append('agt_a', a3, [event('a3')], NOW.toISOString()), 'PROTO_SEQ_GAP');
    assert.equal(await s.log.lastOffset(), 1);
    assert.equal((await s.log.agentCursor('agt_a')).lastSeq, 1);
  });

  withStore('concurrent appends of the same seq store one copy', async (s) => {
    const a1 = new BatchChain('agt_a', seedKey(1)).next([event('a1')]);
    const results = await Promise.allSettled([1, 2, 3].map(() => s.log.append('agt_a', a1, [event('a1')], NOW.toISOString())));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    assert.equal(await s.log.lastOffset(), 1);
  });

  withStore('watch fires after append and stops after unsubscribe', async (s) => {
    let n = 0;
    const off = s.log.watch(() => { n++; });
    const c = new BatchChain('agt_a', seedKey(1));
    await s.log.append('agt_a', c.next([event('x')]), [event('x')], NOW.toISOString());
    assert.equal(n, 1);
    off();
    await s.log.append('agt_a', c.next([event('y')]), [event('y')], NOW.toISOString());
    assert.equal(n, 1);
  });

  withStore('enroll consumes a token once; unknown, used and expired tokens have codes', async (s) => {
    await s.registry.putToken({ hash: 'h1', name: 'plant-1', tenant: 'acme', createdAt: NOW.toISOString(), expiresAt: '2024-05-01T09:00:00.000Z', usedAt: null, agentId: null });
    await s.registry.putToken({ hash: 'h2', name: 'old', tenant: 'default', createdAt: NOW.toISOString(), expiresAt: '2024-05-01T08:00:00.000Z', usedAt: null, agentId: null });
    const rec = await s.registry.enroll('h1', agentRec('agt_1', 'pk1'), NOW);
    assert.equal(rec.tenant, 'acme');
    assert.deepEqual(await s.registry.getAgent('agt_1'), rec);
    const tok = await s.registry.getToken('h1');
    assert.equal(tok?.usedAt, NOW.toISOString());
    assert.equal(tok?.agentId, 'agt_1');
    await rejectsCode(s.registry.enroll('h1', agentRec('agt_2', 'pk2'), NOW), 'HUB_TOKEN_USED');
    await rejectsCode(s.registry.enroll('nope', agentRec('agt_3', 'pk3'), NOW), 'HUB_TOKEN_INVALID');
    await rejectsCode(s.registry.enroll('h2', agentRec('agt_4', 'pk4'), NOW), 'HUB_TOKEN_EXPIRED');
    assert.equal(await s.registry.getAgent('agt_2'), undefined);
    assert.deepEqual((await s.registry.listAgents()).map((a) => a.id), ['agt_1']);
  });

  withStore('a public key registers to one agent only', async (s) => {
    for (const h of ['h1', 'h2']) await s.registry.putToken({ hash: h, name: h, tenant: 'default', createdAt: NOW.toISOString(), expiresAt: '2030-01-01T00:00:00.000Z', usedAt: null, agentId: null });
    await s.registry.enroll('h1', agentRec('agt_1', 'pk1'), NOW);
    await rejectsCode(s.registry.enroll('h2', agentRec('agt_2', 'pk1'), NOW), 'HUB_KEY_IN_USE');
    assert.equal((await s.registry.getToken('h2'))?.usedAt, null);
  });

  withStore('updateAgent patches fields and refuses unknown agents', async (s) => {
    await s.registry.putToken({ hash: 'h1', name: 'n', tenant: 'default', createdAt: NOW.toISOString(), expiresAt: '2030-01-01T00:00:00.000Z', usedAt: null, agentId: null });
    await s.registry.enroll('h1', agentRec('agt_1', 'pk1'), NOW);
    const u = await s.registry.updateAgent('agt_1', { status: 'revoked', version: '1.2.3', host: 'erp-01', lastSeenAt: NOW.toISOString() });
    assert.equal(u.status, 'revoked');
    assert.equal((await s.registry.getAgent('agt_1'))?.host, 'erp-01');
    await rejectsCode(s.registry.updateAgent('agt_x', { status: 'active' }), 'HUB_NOT_FOUND');
    await s.registry.putSetting('adminTokenHash', 'abc');
    assert.equal(await s.registry.getSetting('adminTokenHash'), 'abc');
    assert.equal(await s.registry.getSetting('missing'), undefined);
  });

  withStore('delivery state: cursor, attempts and DLQ per destination', async (s) => {
    const d = s.delivery;
    assert.equal(await d.getCursor('crm'), 0);
    await d.recordAttempt('crm', { offset: 3, eventId: 'e3', attempts: 2, lastError: 'HTTP 503', lastAttemptAt: NOW.toISOString() });
    await d.recordAttempt('crm', { offset: 5, eventId: 'e5', attempts: 1, lastError: 'HTTP 500', lastAttemptAt: NOW.toISOString() });
    assert.equal((await d.getAttempt('crm', 3))?.attempts, 2);
    assert.equal(await d.getAttempt('shop', 3), undefined);
    await d.commit('crm', 4);
    assert.equal(await d.getCursor('crm'), 4);
    assert.equal(await d.getCursor('shop'), 0);
    assert.equal(await d.getAttempt('crm', 3), undefined, 'attempts at or below the cursor are dropped');
    assert.equal((await d.getAttempt('crm', 5))?.attempts, 1);
    const entry = { offset: 5, eventId: 'e5', agentId: 'agt_a', entity: 'customer', key: 'ALFKI', attempts: 10, lastError: 'HTTP 500', failedAt: NOW.toISOString() };
    await d.addDlq('crm', entry);
    await d.addDlq('crm', entry);
    assert.equal(await d.dlqCount('crm'), 1);
    assert.equal(await d.dlqCount('shop'), 0);
    assert.deepEqual(await d.listDlq('crm', 10), [entry]);
    assert.equal(await d.getAttempt('crm', 5), undefined);
  });

  withStore('DLQ replay: entries move to the replay queue in log order, leave it when finished or dead again', async (s) => {
    const d = s.delivery;
    const e = (offset: number, eventId: string) => ({ offset, eventId, agentId: 'agt_a', entity: 'customer', key: `K${offset}`, attempts: 3, lastError: 'HTTP 422', failedAt: NOW.toISOString() });
    for (const [o, id] of [[7, 'e7'], [2, 'e2'], [5, 'e5'], [9, 'e9']] as const) await d.addDlq('crm', e(o, id));
    await d.addDlq('shop', e(2, 'e2'));
    assert.deepEqual((await d.listDlq('crm', 10)).map((x) => x.offset), [2, 5, 7, 9], 'DLQ lists in offset order');
    assert.deepEqual(await d.replayDlq('crm', { eventIds: ['e9', 'nope', 'e2'], limit: 100 }), [e(2, 'e2'), e(9, 'e9')]);
    assert.equal(await d.dlqCount('crm'), 2);
    assert.deepEqual((await d.listDlq('crm', 10)).map((x) => x.eventId), ['e5', 'e7']);
    assert.deepEqual(await d.listReplay('crm', 10), [e(2, 'e2'), e(9, 'e9')]);
    assert.deepEqual(await d.listReplay('shop', 10), [], 'per destination');
    assert.equal(await d.dlqCount('shop'), 1);
    // All, bounded by limit, lowest offsets first.
    assert.deepEqual((await d.replayDlq('crm', { limit: 1 })).map((x) => x.eventId), ['e5']);
    assert.deepEqual((await d.listReplay('crm', 10)).map((x) => x.offset), [2, 5, 9]);
    assert.deepEqual((await d.listReplay('crm', 2)).map((x) => x.offset), [2, 5]);
    assert.deepEqual(await d.replayDlq('crm', { eventIds: ['e5'], limit: 100 }), [], 'already moved');
    await d.finishReplay('crm', 2);
    // Failing again: back in the DLQ with the new attempt count, out of the replay queue.
    await d.addDlq('crm', { ...e(9, 'e9'), attempts: 1, lastError: 'HTTP 400' });
    assert.deepEqual((await d.listReplay('crm', 10)).map((x) => x.offset), [5]);
    assert.deepEqual((await d.listDlq('crm', 10)).map((x) => [x.eventId, x.attempts, x.lastError]), [['e7', 3, 'HTTP 422'], ['e9', 1, 'HTTP 400']]);
    assert.equal(await d.dlqCount('crm'), 2);
    assert.deepEqual((await d.replayDlq('crm', { limit: 100 })).map((x) => x.eventId), ['e7', 'e9']);
    assert.equal(await d.dlqCount('crm'), 0);
    assert.deepEqual(await d.listDlq('crm', 10), []);
    assert.deepEqual((await d.listReplay('crm', 10)).map((x) => x.offset), [5, 7, 9]);
  });

  withStore("the agent's own name is kept beside the operator's label", async (s) => {
    await s.registry.putToken({ hash: 'hn', name: 'plant-9', tenant: 'default', createdAt: NOW.toISOString(), expiresAt: '2030-01-01T00:00:00.000Z', usedAt: null, agentId: null });
    await s.registry.enroll('hn', { ...agentRec('agt_n', 'pkn'), name: 'plant-9', agentName: 'erp-east' }, NOW);
    const a = await s.registry.getAgent('agt_n');
    assert.deepEqual([a?.name, a?.agentName], ['plant-9', 'erp-east']);
  });

  withStore('enrollment token site is carried to the agent', async (s) => {
    await s.registry.putToken({ hash: 'hs', name: 'plant', tenant: 'acme', site: 'dallas', createdAt: NOW.toISOString(), expiresAt: '2030-01-01T00:00:00.000Z', usedAt: null, agentId: null });
    const rec = await s.registry.enroll('hs', agentRec('agt_s', 'pks'), NOW);
    assert.deepEqual([rec.tenant, rec.site], ['acme', 'dallas']);
    assert.equal((await s.registry.getAgent('agt_s'))?.site, 'dallas');
  });

  withStore('API tokens: stored by id, found by hash, revoked once', async (s) => {
    const t1 = { id: 'tok_1', name: 'ci', scope: 'read' as const, tenant: 'acme', hash: 'a'.repeat(64), createdAt: NOW.toISOString(), createdBy: 'admin', revokedAt: null };
    const t2 = { ...t1, id: 'tok_2', name: 'ops', scope: 'admin' as const, tenant: null, hash: 'b'.repeat(64), createdAt: '2024-05-01T08:00:01.000Z' };
    await s.registry.putApiToken(t2);
    await s.registry.putApiToken(t1);
    assert.deepEqual(await s.registry.getApiToken('tok_1'), t1);
    assert.deepEqual(await s.registry.getApiTokenByHash('b'.repeat(64)), t2);
    assert.equal(await s.registry.getApiTokenByHash('c'.repeat(64)), undefined);
    assert.deepEqual((await s.registry.listApiTokens()).map((t) => t.id), ['tok_1', 'tok_2']);
    const r = await s.registry.revokeApiToken('tok_1', NOW);
    assert.equal(r.revokedAt, NOW.toISOString());
    assert.equal((await s.registry.getApiTokenByHash('a'.repeat(64)))?.revokedAt, NOW.toISOString());
    await rejectsCode(s.registry.revokeApiToken('tok_1', NOW), 'HUB_CONFLICT');
    await rejectsCode(s.registry.revokeApiToken('tok_x', NOW), 'HUB_NOT_FOUND');
  });

  withStore('audit log: append-only, seq assigned, newest first, tenant filter and limit', async (s) => {
    const base = { at: NOW.toISOString(), actor: 'admin', actorName: 'admin.token', remote: '127.0.0.1' };
    assert.deepEqual(await s.audit.list({ limit: 10 }), []);
    const e1 = await s.audit.append({ ...base, action: 'enroll-token.issued', target: 'plant-1', tenant: 'acme', detail: { site: 'dallas' } });
    await s.audit.append({ ...base, action: 'agent.disabled', target: 'agt_1', tenant: 'beta' });
    await s.audit.append({ ...base, action: 'api-token.created', target: 'tok_1', tenant: null });
    await s.audit.append({ ...base, action: 'agent.revoked', target: 'agt_2', tenant: 'acme' });
    assert.equal(e1.seq, 1);
    assert.deepEqual(e1, { ...base, action: 'enroll-token.issued', target: 'plant-1', tenant: 'acme', detail: { site: 'dallas' }, seq: 1 });
    assert.deepEqual((await s.audit.list({ limit: 10 })).map((e) => [e.seq, e.action]), [[4, 'agent.revoked'], [3, 'api-token.created'], [2, 'agent.disabled'], [1, 'enroll-token.issued']]);
    assert.deepEqual((await s.audit.list({ limit: 2 })).map((e) => e.seq), [4, 3]);
    assert.deepEqual((await s.audit.list({ limit: 10, tenant: 'acme' })).map((e) => e.target), ['agt_2', 'plant-1']);
    assert.deepEqual(await s.audit.list({ limit: 0 }), []);
    assert.equal(typeof (s.audit as unknown as Record<string, unknown>).delete, 'undefined', 'no way to remove entries');
  });
}
