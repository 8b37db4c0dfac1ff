import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDovetailError, naiveToOffsetDateTime } from '@dovetail/shared';
import { compileMapping } from '../../agent/src/mapping/index.ts';
import { DateTimeReader } from '../../agent/src/mapping/convert.ts';
import type { FieldMapping, FieldType, TableConfig } from '../../agent/src/config/types.ts';
import type { RowChange } from '../../agent/src/capture/types.ts';

const OPTS = { timeZone: 'America/Chicago', system: 'gp', agentId: 'agt_1' };
const AT = new Date('2024-07-02T12:00:00.000Z');

function f(column: string, type: FieldType = 'string', more: Partial<FieldMapping> = {}): FieldMapping {
  return { column, type, trim: type === 'code', required: false, ...more };
}

function table(over: Partial<TableConfig> & Pick<TableConfig, 'entity' | 'map' | 'key'>): TableConfig {
  return {
    name: 'customers', table: 'dbo.RM00101', strategy: 'diff', schedule: { everyMs: 5000 }, pageSize: 5000,
    children: {}, onGap: 'resnapshot', ...over,
  };
}

const customers = table({
  entity: 'customer',
  key: ['CUSTNMBR'],
  map: {
    customerId: f('CUSTNMBR', 'code'),
    name: f('CUSTNAME'),
    creditLimit: f('CRLMTAMT', 'decimal'),
    status: f('STATUS', 'string', { crosswalk: { A: 'active', H: 'on_hold' } }),
    currency: f('CURNCYID', 'code'),
    createdAt: f('CREATDDT', 'datetime', { nullIf: ['1900-01-01'] }),
    updatedAt: f('MODIFDT', 'datetime'),
    'addresses[0].type': { type: 'string', trim: false, required: false, const: 'billing' },
    'addresses[0].line1': f('ADDRESS1'),
    'addresses[1].type': { type: 'string', trim: false, required: false, const: 'shipping' },
    'addresses[1].line1': f('SHIPADDR1'),
    'extra.onHold': f('HOLD', 'boolean'),
  },
});

const ROW = {
  CUSTNMBR: 'ALFKI          ', CUSTNAME: 'Alfreds Futterkiste  ', CRLMTAMT: '1234.50000', STATUS: 'H ',
  CURNCYID: 'USD  ', CREATDDT: '1900-01-01 00:00:00.000', MODIFDT: '2024-07-01 10:00:00.1234567',
  ADDRESS1: 'Obere Str. 57', SHIPADDR1: null, HOLD: 'Y',
};

function upsert(row: Record<string, string | number | boolean | null>, position = '1001', extra: Partial<RowChange> = {}): RowChange {
  return { op: 'upsert', key: { CUSTNMBR: row['CUSTNMBR'] ?? null }, row, position, ...extra };
}

function mappingError(fn: () => unknown, code: 'AGENT_MAPPING' | 'AGENT_VALIDATION'): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isDovetailError(err, code), `expected ${code}, got ${String(err)}`);
    return err.message;
  }
  assert.fail(`expected ${code}`);
}

test('maps exact values: decimals, CHAR codes, varchar untouched, naive datetime in zone, sentinel null', () => {
  const m = compileMapping(customers, OPTS);
  const ev = m.toEvent(upsert(ROW), AT);
  assert.deepEqual(ev.data, {
    customerId: 'ALFKI',
    name: 'Alfreds Futterkiste  ',
    creditLimit: '1234.50000',
    status: 'on_hold',
    currency: 'USD',
    createdAt: null,
    updatedAt: '2024-07-01T10:00:00.1234567-05:00',
    addresses: [{ type: 'billing', line1: 'Obere Str. 57' }],
    extra: { onHold: true },
    contacts: [],
  });
  assert.equal(ev.key, 'ALFKI');
  assert.equal(ev.entity, 'customer');
  assert.equal(ev.op, 'upsert');
  assert.equal(ev.schema, 'customer/1');
  assert.deepEqual(ev.source, { agent: 'agt_1', system: 'gp', table: 'customers', position: '1001' });
  assert.equal(ev.capturedAt, '2024-07-02T12:00:00.000+00:00');
  assert.equal(ev.occurredAt, '2024-07-02T12:00:00.000+00:00');
  assert.equal(ev.correlationId, null);
});

test('money at the edge of SQL Server money stays exact', () => {
  const m = compileMapping(customers, OPTS);
  const ev = m.toEvent(upsert({ ...ROW, CRLMTAMT: '-922337203685477.5808' }), AT);
  assert.equal((ev.data as { creditLimit: string }).creditLimit, '-922337203685477.5808');
});

