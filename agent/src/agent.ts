/**
 * The agent runtime: one state union and one shutdown path. Wires config, source
 * driver, capture strategies, mappers, outbox, uplink and schedules. Only the CLI
 * calls process.exit.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { readdir, readFile, rm, mkdir } from 'node:fs/promises';
import { backoffDelay, briefError, decodeBatchBody, isDovetailError, keyId, type Logger } from '@dovetail/shared';
import type { AgentConfig, TableConfig } from './config/types.ts';
import type { SourceDriver } from './sources/types.ts';
import { createDriver } from './sources/registry.ts';
import { createStrategy } from './capture/registry.ts';
import { compileMapping } from './mapping/index.ts';
import { Outbox } from './outbox/outbox.ts';
import { Uplink } from './uplink/uplink.ts';
import { keyNextPath, keyPath, loadIdentity, pinHubKey, readKeyFile, rotateAgentKey, type Identity } from './identity/identity.ts';
import { mergeRemoteConfig, readRemoteConfig, refusalReason, writeRemoteConfig } from './remote-config.ts';
import { Scheduler } from './schedule/index.ts';
import { TableRunner, checkColumns, unknownTable } from './table-runner.ts';
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
  private identity: Identity | undefined;
  /** The local config file's text as read at start: remote tables are merged into it. */
  private localText: string | undefined;
  /** Remote config version running; 0 = the local file only. */
  private configVersion = 0;
  private keyCheck: Promise<void> = Promise.resolve();

  /** The running config: the local file, or it with a remote `tables` section applied. */
  config: AgentConfig;

  constructor(config: AgentConfig, private readonly deps: AgentDeps) {
    this.config = config;
  }

  private newRunner(table: TableConfig, identity: Identity, outbox: Outbox): TableRunner {
    const { config } = this;
    const now = this.deps.now ?? (() => new Date());
    return new TableRunner({
      table, strategy: createStrategy(table),
      mapper: compileMapping(table, { timeZone: config.source.timeZone, system: config.source.system, agentId: identity.agentId }),
      sink: outbox, driver: () => this.requireDriver(), logger: this.deps.logger.child({ table: table.name }), now,
    });
  }

  /** A remote config accepted earlier is applied again on start; if it no longer validates (the local file changed), the local file runs. */
  private async loadRemoteConfig(): Promise<void> {
    const log = this.deps.logger;
    try {
      this.localText = await readFile(this.config.configPath, 'utf8');
    } catch {
      return; // no file to merge into (config built in memory): remote config is refused with that reason
    }
    let rec;
    try {
      rec = await readRemoteConfig(this.config.agent.dataDir);
    } catch (err) {
      log.error({ err }, 'cannot read the stored remote config; running the local config');
      return;
    }
    if (!rec) return;
    try {
      this.config = mergeRemoteConfig(this.localText, this.config.configPath, rec.document);
      this.configVersion = rec.version;
      log.info({ configVersion: rec.version }, 'applied the stored remote config');
    } catch (err) {
      log.error({ configVersion: rec.version, reason: refusalReason(err) }, 'the stored remote config no longer validates against the local config; running the local config');
    }
  }

  async start(): Promise<void> {
    await this.loadRemoteConfig();
    const { config } = this;
    const log = this.deps.logger;
    const now = this.deps.now ?? (() => new Date());
    const identity = await loadIdentity(config.agent.dataDir);
    this.identity = identity;
    const keys = identity.keyPair;
    this.outbox = await Outbox.open(config.agent.dataDir, {
      agentId: identity.agentId, secretKey: keys.secretKey,
      maxBatchEvents: config.hub.maxBatchEvents, maxBatchBytes: config.hub.maxBatchBytes, now,
    });
    const outbox = this.outbox;
    if (outbox.identityChange) {
      const c = outbox.identityChange;
      log.warn({ previousAgentId: c.previousAgentId, agentId: identity.agentId, droppedBatches: c.droppedBatches, resetTables: c.resetTables },
        're-enrolled under a new agent id: batches buffered under the old id cannot be sent under the new one, so they were dropped and every table is re-snapshotted (nothing captured is lost)');
    }
    for (const table of config.tables) this.runners.set(table.name, this.newRunner(table, identity, outbox));
    this.uplink = new Uplink({
      hubUrl: identity.hubUrl || config.hub.url, identity, outbox, logger: log.child({ part: 'uplink' }),
      onHubKeyPinned: (key) => pinHubKey(config.agent.dataDir, key.publicKey),
      maxInFlightBatches: config.hub.maxInFlightBatches, reconnectInitialMs: config.hub.reconnectInitialMs,
      reconnectMaxMs: config.hub.reconnectMaxMs, heartbeatMs: config.hub.heartbeatMs, version: AGENT_VERSION, host: hostname(),
      // Status frames are the hub's heartbeat with health (fleet view), so they follow the heartbeat interval.
      statusIntervalMs: config.hub.heartbeatMs,
    });
    this.uplink.setStatusProvider(() => this.hubStatusReport());
    this.uplink.setConfigHandler((version, document) => this.applyRemoteConfig(version, document));
    this.uplink.on('revoked', () => {
      log.warn('capture continues into the local buffer while the hub refuses this agent; nothing is lost, it is sent after a restart once the agent is re-enabled (or re-snapshotted under a new id after a re-enrollment)');
    });
    this.uplink.start();
    this.scheduler = new Scheduler({ onError: (table, err) => log.error({ table, err }, 'capture run failed') });
    this.state = 'running';
    void this.ensureDriver();
    for (const table of config.tables) this.scheduler.add(table.name, table.schedule, () => this.tick(table.name));
    this.scheduler.start();
    // First capture right away rather than one interval from now.
    for (const table of config.tables) void this.scheduler.trigger(table.name);
    this.statusTimer = setInterval(() => {
      void this.writeStatus();
      this.keyCheck = this.keyCheck.then(() => this.pickUpKey());
    }, STATUS_EVERY_MS);
    this.statusTimer.unref();
    void this.resumeKeyRotation();
    if (process.stderr.isTTY) {
      const progress = new SnapshotProgress(process.stderr);
      this.progressTimer = setInterval(() => progress.render([...this.runners.values()].map((r) => r.status)), 500);
      this.progressTimer.unref();
    }
    log.info({ agentId: identity.agentId, tables: config.tables.map((t) => t.name), source: config.source.type }, 'agent running');
  }

  /**
   * `dovetail-agent keys rotate` replaces agent.key while the agent runs: new batches and
   * new connections use the new key from the next check (every STATUS_EVERY_MS). Batches
   * already buffered keep their old signature; the hub accepts them during the grace.
   */
  async pickUpKey(): Promise<void> {
    const id = this.identity;
    const outbox = this.outbox;
    if (!id || !outbox || this.state !== 'running') return;
    try {
      const kp = await readKeyFile(keyPath(this.config.agent.dataDir));
      const next = keyId(kp.publicKey);
      if (next === id.keyId) return;
      await outbox.setSigningKey(kp.secretKey);
      const previous = id.keyId;
      id.keyPair = kp;
      id.keyId = next;
      this.deps.logger.info({ keyId: next, previousKeyId: previous }, 'agent key rotated: new batches and connections use the new key');
    } catch (err) {
      this.deps.logger.warn({ err }, 'could not check the agent key file');
    }
  }

  /** A rotation interrupted before the hub confirmed (agent.key.next left behind) is finished in the background. */
  private async resumeKeyRotation(): Promise<void> {
    const dataDir = this.config.agent.dataDir;
    try {
      await readFile(keyNextPath(dataDir));
    } catch {
      return;
    }
    try {
      const r = await rotateAgentKey({ dataDir, resumeOnly: true });
      if (r) this.deps.logger.info({ keyId: r.newKeyId, previousKeyId: r.oldKeyId, retiresAt: r.retiresAt }, 'finished an interrupted agent key rotation');
    } catch (err) {
      this.deps.logger.warn({ err }, 'could not finish an interrupted agent key rotation; the current key stays in use (run `dovetail-agent keys rotate` again)');
    }
  }

  /**
   * Applies a verified remote config (the uplink checked the hub signature): validated with
   * the local loader, then swapped in atomically between capture runs. Refused: nothing changes.
   */
  applyRemoteConfig(version: number, document: string): Promise<{ ok: boolean; reason: string }> {
    const run = this.applying.then(async () => {
      const log = this.deps.logger;
      if (this.state !== 'running') return { ok: false, reason: 'AGENT_CONFIG_REFUSED: the agent is stopping' };
      if (version < this.configVersion) return { ok: false, reason: `AGENT_CONFIG_REFUSED: version ${version} is older than the running version ${this.configVersion}` };
      if (version === this.configVersion) return { ok: true, reason: '' };
      if (this.localText === undefined) return { ok: false, reason: 'AGENT_CONFIG_REFUSED: the local config file could not be read at start; nothing to merge the remote tables into' };
      let next: AgentConfig;
      try {
        next = mergeRemoteConfig(this.localText, this.config.configPath, document);
      } catch (err) {
        // The loader names the local file, but the problem is in the pushed tables merged into it.
        return { ok: false, reason: `pushed version ${version}: ${refusalReason(err).replace(`${this.config.configPath}: `, '')}` };
      }
      // With the database reachable, a table naming a column that does not exist is refused
      // now rather than accepted and failing on every poll.
      if (this.driver) {
        for (const t of next.tables) {
          const prev = this.config.tables.find((x) => x.name === t.name);
          if (prev && isDeepStrictEqual(prev, t)) continue;
          try {
            await checkColumns(this.driver, t);
          } catch (err) {
            if (isDovetailError(err, 'AGENT_SOURCE_MISSING_OBJECT')) return { ok: false, reason: `AGENT_CONFIG_REFUSED: version ${version}: ${err.message}` };
            log.warn({ ...briefError(err), table: t.name }, 'could not check the pushed table against the database; applying it, capture reports any problem');
          }
        }
      }
      if (!(await this.swapTables(next))) return { ok: false, reason: 'AGENT_CONFIG_REFUSED: the agent is stopping' };
      await writeRemoteConfig(this.config.agent.dataDir, { version, document, appliedAt: new Date().toISOString() });
      this.configVersion = version;
      log.info({ configVersion: version, tables: next.tables.map((t) => t.name) }, 'applied remote config');
      return { ok: true, reason: '' };
    });
    this.applying = run.catch(() => undefined);
    return run;
  }

  private applying: Promise<unknown> = Promise.resolve();

  /** Stop the schedules (waiting for runs in progress), swap the runners, start again. Unchanged tables keep their runner and position. */
  private async swapTables(next: AgentConfig): Promise<boolean> {
    const old = this.config;
    const outbox = this.outbox!;
    await this.scheduler?.stop();
    // stop() may have begun while runs drained: its own shutdown path owns the outbox now.
    if (this.state !== 'running') return false;
    const runners = new Map<string, TableRunner>();
    for (const t of next.tables) {
      const prev = old.tables.find((x) => x.name === t.name);
      const kept = this.runners.get(t.name);
      if (prev && kept && isDeepStrictEqual(prev, t)) {
        runners.set(t.name, kept);
        continue;
      }
      // A different source table, key or capture strategy makes the stored position meaningless: snapshot again.
      if (prev && capturesDiffer(prev, t)) await outbox.resetTable(t.name);
      runners.set(t.name, this.newRunner(t, this.identity!, outbox));
    }
    this.runners = runners;
    this.config = next;
    const scheduler = new Scheduler({ onError: (table, err) => this.deps.logger.error({ table, err }, 'capture run failed') });
    this.scheduler = scheduler;
    for (const t of next.tables) scheduler.add(t.name, t.schedule, () => this.tick(t.name));
    scheduler.start();
    for (const t of next.tables) void scheduler.trigger(t.name);
    return true;
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
          this.deps.logger.error({ ...briefError(err), code, retryInMs: delay }, 'cannot reach the ERP database; retrying');
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
    const runner = this.runners.get(table);
    if (!runner) return; // removed by a remote config while this tick waited
    const ok = await runner.runOnce(this.abort.signal);
    if (!ok) {
      // A dropped connection is rebuilt before the next tick.
      const err = runner.status.lastError;
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
      configVersion: this.configVersion,
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
    await this.keyCheck;
    await this.uplink?.stop();
    await this.writeStatus();
    await this.outbox?.close();
    await this.driver?.close().catch(() => undefined);
    this.state = 'stopped';
  }
}

function capturesDiffer(a: TableConfig, b: TableConfig): boolean {
  return a.table !== b.table || a.strategy !== b.strategy || !isDeepStrictEqual(a.key, b.key) || !isDeepStrictEqual(a.cursor, b.cursor) ||
    a.captureInstance !== b.captureInstance || a.where !== b.where;
}
