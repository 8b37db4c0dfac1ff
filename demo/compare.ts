/**
 * Compares the ERP's final state with what the receiver holds. For every record the
 * ERP has, the receiver must hold an upsert whose fields agree; for every record
 * the receiver holds that the ERP no longer has, the receiver's last event must be
 * a delete. Anything else is "lost" (missing, stale, or present-but-deleted).
 *
 * The expected values are read straight from the ERP tables with the rules the demo
 * mapping states (trim CHAR padding, crosswalk status codes, exact decimals), so the
 * check does not trust the agent's own mapping code to grade itself. Decimals are
 * compared by value ("12.50000" equals "12.5"), text exactly.
 */
import { stateKey } from './receiver.ts';
import type { Erp } from './erp.ts';

export interface Mismatch {
  key: string;
  kind: 'missing' | 'stale' | 'present_but_deleted';
  detail: string;
}

export interface Comparison {
  /** Records checked (union of ERP records and receiver records). */
  checked: number;
  lost: number;
  mismatches: Mismatch[];
}

type Expected = Record<string, string | null | Expected[]>;

const CUSTOMER_STATUS: Record<string, string> = { A: 'active', H: 'on_hold', I: 'inactive' };
const ORDER_STATUS: Record<string, string> = { O: 'open', S: 'shipped' };

/** "12.50000" -> "12.5", "-0.000" -> "0", "7.000" -> "7". */
export function normDecimal(s: string): string {
  let [int = '0', frac = ''] = s.trim().split('.');
  frac = frac.replace(/0+$/, '');
  const neg = int.startsWith('-');
  int = (neg ? int.slice(1) : int).replace(/^0+(?=\d)/, '');
  const out = frac ? `${int}.${frac}` : int;
  return neg && /[1-9]/.test(out) ? `-${out}` : out;
}

const rtrim = (s: string) => s.replace(/\s+$/, '');

/** ERP records as the demo mapping describes them, keyed like the receiver's state. */
export async function expectedFromErp(erp: Erp): Promise<Map<string, Expected>> {
  const out = new Map<string, Expected>();
  type R = Record<string, string>;
  const customers = await erp.query<R>(`SELECT cust_no, name, status, credit_limit::text AS credit_limit, addr1 FROM arcust`);
  for (const c of customers) {
    const id = rtrim(c.cust_no!);
    out.set(stateKey('customer', id), {
      customerId: id, name: rtrim(c.name!), status: CUSTOMER_STATUS[c.status!] ?? null,
      creditLimit: normDecimal(c.credit_limit!), 'addresses[0].line1': rtrim(c.addr1!),
    });
  }
  const items = await erp.query<R>(`SELECT item_no, descr, uom, list_price::text AS list_price FROM icitem`);
  for (const i of items) {
    const sku = rtrim(i.item_no!);
    out.set(stateKey('product', sku), { sku, description: rtrim(i.descr!), 'uom.base': rtrim(i.uom!), listPrice: normDecimal(i.list_price!) });
  }
  const stock = await erp.query<R>(`SELECT item_no, whse, qty_on_hand::text AS h, qty_alloc::text AS a, qty_avail::text AS v FROM icloc`);
  for (const s of stock) {
    const sku = rtrim(s.item_no!);
    const wh = rtrim(s.whse!);
    out.set(stateKey('inventory_level', `${sku}/${wh}`), {
      sku, warehouse: wh, onHand: normDecimal(s.h!), allocated: normDecimal(s.a!), available: normDecimal(s.v!),
    });
  }
  const orders = await erp.query<R>(`SELECT ord_no, cust_no, status FROM oehdr`);
  const lines = await erp.query<R>(`SELECT ord_no, line_no::text AS line_no, item_no, qty::text AS qty, unit_price::text AS unit_price FROM oelin ORDER BY ord_no, line_no`);
  const byOrder = new Map<string, Expected[]>();
  for (const l of lines) {
    const k = rtrim(l.ord_no!);
    const list = byOrder.get(k) ?? [];
    list.push({ lineNumber: l.line_no!, sku: rtrim(l.item_no!), quantity: normDecimal(l.qty!), unitPrice: normDecimal(l.unit_price!) });
    byOrder.set(k, list);
  }
  for (const o of orders) {
    const n = rtrim(o.ord_no!);
    out.set(stateKey('sales_order', n), {
      orderNumber: n, customerId: rtrim(o.cust_no!), status: ORDER_STATUS[o.status!] ?? null, lines: byOrder.get(n) ?? [],
    });
  }
  return out;
}

function at(data: unknown, path: string): unknown {
  let cur: unknown = data;
  for (const seg of path.split(/\.|\[(\d+)\]\.?/).filter((x) => x !== undefined && x !== '')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** The first field where `got` disagrees with `want`, or null when they agree. */
function diffFields(want: Expected, got: unknown, prefix = ''): string | null {
  for (const [path, w] of Object.entries(want)) {
    const g = at(got, path);
    if (Array.isArray(w)) {
      if (!Array.isArray(g) || g.length !== w.length) return `${prefix}${path}: ${w.length} items expected, got ${Array.isArray(g) ? g.length : JSON.stringify(g)}`;
      for (let i = 0; i < w.length; i++) {
        const d = diffFields(w[i]!, g[i], `${prefix}${path}[${i}].`);
        if (d) return d;
      }
      continue;
    }
    const isDec = w !== null && /^-?\d+(\.\d+)?$/.test(w) && typeof g === 'string' && /^-?\d+(\.\d+)?$/.test(g);
    const same = isDec ? normDecimal(g) === w : g === w || (w === null && g === undefined);
    if (!same) return `${prefix}${path}: expected ${JSON.stringify(w)}, got ${JSON.stringify(g)}`;
  }
  return null;
}

export function compareStates(expected: Map<string, Expected>, received: Map<string, unknown>): Comparison {
  const mismatches: Mismatch[] = [];
  for (const [key, want] of expected) {
    if (!received.has(key)) {
      mismatches.push({ key, kind: 'missing', detail: 'never delivered' });
      continue;
    }
    const got = received.get(key);
    if (got === null) {
      mismatches.push({ key, kind: 'missing', detail: 'receiver holds a delete, the ERP still has the record' });
      continue;
    }
    const d = diffFields(want, got);
    if (d) mismatches.push({ key, kind: 'stale', detail: d });
  }
  let checked = expected.size;
  for (const [key, got] of received) {
    if (expected.has(key)) continue;
    checked++;
    if (got !== null) mismatches.push({ key, kind: 'present_but_deleted', detail: 'the ERP no longer has this record' });
  }
  return { checked, lost: mismatches.length, mismatches };
}
