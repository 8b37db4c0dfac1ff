/**
 * SQL Server source (mssql/tedious). The registry imports this folder lazily, so
 * agents without SQL Server never load tedious.
 */
import type { SourceConfig } from '../../config/types.ts';
import type { SourceDriver } from '../types.ts';
import type { MssqlApi } from './api.ts';
import { MssqlDriver } from './driver.ts';

export { MssqlDriver, isMssqlDriver, parseMssqlUrl, type MssqlSession, type TypedParam, type Isolation } from './driver.ts';
export { mssqlDialect, splitTable, type MssqlDialect } from './dialect.ts';
export {
  selectList, selectExpr, bindParam, paramFor, normalizeRow, normalizeValue,
  rowversionToHex, hexToRowversion, bytesToHex, hexToBytes, type MssqlColumn, type ParamColumn,
} from './columns.ts';
export type { MssqlApi } from './api.ts';

/** `api` replaces the real `mssql` package (tests pass a scripted fake). */
export async function createMssqlDriver(config: SourceConfig, api?: MssqlApi): Promise<SourceDriver> {
  return new MssqlDriver(config, api);
}