test('a value that is not a decimal is AGENT_MAPPING naming table, key, field, column and value', () => {
  const m = compileMapping(customers, OPTS);
  assert.equal(mappingError(() => m.toEvent(upsert({ ...ROW, CRLMTAMT: 'abc' }), AT), 'AGENT_MAPPING'),
    'customers ALFKI: creditLimit (column CRLMTAMT): not a decimal: "abc"');
  assert.equal(mappingError(() => m.toEvent(upsert({ ...ROW, CRLMTAMT: 12.5 }), AT), 'AGENT_MAPPING'),
    'customers ALFKI: creditLimit (column CRLMTAMT): inexact JS number for a decimal (the driver must return text): 12.5');
  const { MODIFDT: _gone, ...noCol } = ROW;
  assert.equal(mappingError(() => m.toEvent(upsert(noCol), AT), 'AGENT_MAPPING'),
    'customers ALFKI: updatedAt (column MODIFDT): column not in row');
});

test('crosswalk hit, miss, and default', () => {
  const m = compileMapping(customers, OPTS);
  assert.equal((m.toEvent(upsert({ ...ROW, STATUS: 'A' }), AT).data as { status: string }).status, 'active');
  assert.equal(mappingError(() => m.toEvent(upsert({ ...ROW, STATUS: 'Z' }), AT), 'AGENT_MAPPING'),
    'customers ALFKI: status (column STATUS): not in crosswalk: "Z"');
  const withDefault = compileMapping(table({ ...customers, map: { ...customers.map, status: f('STATUS', 'string', { crosswalk: { A: 'active' }, crosswalkDefault: 'inactive' }) } }), OPTS);
  assert.equal((withDefault.toEvent(upsert({ ...ROW, STATUS: 'Z' }), AT).data as { status: string }).status, 'inactive');
});

test('datetimes: winter offset, offset text normalised, occurredAt read in zone', () => {
  const m = compileMapping(customers, OPTS);
  const ev = m.toEvent(upsert({ ...ROW, MODIFDT: '2024-01-15 08:00:00' }, '1', { occurredAt: '2024-01-15 08:00:00.123' }), AT);
  assert.equal((ev.data as { updatedAt: string }).updatedAt, '2024-01-15T08:00:00-06:00');
  assert.equal(ev.occurredAt, '2024-01-15T08:00:00.123-06:00');
  const ev2 = m.toEvent(upsert({ ...ROW, MODIFDT: '2024-07-01 10:00:00.5+02' }), AT);
  assert.equal((ev2.data as { updatedAt: string }).updatedAt, '2024-07-01T10:00:00.5+02:00');
  assert.equal(mappingError(() => m.toEvent(upsert({ ...ROW, MODIFDT: '2024-02-30 10:00:00' }), AT), 'AGENT_MAPPING'),
    'customers ALFKI: updatedAt (column MODIFDT): not a datetime: "2024-02-30 10:00:00"');
});

test('the per-hour offset cache agrees with the shared helper across DST changes', () => {
  const r = new DateTimeReader('America/Chicago');
  const lh = new DateTimeReader('Australia/Lord_Howe');
  for (const day of ['2024-03-10', '2024-11-03']) {
    for (let h = 0; h < 4; h++) {
      for (const mm of ['00', '15', '30', '59']) {
        const t = `${day} ${String(h).padStart(2, '0')}:${mm}:07.25`;
        assert.equal(r.read(t), naiveToOffsetDateTime(t, 'America/Chicago'), t);
        assert.equal(r.read(t), naiveToOffsetDateTime(t, 'America/Chicago'), `${t} (cached)`);
      }
    }
  }
  for (const t of ['2024-04-07 01:45:00', '2024-04-07 01:15:00', '2024-10-06 02:15:00', '2024-10-06 02:45:00']) {
    assert.equal(lh.read(t), naiveToOffsetDateTime(t, 'Australia/Lord_Howe'), t);
  }
});

test('an address whose column fields are all null is dropped (constants do not count)', () => {
  const m = compileMapping(customers, OPTS);
  const both = m.toEvent(upsert({ ...ROW, SHIPADDR1: '12 Dock Rd' }), AT);
  assert.deepEqual((both.data as { addresses: unknown[] }).addresses, [
    { type: 'billing', line1: 'Obere Str. 57' }, { type: 'shipping', line1: '12 Dock Rd' },
  ]);
  const none = m.toEvent(upsert({ ...ROW, ADDRESS1: null }), AT);
  assert.deepEqual((none.data as { addresses: unknown[] }).addresses, []);
});

