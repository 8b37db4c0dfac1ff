/**
 * The demo's ERP: an embedded PostgreSQL (PGlite) holding a generated, legacy-looking
 * distributor schema, served over the PostgreSQL wire protocol so the agent uses its
 * ordinary `postgres` source.
 *
 * PGlite is ONE backend session. The socket server feeds the agent's protocol
 * messages into it one at a time, and the simulator writes in-process, so writes
 * must only land at a point where the agent's session is between statements:
 * not inside an explicit transaction block, and not between the Parse/Bind/Execute
 * and Sync of an extended-protocol query (a simple Query message there would drop
 * the agent's unnamed portal). `write()` waits for such a point under PGlite's own
 * exclusive lock, which is the lock the socket server takes for each message.
 */
import { PGlite, protocol } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { DECIMAL_RE } from '@dovetail/shared';

export const DEMO_TIME_ZONE = 'America/Chicago';
export const WAREHOUSES = ['MAIN', 'EAST', 'WEST'] as const;

export interface ErpOptions {
  /** PRNG seed for the generated data; the same seed gives the same ERP. Default 42. */
  seed?: number;
  /** Zone of the ERP's naive datetimes. Default America/Chicago. */
  timeZone?: string;
  customers?: number;
  items?: number;
  orders?: number;
  /** Clock for seed timestamps. */
  now?: () => Date;
}

