/**
 * Real services for integration tests. When a service does not answer, the test is
 * skipped with the reason on a developer's machine, and FAILS under CI=true or
 * DOVETAIL_REQUIRE_SERVICES=1: services make tests required in CI.
 */
import { createConnection } from 'node:net';

export const required = process.env.CI === 'true' || process.env.DOVETAIL_REQUIRE_SERVICES === '1';

export function portOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    const done = (ok: boolean) => { s.destroy(); resolve(ok); };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Returns undefined when the service is there, or a skip reason when it is not and
 * services are optional. Throws when it is not there and services are required.
 */
export async function service(name: string, host: string, port: number): Promise<string | undefined> {
  if (await portOpen(host, port)) return undefined;
  const reason = `${name} is not reachable at ${host}:${port}`;
  if (required) throw new Error(`${reason} (required: CI=true or DOVETAIL_REQUIRE_SERVICES=1)`);
  return reason;
}

export const PG = { host: process.env.PGHOST_TEST ?? '127.0.0.1', port: 5432, user: 'postgres' };
export const MARIADB = { host: '127.0.0.1', port: 3306, user: 'root' };
export const NATS = { host: '127.0.0.1', port: 4222 };
