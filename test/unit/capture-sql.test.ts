/** Keyset predicates per dialect and exact cursor arithmetic (no floats, no Dates). */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Params, seekAfter, rowHasher } from '../../agent/src/capture/sql.ts';
import type { TableConfig } from '../../agent/src/config/types.ts';
import { minusOverlap, compareCursor, cursorParamExpr } from '../../agent/src/capture/cursor-values.ts';
import { postgresDialect } from '../../agent/src/sources/postgres/index.ts';
import type { Dialect } from '../../agent/src/sources/types.ts';
import type { CursorConfig } from '../../agent/src/config/types.ts';

const mssqlLike: Dialect = {
  name: 'mssql', quoteIdent: (s) => `[${s}]`, quoteTable: (s) => s.split('.').map((p) => `[${p}]`).join('.'),
  param: (i) => `@p${i}`, limit: (sql) => sql,
};

it('seekAfter uses row values on postgres and the OR expansion elsewhere', () => {
  const p1 = new Params(postgresDialect);
  assert.equal(seekAfter(postgresDialect, ['a', 'b'], [1, 'x'], p1), '("a", "b") > ($1, $2)');
  assert.deepEqual(p1.values, [1, 'x']);
  const p2 = new Params(mssqlLike);
  assert.equal(seekAfter(mssqlLike, ['a', 'b', 'c'], [1, 'x', 2], p2),
    '([a] > @p1 OR ([a] = @p2 AND [b] > @p3) OR ([a] = @p4 AND [b] = @p5 AND [c] > @p6))');
  assert.deepEqual(p2.values, [1, 1, 'x', 1, 'x', 2]);
});

const ts: CursorConfig = { column: 'c', type: 'timestamp', overlapMs: 5000, overlapUnits: 0 };

it('subtracts the overlap exactly, keeping format, fraction digits and offset', () => {
  assert.equal(minusOverlap(ts, '2024-03-01 00:00:03.1234567'), '2024-02-29 23:59:58.1234567');
  assert.equal(minusOverlap(ts, '2024-01-01T00:00:00.000001+05:30'), '2023-12-31T23:59:55.000001+05:30');
  assert.equal(minusOverlap({ ...ts, overlapMs: 1500 }, '2024-01-01 00:00:00'), '2023-12-31 23:59:58.500');
  assert.equal(minusOverlap({ ...ts, type: 'integer', overlapUnits: 10 }, '9007199254740993'), '9007199254740983');
  assert.equal(minusOverlap({ ...ts, type: 'integer', overlapUnits: 10 }, 100), 90);
  assert.equal(minusOverlap({ ...ts, type: 'rowversion', overlapUnits: 16 }, '0x0000000000000100'), '0x00000000000000F0');
  assert.equal(minusOverlap({ ...ts, type: 'rowversion', overlapUnits: 16 }, '0x0000000000000001'), '0x0000000000000000');
});

it('orders cursor values by instant, digit-exact', () => {
  assert.equal(compareCursor('timestamp', '2024-01-01T10:00:00+02:00', '2024-01-01T08:00:00.000001+00:00'), -1);
  assert.equal(compareCursor('timestamp', '2024-01-01 10:00:00.1234567', '2024-01-01 10:00:00.1234568'), -1);
  assert.equal(compareCursor('timestamp', '2024-01-01 10:00:00.5', '2024-01-01 10:00:00.500'), 0);
  assert.equal(compareCursor('integer', '9007199254740993', '9007199254740992'), 1);
  assert.equal(compareCursor('rowversion', '0x00000000000000FF', '0x0000000000000100'), -1);
});

it('binds rowversion as binary per dialect', () => {
  assert.equal(cursorParamExpr(postgresDialect, 'rowversion', '$1'), "decode($1, 'hex')");
  assert.equal(cursorParamExpr(mssqlLike, 'rowversion', '@p1'), 'CONVERT(binary(8), @p1, 1)');
  assert.equal(cursorParamExpr(mssqlLike, 'timestamp', '@p1'), '@p1');
});

it('row hash covers mapped columns and children, ignores column order and unmapped columns', () => {
  const f = (column: string) => ({ column, type: 'string' as const, trim: false, required: false });
  const table = {
    name: 't', table: 't', key: ['a'], entity: 'product', strategy: 'diff', schedule: { everyMs: 1000 }, pageSize: 10, onGap: 'resnapshot',
    map: { sku: f('a'), description: f('b') },
    children: { lines: { table: 'l', parentKey: ['a'], orderBy: [], into: 'lines', map: { lineNumber: f('q') } } },
  } as unknown as TableConfig;
  const rowHash = rowHasher(table);
  assert.equal(rowHash({ a: 1, b: '2' }), rowHash({ b: '2', a: 1 }));
  assert.notEqual(rowHash({ a: 1, b: '2' }), rowHash({ a: 1, b: '3' }), 'a mapped column changes the hash');
  assert.equal(rowHash({ a: 1, b: '2', fax: 'x' }), rowHash({ a: 1, b: '2', fax: 'y' }), 'an unmapped column does not');
  assert.notEqual(rowHash({ a: 1 }, { lines: [{ q: '1.0' }] }), rowHash({ a: 1 }, { lines: [{ q: '1.00' }] }));
  assert.notEqual(rowHash({ a: 1 }, { lines: [] }), rowHash({ a: 1 }, { lines: [{ q: '1' }] }));
  assert.equal(rowHash({ a: 1 }, { lines: [{ q: '1', note: 'x' }] }), rowHash({ a: 1 }, { lines: [{ q: '1', note: 'y' }] }));
});

it('the window test agrees with exact comparison, with and without the whole-second fast path', async () => {
  const { atLeast, compareCursor } = await import('../../agent/src/capture/cursor-values.ts');
  const values = [
    '2024-01-01 09:59:59.999999', '2024-01-01 10:00:00', '2024-01-01 10:00:00.0000001', '2024-01-01 10:00:00.1',
    '2024-01-01 10:00:00.5', '2024-01-01 10:00:01', '2023-12-31 23:59:59', '2024-01-01T10:00:00.2',
    '2024-01-01 10:00:00.3+00:00', '2024-01-01 11:00:00+01:00', '2024-01-01 09:00:00-02:00',
  ];
  for (const low of ['2024-01-01 10:00:00.1', '2024-01-01T10:00:00', '2024-01-01 10:00:00+00:00']) {
    const test = atLeast('timestamp', low);
    for (const v of values) assert.equal(test(v), compareCursor('timestamp', v, low) >= 0, `${v} >= ${low}`);
  }
  assert.equal(atLeast('timestamp', null)('2000-01-01 00:00:00'), true);
  assert.equal(atLeast('integer', '10')('9'), false);
  assert.equal(atLeast('integer', '10')('10'), true);
});
