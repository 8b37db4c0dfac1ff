/**
 * An embedded PostgreSQL (PGlite, in-process WASM) served over the wire protocol on a
 * free port, with the agent's postgres driver connected to it (max 1 connection, as
 * the socket server accepts one at a time). Runs on any machine, no services needed.
 */
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { createPostgresDriver } from '../../agent/src/sources/postgres/index.ts';
import type { SourceDriver } from '../../agent/src/sources/types.ts';
import type { SourceConfig } from '../../agent/src/config/types.ts';

export interface PgliteSource {
  driver: SourceDriver;
  /** Run DDL/DML directly on PGlite (not through the driver's single connection). */
  exec(sql: string): Promise<void>;
  url: string;
  teardown(): Promise<void>;
}

export function sourceConfig(url: string, over: Partial<SourceConfig> = {}): SourceConfig {
  return { type: 'postgres', system: 'erp', url, timeZone: 'UTC', maxConnections: 1, queryTimeoutMs: 10_000, ...over };
}

export async function startPgliteSource(): Promise<PgliteSource> {
  const db = await PGlite.create();
  const server = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1' });
  await server.start();
  const url = `postgres://postgres@${server.getServerConn()}/postgres`;
  const driver = createPostgresDriver(sourceConfig(url));
  await driver.connect();
  return {
    driver,
    url,
    async exec(sql) {
      await db.exec(sql);
    },
    async teardown() {
      await driver.close();
      await server.stop();
      await db.close();
    },
  };
}
