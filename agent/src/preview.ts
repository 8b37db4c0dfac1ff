/** `dovetail-agent preview`: what the next capture would send, as JSON lines. Changes no state. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { createLogger, isDovetailError } from '@dovetail/shared';
import type { AgentConfig } from './config/types.ts';
import { createDriver } from './sources/registry.ts';
import { createStrategy } from './capture/registry.ts';
import { compileMapping } from './mapping/index.ts';
import { Outbox } from './outbox/outbox.ts';
import { loadIdentity } from './identity/identity.ts';
import { PreviewSink } from './preview-sink.ts';
import { TableRunner, unknownTable } from './table-runner.ts';

export interface PreviewOptions {
  table?: string | undefined;
  /** Events per table; 0 = no limit. */
  limit: number;
  out: Writable;
  err: Writable;
}

export async function runPreview(cfg: AgentConfig, opts: PreviewOptions): Promise<{ events: number; quarantined: number; failedTables: string[] }> {
  const tables = opts.table ? cfg.tables.filter((t) => t.name === opts.table) : cfg.tables;
  if (opts.table && tables.length === 0) throw unknownTable(opts.table, cfg.tables.map((t) => t.name));
  let agentId = 'preview';
  try {
    agentId = (await loadIdentity(cfg.agent.dataDir)).agentId;
  } catch (err) {
    if (!isDovetailError(err, 'AGENT_NOT_ENROLLED')) throw err;
  }
  // Start from the committed positions when the buffer exists and no agent holds it.
  let base: Outbox | undefined;
  if (existsSync(join(cfg.agent.dataDir, 'db'))) {
    try {
      base = await Outbox.open(cfg.agent.dataDir, { readOnly: true });
    } catch (err) {
      if (!isDovetailError(err, 'AGENT_ALREADY_RUNNING')) throw err;
      opts.err.write('preview: the agent is running and holds the buffer; previewing from a full snapshot instead of its positions\n');
    }
  }
  // Errors reach the user as one plain line each (below); the runner's own log lines would repeat them.
  const logger = createLogger({ name: 'dovetail-agent', level: 'fatal', destination: { write: (s: string) => opts.err.write(s) } as never });
  const driver = await createDriver(cfg.source);
  let events = 0;
  let quarantined = 0;
  const failedTables: string[] = [];
  try {
    await driver.connect();
    for (const table of tables) {
      let n = 0;
      const runner = new TableRunner({
        table, strategy: createStrategy(table), sink: new PreviewSink(base), driver: () => driver, logger,
        mapper: compileMapping(table, { timeZone: cfg.source.timeZone, system: cfg.source.system, agentId }),
        onEvents: (evs, q) => {
          for (const e of q) {
            opts.err.write(JSON.stringify({ quarantined: true, table: e.table, key: e.key, code: e.code, reason: e.reason }) + '\n');
            quarantined++;
          }
          for (const e of evs) {
            if (opts.limit && n >= opts.limit) return true;
            opts.out.write(JSON.stringify(e) + '\n');
            n++;
            events++;
          }
          return opts.limit > 0 && n >= opts.limit;
        },
      });
      const ok = await runner.runOnce(new AbortController().signal);
      if (!ok && runner.status.lastError) {
        const { code, message } = runner.status.lastError;
        opts.err.write(`preview: table ${table.name}: ${code}: ${message}\n`);
        failedTables.push(table.name);
      }
    }
  } finally {
    await driver.close().catch(() => undefined);
    await base?.close();
  }
  return { events, quarantined, failedTables };
}
