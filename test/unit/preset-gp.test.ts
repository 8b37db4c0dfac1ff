/**
 * Dynamics GP presets: expansion into full table configs, override precedence,
 * errors that name the key, and the mapping features the presets rely on
 * (subtract, columns crosswalk, per-field time zone) on GP-shaped rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDovetailError, subtractDecimal } from '@dovetail/shared';
import { REPO, tempDir } from '../helpers/paths.ts';
import { parseAgentConfig } from '../../agent/src/config/load.ts';
import { compileMapping } from '../../agent/src/mapping/compile.ts';
import { presetNames } from '../../agent/src/presets/index.ts';
import type { AgentConfig } from '../../agent/src/config/types.ts';
import type { RowChange } from '../../agent/src/capture/types.ts';

const head = (source = `  type: postgres\n  url: postgres://gp@127.0.0.1:5432/gp`) => `
agent: { name: gp }
hub: { url: http://127.0.0.1:8700 }
source:
${source}
  system: dynamics-gp
  timeZone: America/Chicago
tables:
`;

function load(tables: string, source?: string): AgentConfig {
  return parseAgentConfig(head(source) + tables, '/etc/dovetail/agent.yaml', {});
}

function invalid(tables: string): { message: string; keyPath: unknown } {
  try {
    load(tables);
  } catch (err) {
    assert.ok(isDovetailError(err, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(err)}`);
    return { message: err.message, keyPath: err.context.keyPath };
  }
  assert.fail('expected CONFIG_INVALID');
}

const ALL = `
  - { name: customers, preset: dynamics-gp/customers }
  - { name: items, preset: dynamics-gp/items }
  - { name: stock, preset: dynamics-gp/item-quantities }
  - { name: orders, preset: dynamics-gp/sales-history }
`;

test('every GP preset expands into a full table config', () => {
  const cfg = load(ALL);
  const [c, i, q, o] = cfg.tables;
  assert.deepEqual([c!.table, c!.entity, c!.key, c!.strategy], ['RM00101', 'customer', ['CUSTNMBR'], 'cursor']);
  assert.deepEqual(c!.cursor, { column: 'DEX_ROW_TS', type: 'timestamp', overlapMs: 5000, overlapUnits: 0 });
  assert.deepEqual(c!.map.customerId, { column: 'CUSTNMBR', type: 'code', trim: true, required: true });
  assert.deepEqual(c!.map.createdAt, { column: 'CREATDDT', type: 'date', trim: false, required: false, nullIf: ['1900-01-01'] });
  assert.deepEqual(c!.map.updatedAt, { column: 'DEX_ROW_TS', type: 'datetime', trim: false, required: false, nullIf: ['1900-01-01'], timeZone: 'UTC' });
  // The layouts give IV00101/IV00102 no DEX_ROW_TS: diff, and no cursor.
  assert.deepEqual([i!.table, i!.entity, i!.strategy, i!.cursor], ['IV00101', 'product', 'diff', undefined]);
  assert.deepEqual([q!.table, q!.key, q!.strategy, q!.where], ['IV00102', ['ITEMNMBR', 'LOCNCODE'], 'diff', '"RCRDTYPE" = 2']);
  assert.deepEqual(q!.map.available, { subtract: ['QTYONHND', 'ATYALLOC'], type: 'decimal', trim: false, required: true });
  assert.deepEqual([o!.table, o!.key, o!.entity], ['SOP30200', ['SOPTYPE', 'SOPNUMBE'], 'sales_order']);
  assert.deepEqual(o!.children.lines, {
    table: 'SOP30300', parentKey: ['SOPTYPE', 'SOPNUMBE'], orderBy: ['LNITMSEQ'], into: 'lines', where: '"CMPNTSEQ" = 0',
    map: o!.children.lines!.map,
  });
  assert.equal(Object.isFrozen(o!.children.lines!.parentKey), true);
});

test('user settings win over the preset: table, strategy, cursor, where, schedule and single map fields', () => {
  const cfg = load(`
  - name: customers
    preset: dynamics-gp/customers
    table: dbo.RM00101
    schedule: { every: 1m }
    cursor: { overlapMs: 60000 }
    where: "CUSTCLAS <> 'TEST'"
    map:
      name: { column: STMTNAME, type: string, trim: true }
      phone: null
      extra.salesperson: { column: SLPRSNID, type: code }
  - name: orders
    preset: dynamics-gp/sales-history
    table: gp.SOP30200
    strategy: diff
  - name: stock
    preset: dynamics-gp/item-quantities
    where: null
`);
  const [c, o, q] = cfg.tables;
  assert.equal(c!.table, 'dbo.RM00101');
  assert.deepEqual(c!.schedule, { everyMs: 60_000 });
  assert.deepEqual(c!.cursor, { column: 'DEX_ROW_TS', type: 'timestamp', overlapMs: 60_000, overlapUnits: 0 });
  assert.equal(c!.where, "CUSTCLAS <> 'TEST'");
  assert.deepEqual(c!.map.name, { column: 'STMTNAME', type: 'string', trim: true, required: false });
  assert.equal(c!.map.phone, undefined);
  assert.deepEqual(c!.map['extra.salesperson'], { column: 'SLPRSNID', type: 'code', trim: true, required: false });
  assert.deepEqual(c!.map.customerId, { column: 'CUSTNMBR', type: 'code', trim: true, required: true }, 'untouched fields stay');
  // A different strategy drops the preset's cursor; children follow the parent's schema.
  assert.deepEqual([o!.strategy, o!.cursor, o!.children.lines!.table], ['diff', undefined, 'gp.SOP30300']);
  assert.equal(q!.where, undefined);
});

test('preset filters are quoted for the source dialect', () => {
  const maria = load(`  - { name: stock, preset: dynamics-gp/item-quantities }\n`,
    '  type: odbc\n  connectionString: "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;DATABASE=gp;UID=root;PWD=;"');
  assert.equal(maria.tables[0]!.where, '`RCRDTYPE` = 2');
  const mssql = load(`  - { name: orders, preset: dynamics-gp/sales-history }\n`,
    '  type: mssql\n  connectionString: "Server=gp;Database=TWO;User Id=dovetail"');
  assert.equal(mssql.tables[0]!.children.lines!.where, '[CMPNTSEQ] = 0');
});

test('an unknown preset is CONFIG_INVALID naming tables[0].preset and listing the known ones', () => {
  const r = invalid(`  - { name: customers, preset: dynamics-gp/customer }\n`);
  assert.equal(r.keyPath, 'tables[0].preset');
  assert.equal(r.message, '/etc/dovetail/agent.yaml: tables[0].preset: unknown preset "dynamics-gp/customer"; known presets: '
    + 'dynamics-gp/customers, dynamics-gp/item-quantities, dynamics-gp/items, dynamics-gp/sales-history');
  assert.deepEqual(presetNames(), ['dynamics-gp/customers', 'dynamics-gp/item-quantities', 'dynamics-gp/items', 'dynamics-gp/sales-history']);
});

test('keys owned by the preset are refused; bad overrides are reported at their own key', () => {
  assert.equal(invalid(`  - { name: c, preset: dynamics-gp/customers, key: [CUSTNAME] }\n`).keyPath, 'tables[0].key');
  assert.match(invalid(`  - { name: c, preset: dynamics-gp/customers, entity: product }\n`).message, /tables\[0\]\.entity: set by preset dynamics-gp\/customers/);
  assert.equal(invalid(`  - { name: c, preset: dynamics-gp/customers, map: [x] }\n`).keyPath, 'tables[0].map');
  // An override is validated like any field: wrong canonical path, unknown field key, unknown top-level key.
  assert.equal(invalid(`  - { name: c, preset: dynamics-gp/customers, map: { nmae: CUSTNAME } }\n`).keyPath, 'tables[0].map.nmae');
  assert.equal(invalid(`  - { name: c, preset: dynamics-gp/customers, map: { name: { colunm: X } } }\n`).keyPath, 'tables[0].map.name.colunm');
  assert.equal(invalid(`  - { name: c, preset: dynamics-gp/customers, tabel: x }\n`).keyPath, 'tables[0].tabel');
  // strategy cursor on a preset without DEX_ROW_TS needs a cursor from the user.
  assert.equal(invalid(`  - { name: i, preset: dynamics-gp/items, strategy: cursor }\n`).keyPath, 'tables[0].cursor');
  assert.equal(invalid(`  - { name: c, preset: dynamics-gp/customers, strategy: diff, cursor: { column: DEX_ROW_ID } }\n`).keyPath, 'tables[0].cursor');
});

test('computed field options are checked: one source, subtract is decimal, timeZone is a datetime zone', () => {
  const t = (field: string) => `  - { name: q, preset: dynamics-gp/item-quantities, map: { available: ${field} } }\n`;
  assert.match(invalid(t('{ subtract: [A, B], column: C }')).message, /tables\[0\]\.map\.available: give only one of column, const, subtract or columns \(got column, subtract\)/);
  assert.equal(invalid(t('{ subtract: [A, B], type: integer }')).keyPath, 'tables[0].map.available.type');
  assert.equal(invalid(t('{ subtract: [A] }')).keyPath, 'tables[0].map.available.subtract');
  const c = (field: string) => `  - { name: c, preset: dynamics-gp/customers, map: { updatedAt: ${field} } }\n`;
  assert.match(invalid(c('{ column: DEX_ROW_TS, type: datetime, timeZone: Mars/Base }')).message, /updatedAt\.timeZone: not a known IANA time zone/);
  assert.equal(invalid(c('{ column: DEX_ROW_TS, type: date, timeZone: UTC }')).keyPath, 'tables[0].map.updatedAt.timeZone');
});

const capturedAt = new Date('2024-05-01T12:00:00.000Z');
const upsert = (row: Record<string, string | number | null>, children?: RowChange['children']): RowChange =>
  ({ op: 'upsert', key: {}, row, position: 'snapshot:1', ...(children ? { children } : {}) });

test('GP-shaped rows map exactly: trimmed keys, 1900-01-01 as null, DEX_ROW_TS in UTC, business dates as dates', () => {
  const cfg = load(ALL);
  const m = compileMapping(cfg.tables[0]!, { timeZone: cfg.source.timeZone, system: 'gp', agentId: 'a1' });
  const e = m.toEvent(upsert({
    CUSTNMBR: 'AARONFIT0001   ', CUSTNAME: 'Aaron Fitz Electrical' + ' '.repeat(44), CUSTCLAS: 'USA-ILMO-T1    ',
    CRLMTAMT: '1234.50000', PYMTRMID: ' '.repeat(21), PHONE1: '31255501010000       ', ADRSCODE: 'PRIMARY        ',
    ADDRESS1: 'One Microsoft Way' + ' '.repeat(44), ADDRESS2: ' '.repeat(61), ADDRESS3: ' '.repeat(61),
    CITY: 'Chicago ', STATE: 'IL ', ZIP: '60603-0000 ', COUNTRY: 'USA ', CNTCPRSN: ' '.repeat(61),
    INACTIVE: 0, HOLD: 1, CREATDDT: '1900-01-01 00:00:00.000', DEX_ROW_TS: '2024-03-10 08:30:00.123',
  }), capturedAt);
  assert.equal(e.key, 'AARONFIT0001');
  assert.deepEqual(e.data, {
    addresses: [{ addressId: 'PRIMARY', city: 'Chicago', country: 'USA', line1: 'One Microsoft Way', line2: null, line3: null, phone: '31255501010000', postalCode: '60603-0000', region: 'IL' }],
    contacts: [],
    createdAt: null, creditLimit: '1234.50000', customerClass: 'USA-ILMO-T1', customerId: 'AARONFIT0001',
    name: 'Aaron Fitz Electrical', paymentTerms: null, phone: '31255501010000', status: 'on_hold',
    // source.timeZone is America/Chicago; DEX_ROW_TS is UTC regardless.
    updatedAt: '2024-03-10T08:30:00.123+00:00',
  });
});

test('available is on hand minus allocated in exact decimals; a null operand gives a mapping error when required', () => {
  const cfg = load(ALL);
  const m = compileMapping(cfg.tables[2]!, { timeZone: 'UTC', system: 'gp', agentId: 'a1' });
  const row = { ITEMNMBR: '128 SDRAM' + ' '.repeat(22), LOCNCODE: 'WAREHOUSE  ', RCRDTYPE: 2, QTYONHND: '100.00000', ATYALLOC: '100.00001' };
  const e = m.toEvent({ ...upsert(row), key: { ITEMNMBR: row.ITEMNMBR, LOCNCODE: row.LOCNCODE } }, capturedAt);
  assert.equal(e.key, '128 SDRAM/WAREHOUSE');
  assert.deepEqual(e.data, { allocated: '100.00001', available: '-0.00001', onHand: '100.00000', sku: '128 SDRAM', warehouse: 'WAREHOUSE' });
  // With allocated pinned, the errors below come from the computed field itself.
  const pinned = load(`  - { name: q, preset: dynamics-gp/item-quantities, map: { allocated: { const: "0", type: decimal } } }\n`);
  const p = compileMapping(pinned.tables[0]!, { timeZone: 'UTC', system: 'gp', agentId: 'a1' });
  assert.throws(() => p.toEvent(upsert({ ...row, ATYALLOC: null }), capturedAt), (err) =>
    isDovetailError(err, 'AGENT_MAPPING') && err.context.field === 'available' && err.context.column === 'QTYONHND - ATYALLOC'
    && err.context.reason === 'required but null');
  assert.throws(() => p.toEvent(upsert({ ...row, ATYALLOC: 'lots' }), capturedAt), (err) =>
    isDovetailError(err, 'AGENT_MAPPING') && err.context.field === 'available' && err.context.reason === 'not a decimal');
  assert.throws(() => p.toEvent(upsert({ ITEMNMBR: 'X', LOCNCODE: 'Y', QTYONHND: '1' }), capturedAt), (err) =>
    isDovetailError(err, 'AGENT_MAPPING') && err.context.reason === 'column ATYALLOC not in row');
});

test('status crosswalk over INACTIVE and HOLD: inactive wins', () => {
  const cfg = load(`  - name: c\n    preset: dynamics-gp/customers\n    map:\n      addresses[0].line1: null\n`);
  const m = compileMapping(cfg.tables[0]!, { timeZone: 'UTC', system: 'gp', agentId: 'a1' });
  const status = (INACTIVE: number, HOLD: number) => (m.toEvent(upsert({
    CUSTNMBR: 'C1 ', CUSTNAME: 'C ', CUSTCLAS: '', CRLMTAMT: '0.00000', PYMTRMID: '', PHONE1: '', ADRSCODE: '', ADDRESS2: '', ADDRESS3: '',
    CITY: '', STATE: '', ZIP: '', COUNTRY: '', CNTCPRSN: '', INACTIVE, HOLD, CREATDDT: '2020-01-31 00:00:00', DEX_ROW_TS: '2024-01-01 00:00:00',
  }), capturedAt).data as { status: string }).status;
  assert.deepEqual([status(0, 0), status(0, 1), status(1, 0), status(1, 1)], ['active', 'on_hold', 'inactive', 'inactive']);
});

test('subtractDecimal is exact and keeps the larger scale', () => {
  assert.equal(subtractDecimal('100.00000', '25.5'), '74.50000');
  assert.equal(subtractDecimal('0.00000', '0.00001'), '-0.00001');
  assert.equal(subtractDecimal('-0.00001', '-0.00001'), '0.00000');
  assert.equal(subtractDecimal('99999999999999.99999', '-99999999999999.99999'), '199999999999999.99998');
  assert.equal(subtractDecimal('0.3', '0.1'), '0.2', 'no binary float on the way');
  assert.equal(subtractDecimal('5', '7'), '-2');
  assert.equal(subtractDecimal('1.5E+3', '.5'), '1499.5');
  assert.throws(() => subtractDecimal('1', 'x'), TypeError);
});

test('examples/dynamics-gp/agent.yaml loads: presets with schema-qualified tables and a field override', () => {
  const dir = tempDir('dovetail-gp-example-');
  writeFileSync(join(dir, 'gp-password.txt'), 's3cret\n');
  const text = readFileSync(join(REPO, 'examples', 'dynamics-gp', 'agent.yaml'), 'utf8');
  const cfg = parseAgentConfig(text, join(dir, 'agent.yaml'), { DOVETAIL_HUB_URL: 'https://hub.example.com', GP_CONNECTION: 'Server=gp;Database=TWO;User Id=ro' });
  assert.deepEqual(cfg.tables.map((t) => [t.name, t.table, t.entity, t.strategy]), [
    ['customers', 'dbo.RM00101', 'customer', 'cursor'],
    ['items', 'dbo.IV00101', 'product', 'diff'],
    ['stock', 'dbo.IV00102', 'inventory_level', 'diff'],
    ['sales-history', 'dbo.SOP30200', 'sales_order', 'cursor'],
  ]);
  assert.equal(cfg.tables[1]!.map.standardCost!.column, 'CURRCOST');
  assert.equal(cfg.tables[2]!.where, '[RCRDTYPE] = 2');
  assert.equal(cfg.tables[3]!.children.lines!.table, 'dbo.SOP30300');
});
