/**
 * The agent runtime: one state union and one shutdown path. Wires config, source
 * driver, capture strategies, mappers, outbox, uplink and schedules. Only the CLI
 * calls process.exit.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { readdir, rm, mkdir } from 'node:fs/promises';
import { backoffDelay, decodeBatchBody, isDovetailError, type Logger } from '@dovetail/shared';
import type { AgentConfig } from './config/types.ts';
import type { SourceDriver } from './sources/types.ts';
import { createDriver } from './sources/registry.ts';
import { createStrategy } from './capture/registry.ts';
import { compileMapping } from './mapping/index.ts';
import { Outbox } from './outbox/outbox.ts';
import { Uplink } from './uplink/uplink.ts';
import { loadIdentity } from './identity/identity.ts';
import { Scheduler } from './schedule/index.ts';
import { TableRunner, unknownTable } from './table-runner.ts';
import { AGENT_VERSION } from './version.ts';
import { SnapshotProgress } from './progress.ts';

export type AgentState = 'starting' | 'running' | 'stopping' | 'stopped';

/** How often the status file `dovetail-agent status` reads is refreshed. */
const STATUS_EVERY_MS = 2000;
/** Folder the CLI drops resync requests into while the agent holds the LevelDB lock. */
export const RESYNC_DIR = 'resync-requests';

export interface AgentDeps {
  logger: Logger;
  now?: () => Date;
  createDriver?: typeof createDriver;
}

export class Agent {
  state: AgentState = 'starting';
  private readonly abort = new AbortController();
  private driver: SourceDriver | undefined;
  private runners = new Map<string, TableRunner>();
  private scheduler: Scheduler | undefined;
  private uplink: Uplink | undefined;
  private outbox: Outbox | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private connectAttempt = 0;
  private connecting: Promise<void> | undefined;

  constructor(readonly config: AgentConfig, private readonly deps: AgentDeps) {}

  async start(): Promise<void> {
    const { config } = this;
    const log = this.deps.logger;
    const now = this.deps.now ?? (() => new Date());
    const identity = await loadIdentity(config.agent.dataDir);
    const keys = identity.keyPair;
    this.outbox = await Outbox.open(config.agent.dataDir, {
      agentId: identity.agentId, secretKey: keys.secretKey,
      maxBatchEvents: config.hub.maxBatchEvents, maxBatchBytes: config.hub.maxBatchBytes, now,
    });
    const outbox = this.outbox;
    for (const table of config.tables) {
      const runner = new TableRunner({
        table, strategy: createStrategy(table),
        mapper: compileMapping(table, { timeZone: config.source.timeZone, system: config.source.system, agentId: identity.agentId }),
        sink: outbox, driver: () => this.requireDriver(), logger: log.child({ table: table.name }), now,
      });
      this.runners.set(table.name, runner);
    }
    this.uplink = new Uplink({
      hubUrl: identity.hubUrl || config.hub.url, identity, outbox, logger: log.child({ part: 'uplink' }),
      maxInFlightBatches: config.hub.maxInFlightBatches, reconnectInitialMs: config.hub.reconnectInitialMs,
      reconnectMaxMs: config.hub.reconnectMaxMs, heartbeatMs: config.hub.heartbeatMs, version: AGENT_VERSION, host: hostname(),
      // Status frames are the hub's heartbeat with health (fleet view), so they follow the heartbeat interval.
      statusIntervalMs: config.hub.heartbeatMs,
    });
    this.uplink.setStatusProvider(() => this.hubStatusReport());
    this.uplink.on('revoked', () => {
      log.error('the hub revoked or disabled this agent: capture continues into the local buffer, nothing is sent; ask the operator to re-enable it or re-enroll with `dovetail-agent enroll --force`');
    });
    this.uplink.start();
    this.scheduler = new Scheduler({ onError: (table, err) => log.error({ table, err }, 'capture run failed') });
    this.state = 'running';
    void this.ensureDriver();
    for (const table of config.tables) this.scheduler.add(table.name, table.schedule, () => this.tick(table.name));
    this.scheduler.start();
    // First capture right away rather than one interval from now.
    for (const table of config.tables) void this.scheduler.trigger(table.name);
    this.statusTimer = setInterval(() => void this.writeStatus(), STATUS_EVERY_MS);
    this.statusTimer.unref();
    if (process.stderr.isTTY) {
      const progress = new SnapshotProgress(process.stderr);
      this.progressTimer = setInterval(() => progress.render([...this.runners.values()].map((r) => r.status)), 500);
      this.progressTimer.unref();
    }
    log.info({ agentId: identity.agentId, tables: config.tables.map((t) => t.name), source: config.source.type }, 'agent running');
  }

