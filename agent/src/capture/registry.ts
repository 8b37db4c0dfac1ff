/**
 * One line per capture strategy. The SQL Server strategies are imported statically:
 * they load only light modules (the mssql package itself is loaded lazily by the mssql
 * driver), and a static import keeps createStrategy synchronous.
 */
import type { TableConfig } from '../config/types.ts';
import type { CaptureStrategy } from './types.ts';
import { CursorStrategy } from './cursor.ts';
import { DiffStrategy } from './diff.ts';
import { createMssqlCtStrategy } from './mssql-ct.ts';
import { createMssqlCdcStrategy } from './mssql-cdc.ts';

const FACTORIES: Record<TableConfig['strategy'], (table: TableConfig) => CaptureStrategy> = {
  cursor: (t) => new CursorStrategy(t) as CaptureStrategy,
  diff: (t) => new DiffStrategy(t) as CaptureStrategy,
  'mssql-ct': createMssqlCtStrategy,
  'mssql-cdc': createMssqlCdcStrategy,
};

export function createStrategy(table: TableConfig): CaptureStrategy {
  const make = FACTORIES[table.strategy];
  if (!make) throw new TypeError(`table ${table.name}: unknown strategy ${JSON.stringify(table.strategy)}`);
  return make(table);
}
