/**
 * The ONE place that turns database driver errors into DovetailErrors and decides
 * whether a failed source operation is worth retrying. Drivers call
 * `classifySourceError`; the capture coordinator calls `isRetryable`.
 *
 * Classification looks only at structured fields (SQLSTATE `code`, SQL Server
 * `number`, Node system `code`), never at message text. Driver authors (mssql,
 * odbc) add their codes to the tables below, each with a comment saying why.
 */
import { DovetailError, isDovetailError, type ErrorCode } from '@dovetail/shared';

/** What a raw driver error means for the agent. */
export interface SourceErrorClass {
  code: ErrorCode;
  retryable: boolean;
}

/** PostgreSQL SQLSTATE codes (also reported by ODBC drivers for PostgreSQL/MariaDB as `state`). */
const SQLSTATE: Record<string, SourceErrorClass> = {
  // Deadlock victim: the other transaction won; running ours again normally succeeds.
  '40P01': { code: 'AGENT_SOURCE_QUERY', retryable: true },
  // Serialization failure: by definition "retry the transaction".
  '40001': { code: 'AGENT_SOURCE_QUERY', retryable: true },
  // statement_timeout / cancel: the server was busy; the next poll may fit in time.
  '57014': { code: 'AGENT_SOURCE_QUERY', retryable: true },
  // admin_shutdown / crash_shutdown / cannot_connect_now: server restarting, it comes back.
  '57P01': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  '57P02': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  '57P03': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  // Too many connections: capacity frees up when other clients disconnect.
  '53300': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  // Permission denied: retrying cannot grant a privilege; a DBA must.
  '42501': { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
  // Authentication failed: the same credentials fail again (and retries may lock the login).
  '28P01': { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
  '28000': { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
  // Undefined table/column/database: the config names something that does not exist.
  '42P01': { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  '42703': { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  '3D000': { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  '3F000': { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  // ODBC (odbc driver: the first diagnostic's SQLSTATE). Class 08 = the link failed or was
  // refused: the database restarts or the network heals, so retry.
  '08001': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  '08004': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  '08S01': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  '08003': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  '08006': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  // ODBC timeouts (query / connection): the server was slow; the next attempt may fit.
  'HYT00': { code: 'AGENT_SOURCE_QUERY', retryable: true },
  'HYT01': { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  // ODBC base table / column not found (MariaDB, SQL Server and most drivers).
  '42S02': { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  '42S22': { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  // Driver manager: DSN/driver not registered (IM002) or its library cannot be loaded (IM003):
  // an install problem, no retry fixes it.
  'IM002': { code: 'AGENT_SOURCE_DRIVER_MISSING', retryable: false },
  'IM003': { code: 'AGENT_SOURCE_DRIVER_MISSING', retryable: false },
  // tedious login failure (not a SQLSTATE, but matched on `code` the same way): wrong credentials stay wrong.
  ELOGIN: { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
};

/** SQL Server error numbers (`err.number` from tedious/mssql, native error from ODBC). */
const MSSQL_NUMBER: Record<number, SourceErrorClass> = {
  // Deadlock victim: SQL Server itself says "rerun the transaction".
  1205: { code: 'AGENT_SOURCE_QUERY', retryable: true },
  // Lock request timeout: contention, transient.
  1222: { code: 'AGENT_SOURCE_QUERY', retryable: true },
  // Snapshot isolation update conflict: serialization failure, retry.
  3960: { code: 'AGENT_SOURCE_QUERY', retryable: true },
  // SELECT/EXECUTE permission denied on object/column: needs a GRANT, not a retry.
  229: { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
  230: { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
  // Login failed: wrong credentials stay wrong.
  18456: { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
  // Invalid object name / invalid column name: config points at something absent.
  208: { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  207: { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  // Cannot open database requested by the login: database missing or offline.
  4060: { code: 'AGENT_SOURCE_MISSING_OBJECT', retryable: false },
  // Permission denied in database / "user does not have permission" (e.g. VIEW CHANGE TRACKING): a GRANT fixes it.
  262: { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
  297: { code: 'AGENT_SOURCE_PERMISSION', retryable: false },
  // Snapshot isolation not allowed in this database (mssql-ct needs ALLOW_SNAPSHOT_ISOLATION ON): a DBA setting.
  3952: { code: 'AGENT_SOURCE_NOT_CONFIGURED', retryable: false },
  // Change Tracking not enabled on the table: ALTER TABLE ... ENABLE CHANGE_TRACKING, not a retry.
  4998: { code: 'AGENT_SOURCE_NOT_CONFIGURED', retryable: false },
  22105: { code: 'AGENT_SOURCE_NOT_CONFIGURED', retryable: false },
  // cdc.fn_cdc_get_all_changes_* given an LSN range outside the capture instance (cleanup ran between
  // our min-LSN check and the read): the next poll sees the gap and applies onGap.
  313: { code: 'AGENT_POSITION_INVALID', retryable: true },
  // Azure SQL / failover transients (database unavailable, reconfiguring, throttled): documented as "retry".
  40613: { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  40197: { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
  40501: { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true },
};

/** Node socket errors and driver transport codes: the network or server went away. */
const TRANSPORT_CODES = new Set([
  // Nothing listens / the connection was cut / routing failed: servers restart, networks heal.
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  // DNS name not found right now (DNS servers flap on customer networks).
  'ENOTFOUND',
  // tedious/mssql transport codes: socket error, connection closed, connect/request timeout.
  'ESOCKET', 'ECONNCLOSED', 'ETIMEOUT', 'ENOTOPEN',
  // SQL Browser did not answer the named-instance lookup (UDP 1434): same as host unreachable.
  'EINSTLOOKUP',
]);

function field(err: unknown, name: string): unknown {
  return typeof err === 'object' && err !== null ? (err as Record<string, unknown>)[name] : undefined;
}

/**
 * Classify a raw driver error by its structured fields; undefined when nothing is known.
 * Used for both classification and retry decisions, so they never disagree.
 */
export function classifyRaw(err: unknown): SourceErrorClass | undefined {
  const code = field(err, 'code');
  if (typeof code === 'string') {
    const byState = SQLSTATE[code];
    if (byState) return byState;
    if (TRANSPORT_CODES.has(code)) return { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true };
  }
  const state = field(err, 'state') ?? field(err, 'sqlState');
  if (typeof state === 'string' && SQLSTATE[state]) return SQLSTATE[state];
  const num = field(err, 'number');
  if (typeof num === 'number' && MSSQL_NUMBER[num]) return MSSQL_NUMBER[num];
  // mssql wraps the server error in `originalError`; ODBC puts details in `odbcErrors`.
  const inner = field(err, 'originalError') ?? field(err, 'cause');
  if (inner !== undefined && inner !== err) return classifyRaw(inner);
  return undefined;
}

/**
 * Wrap a driver error as a DovetailError naming the operation and table (never the
 * connection string). `connectionLevel` marks errors the driver knows came from the
 * transport (e.g. pg's "connection terminated", which carries no code): they are
 * UNREACHABLE and retryable.
 */
export function classifySourceError(
  err: unknown,
  where: { op: string; table?: string; source: string },
  opts: { connectionLevel?: boolean } = {},
): DovetailError {
  if (isDovetailError(err)) return err;
  const known = classifyRaw(err);
  const cls: SourceErrorClass = known
    ?? (opts.connectionLevel ? { code: 'AGENT_SOURCE_UNREACHABLE', retryable: true } : { code: 'AGENT_SOURCE_QUERY', retryable: false });
  const detail = err instanceof Error ? err.message : String(err);
  const what = where.table ? `${where.op} on ${where.table}` : where.op;
  const sqlState = field(err, 'code');
  return new DovetailError(
    cls.code,
    `${where.source} source: ${what} failed: ${detail}`,
    { source: where.source, op: where.op, table: where.table, retryable: cls.retryable, ...(typeof sqlState === 'string' ? { driverCode: sqlState } : {}) },
    { cause: err },
  );
}

/**
 * Whether a failed source operation should be retried with backoff. A DovetailError
 * made by classifySourceError carries its decision; an unknown error is not retried
 * (better to surface a bug than to spin on it).
 */
export function isRetryable(err: unknown): boolean {
  if (isDovetailError(err)) {
    const r = err.context.retryable;
    if (typeof r === 'boolean') return r;
    // Unreachable means "the database is not there right now": always worth another try.
    if (err.code === 'AGENT_SOURCE_UNREACHABLE') return true;
    return err.cause !== undefined ? isRetryable(err.cause) : false;
  }
  return classifyRaw(err)?.retryable ?? false;
}
