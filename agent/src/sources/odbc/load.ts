/**
 * The `odbc` package is an optionalDependency with a native binding that needs
 * unixODBC (libodbc.so.2) on Linux; it is loaded only when `source.type: odbc` is
 * configured, and its absence is an operator problem with a precise fix.
 */
import { DovetailError } from '@dovetail/shared';

/** The slice of the `odbc` package this driver uses (also what tests fake). */
export interface OdbcColumn {
  name: string;
  dataType: number;
  dataTypeName?: string;
  columnSize?: number;
  decimalDigits?: number;
  nullable?: boolean;
}

export interface OdbcResult extends Array<Record<string, unknown>> {
  columns: OdbcColumn[];
}

export interface OdbcQueryOptions {
  /** Seconds (SQL_ATTR_QUERY_TIMEOUT); 0 = none. */
  timeout?: number;
  /** First buffer for each long (TEXT/BLOB) value, grown by realloc as needed; the package default is 1 MiB. */
  initialBufferSize?: number;
}

export type OdbcParam = string | number | null;

export interface OdbcConnection {
  query(sql: string, params: OdbcParam[], options: OdbcQueryOptions): Promise<OdbcResult>;
  columns(catalog: string | null, schema: string | null, table: string | null, column: string | null): Promise<OdbcResult>;
  close(): Promise<void>;
}

export interface OdbcModule {
  connect(params: { connectionString: string; connectionTimeout?: number; loginTimeout?: number }): Promise<OdbcConnection>;
}

export const INSTALL_HINT =
  'install unixODBC and the ODBC driver for your database (Debian/Ubuntu: `apt-get install unixodbc odbc-postgresql` ' +
  '(or odbc-mariadb, libsqliteodbc); Windows: the ODBC driver from the database vendor), then `npm install odbc` in the agent folder';

/** `importer` is the seam tests use to simulate a machine without the package or unixODBC. */
export async function loadOdbc(importer: (specifier: string) => Promise<unknown> = (s) => import(s)): Promise<OdbcModule> {
  let mod: unknown;
  try {
    // A computed specifier keeps typecheck and bundling working where the optional package is absent.
    mod = await importer('odbc');
  } catch (err) {
    throw new DovetailError(
      'AGENT_SOURCE_DRIVER_MISSING',
      `source.type odbc: the odbc package or unixODBC could not be loaded (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); ${INSTALL_HINT}`,
      { type: 'odbc' },
      { cause: err },
    );
  }
  const m = ((mod as { default?: unknown }).default ?? mod) as Partial<OdbcModule>;
  if (typeof m.connect !== 'function') {
    throw new DovetailError('AGENT_SOURCE_DRIVER_MISSING', `source.type odbc: the installed odbc package has no connect(); ${INSTALL_HINT}`, { type: 'odbc' });
  }
  return m as OdbcModule;
}
