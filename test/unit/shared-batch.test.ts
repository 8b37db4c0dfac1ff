import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeBatchBody, encodeBatchBodyPacked, decodeBatchBody, packEvent, toHex, GENESIS_HASH, type CanonicalEvent } from '@dovetail/shared';

function event(i: number): CanonicalEvent {
  return {
    id: `e${i}`, entity: 'inventory_level', op: 'upsert', key: `SKU${i}/MAIN`,
    data: { sku: `SKU${i}`, warehouse: 'MAIN', onHand: `${i}.50000`, allocated: '0', available: `${i}.50000` },
    source: { agent: 'a1', system: 'erp', table: 'icloc', position: String(i) },
    occurredAt: '2026-01-01T00:00:00-06:00', capturedAt: '2026-01-01T06:00:00+00:00', correlationId: null, schema: 'inventory_level/1',
  };
}

// Batches are assembled from events packed once; the bytes must be exactly what encoding the whole body gives.
for (const n of [0, 1, 15, 16, 300, 70_000]) {
  test(`a body assembled from ${n} packed events equals the body encoded whole`, () => {
    const events = Array.from({ length: n }, (_, i) => event(i));
    const head = { v: 1, agent: 'a1', seq: 7, prev: GENESIS_HASH, createdAt: '2026-01-01T00:00:00.000Z' };
    const whole = encodeBatchBody({ ...head, events });
    const assembled = encodeBatchBodyPacked(head, events.map(packEvent));
    assert.equal(assembled.byteLength, whole.byteLength);
    assert.equal(toHex(assembled), toHex(whole));
    assert.deepEqual(decodeBatchBody(assembled).events.length, n);
  });
}
