import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDovetailError } from '@dovetail/shared';
import { loadAgentConfig, parseAgentConfig, describeConfigError } from '../../agent/src/config/load.ts';
import { tempDir } from '../helpers/paths.ts';

const BASE = `
agent:
  name: acme-erp
  dataDir: ./agent-data
hub:
  url: http://127.0.0.1:8700
source:
  type: postgres
  system: erp
  url: postgres://erp@127.0.0.1:5432/erp
  timeZone: America/Chicago
tables:
  - name: customers
    table: public.customers
    key: [customer_id]
    entity: customer
    strategy: cursor
    cursor: { column: updated_at }
    schedule: { every: 5s }
    map:
      customerId: { column: customer_id, type: code }
      name: company_name
      creditLimit: { column: credit_limit, type: decimal }
      status: { column: status_code, crosswalk: { A: active, H: on_hold } }
      addresses[0].line1: address
`;

function invalid(yaml: string, env: Record<string, string | undefined> = {}): { message: string; keyPath: unknown } {
  try {
    parseAgentConfig(yaml, '/etc/dovetail/agent.yaml', env);
  } catch (err) {
    assert.ok(isDovetailError(err, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(err)}`);
    return { message: err.message, keyPath: err.context.keyPath };
  }
  assert.fail('expected CONFIG_INVALID');
}

test('a valid config compiles with defaults, units and absolute dataDir', () => {
  const cfg = parseAgentConfig(BASE, '/etc/dovetail/agent.yaml', {});
  assert.equal(cfg.configPath, '/etc/dovetail/agent.yaml');
  assert.equal(cfg.agent.dataDir, '/etc/dovetail/agent-data');
  assert.equal(cfg.agent.logLevel, 'info');
  assert.deepEqual(cfg.hub, {
    url: 'http://127.0.0.1:8700', maxInFlightBatches: 32, maxBatchEvents: 500, maxBatchBytes: 1048576,
    reconnectInitialMs: 500, reconnectMaxMs: 30000, heartbeatMs: 15000,
  });
  assert.equal(cfg.source.maxConnections, 4);
  assert.equal(cfg.source.queryTimeoutMs, 30000);
  const t = cfg.tables[0]!;
  assert.deepEqual(t.schedule, { everyMs: 5000 });
  assert.deepEqual(t.cursor, { column: 'updated_at', type: 'timestamp', overlapMs: 5000, overlapUnits: 0 });
  assert.equal(t.pageSize, 5000);
  assert.equal(t.onGap, 'resnapshot');
  assert.deepEqual(t.key, ['customer_id']);
  assert.deepEqual(t.map['name'], { column: 'company_name', type: 'string', trim: false, required: false });
  assert.deepEqual(t.map['customerId'], { column: 'customer_id', type: 'code', trim: true, required: false });
  assert.deepEqual(t.children, {});
});

test('the compiled config is deeply frozen', () => {
  const cfg = parseAgentConfig(BASE, 'agent.yaml', {});
  assert.ok(Object.isFrozen(cfg));
  assert.ok(Object.isFrozen(cfg.tables[0]!.map['status']!.crosswalk));
  assert.throws(() => { (cfg.hub as { maxBatchEvents: number }).maxBatchEvents = 1; }, TypeError);
});

test('durations: 500ms, 2m, 1h; cron accepted', () => {
  for (const [every, ms] of [['500ms', 500], ['2m', 120000], ['1h', 3600000]] as const) {
    const cfg = parseAgentConfig(BASE.replace('every: 5s', `every: ${every}`), 'agent.yaml', {});
    assert.deepEqual(cfg.tables[0]!.schedule, { everyMs: ms });
  }
  const cfg = parseAgentConfig(BASE.replace('{ every: 5s }', '{ cron: "*/5 * * * *" }'), 'agent.yaml', {});
  assert.deepEqual(cfg.tables[0]!.schedule, { cron: '*/5 * * * *' });
});

test('bad strategy names the key path and the allowed values', () => {
  const e = invalid(BASE.replace('strategy: cursor', 'strategy: curser'));
  assert.equal(e.message, '/etc/dovetail/agent.yaml: tables[0].strategy: must be one of cursor, diff, mssql-ct, mssql-cdc (got "curser")');
  assert.equal(e.keyPath, 'tables[0].strategy');
});

test('missing cursor column is "required" at its path', () => {
  const e = invalid(BASE.replace('cursor: { column: updated_at }', 'cursor: { overlapMs: 100 }'));
  assert.equal(e.message, '/etc/dovetail/agent.yaml: tables[0].cursor.column: required');
});

test('strategy cursor without a cursor block', () => {
  const e = invalid(BASE.replace('    cursor: { column: updated_at }\n', ''));
  assert.equal(e.message, '/etc/dovetail/agent.yaml: tables[0].cursor: required when strategy is cursor');
});

test('unknown key tabels is rejected by name', () => {
  const e = invalid(BASE.replace('tables:', 'tabels:'));
  assert.equal(e.message, '/etc/dovetail/agent.yaml: tabels: unknown key');
});

test('bad time zone', () => {
  const e = invalid(BASE.replace('America/Chicago', 'America/Chicagoo'));
  assert.equal(e.message, '/etc/dovetail/agent.yaml: source.timeZone: not a known IANA time zone (got "America/Chicagoo")');
});

test('bad cron and bad duration', () => {
  let e = invalid(BASE.replace('{ every: 5s }', '{ cron: "61 * * * *" }'));
  assert.equal(e.message, '/etc/dovetail/agent.yaml: tables[0].schedule.cron: not a valid cron expression (got "61 * * * *")');
  e = invalid(BASE.replace('{ every: 5s }', '{ every: 5 seconds }'));
  assert.equal(e.message, '/etc/dovetail/agent.yaml: tables[0].schedule.every: must be a duration like "500ms", "5s", "2m" or "1h" (got "5 seconds")');
});

test('env substitution and a missing env var naming the key', () => {
  const yaml = BASE.replace('url: postgres://erp@127.0.0.1:5432/erp', 'url: "${env:ERP_URL}"');
  const cfg = parseAgentConfig(yaml, 'agent.yaml', { ERP_URL: 'postgres://erp@db:5432/erp' });
  assert.equal(cfg.source.url, 'postgres://erp@db:5432/erp');
  const e = invalid(yaml, {});
  assert.equal(e.message, '/etc/dovetail/agent.yaml: source.url: environment variable ERP_URL is not set');
});

test('password from env is merged into the URL; passwordFile is read relative to the config', () => {
  const withPw = BASE.replace('  timeZone:', '  password: "${env:PGPASS}"\n  timeZone:');
  const cfg = parseAgentConfig(withPw, 'agent.yaml', { PGPASS: 'p@ss:w/rd' });
  assert.equal(cfg.source.url, 'postgres://erp:p%40ss%3Aw%2Frd@127.0.0.1:5432/erp');

  const dir = tempDir();
  writeFileSync(join(dir, 'pw.txt'), 's3cret}x\n');
  const odbc = BASE.replace('type: postgres', 'type: odbc')
    .replace('url: postgres://erp@127.0.0.1:5432/erp', 'connectionString: "DSN=erp;UID=sa"\n  passwordFile: pw.txt');
  const cfg2 = parseAgentConfig(odbc, join(dir, 'agent.yaml'), {});
  assert.equal(cfg2.source.url, 'DSN=erp;UID=sa;PWD={s3cret}}x}');

  const e = invalid(odbc);
  assert.match(e.message, /^\/etc\/dovetail\/agent\.yaml: source\.passwordFile: cannot read \/etc\/dovetail\/pw\.txt \(ENOENT\)$/);
});

test('cross-field checks: duplicate names, unknown entity, bad canonical path, unmapped required field', () => {
  const dup = BASE + BASE.slice(BASE.indexOf('  - name: customers')).replace('strategy: cursor', 'strategy: diff').replace('    cursor: { column: updated_at }\n', '');
  assert.equal(invalid(dup).message, '/etc/dovetail/agent.yaml: tables[1].name: duplicate table name "customers" (also tables[0])');
  assert.match(invalid(BASE.replace('entity: customer', 'entity: customr')).message,
    /^\/etc\/dovetail\/agent\.yaml: tables\[0\]\.entity: must be one of customer, product, .* \(got "customr"\)$/);
  assert.match(invalid(BASE.replace('addresses[0].line1', 'addresses[0].lin1')).message,
    /^\/etc\/dovetail\/agent\.yaml: tables\[0\]\.map\.addresses\[0\]\.lin1: not a field of addresses\[0\] \(it has: addressId, type, name, line1/);
  assert.equal(invalid(BASE.replace('      name: company_name\n', '')).message,
    '/etc/dovetail/agent.yaml: tables[0].map: customer requires name (not mapped)');
  assert.equal(invalid(BASE.replace('key: [customer_id]', 'key: []')).message,
    '/etc/dovetail/agent.yaml: tables[0].key: must have at least 1 item(s)');
});

test('field long form: column or const, not both; decimal constants must be quoted', () => {
  assert.equal(invalid(BASE.replace('name: company_name', 'name: { column: a, const: b }')).message,
    '/etc/dovetail/agent.yaml: tables[0].map.name: give either column or const, not both');
  assert.equal(invalid(BASE.replace('name: company_name', 'name: { column: a, typ: string }')).message,
    '/etc/dovetail/agent.yaml: tables[0].map.name.typ: unknown key');
  assert.equal(invalid(BASE.replace('creditLimit: { column: credit_limit, type: decimal }', 'creditLimit: { const: 1.5, type: decimal }')).message,
    '/etc/dovetail/agent.yaml: tables[0].map.creditLimit.const: quote decimal constants ("1.5") so no digits are lost');
});

test('keyTemplate placeholders must be mapped from key columns', () => {
  assert.equal(invalid(BASE.replace('    map:\n', '    keyTemplate: "{name}"\n    map:\n')).message,
    '/etc/dovetail/agent.yaml: tables[0].keyTemplate: {name} maps column company_name, which is not in key [customer_id]');
});

test('several problems are all listed, one per line', () => {
  const e = invalid(BASE.replace('strategy: cursor', 'strategy: curser').replace('America/Chicago', 'Mars/Olympus'));
  assert.equal(e.message.split('\n').length, 1, 'schema errors stop before cross-field checks');
  const e2 = invalid(BASE.replace('America/Chicago', 'Mars/Olympus').replace('addresses[0].line1', 'addresses[0].lin1'));
  assert.equal(e2.message.split('\n').length, 2);
});

test('YAML syntax error is CONFIG_PARSE with line and column', () => {
  try {
    parseAgentConfig('agent:\n  name: x\n   bad: [1\n', 'agent.yaml', {});
    assert.fail('expected CONFIG_PARSE');
  } catch (err) {
    assert.ok(isDovetailError(err, 'CONFIG_PARSE'), String(err));
    assert.match(err.message, /^agent\.yaml:\d+:\d+: /);
    assert.equal(typeof err.context.line, 'number');
  }
});

test('missing file is CONFIG_NOT_FOUND; a file on disk loads', async () => {
  const dir = tempDir();
  await assert.rejects(loadAgentConfig(join(dir, 'nope.yaml')), (err: unknown) => isDovetailError(err, 'CONFIG_NOT_FOUND'));
  writeFileSync(join(dir, 'agent.yaml'), BASE);
  const cfg = await loadAgentConfig(join(dir, 'agent.yaml'), { env: {} });
  assert.equal(cfg.agent.dataDir, join(dir, 'agent-data'));
  assert.equal(describeConfigError(new Error('x')), 'x');
});

test('children: into must be a list of the entity, child maps are checked, parentKey matches key', () => {
  const orders = (children: string) => BASE.replace(/tables:[\s\S]*$/, `tables:
  - name: orders
    table: public.orders
    key: [order_id]
    entity: sales_order
    strategy: diff
    map:
      orderNumber: order_id
      customerId: customer_id
      orderDate: { column: order_date, type: date }
    children:
      lines:
${children}`);
  const ok = `        table: public.order_details
        parentKey: [order_id]
        into: lines
        map: { lineNumber: line_no, sku: product_id, quantity: { column: qty, type: decimal }, unitPrice: { column: price, type: decimal } }
`;
  const cfg = parseAgentConfig(orders(ok), 'agent.yaml', {});
  assert.deepEqual(cfg.tables[0]!.children['lines']!.parentKey, ['order_id']);
  assert.deepEqual(cfg.tables[0]!.children['lines']!.orderBy, []);
  assert.equal(invalid(orders(ok.replace('into: lines', 'into: status'))).message,
    '/etc/dovetail/agent.yaml: tables[0].children.lines.into: must be a list field of sales_order (got "status")');
  assert.equal(invalid(orders(ok.replace('sku: product_id, ', ''))).message,
    '/etc/dovetail/agent.yaml: tables[0].children.lines.map: lines items require sku (not mapped)');
  assert.equal(invalid(orders(ok.replace('parentKey: [order_id]', 'parentKey: [order_id, x]'))).message,
    '/etc/dovetail/agent.yaml: tables[0].children.lines.parentKey: must list 1 column(s), matching key [order_id] in order');
});
