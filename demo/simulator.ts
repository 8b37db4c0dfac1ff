/**
 * Makes ERP changes at a steady rate, like counter staff and a warehouse would:
 * new orders with lines, lines added to open orders, shipments, stock receipts and
 * transfers, price changes, address changes, credit holds, and exactly one deleted
 * customer. Every change is one ERP transaction and counts as one "change made".
 *
 * upd_dt is written the legacy way: naive wall time in the ERP's zone, whole seconds.
 * At a few changes per second many rows share a second, and some writes reuse the
 * previous stamp on purpose (a late commit from a slow terminal), so the agent's
 * cursor must handle rows that land on its boundary value.
 */
import { cents, dec, lit, naiveAt, pick, prng, street, WAREHOUSES, type Erp } from './erp.ts';

export type ChangeKind =
  | 'new_order' | 'add_line' | 'ship_order' | 'receive_stock' | 'transfer_stock'
  | 'price_change' | 'address_change' | 'credit_hold' | 'delete_customer';

export interface SimulatorOptions {
  seed?: number;
  /** Clock for upd_dt. Default: real time. */
  now?: () => Date;
  /** Delete one customer (without orders) at this change number. Default 10. */
  deleteCustomerAt?: number;
  /** Fraction of writes that reuse the previous upd_dt. Default 0.2. */
  sameStampRate?: number;
}

export interface SimulatorStats {
  changes: number;
  byKind: Partial<Record<ChangeKind, number>>;
  deletedCustomer: string | null;
}

interface OrderModel { custNo: string; open: boolean; lines: { itemNo: string; qty: number }[] }

const WEIGHTS: [ChangeKind, number][] = [
  ['new_order', 25], ['add_line', 10], ['ship_order', 12], ['receive_stock', 15], ['transfer_stock', 5],
  ['price_change', 15], ['address_change', 10], ['credit_hold', 8],
];
const TOTAL_WEIGHT = WEIGHTS.reduce((a, [, w]) => a + w, 0);

export class Simulator {
  readonly #erp: Erp;
  readonly #rnd: () => number;
  readonly #now: () => Date;
  readonly #deleteAt: number;
  readonly #sameStampRate: number;
  readonly #customers: string[];
  readonly #orderlessCustomers: string[];
  readonly #items: string[];
  readonly #orders = new Map<string, OrderModel>();
  #nextOrder: number;
  #lastStamp: string | null = null;
  #stats: SimulatorStats = { changes: 0, byKind: {}, deletedCustomer: null };
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> = Promise.resolve();
  #stopped = true;

  constructor(erp: Erp, opts: SimulatorOptions = {}) {
    this.#erp = erp;
    this.#rnd = prng(opts.seed ?? 7);
    this.#now = opts.now ?? (() => new Date());
    this.#deleteAt = opts.deleteCustomerAt ?? 10;
    this.#sameStampRate = opts.sameStampRate ?? 0.2;
    const seed = erp.seedData;
    const withOrders = new Set(seed.orders.map((o) => o.custNo));
    this.#customers = seed.customers.map((c) => c.custNo);
    this.#orderlessCustomers = this.#customers.filter((c) => !withOrders.has(c));
    this.#items = seed.items.map((i) => i.itemNo);
    for (const o of seed.orders) {
      this.#orders.set(o.ordNo, { custNo: o.custNo, open: o.status === 'O', lines: o.lines.map((l) => ({ itemNo: l.itemNo, qty: Number(l.qty) })) });
    }
    this.#nextOrder = seed.orders.length + 1;
  }

  stats(): SimulatorStats {
    return { ...this.#stats, byKind: { ...this.#stats.byKind } };
  }

  #stamp(): string {
    if (this.#lastStamp !== null && this.#rnd() < this.#sameStampRate) return this.#lastStamp;
    this.#lastStamp = naiveAt(this.#now(), this.#erp.timeZone);
    return this.#lastStamp;
  }

  #kind(): ChangeKind {
    if (this.#stats.changes + 1 === this.#deleteAt && this.#stats.deletedCustomer === null && this.#orderlessCustomers.length > 0) {
      return 'delete_customer';
    }
    let r = this.#rnd() * TOTAL_WEIGHT;
    for (const [k, w] of WEIGHTS) {
      if ((r -= w) < 0) return k;
    }
    return 'new_order';
  }

  #openOrders(): string[] {
    return [...this.#orders].filter(([, o]) => o.open).map(([n]) => n);
  }

