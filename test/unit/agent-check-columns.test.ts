import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDovetailError } from '@dovetail/shared';
import { checkColumns } from '../../agent/src/table-runner.ts';
import { parseAgentConfig } from '../../agent/src/config/load.ts';
import type { SourceDriver, ColumnInfo } from '../../agent/src/sources/types.ts';

// Only describe() is used: a stand-in for the database catalogue.
function catalogue(tables: Record<string, string[]>): SourceDriver {
  return {
    describe: async (t: string): Promise<ColumnInfo[]> => (tables[t] ?? []).map((name) => ({ name, type: 'text', nullable: true })),
  } as unknown as SourceDriver;
}

const cfg = parseAgentConfig(`
agent: { name: t, dataDir: ./d }
hub: { url: http://127.0.0.1:1 }
source: { type: postgres, system: erp, url: "postgres://u@127.0.0.1/db", timeZone: UTC }
tables:
  - name: orders
    table: public.oehdr
    key: [ord_no]
    entity: sales_order
    strategy: cursor
    cursor: { column: upd_dt, type: timestamp }
    map:
      orderNumber: { column: ord_no, type: code }
      customerId: { column: cust_no, type: code }
      orderDate: { column: ord_dt, type: datetime }
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
`, '/tmp/agent.yaml', {});
const table = cfg.tables[0]!;

test('a config whose columns all exist passes the check', async () => {
  await checkColumns(catalogue({
    'public.oehdr': ['ord_no', 'cust_no', 'ord_dt', 'upd_dt'],
    'public.oelin': ['ord_no', 'line_no', 'item_no', 'qty', 'unit_price'],
  }), table);
});

test('a mistyped mapped column is one clear error naming table, column and the near match', async () => {
  await assert.rejects(checkColumns(catalogue({
    'public.oehdr': ['ord_no', 'CUST_NO', 'ord_dt', 'upd_dt'],
    'public.oelin': ['ord_no', 'line_no', 'item_no', 'qty', 'unit_price'],
  }), table), (err: unknown) => {
    assert.ok(isDovetailError(err, 'AGENT_SOURCE_MISSING_OBJECT'));
    assert.match(err.message, /table orders: public\.oehdr has no column "cust_no" \(mapped to customerId\) — did you mean "CUST_NO"\?/);
    return true;
  });
});

test('the cursor column and child columns are checked too', async () => {
  await assert.rejects(checkColumns(catalogue({
    'public.oehdr': ['ord_no', 'cust_no', 'ord_dt'],
    'public.oelin': ['ord_no', 'line_no', 'item_no', 'qty', 'unit_price'],
  }), table), /"upd_dt" \(cursor column\)/);
  await assert.rejects(checkColumns(catalogue({
    'public.oehdr': ['ord_no', 'cust_no', 'ord_dt', 'upd_dt'],
    'public.oelin': ['ord_no', 'item_no', 'qty', 'unit_price'],
  }), table), /public\.oelin has no column "line_no" \(children\.lines\.orderBy\)/);
});
