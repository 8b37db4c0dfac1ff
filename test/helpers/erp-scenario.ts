/**
 * The fault-test scenario: the demo's embedded ERP (PGlite over a socket, in this
 * process) with a few thousand rows, the demo's simulator as the writer, the demo's
 * receiver as the webhook consumer, and hub + agent as real child processes.
 *
 * Every table uses the `diff` strategy here: its committed per-row hashes make the
 * exactly-once check strict (a change is stored once, or the same op+data shows up
 * twice in a row for a key), whereas a cursor strategy may legitimately re-send a row
 * read by both its snapshot and its first streaming sweep.
 */
import { readFileSync } from 'node:fs';
import { startErp, type Erp } from '../../demo/erp.ts';
import { Simulator } from '../../demo/simulator.ts';
import { newWebhookSecret, startReceiver, type Receiver } from '../../demo/receiver.ts';
import { compareStates, expectedFromErp, type Comparison } from '../../demo/compare.ts';
import { KEY_TEMPLATES } from '../../demo/config.ts';
import {
  Harness, checkExactlyOnce, freePort, hubStatus, readHubLog, waitFor, type ExactlyOnceReport, type HubInstance, type Proc,
} from './procs.ts';

export interface ScenarioOptions {
  seed: number;
  customers?: number;
  items?: number;
  orders?: number;
  /** Poll interval of every table, e.g. "400ms". */
  every?: string;
  pageSize?: number;
  maxBatchEvents?: number;
}

export function diffAgentYaml(o: { erpUrl: string; hubUrl: string; dataDir: string; timeZone: string; every: string; pageSize: number; maxBatchEvents: number }): string {
  const common = `    strategy: diff\n    schedule: { every: ${o.every} }\n    pageSize: ${o.pageSize}`;
  return `agent:
  name: fault-test
  dataDir: ${JSON.stringify(o.dataDir)}
  logLevel: info
hub:
  url: ${JSON.stringify(o.hubUrl)}
  maxBatchEvents: ${o.maxBatchEvents}
  reconnectInitialMs: 100
  reconnectMaxMs: 1000
  heartbeatMs: 1000
source:
  type: postgres
  system: demo-erp
  url: ${JSON.stringify(o.erpUrl)}
  timeZone: ${o.timeZone}
  maxConnections: 1
tables:
  - name: customers
    table: public.arcust
    key: [cust_no]
    entity: customer
${common}
    keyTemplate: "${KEY_TEMPLATES.customer}"
    map:
      customerId: { column: cust_no, type: code }
      name: { column: name, type: string, trim: true }
      status: { column: status, type: code, crosswalk: { A: active, H: on_hold, I: inactive } }
      creditLimit: { column: credit_limit, type: decimal }
      addresses[0].line1: { column: addr1, type: string, trim: true }
      addresses[0].line2: { column: addr2, type: string, trim: true, nullIf: [""] }
      addresses[0].city: { column: city, type: string, trim: true }
      addresses[0].region: { column: state, type: code }
      addresses[0].postalCode: { column: zip, type: code }
      updatedAt: { column: upd_dt, type: datetime }
  - name: items
    table: public.icitem
    key: [item_no]
    entity: product
${common}
    keyTemplate: "${KEY_TEMPLATES.product}"
    map:
      sku: { column: item_no, type: code }
      description: { column: descr, type: string, trim: true }
      uom.base: { column: uom, type: code }
      listPrice: { column: list_price, type: decimal }
      updatedAt: { column: upd_dt, type: datetime }
  - name: stock
    table: public.icloc
    key: [item_no, whse]
    entity: inventory_level
${common}
    keyTemplate: "${KEY_TEMPLATES.inventory_level}"
    map:
      sku: { column: item_no, type: code }
      warehouse: { column: whse, type: code }
      onHand: { column: qty_on_hand, type: decimal }
      allocated: { column: qty_alloc, type: decimal }
      available: { column: qty_avail, type: decimal }
  - name: orders
    table: public.oehdr
    key: [ord_no]
    entity: sales_order
${common}
    keyTemplate: "${KEY_TEMPLATES.sales_order}"
    map:
      orderNumber: { column: ord_no, type: code }
      customerId: { column: cust_no, type: code }
      status: { column: status, type: code, crosswalk: { O: open, S: shipped } }
      orderDate: { column: ord_dt, type: datetime }
      updatedAt: { column: upd_dt, type: datetime }
    children:
      lines:
        table: public.oelin
        parentKey: [ord_no]
        orderBy: [line_no]
        into: lines
        map:
          lineNumber: { column: line_no, type: code }
          sku: { column: item_no, type: code }
          quantity: { column: qty, type: decimal }
          unitPrice: { column: unit_price, type: decimal }
`;
}

