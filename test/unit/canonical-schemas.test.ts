import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { jsonSchemas, validateEvent } from '@dovetail/shared';
import { REPO } from '../helpers/paths.ts';

test('exported JSON Schema files match the model (run `npm run schemas` after a change)', () => {
  const dir = join(REPO, 'shared', 'canonical', 'schemas');
  const expected = jsonSchemas();
  assert.deepEqual(readdirSync(dir).sort(), Object.keys(expected).sort());
  for (const [file, schema] of Object.entries(expected)) {
    assert.deepEqual(JSON.parse(readFileSync(join(dir, file), 'utf8')), schema, file);
  }
});

const base = {
  id: 'evt_1', entity: 'inventory_level', op: 'upsert', key: 'SKU1/MAIN',
  source: { agent: 'a', system: 'erp', table: 'icloc', position: '1' },
  occurredAt: '2026-01-01T00:00:00-06:00', capturedAt: '2026-01-01T06:00:01.5+00:00', correlationId: null, schema: 'inventory_level/1',
};

test('an inventory level with exact decimal strings validates', () => {
  assert.deepEqual(validateEvent({ ...base, data: { sku: 'SKU1', warehouse: 'MAIN', onHand: '10.00000', allocated: '2.50000', available: '7.50000' } }), []);
});

test('a float quantity, a naive datetime and an unknown field are refused with their paths', () => {
  const issues = validateEvent({ ...base, data: { sku: 'SKU1', warehouse: 'MAIN', onHand: 10, allocated: '2', available: '8' } });
  assert.ok(issues.some((i) => i.path === '/data/onHand'), JSON.stringify(issues));
  assert.ok(validateEvent({ ...base, occurredAt: '2026-01-01 00:00:00', data: null, op: 'delete' }).some((i) => i.path === '/occurredAt'));
  assert.ok(validateEvent({ ...base, data: { sku: 'S', warehouse: 'W', onHand: '1', allocated: '0', available: '1', bogus: 1 } }).length > 0);
  assert.deepEqual(validateEvent({ ...base, op: 'delete', data: null }), []);
  assert.ok(validateEvent({ ...base, schema: 'inventory_level/9', data: null, op: 'delete' }).some((i) => i.path === '/schema'));
});
