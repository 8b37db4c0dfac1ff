/**
 * ODBC source: `source.type: odbc`, `source.url` an ODBC connection string
 * (DSN=... or DSN-less DRIVER={...};...), `source.dialect` the SQL the database
 * speaks (inferred from DRIVER= when absent).
 */
import type { SourceConfig } from '../../config/types.ts';
import type { SourceDriver } from '../types.ts';
import { OdbcDriver } from './driver.ts';
import { loadOdbc, type OdbcModule } from './load.ts';

export { OdbcDriver, MAX_CONCURRENT_ODBC_CALLS, LONG_DATA_INITIAL_BYTES, convertValue, inferDialect } from './driver.ts';
export { ODBC_DIALECTS, selectList, selectExpr, readAs, type OdbcDialectName, type ReadAs } from './dialects.ts';
export { INSTALL_HINT, loadOdbc, type OdbcModule, type OdbcConnection, type OdbcResult } from './load.ts';

/**
 * Throws DovetailError AGENT_SOURCE_DRIVER_MISSING when the odbc package or unixODBC
 * cannot be loaded. `deps.loadOdbc` replaces the package (tests).
 */
export async function createOdbcDriver(
  config: SourceConfig,
  deps: { loadOdbc?: () => Promise<OdbcModule> } = {},
): Promise<SourceDriver> {
  const odbc = await (deps.loadOdbc ?? (() => loadOdbc()))();
  return new OdbcDriver(odbc, config);
}