export interface Scenario {
  h: Harness;
  erp: Erp;
  sim: Simulator;
  receiver: Receiver;
  hub: HubInstance;
  hubConfig: string;
  hubPort: number;
  hubDataDir: string;
  agentConfig: string;
  agentDataDir: string;
  agentId: string;
  /** Rows in the ERP at the start (one event each in the snapshot). */
  seedRecords: number;
  startAgent(): Promise<Proc>;
  startHub(): Promise<HubInstance>;
  /** Receiver state vs the ERP now. */
  compare(): Promise<Comparison>;
  /** Waits until the receiver holds exactly the ERP's state, then for the hub log to stop growing. */
  converge(timeoutMs: number): Promise<void>;
  /** Stops agent and hub (SIGTERM) and checks the hub log. */
  finish(agent: Proc): Promise<ExactlyOnceReport>;
  cleanup(): Promise<void>;
}

export async function startScenario(opts: ScenarioOptions): Promise<Scenario> {
  const h = new Harness('dovetail-fault-');
  const erp = await startErp({ seed: opts.seed, customers: opts.customers ?? 1000, items: opts.items ?? 300, orders: opts.orders ?? 250 });
  // The one customer delete comes after the snapshot has started, so it travels as a delete event.
  const sim = new Simulator(erp, { seed: opts.seed + 1, deleteCustomerAt: 60 });
  const secret = newWebhookSecret();
  const receiver = await startReceiver({ secret });
  const hubPort = await freePort();
  const hubDataDir = h.path('hub-data');
  const agentDataDir = h.path('agent-data');
  const hubConfig = h.writeHubConfig({ port: hubPort, dataDir: hubDataDir, webhooks: [{ name: 'crm', url: receiver.url, secret, concurrency: 16 }] });
  let hub = await h.startHub(hubConfig, hubPort, hubDataDir);
  const agentConfig = h.write('agent.yaml', diffAgentYaml({
    erpUrl: erp.url, hubUrl: hub.url, dataDir: agentDataDir, timeZone: erp.timeZone,
    every: opts.every ?? '400ms', pageSize: opts.pageSize ?? 500, maxBatchEvents: opts.maxBatchEvents ?? 200,
  }));
  const { agentId } = await h.enrollAgent(hubDataDir, agentConfig, 'fault-test');
  const s = erp.seedData;
  const seedRecords = s.customers.length + s.items.length + s.stock.length + s.orders.length;

  const sc: Scenario = {
    h, erp, sim, receiver, hubConfig, hubPort, hubDataDir, agentConfig, agentDataDir, agentId, seedRecords,
    get hub() { return hub; },
    async startAgent() {
      const proc = h.startAgent(agentConfig);
      // "agent running" is logged once the outbox is open and capture is scheduled.
      await waitFor('agent logs "agent running"', () => {
        if (!proc.alive()) throw new Error(`agent exited:\n${h.logText('agent')}`);
        return readFileSync(proc.outPath, 'utf8').includes('"agent running"') || undefined;
      }, { timeoutMs: 30_000, intervalMs: 25 });
      return proc;
    },
    async startHub() {
      hub = await h.startHub(hubConfig, hubPort, hubDataDir);
      return hub;
    },
    async compare() {
      return compareStates(await expectedFromErp(erp), receiver.state());
    },
    async converge(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let last: Comparison | undefined;
      await waitFor('receiver state equals the ERP', async () => {
        last = await sc.compare();
        return last.lost === 0 || undefined;
      }, { timeoutMs, intervalMs: 250 }).catch((err) => {
        throw new Error(`${(err as Error).message}\nfirst mismatches: ${JSON.stringify(last?.mismatches.slice(0, 5))}\nreceiver ${JSON.stringify(receiver.stats())}`);
      });
      let stored = -1;
      let stillSince = Date.now();
      await waitFor('the hub log to stop growing', async () => {
        const st = await hubStatus(hub);
        if (st.eventsStored !== stored) { stored = st.eventsStored; stillSince = Date.now(); }
        return Date.now() - stillSince > 1500 && st.destinations.every((d) => d.pending === 0 && d.inFlight === 0) ? true : undefined;
      }, { timeoutMs: Math.max(5000, deadline - Date.now()), intervalMs: 100 });
    },
    async finish(agent) {
      const a = await h.stop(agent);
      const b = await h.stop(hub.proc);
      if (a.code !== 0 || b.code !== 0) throw new Error(`clean stop expected: agent ${JSON.stringify(a)}, hub ${JSON.stringify(b)}`);
      return checkExactlyOnce(await readHubLog(hubDataDir));
    },
    async cleanup() {
      await sim.stop();
      await h.cleanup();
      await receiver.close();
      await erp.close();
    },
  };
  return sc;
}
