/** Shared setup for the ODBC integration tests (not a test file itself). */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import type { SourceConfig } from '../../agent/src/config/types.ts';
import type { SourceDriver, Row } from '../../agent/src/sources/types.ts';
import { createOdbcDriver } from '../../agent/src/sources/odbc/index.ts';
import { required } from '../helpers/services.ts';

export const run = promisify(execFile);

/** The ODBC driver libraries Debian's packages install (registered by .ci/odbc-setup.sh). */
export const ODBC_LIBS = {
  postgres: '/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so',
  mysql: '/usr/lib/x86_64-linux-gnu/odbc/libmaodbc.so',
  sqlite: '/usr/lib/x86_64-linux-gnu/odbc/libsqlite3odbc.so',
} as const;

/**
 * Skip reason when the odbc package or the given ODBC driver library is absent on a
 * developer machine; under CI they are required, so this throws instead.
 */
export async function odbcAvailable(lib: string): Promise<string | undefined> {
  let reason: string | undefined;
  try {
    const specifier = 'odbc';
    await import(specifier);
  } catch (err) {
    reason = `the odbc package cannot load (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`;
  }
  if (!reason && !existsSync(lib)) reason = `ODBC driver ${lib} is not installed (run .ci/odbc-setup.sh)`;
  if (reason && required) throw new Error(`${reason} (required: CI=true or DOVETAIL_REQUIRE_SERVICES=1)`);
  return reason;
}

export function odbcConfig(url: string, dialect: SourceConfig['dialect'], extra: Partial<SourceConfig> = {}): SourceConfig {
  return { type: 'odbc', system: 'erp', url, timeZone: 'UTC', maxConnections: 2, queryTimeoutMs: 15_000, dialect, ...extra };
}

export async function openDriver(config: SourceConfig): Promise<SourceDriver> {
  const d = await createOdbcDriver(config);
  await d.connect();
  return d;
}

/** `SELECT * FROM table [WHERE] ORDER BY ...` as capture strategies write it; the driver makes it exact. */
export async function selectAll(d: SourceDriver, table: string, orderBy: string, where = '', params: unknown[] = []): Promise<Row[]> {
  return d.query(`SELECT * FROM ${d.dialect.quoteTable(table)}${where ? ` WHERE ${where}` : ''} ORDER BY ${orderBy}`, params as never);
}

/** A 3 MiB text value with a recognisable start and end. */
export const BIG_TEXT = `start-${'é'.repeat(1024 * 1024)}${'x'.repeat(1024 * 1024)}-end`;
