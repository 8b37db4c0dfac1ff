/**
 * Shared set-up for e2e tests with real hub and agent processes capturing from an embedded
 * PostgreSQL (PGlite over a socket): the ERP item table, the agent YAML, a hub config on a
 * fixed free port (so it can be restarted at the same URL) and enrolled agents.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { HUB_BIN } from './paths.ts';
import { freePort, hubApi, type Harness, type HubInstance, type Proc } from './procs.ts';

export interface Erp {
  db: PGlite;
  /** postgres:// URL of the socket server. */
  url: string;
  /** Rows inserted into icitem so far. */
  rows(): number;
  addRows(n: number): Promise<void>;
  stop(): Promise<void>;
}

/** An ERP with one item table `icitem (item_no, descr, uom)` holding `rows` rows. */
export async function startErp(rows = 5): Promise<Erp> {
  const db = await PGlite.create();
  const server = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1' });
  await server.start();
  await db.exec('create table icitem (item_no varchar(20) primary key, descr varchar(60), uom varchar(4))');
  let n = 0;
  const erp: Erp = {
    db, url: `postgres://postgres@${server.getServerConn()}/postgres`,
    rows: () => n,
    async addRows(k: number) {
      for (let i = 0; i < k; i++) {
        n++;
        await db.exec(`insert into icitem values ('SKU-${n}', 'Item ${n}', 'EA')`);
      }
    },
    async stop() {
      await server.stop();
      await db.close();
    },
  };
  await erp.addRows(rows);
  return erp;
}

/** The `items` table of icitem as agent YAML (list item, two-space indent under `tables:`). */
export function itemsTableYaml(name = 'items', schedule = '500ms'): string {
  return `  - name: ${name}
    table: public.icitem
    key: [item_no]
    entity: product
    strategy: diff
    schedule: { every: ${schedule} }
    keyTemplate: "{sku}"
    map:
      sku: { column: item_no, type: code }
      description: { column: descr, type: string, trim: true }
      uom.base: { column: uom, type: code }
`;
}

/** Agent YAML: fast heartbeats and reconnects for tests; `tables` is the YAML list body (default: items). */
export function agentYaml(o: { name?: string; dataDir: string; erpUrl: string; hubUrl: string; tables?: string }): string {
  return `agent:
  name: ${o.name ?? 'plant-a'}
  dataDir: ${JSON.stringify(o.dataDir)}
  logLevel: info
hub:
  url: ${JSON.stringify(o.hubUrl)}
  heartbeatMs: 1000
  reconnectInitialMs: 100
  reconnectMaxMs: 500
source:
  type: postgres
  system: erp
  url: ${JSON.stringify(o.erpUrl)}
  timeZone: UTC
  maxConnections: 1
tables:
${o.tables ?? itemsTableYaml()}`;
}

export interface TestHub extends HubInstance {
  port: number;
  /** Starts the hub process again on the same port and data dir (after a stop). */
  restart(): Promise<TestHub>;
}

/** A hub on a free port with `extraYaml` appended to its config (e.g. destinations). */
export async function startTestHub(h: Harness, extraYaml = ''): Promise<TestHub> {
  const port = await freePort();
  const dataDir = h.path('hub-data');
  const cfg = h.write('hub.yaml', `listen: { host: 127.0.0.1, port: ${port} }\ndataDir: ${JSON.stringify(dataDir)}\nlogLevel: info\n${extraYaml}`);
  const wrap = (inst: HubInstance): TestHub => ({ ...inst, port, restart: async () => wrap(await h.startHub(cfg, port, dataDir)) });
  return wrap(await h.startHub(cfg, port, dataDir));
}

export interface TestAgent { id: string; token: string; config: string; dataDir: string; proc: Proc | null }

/** Writes an agent config under <harness>/<name>/ and enrolls it (the process is not started). */
export async function enrollTestAgent(h: Harness, hub: HubInstance, erp: Erp, name: string, tables?: string): Promise<TestAgent> {
  const dataDir = h.path(`${name}-data`);
  const config = h.write(`${name}.yaml`, agentYaml({ name, dataDir, erpUrl: erp.url, hubUrl: hub.url, ...(tables ? { tables } : {}) }));
  const { agentId, token } = await h.enrollAgent(hub.dataDir, config, name);
  return { id: agentId, token, config, dataDir, proc: null };
}

/** Runs `dovetail-hub <args> --data-dir <hub>`; fails with stderr on an unexpected exit code. */
export async function hubCli(h: Harness, hub: HubInstance, args: string[], expectCode = 0): Promise<{ stdout: string; stderr: string }> {
  const r = await h.run('hub-cli', [HUB_BIN, ...args, '--data-dir', hub.dataDir]);
  if (r.code !== expectCode) throw new Error(`dovetail-hub ${args.join(' ')} exited ${r.code}, expected ${expectCode}\n${r.stderr}${r.stdout}`);
  return r;
}

export interface AgentViewX {
  id: string; online: boolean; lastSeq: number; eventsStored: number; keyId: string;
  previousKeys: Array<{ keyId: string; retiresAt: string; retired: boolean }>;
  configVersion: number | null;
  config: { version: number; status: string; reason: string | null } | null;
  tables: Array<{ table: string; eventsCaptured: number }>;
}
export const agentViewX = (hub: HubInstance, id: string) => hubApi<AgentViewX>(hub, `/v1/agents/${id}`);

/** identity.json of an agent data dir. */
export function agentIdentity(dataDir: string): { agentId: string; hubKeyId: string; hubPublicKey: string } {
  return JSON.parse(readFileSync(join(dataDir, 'identity.json'), 'utf8')) as { agentId: string; hubKeyId: string; hubPublicKey: string };
}
