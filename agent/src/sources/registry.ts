/**
 * One line per source type. mssql and odbc live in their own folders and are
 * imported lazily so their native/optional packages load only when configured.
 */
import { DovetailError } from '@dovetail/shared';
import type { SourceConfig } from '../config/types.ts';
import type { SourceDriver } from './types.ts';
import { createPostgresDriver } from './postgres/index.ts';

type Factory = (config: SourceConfig) => SourceDriver | Promise<SourceDriver>;

async function lazy(type: string, load: () => Promise<Record<string, unknown>>, exportName: string): Promise<Factory> {
  let mod: Record<string, unknown>;
  try {
    mod = await load();
  } catch (err) {
    throw new DovetailError(
      'AGENT_SOURCE_DRIVER_MISSING',
      `source.type ${type}: its driver could not be loaded (is the ${type} package installed?)`,
      { type },
      { cause: err },
    );
  }
  const f = mod[exportName];
  if (typeof f !== 'function') {
    throw new DovetailError('AGENT_SOURCE_DRIVER_MISSING', `source.type ${type}: driver module does not export ${exportName}()`, { type });
  }
  return f as Factory;
}

/** A computed specifier: those folders are written separately and may be absent from a build. */
function importSibling(rel: string): Promise<Record<string, unknown>> {
  return import(new URL(rel, import.meta.url).href) as Promise<Record<string, unknown>>;
}

const FACTORIES: Record<SourceConfig['type'], () => Promise<Factory>> = {
  postgres: async () => createPostgresDriver,
  mssql: () => lazy('mssql', () => importSibling('./mssql/index.ts'), 'createMssqlDriver'),
  odbc: () => lazy('odbc', () => importSibling('./odbc/index.ts'), 'createOdbcDriver'),
};

/** A driver for the configured source (not yet connected: call connect()). */
export async function createDriver(config: SourceConfig): Promise<SourceDriver> {
  const make = FACTORIES[config.type];
  if (!make) throw new TypeError(`unknown source.type ${JSON.stringify(config.type)}`);
  return (await make())(config);
}