  private requireDriver(): SourceDriver {
    if (!this.driver) throw Object.assign(new Error('source is not connected yet'), { code: 'ECONNREFUSED' });
    return this.driver;
  }

  /** Connect the source, retrying unreachable databases with backoff; capture waits meanwhile, nothing is lost. */
  private ensureDriver(): Promise<void> {
    if (this.driver) return Promise.resolve();
    this.connecting ??= (async () => {
      const make = this.deps.createDriver ?? createDriver;
      while (!this.abort.signal.aborted) {
        try {
          const d = await make(this.config.source);
          await d.connect();
          this.driver = d;
          this.connectAttempt = 0;
          this.deps.logger.info({ source: this.config.source.type }, 'connected to the ERP database');
          return;
        } catch (err) {
          const delay = backoffDelay(this.connectAttempt++, { initialMs: 1000, maxMs: 30_000 });
          const code = isDovetailError(err) ? err.code : 'AGENT_SOURCE_UNREACHABLE';
          this.deps.logger.error({ err, code, retryInMs: delay }, 'cannot reach the ERP database; retrying');
          if (code === 'AGENT_SOURCE_DRIVER_MISSING') return; // nothing to retry: the message says what to install
          await new Promise((r) => setTimeout(r, delay).unref());
        }
      }
    })().finally(() => { this.connecting = undefined; });
    return this.connecting;
  }

  private async tick(table: string): Promise<void> {
    if (this.state !== 'running') return;
    await this.processResyncRequests();
    if (!this.driver) {
      await this.ensureDriver();
      if (!this.driver) return;
    }
    const ok = await this.runners.get(table)!.runOnce(this.abort.signal);
    if (!ok) {
      // A dropped connection is rebuilt before the next tick.
      const err = this.runners.get(table)!.status.lastError;
      if (err && (err.code === 'AGENT_SOURCE_UNREACHABLE')) await this.resetDriver();
    }
  }

  private async resetDriver(): Promise<void> {
    const d = this.driver;
    this.driver = undefined;
    await d?.close().catch(() => undefined);
  }

  /** `dovetail-agent resync --table T` while running drops a file here; we reset that table's position. */
  private async processResyncRequests(): Promise<void> {
    const dir = join(this.config.agent.dataDir, RESYNC_DIR);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (this.runners.has(name)) {
        await this.outbox!.resetTable(name);
        this.deps.logger.info({ table: name }, 'resync requested: the table is re-snapshotted');
      }
      await rm(join(dir, name), { force: true });
    }
  }

  async resync(table: string): Promise<void> {
    if (!this.runners.has(table)) throw unknownTable(table, [...this.runners.keys()]);
    await mkdir(join(this.config.agent.dataDir, RESYNC_DIR), { recursive: true });
    await this.outbox!.resetTable(table);
  }

  statusReport(): Record<string, unknown> {
    return {
      state: this.state,
      uplink: this.uplink?.state,
      tables: [...this.runners.values()].map((r) => r.status),
    };
  }

  /** statusReport plus the local buffer, for the hub's fleet view: depth, bytes and the age of the oldest unsent batch (lag). */
  private async hubStatusReport(): Promise<Record<string, unknown>> {
    const outbox = this.outbox;
    if (!outbox) return this.statusReport();
    const stats = await outbox.stats();
    const [oldest] = stats.depth > 0 ? await outbox.pending(stats.lastAckedSeq, 1) : [];
    let oldestPendingAt: string | null = null;
    try {
      if (oldest) oldestPendingAt = decodeBatchBody(oldest.body).createdAt;
    } catch { /* a batch we wrote ourselves; if it does not decode the hub says so on send */ }
    return { ...this.statusReport(), outbox: { ...stats, oldestPendingAt } };
  }

  private async writeStatus(): Promise<void> {
    try {
      await this.outbox?.writeStatusFile({ ...this.statusReport() });
    } catch (err) {
      this.deps.logger.warn({ err }, 'could not write the status file');
    }
  }

  /** The one shutdown path: stop schedules, let in-flight capture finish (bounded), close socket, DB, source. */
  async stop(deadlineMs = 10_000): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'stopping';
    this.abort.abort();
    if (this.statusTimer) clearInterval(this.statusTimer);
    if (this.progressTimer) clearInterval(this.progressTimer);
    // In-flight runs see the aborted signal between pages; wait for them, bounded.
    const drain = this.scheduler?.stop() ?? Promise.resolve();
    await Promise.race([drain, new Promise((r) => setTimeout(r, deadlineMs).unref())]);
    await this.uplink?.stop();
    await this.writeStatus();
    await this.outbox?.close();
    await this.driver?.close().catch(() => undefined);
    this.state = 'stopped';
  }
}