test('boolean forms: Y/N, T/F, 1/0, true/false', () => {
  const m = compileMapping(customers, OPTS);
  const hold = (v: string | number | boolean) => (m.toEvent(upsert({ ...ROW, HOLD: v }), AT).data as { extra: { onHold: boolean } }).extra.onHold;
  assert.deepEqual([hold('Y'), hold('N'), hold('T'), hold('f'), hold(1), hold(0), hold(true), hold('0')], [true, false, true, false, true, false, true, false]);
  assert.equal(mappingError(() => hold('maybe'), 'AGENT_MAPPING'), 'customers ALFKI: extra.onHold (column HOLD): not a boolean: "maybe"');
});

test('stable id: same change twice gives the same id; position, op or data change it', () => {
  const m = compileMapping(customers, OPTS);
  const a = m.toEvent(upsert(ROW), AT);
  const b = compileMapping(customers, OPTS).toEvent(upsert(ROW), new Date('2030-01-01T00:00:00Z'));
  assert.equal(a.id, b.id);
  assert.match(a.id, /^[A-Za-z0-9_-]{32}$/);
  assert.notEqual(m.toEvent(upsert(ROW, '1002'), AT).id, a.id);
  assert.notEqual(m.toEvent(upsert({ ...ROW, CRLMTAMT: '1234.50001' }), AT).id, a.id);
  assert.notEqual(compileMapping(customers, { ...OPTS, agentId: 'agt_2' }).toEvent(upsert(ROW), AT).id, a.id);
});

test('deletes carry data null and the trimmed key columns', () => {
  const m = compileMapping(customers, OPTS);
  const ev = m.toEvent({ op: 'delete', key: { CUSTNMBR: 'ALFKI   ' }, row: null, position: '0x0000000000001F40' }, AT);
  assert.equal(ev.op, 'delete');
  assert.equal(ev.data, null);
  assert.equal(ev.key, 'ALFKI');
  assert.equal(ev.source.position, '0x0000000000001F40');
});

test('keyTemplate gives the same key for upsert (from data) and delete (from key columns)', () => {
  const inv = table({
    name: 'inventory', entity: 'inventory_level', key: ['ITEMNMBR', 'LOCNCODE'], keyTemplate: '{sku}/{warehouse}',
    map: {
      sku: f('ITEMNMBR', 'code'), warehouse: f('LOCNCODE', 'code'),
      onHand: f('QTYONHND', 'decimal'), allocated: f('ATYALLOC', 'decimal'), available: f('QTYAVAIL', 'decimal'),
    },
  });
  const m = compileMapping(inv, OPTS);
  const row = { ITEMNMBR: 'SKU-1    ', LOCNCODE: 'MAIN   ', QTYONHND: '10.00000', ATYALLOC: '2.00000', QTYAVAIL: '8.00000' };
  const up = m.toEvent({ op: 'upsert', key: { ITEMNMBR: row.ITEMNMBR, LOCNCODE: row.LOCNCODE }, row, position: '5' }, AT);
  const del = m.toEvent({ op: 'delete', key: { ITEMNMBR: row.ITEMNMBR, LOCNCODE: row.LOCNCODE }, row: null, position: '6' }, AT);
  assert.equal(up.key, 'SKU-1/MAIN');
  assert.equal(del.key, 'SKU-1/MAIN');
  assert.equal(up.schema, 'inventory_level/1');
});

