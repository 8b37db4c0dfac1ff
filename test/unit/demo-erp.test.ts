import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startErp, naiveAt } from '../../demo/erp.ts';
import { Simulator } from '../../demo/simulator.ts';

test('demo ERP: the pg driver reads it over the socket while the simulator writes', async (t) => {
  const fixed = new Date('2024-07-01T15:04:05.678Z');
  const erp = await startErp({ seed: 1, now: () => fixed });
  t.after(() => erp.close());
  const client = new pg.Client({ connectionString: erp.url });
  await client.connect();
  t.after(() => client.end());

  const seedCount = await client.query('SELECT count(*)::int AS n FROM arcust');
  assert.equal(seedCount.rows[0].n, 40);
  const padded = await client.query(`SELECT cust_no, credit_limit, upd_dt::text AS upd FROM arcust WHERE cust_no = $1`, ['C00001']);
  assert.equal(padded.rows[0].cust_no, 'C00001      ', 'cust_no is CHAR(12), padded');
  assert.match(padded.rows[0].credit_limit, /^\d+\.00000$/, 'numeric(19,5) arrives as exact text');
  assert.equal(padded.rows[0].upd, '2024-06-30 10:04:05', 'seed rows: one day before now, naive Chicago time');

  const sim = new Simulator(erp, { seed: 3, now: () => fixed, deleteCustomerAt: 5 });
  // Interleave socket queries (extended protocol, parameterised) with in-process writes.
  let writing = true;
  let reads = 0;
  const reader = (async () => {
    while (writing) {
      const r = await client.query('SELECT count(*)::int AS n FROM oelin WHERE qty >= $1', ['1']);
      assert.ok(r.rows[0].n > 0);
      reads++;
    }
  })();
  for (let i = 0; i < 30; i++) await sim.step();
  writing = false;
  await reader;
  assert.ok(reads > 0, 'the reader ran between the writes');
  const s = sim.stats();
  assert.equal(s.changes, 30);
  assert.equal(s.byKind.delete_customer, 1);
  assert.ok(s.deletedCustomer);
  const gone = await client.query('SELECT count(*)::int AS n FROM arcust WHERE cust_no = $1', [s.deletedCustomer]);
  assert.equal(gone.rows[0].n, 0, 'the deleted customer is gone');
  const latest = await client.query(`SELECT max(upd_dt)::text AS m FROM oehdr`);
  assert.equal(latest.rows[0].m, naiveAt(fixed, 'America/Chicago'), 'changed orders carry the ERP clock, naive Chicago time');
  assert.equal(latest.rows[0].m, '2024-07-01 10:04:05');
  const avail = await client.query(`SELECT count(*)::int AS n FROM icloc WHERE qty_avail <> qty_on_hand - qty_alloc`);
  assert.equal(avail.rows[0].n, 0);
});

test('demo ERP: writes wait while the socket client holds a transaction open', async (t) => {
  const erp = await startErp({ seed: 2, customers: 5, items: 5, orders: 2 });
  t.after(() => erp.close());
  const client = new pg.Client({ connectionString: erp.url });
  await client.connect();
  t.after(() => client.end());
  await client.query('BEGIN');
  await client.query(`SELECT 1`);
  let wrote = false;
  const w = erp.write(`UPDATE arcust SET city = 'Waco' WHERE cust_no = 'C00001'`).then(() => { wrote = true; });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(wrote, false, 'the write must not join the agent transaction');
  await client.query('ROLLBACK');
  await w;
  const r = await client.query(`SELECT rtrim(city) AS city FROM arcust WHERE cust_no = 'C00001'`);
  assert.equal(r.rows[0].city, 'Waco', 'the write survived the agent rollback');
});

test('naiveAt: wall time in the zone, whole seconds', () => {
  assert.equal(naiveAt(new Date('2024-01-15T06:30:59.900Z'), 'America/Chicago'), '2024-01-15 00:30:59');
  assert.equal(naiveAt(new Date('2024-07-15T06:30:59.900Z'), 'America/Chicago'), '2024-07-15 01:30:59');
});
