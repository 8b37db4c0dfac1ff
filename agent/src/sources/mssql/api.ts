/**
 * The small slice of the `mssql` package (tedious underneath) this driver calls.
 * Declaring it here keeps the driver honest about what it depends on and lets the
 * unit tests substitute a scripted fake (no SQL Server can run on the build machines).
 */

/** What `sql.VarChar(15)`, `sql.Binary(8)`, `sql.BigInt()`... return: opaque to us. */
export type SqlType = unknown;

export interface MssqlResult {
  recordset?: Array<Record<string, unknown>>;
}

export interface MssqlRequest {
  input(name: string, type: SqlType, value: unknown): MssqlRequest;
  query(sql: string): Promise<MssqlResult>;
}

export interface MssqlPool {
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  request(): MssqlRequest;
  on?(event: 'error', listener: (err: unknown) => void): unknown;
}

export interface MssqlTransaction {
  begin(isolationLevel: number): Promise<unknown>;
  commit(): Promise<unknown>;
  rollback(): Promise<unknown>;
  request(): MssqlRequest;
}

/** Type factories used by bindParam; names match the mssql exports. */
export interface MssqlTypes {
  VarChar(length?: number): SqlType;
  NVarChar(length?: number): SqlType;
  Char(length?: number): SqlType;
  NChar(length?: number): SqlType;
  Int(): SqlType;
  BigInt(): SqlType;
  SmallInt(): SqlType;
  TinyInt(): SqlType;
  Bit(): SqlType;
  Float(): SqlType;
  Binary(length?: number): SqlType;
  VarBinary(length?: number): SqlType;
  UniqueIdentifier(): SqlType;
}

export interface MssqlApi {
  ConnectionPool: {
    new (config: Record<string, unknown>): MssqlPool;
    parseConnectionString(s: string): Record<string, unknown>;
  };
  Transaction: new (pool: MssqlPool) => MssqlTransaction;
  ISOLATION_LEVEL: { READ_COMMITTED: number; SNAPSHOT: number };
  TYPES: MssqlTypes;
  /** Length marker for (n)varchar(max) / varbinary(max). */
  MAX: number;
}

/** Load the real package lazily so agents without SQL Server never load tedious. */
export async function loadMssql(): Promise<MssqlApi> {
  // No @types/mssql is installed: the interfaces above are the typing; a variable specifier keeps tsc out of it.
  const specifier = 'mssql';
  const mod = (await import(specifier)) as { default?: MssqlApi } & MssqlApi;
  return mod.default ?? mod;
}