test('children are mapped into lines in order; a bad child value names its index', () => {
  const orders = table({
    name: 'orders', entity: 'sales_order', key: ['SOPNUMBE'],
    map: { orderNumber: f('SOPNUMBE', 'code'), customerId: f('CUSTNMBR', 'code'), orderDate: f('DOCDATE', 'date') },
    children: {
      lines: {
        table: 'dbo.SOP10200', parentKey: ['SOPNUMBE'], orderBy: ['LNITMSEQ'], into: 'lines',
        map: { lineNumber: f('LNITMSEQ', 'code'), sku: f('ITEMNMBR', 'code'), quantity: f('QUANTITY', 'decimal'), unitPrice: f('UNITPRCE', 'decimal') },
      },
    },
  });
  const m = compileMapping(orders, OPTS);
  const row = { SOPNUMBE: 'ORD1   ', CUSTNMBR: 'ALFKI  ', DOCDATE: '2024-07-01 00:00:00.000' };
  const lines = [
    { LNITMSEQ: 16384, ITEMNMBR: 'SKU-1  ', QUANTITY: '2.00000', UNITPRCE: '10.50000' },
    { LNITMSEQ: 32768, ITEMNMBR: 'SKU-2  ', QUANTITY: '1.00000', UNITPRCE: '0.99000' },
  ];
  const ev = m.toEvent({ op: 'upsert', key: { SOPNUMBE: 'ORD1   ' }, row, children: { lines }, position: '9' }, AT);
  assert.deepEqual(ev.data, {
    orderNumber: 'ORD1', customerId: 'ALFKI', orderDate: '2024-07-01',
    lines: [
      { lineNumber: '16384', sku: 'SKU-1', quantity: '2.00000', unitPrice: '10.50000' },
      { lineNumber: '32768', sku: 'SKU-2', quantity: '1.00000', unitPrice: '0.99000' },
    ],
  });
  const noLines = m.toEvent({ op: 'upsert', key: { SOPNUMBE: 'ORD2' }, row: { ...row, SOPNUMBE: 'ORD2' }, position: '10' }, AT);
  assert.deepEqual((noLines.data as { lines: unknown[] }).lines, []);
  const bad = [lines[0]!, { ...lines[1]!, QUANTITY: 'x' }];
  assert.equal(mappingError(() => m.toEvent({ op: 'upsert', key: { SOPNUMBE: 'ORD1' }, row, children: { lines: bad }, position: '9' }, AT), 'AGENT_MAPPING'),
    'orders ORD1: lines[1].quantity (column QUANTITY): not a decimal: "x"');
});

test('a mapped event failing the canonical schema is AGENT_VALIDATION naming the path', () => {
  const m = compileMapping(customers, OPTS);
  const msg = mappingError(() => m.toEvent(upsert({ ...ROW, CURNCYID: 'usd' }), AT), 'AGENT_VALIDATION');
  assert.match(msg, /^customers ALFKI: customer\/1 validation failed: \/data\/currency: /);
  assert.equal(mappingError(() => m.toEvent(upsert({ ...ROW, CUSTNMBR: '     ' }), AT), 'AGENT_MAPPING'),
    'customers ?: key (column CUSTNMBR): key column is blank: "     "');
});

test('required field null is AGENT_MAPPING', () => {
  const m = compileMapping(table({ ...customers, map: { ...customers.map, name: f('CUSTNAME', 'string', { required: true }) } }), OPTS);
  assert.equal(mappingError(() => m.toEvent(upsert({ ...ROW, CUSTNAME: null }), AT), 'AGENT_MAPPING'),
    'customers ALFKI: name (column CUSTNAME): required but null: null');
});

test('a YAML mapping (short and long forms, children) compiles and maps end to end', async () => {
  const { parseAgentConfig } = await import('../../agent/src/config/load.ts');
  const cfg = parseAgentConfig(`
agent: { name: a }
hub: { url: "http://hub" }
source: { type: postgres, system: erp, url: "postgres://x@h/db", timeZone: America/Chicago }
tables:
  - name: orders
    table: public.orders
    key: order_id
    entity: sales_order
    strategy: diff
    map:
      orderNumber: { column: order_id, type: code }
      customerId: { column: customer_id, type: code }
      orderDate: { column: order_date, type: datetime }
      currency: { const: USD }
      shipTo.city: ship_city
    children:
      lines:
        table: public.order_details
        parentKey: order_id
        into: lines
        map:
          lineNumber: { column: product_id, type: code }
          sku: { column: product_id, type: code }
          quantity: { column: quantity, type: decimal }
          unitPrice: { column: unit_price, type: decimal }
`, 'agent.yaml', {});
  const m = compileMapping(cfg.tables[0]!, OPTS);
  const ev = m.toEvent({
    op: 'upsert', key: { order_id: 10248 }, position: 'snap:1',
    row: { order_id: 10248, customer_id: 'VINET', order_date: '1996-07-04 00:00:00', ship_city: null },
    children: { lines: [{ product_id: 11, quantity: 12, unit_price: '14.0000' }] },
  }, AT);
  assert.equal(ev.key, '10248');
  assert.deepEqual(ev.data, {
    currency: 'USD', customerId: 'VINET', orderDate: '1996-07-04T00:00:00-05:00', orderNumber: '10248',
    shipTo: null, lines: [{ lineNumber: '11', quantity: '12', sku: '11', unitPrice: '14.0000' }],
  });
});
