/**
 * The Northwind example (examples/northwind/agent.yaml) end to end with real processes
 * against the real PostgreSQL: a fresh database loaded from the sample dump, hub and
 * agent as child processes, a signature-checking webhook receiver. The initial snapshot
 * arrives complete, then each change (customer update, new order with 2 lines, stock
 * change, customer delete, order delete) reaches the receiver exactly once with the
 * values the database prints.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { DATA, REPO, kitMissing } from '../helpers/paths.ts';
import { PG, service } from '../helpers/services.ts';
import {
  Harness, freePort, hubStatus, startRecorder, waitDelivered, waitFor, type Arrival, type HubInstance, type Proc, type Recorder,
} from '../helpers/procs.ts';
import { newWebhookSecret } from '../../demo/receiver.ts';

const skip = kitMissing() ?? await service('PostgreSQL', PG.host, PG.port);
const DB = `dovetail_nw_${process.pid}_${Date.now().toString(36)}`;
const dbUrl = (db: string) => `postgres://${PG.user}@${PG.host}:${PG.port}/${db}`;

let h: Harness;
let hub: HubInstance;
let agent: Proc;
let rec: Recorder;
let erp: pg.Client;
let created = false;
let snapshotCount = 0;

async function q<T extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  return (await erp.query<T>(sql, params)).rows;
}

before(async () => {
  if (skip) return;
  const admin = new pg.Client({ connectionString: dbUrl('postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${DB}`);
  created = true;
  await admin.end();
  erp = new pg.Client({ connectionString: dbUrl(DB) });
  await erp.connect();
  // The dump is plain SQL; one simple-protocol query runs all of its statements.
  await erp.query(readFileSync(join(DATA, 'northwind-postgres', 'northwind.sql'), 'utf8'));

  h = new Harness('dovetail-northwind-');
  const secret = newWebhookSecret();
  rec = await startRecorder(secret);
  const port = await freePort();
  const hubData = h.path('hub-data');
  const hubConfig = h.writeHubConfig({ port, dataDir: hubData, webhooks: [{ name: 'crm', url: rec.url, secret }] });
  hub = await h.startHub(hubConfig, port, hubData);

  // The example as shipped, with short schedules so the test runs in seconds.
  const example = readFileSync(join(REPO, 'examples', 'northwind', 'agent.yaml'), 'utf8');
  assert.match(example, /every: 5s/);
  const agentConfig = h.write('agent.yaml', example.replaceAll('every: 5s', 'every: 500ms'));
  const env = { NORTHWIND_URL: dbUrl(DB), DOVETAIL_HUB_URL: hub.url };
  await h.enrollAgent(hubData, agentConfig, 'northwind', { env });
  agent = h.startAgent(agentConfig, { env });
});

after(async () => {
  await h?.cleanup();
  await rec?.close();
  await erp?.end().catch(() => undefined);
  if (created) {
    const admin = new pg.Client({ connectionString: dbUrl('postgres') });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
    await admin.end();
  }
});

const only = (xs: Arrival[], entity: string, key: string) => xs.filter((a) => a.event.entity === entity && a.event.key === key);

test('initial snapshot: every customer, product, stock level and order arrives once', { skip, timeout: 60_000 }, async () => {
  const [counts] = await q<{ c: string; p: string; o: string }>(
    'SELECT (SELECT count(*) FROM customers) c, (SELECT count(*) FROM products) p, (SELECT count(*) FROM orders) o');
  const expected = { customer: Number(counts!.c), product: Number(counts!.p), inventory_level: Number(counts!.p), sales_order: Number(counts!.o) };
  assert.deepEqual(expected, { customer: 91, product: 77, inventory_level: 77, sales_order: 830 });
  snapshotCount = 91 + 77 + 77 + 830;
  await waitFor(`${snapshotCount} snapshot deliveries`, () => rec.arrivals.length >= snapshotCount || undefined, { timeoutMs: 45_000, intervalMs: 100 })
    .catch((err) => { throw new Error(`${(err as Error).message}\n${h.logText('agent')}`); });
  await waitDelivered(hub, snapshotCount);

  const byEntity: Record<string, Set<string>> = {};
  for (const a of rec.arrivals) (byEntity[a.event.entity] ??= new Set()).add(a.event.key);
  assert.deepEqual(Object.fromEntries(Object.entries(byEntity).map(([e, s]) => [e, s.size])), expected);
  assert.equal(rec.arrivals.length, snapshotCount, 'no key arrived twice');
  assert.equal(rec.rejected, 0);

  // Exact values: the price text PostgreSQL prints for the real column, not a float rendering.
  const [p1] = await q<{ unit_price: string; units_in_stock: number; units_on_order: number; product_name: string }>(
    'SELECT unit_price::text, units_in_stock, units_on_order, product_name FROM products WHERE product_id = 1');
  const product1 = only(rec.arrivals, 'product', '1')[0]!.event.data!;
  assert.equal(product1.listPrice, p1!.unit_price);
  assert.equal(product1.listPrice, '18');
  assert.equal(product1.description, p1!.product_name);
  assert.deepEqual(only(rec.arrivals, 'inventory_level', '1/MAIN')[0]!.event.data, {
    sku: '1', warehouse: 'MAIN', onHand: String(p1!.units_in_stock), allocated: '0', available: String(p1!.units_in_stock),
    onOrder: String(p1!.units_on_order), uom: 'EA',
  });
  const order = only(rec.arrivals, 'sales_order', '10248')[0]!.event.data!;
  const lines = await q<{ product_id: number; quantity: number; unit_price: string; discount: string }>(
    'SELECT product_id, quantity, unit_price::text, discount::text FROM order_details WHERE order_id = 10248 ORDER BY product_id');
  assert.deepEqual(order.lines, lines.map((l) => ({
    lineNumber: String(l.product_id), sku: String(l.product_id), quantity: String(l.quantity), unitPrice: l.unit_price, discount: l.discount,
  })));
  assert.equal(order.customerId, 'VINET');
  assert.equal(order.orderDate, '1996-07-04');
  assert.equal(order.freight, '32.38');
  const alfki = only(rec.arrivals, 'customer', 'ALFKI')[0]!.event.data!;
  assert.equal(alfki.name, 'Alfreds Futterkiste');
  assert.deepEqual(alfki.contacts, [{ name: 'Maria Anders', title: 'Sales Representative', phone: '030-0074321' }]);
  assert.equal((alfki.addresses as Record<string, unknown>[])[0]!.line1, 'Obere Str. 57');
});

test('changes: update, new order with 2 lines, stock change, deletes arrive exactly once with exact values', { skip, timeout: 60_000 }, async (t) => {
  assert.ok(snapshotCount > 0, 'the snapshot test ran first');
  const mark = rec.arrivals.length;
  await erp.query(`UPDATE customers SET company_name = 'Alfreds Futterkiste GmbH', phone = '030-0074399' WHERE customer_id = 'ALFKI'`);
  await erp.query(`BEGIN;
    INSERT INTO orders (order_id, customer_id, employee_id, order_date, required_date, ship_via, freight, ship_name, ship_address, ship_city, ship_postal_code, ship_country)
      VALUES (11078, 'ALFKI', 5, '2024-03-01', '2024-03-15', 2, 12.5, 'Alfreds Futterkiste', 'Obere Str. 57', 'Berlin', '12209', 'Germany');
    INSERT INTO order_details VALUES (11078, 1, 18, 3, 0), (11078, 2, 19.5, 5, 0.05);
    COMMIT`);
  await erp.query('UPDATE products SET units_in_stock = 50 WHERE product_id = 3');
  await erp.query(`DELETE FROM customers WHERE customer_id = 'FISSA'`);
  await erp.query('BEGIN; DELETE FROM order_details WHERE order_id = 10249; DELETE FROM orders WHERE order_id = 10249; COMMIT');

  const want: [string, string][] = [['customer', 'ALFKI'], ['sales_order', '11078'], ['inventory_level', '3/MAIN'], ['customer', 'FISSA'], ['sales_order', '10249']];
  await waitFor('an event for every change', () => want.every(([e, k]) => only(rec.arrivals.slice(mark), e, k).length > 0) || undefined, { timeoutMs: 30_000, intervalMs: 100 });
  // Settle: nothing more may come. The agent polls every 500 ms; wait until the hub log
  // has been still for 3 polls of every table and every event was delivered.
  let last = -1;
  let stillSince = Date.now();
  await waitFor('the hub log to settle', async () => {
    const s = await hubStatus(hub);
    if (s.eventsStored !== last) { last = s.eventsStored; stillSince = Date.now(); }
    return Date.now() - stillSince > 1500 && s.destinations.every((d) => d.pending === 0 && d.inFlight === 0) ? true : undefined;
  }, { timeoutMs: 20_000, intervalMs: 100 });

  const news = rec.arrivals.slice(mark);
  for (const [e, k] of want) assert.equal(only(news, e, k).length, 1, `${e} ${k} arrived exactly once: ${JSON.stringify(only(news, e, k))}`);

  const alfki = only(news, 'customer', 'ALFKI')[0]!.event;
  assert.equal(alfki.op, 'upsert');
  assert.equal(alfki.data!.name, 'Alfreds Futterkiste GmbH');
  assert.equal(alfki.data!.phone, '030-0074399');

  const order = only(news, 'sales_order', '11078')[0]!.event;
  assert.equal(order.op, 'upsert');
  const lines = await q<{ unit_price: string; discount: string }>('SELECT unit_price::text, discount::text FROM order_details WHERE order_id = 11078 ORDER BY product_id');
  assert.deepEqual(lines.map((l) => [l.unit_price, l.discount]), [['18', '0'], ['19.5', '0.05']]);
  assert.deepEqual(order.data, {
    orderNumber: '11078', customerId: 'ALFKI', orderDate: '2024-03-01', requestedDate: '2024-03-15', shippedDate: null,
    freight: '12.5', currency: 'USD',
    shipTo: { name: 'Alfreds Futterkiste', line1: 'Obere Str. 57', city: 'Berlin', region: null, postalCode: '12209', country: 'Germany' },
    extra: { employeeId: '5', shipVia: '2' },
    lines: [
      { lineNumber: '1', sku: '1', quantity: '3', unitPrice: '18', discount: '0' },
      { lineNumber: '2', sku: '2', quantity: '5', unitPrice: '19.5', discount: '0.05' },
    ],
  });

  const stock = only(news, 'inventory_level', '3/MAIN')[0]!.event;
  assert.equal(stock.op, 'upsert');
  assert.equal(stock.data!.onHand, '50');
  assert.equal(stock.data!.available, '50');

  const fissa = only(news, 'customer', 'FISSA')[0]!.event;
  assert.equal(fissa.op, 'delete');
  const gone = only(news, 'sales_order', '10249')[0]!.event;
  assert.equal(gone.op, 'delete');

  // Nothing else changed, so nothing else may arrive.
  const others = news.filter((a) => !want.some(([e, k]) => a.event.entity === e && a.event.key === k));
  assert.deepEqual(others.map((a) => `${a.event.entity}:${a.event.key}`), []);
  assert.equal(rec.rejected, 0);

  await t.test('a stock change does not re-send the unchanged product', () => {
    assert.equal(only(news, 'product', '3').length, 0, JSON.stringify(only(news, 'product', '3').map((a) => a.event.data)));
  });
  assert.ok(agent.alive(), `agent still running\n${h.logText('agent')}`);
});