  /** The SQL for one change, updating the model. */
  #plan(kind: ChangeKind): string {
    const rnd = this.#rnd;
    const ts = lit(this.#stamp());
    switch (kind) {
      case 'new_order': {
        const ordNo = `SO${String(this.#nextOrder++).padStart(6, '0')}`;
        const custNo = pick(rnd, this.#customers.filter((c) => c !== this.#stats.deletedCustomer && !this.#orderlessCustomers.includes(c)));
        const n = 1 + Math.floor(rnd() * 3);
        const lines = Array.from({ length: n }, () => ({ itemNo: pick(rnd, this.#items), qty: 1 + Math.floor(rnd() * 12) }));
        this.#orders.set(ordNo, { custNo, open: true, lines });
        const sql = [`INSERT INTO oehdr VALUES (${lit(ordNo)},${lit(custNo)},${ts},'O',${ts})`];
        lines.forEach((l, i) => {
          sql.push(`INSERT INTO oelin SELECT ${lit(ordNo)},${i + 1},item_no,${l.qty},list_price FROM icitem WHERE item_no=${lit(l.itemNo)}`);
          sql.push(`UPDATE icloc SET qty_alloc = qty_alloc + ${l.qty} WHERE item_no=${lit(l.itemNo)} AND whse='MAIN'`);
        });
        return sql.join(';\n');
      }
      case 'add_line': {
        const open = this.#openOrders();
        if (open.length === 0) return this.#plan('new_order');
        const ordNo = pick(rnd, open);
        const o = this.#orders.get(ordNo)!;
        const l = { itemNo: pick(rnd, this.#items), qty: 1 + Math.floor(rnd() * 6) };
        o.lines.push(l);
        return [
          `INSERT INTO oelin SELECT ${lit(ordNo)},${o.lines.length},item_no,${l.qty},list_price FROM icitem WHERE item_no=${lit(l.itemNo)}`,
          `UPDATE icloc SET qty_alloc = qty_alloc + ${l.qty} WHERE item_no=${lit(l.itemNo)} AND whse='MAIN'`,
          // Lines have no change column; the header's upd_dt is what the ERP bumps.
          `UPDATE oehdr SET upd_dt=${ts} WHERE ord_no=${lit(ordNo)}`,
        ].join(';\n');
      }
      case 'ship_order': {
        const open = this.#openOrders();
        if (open.length === 0) return this.#plan('new_order');
        const ordNo = pick(rnd, open);
        const o = this.#orders.get(ordNo)!;
        o.open = false;
        const sql = [`UPDATE oehdr SET status='S', upd_dt=${ts} WHERE ord_no=${lit(ordNo)}`];
        for (const l of o.lines) {
          sql.push(`UPDATE icloc SET qty_on_hand = qty_on_hand - ${l.qty}, qty_alloc = qty_alloc - ${l.qty} WHERE item_no=${lit(l.itemNo)} AND whse='MAIN'`);
        }
        return sql.join(';\n');
      }
      case 'receive_stock':
        return `UPDATE icloc SET qty_on_hand = qty_on_hand + ${10 + Math.floor(rnd() * 90)} WHERE item_no=${lit(pick(rnd, this.#items))} AND whse=${lit(pick(rnd, WAREHOUSES))}`;
      case 'transfer_stock': {
        const item = lit(pick(rnd, this.#items));
        const q = 1 + Math.floor(rnd() * 10);
        return [
          `UPDATE icloc SET qty_on_hand = qty_on_hand - ${q} WHERE item_no=${item} AND whse='MAIN'`,
          `UPDATE icloc SET qty_on_hand = qty_on_hand + ${q} WHERE item_no=${item} AND whse=${lit(pick(rnd, ['EAST', 'WEST']))}`,
        ].join(';\n');
      }
      case 'price_change':
        // Fractional cents on purpose: numeric(19,5) must arrive exactly (e.g. 12.34567).
        return `UPDATE icitem SET list_price=${dec(`${cents(99 + Math.floor(rnd() * 20000))}${String(Math.floor(rnd() * 1000)).padStart(3, '0')}`)}, upd_dt=${ts} WHERE item_no=${lit(pick(rnd, this.#items))}`;
      case 'address_change':
        return `UPDATE arcust SET addr1=${lit(street(rnd))}, upd_dt=${ts} WHERE cust_no=${lit(this.#liveCustomer())}`;
      case 'credit_hold':
        return `UPDATE arcust SET status=CASE status WHEN 'H' THEN 'A' ELSE 'H' END, upd_dt=${ts} WHERE cust_no=${lit(this.#liveCustomer())}`;
      case 'delete_customer': {
        const custNo = this.#orderlessCustomers.pop()!;
        this.#stats.deletedCustomer = custNo;
        return `DELETE FROM arcust WHERE cust_no=${lit(custNo)}`;
      }
    }
  }

  #liveCustomer(): string {
    return pick(this.#rnd, this.#customers.filter((c) => c !== this.#stats.deletedCustomer));
  }

  /** Make one change (one ERP transaction). */
  async step(): Promise<ChangeKind> {
    const kind = this.#kind();
    await this.#erp.write(this.#plan(kind));
    this.#stats.changes++;
    this.#stats.byKind[kind] = (this.#stats.byKind[kind] ?? 0) + 1;
    return kind;
  }

  /** Make `perSecond` changes a second until stop(). Changes never overlap. */
  start(perSecond: number, onError: (err: unknown) => void = () => {}): void {
    if (!(perSecond > 0)) throw new RangeError(`perSecond must be > 0, got ${perSecond}`);
    if (!this.#stopped) return;
    this.#stopped = false;
    const intervalMs = 1000 / perSecond;
    const tick = () => {
      if (this.#stopped) return;
      this.#running = this.step().then(
        () => undefined,
        (err) => { onError(err); },
      ).then(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, intervalMs);
      });
    };
    tick();
  }

  /** Stop and wait for the change in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