export interface Erp {
  readonly db: PGlite;
  readonly host: string;
  readonly port: number;
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  readonly timeZone: string;
  /** Seed contents, for the simulator's model of the ERP. */
  readonly seedData: SeedData;
  /** Run statements (joined into one implicit transaction) at a safe point of the shared session. */
  write(sql: string): Promise<void>;
  /** In-process read (reads are safe at any point; they change nothing). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export interface SeedCustomer { custNo: string; name: string; addr1: string; city: string; state: string; zip: string; creditLimit: string; status: 'A' | 'H' | 'I' }
export interface SeedItem { itemNo: string; descr: string; uom: string; listPrice: string }
export interface SeedStock { itemNo: string; whse: string; onHand: string; alloc: string }
export interface SeedOrder { ordNo: string; custNo: string; status: 'O' | 'S'; lines: { lineNo: number; itemNo: string; qty: string; unitPrice: string }[] }
export interface SeedData { customers: SeedCustomer[]; items: SeedItem[]; stock: SeedStock[]; orders: SeedOrder[] }

/** Deterministic PRNG (mulberry32): the demo's data must be the same for the same seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rnd: () => number, xs: readonly T[]): T {
  const x = xs[Math.floor(rnd() * xs.length)];
  if (x === undefined) throw new RangeError('pick from an empty list');
  return x;
}

const nf = new Map<string, Intl.DateTimeFormat>();
/** Naive "YYYY-MM-DD HH:MM:SS" wall time of `d` in `timeZone`: what a legacy ERP writes into upd_dt. */
export function naiveAt(d: Date, timeZone: string): string {
  let f = nf.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    nf.set(timeZone, f);
  }
  const p = Object.fromEntries(f.formatToParts(d).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

/** SQL literal for the simulator's simple-query writes (values are generated, never user input). */
export function lit(v: string | number | null): string {
  if (v === null) return 'NULL';
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new TypeError(`lit: not a safe integer: ${v}`);
    return String(v);
  }
  return `'${v.replace(/'/g, "''")}'`;
}

/** Decimal literal; refuses anything that is not an exact decimal string. */
export function dec(v: string): string {
  if (!DECIMAL_RE.test(v)) throw new TypeError(`dec: not a decimal string: ${v}`);
  return v;
}

/** Money with 2 places from integer cents, as a decimal string (no floats). */
export function cents(n: number): string {
  const s = String(Math.abs(n)).padStart(3, '0');
  return `${n < 0 ? '-' : ''}${s.slice(0, -2)}.${s.slice(-2)}`;
}

export const SCHEMA_SQL = `
CREATE TABLE arcust (
  cust_no      CHAR(12) PRIMARY KEY,
  name         CHAR(40) NOT NULL,
  addr1        CHAR(40) NOT NULL DEFAULT '',
  addr2        CHAR(40) NOT NULL DEFAULT '',
  city         CHAR(25) NOT NULL DEFAULT '',
  state        CHAR(2)  NOT NULL DEFAULT '',
  zip          CHAR(10) NOT NULL DEFAULT '',
  credit_limit NUMERIC(19,5) NOT NULL DEFAULT 0,
  status       CHAR(1) NOT NULL DEFAULT 'A',
  upd_dt       TIMESTAMP(0) NOT NULL
);
CREATE TABLE icitem (
  item_no    CHAR(20) PRIMARY KEY,
  descr      CHAR(50) NOT NULL,
  uom        CHAR(4) NOT NULL DEFAULT 'EA',
  list_price NUMERIC(19,5) NOT NULL,
  upd_dt     TIMESTAMP(0) NOT NULL
);
-- Stock per warehouse. No change column at all: only a diff can see its changes.
CREATE TABLE icloc (
  item_no     CHAR(20) NOT NULL,
  whse        CHAR(6) NOT NULL,
  qty_on_hand NUMERIC(19,5) NOT NULL DEFAULT 0,
  qty_alloc   NUMERIC(19,5) NOT NULL DEFAULT 0,
  qty_avail   NUMERIC(19,5) GENERATED ALWAYS AS (qty_on_hand - qty_alloc) STORED,
  PRIMARY KEY (item_no, whse)
);
CREATE TABLE oehdr (
  ord_no  CHAR(10) PRIMARY KEY,
  cust_no CHAR(12) NOT NULL,
  ord_dt  TIMESTAMP(0) NOT NULL,
  status  CHAR(1) NOT NULL DEFAULT 'O',
  upd_dt  TIMESTAMP(0) NOT NULL
);
CREATE TABLE oelin (
  ord_no     CHAR(10) NOT NULL,
  line_no    INTEGER NOT NULL,
  item_no    CHAR(20) NOT NULL,
  qty        NUMERIC(19,5) NOT NULL,
  unit_price NUMERIC(19,5) NOT NULL,
  PRIMARY KEY (ord_no, line_no)
);
CREATE INDEX oehdr_upd ON oehdr (upd_dt, ord_no);
CREATE INDEX icitem_upd ON icitem (upd_dt, item_no);
`;

const FIRST = ['Acme', 'Prairie', 'Lakeside', 'Heartland', 'Riverbend', 'Summit', 'Bluebonnet', 'Cedar', 'Gulf', 'Ozark', 'Pioneer', 'Lone Star'];
const SECOND = ['Supply', 'Hardware', 'Foods', 'Janitorial', 'Plumbing', 'Electric', 'Farm & Ranch', 'Industrial', 'Restaurant Supply'];
const SUFFIX = ['Co', 'Inc', 'LLC', "& Sons", 'Corp'];
const CITIES: [string, string, string][] = [
  ['Dallas', 'TX', '75201'], ['Tulsa', 'OK', '74103'], ['Wichita', 'KS', '67202'], ['Omaha', 'NE', '68102'],
  ['Memphis', 'TN', '38103'], ['Little Rock', 'AR', '72201'], ['Chicago', 'IL', '60601'], ['Des Moines', 'IA', '50309'],
];
const STREETS = ['Main St', 'Commerce Dr', 'Industrial Blvd', 'Elm St', 'Route 66', 'Depot Rd', 'Mill St'];
const GOODS = ['HEX BOLT 3/8 ZINC', 'PVC ELBOW 1IN', 'NITRILE GLOVE L', 'MOP HEAD 24OZ', 'COPPER PIPE 1/2', 'WIRE NUT YEL', 'SHOP TOWEL RL', 'FLOOR CLEANER GAL', 'SAFETY VEST ORG', 'DUCT TAPE 2IN'];
const UOMS = ['EA', 'BX', 'CS', 'RL', 'GAL'];

export function street(rnd: () => number): string {
  return `${100 + Math.floor(rnd() * 9800)} ${pick(rnd, STREETS)}`;
}

export function generateSeed(seed: number, sizes: { customers: number; items: number; orders: number }): SeedData {
  const rnd = prng(seed);
  const customers: SeedCustomer[] = [];
  for (let i = 1; i <= sizes.customers; i++) {
    const [city, state, zip] = pick(rnd, CITIES);
    customers.push({
      custNo: `C${String(i).padStart(5, '0')}`,
      name: `${pick(rnd, FIRST)} ${pick(rnd, SECOND)} ${pick(rnd, SUFFIX)}`,
      addr1: street(rnd), city, state, zip,
      creditLimit: cents(Math.floor(rnd() * 50) * 100000),
      // Legacy codes: A active, H credit hold, I inactive.
      status: rnd() < 0.8 ? 'A' : rnd() < 0.5 ? 'H' : 'I',
    });
  }
  const items: SeedItem[] = [];
  for (let i = 1; i <= sizes.items; i++) {
    items.push({
      itemNo: `IT-${String(1000 + i)}`,
      descr: `${pick(rnd, GOODS)} #${i}`,
      uom: pick(rnd, UOMS),
      listPrice: cents(99 + Math.floor(rnd() * 20000)),
    });
  }
  const stock: SeedStock[] = [];
  for (const it of items) {
    for (const w of WAREHOUSES) stock.push({ itemNo: it.itemNo, whse: w, onHand: String(Math.floor(rnd() * 500)), alloc: '0' });
  }
  const orders: SeedOrder[] = [];
  for (let i = 1; i <= sizes.orders; i++) {
    const n = 1 + Math.floor(rnd() * 4);
    const lines = [];
    for (let l = 1; l <= n; l++) {
      const it = pick(rnd, items);
      lines.push({ lineNo: l, itemNo: it.itemNo, qty: String(1 + Math.floor(rnd() * 20)), unitPrice: it.listPrice });
    }
    // Orders go only to the first half of the customers, so the simulator can delete one without orders.
    const cust = customers[Math.floor(rnd() * Math.max(1, Math.floor(customers.length / 2)))]!;
    orders.push({ ordNo: `SO${String(i).padStart(6, '0')}`, custNo: cust.custNo, status: rnd() < 0.6 ? 'S' : 'O', lines });
  }
  return { customers, items, stock, orders };
}

function seedSql(s: SeedData, updDt: string): string {
  const out: string[] = [];
  for (const c of s.customers) {
    out.push(`INSERT INTO arcust (cust_no,name,addr1,city,state,zip,credit_limit,status,upd_dt) VALUES (${lit(c.custNo)},${lit(c.name)},${lit(c.addr1)},${lit(c.city)},${lit(c.state)},${lit(c.zip)},${dec(c.creditLimit)},${lit(c.status)},${lit(updDt)});`);
  }
  for (const it of s.items) {
    out.push(`INSERT INTO icitem VALUES (${lit(it.itemNo)},${lit(it.descr)},${lit(it.uom)},${dec(it.listPrice)},${lit(updDt)});`);
  }
  for (const st of s.stock) {
    out.push(`INSERT INTO icloc (item_no,whse,qty_on_hand,qty_alloc) VALUES (${lit(st.itemNo)},${lit(st.whse)},${dec(st.onHand)},${dec(st.alloc)});`);
  }
  for (const o of s.orders) {
    out.push(`INSERT INTO oehdr VALUES (${lit(o.ordNo)},${lit(o.custNo)},${lit(updDt)},${lit(o.status)},${lit(updDt)});`);
    for (const l of o.lines) {
      out.push(`INSERT INTO oelin VALUES (${lit(o.ordNo)},${l.lineNo},${lit(l.itemNo)},${dec(l.qty)},${dec(l.unitPrice)});`);
    }
  }
  return out.join('\n');
}

/** Protocol message type bytes of the extended query protocol; Sync ('S') ends a sequence. */
const EXTENDED = new Set(['P', 'B', 'D', 'E', 'C', 'H'].map((c) => c.charCodeAt(0)));
const SYNC = 'S'.charCodeAt(0);
/** An extended sequence left open this long (client gone mid-sequence) no longer blocks writes. */
const STALE_SEQUENCE_MS = 2000;
/** How long write() waits for a safe point before giving up: the agent is stuck in a transaction. */
const WRITE_WAIT_MS = 30_000;

export async function startErp(opts: ErpOptions = {}): Promise<Erp> {
  const timeZone = opts.timeZone ?? DEMO_TIME_ZONE;
  const now = opts.now ?? (() => new Date());
  const seedData = generateSeed(opts.seed ?? 42, { customers: opts.customers ?? 40, items: opts.items ?? 60, orders: opts.orders ?? 30 });
  const db = await PGlite.create();
  await db.exec(SCHEMA_SQL);
  // Seed rows carry a time well before the run, like years of history.
  await db.exec(seedSql(seedData, naiveAt(new Date(now().getTime() - 86_400_000), timeZone)));

  // Watch the socket's protocol messages to know when the agent sits between statements.
  let sequenceOpen = false;
  let lastMessageAt = 0;
  const rawStream = db.execProtocolRawStream.bind(db);
  db.execProtocolRawStream = async (message, options) => {
    const type = message[0];
    lastMessageAt = Date.now();
    if (type !== undefined && EXTENDED.has(type)) sequenceOpen = true;
    try {
      return await rawStream(message, options);
    } finally {
      if (type === SYNC) sequenceOpen = false;
    }
  };

  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 1 });
  await server.start();
  const conn = server.getServerConn();
  const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
  const host = '127.0.0.1';

  async function write(sql: string): Promise<void> {
    const deadline = Date.now() + WRITE_WAIT_MS;
    for (;;) {
      const done = await db.runExclusive(async () => {
        const busy = db.isInTransaction() || (sequenceOpen && Date.now() - lastMessageAt < STALE_SEQUENCE_MS);
        if (busy) return false;
        // One simple Query message with several statements runs as one implicit transaction.
        // execProtocolStream, not execProtocol: after a socket message PGlite still holds the
        // socket's output callback, and only the Stream variant replaces it (else our
        // results would be written to the agent's socket).
        await db.execProtocolStream(protocol.serialize.query(sql), { throwOnError: true });
        return true;
      });
      if (done) return;
      if (Date.now() > deadline) throw new Error(`erp: no safe point to write for ${WRITE_WAIT_MS} ms (the socket client holds a transaction open)`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  return {
    db, host, port, timeZone, seedData,
    url: `postgres://postgres@${host}:${port}/postgres`,
    write,
    async query<T>(sql: string, params?: unknown[]): Promise<T[]> {
      return (await db.query<T>(sql, params)).rows;
    },
    async close() {
      await server.stop();
      await db.close();
    },
  };
}
