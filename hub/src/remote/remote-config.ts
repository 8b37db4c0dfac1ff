/**
 * Remote config: the operator pushes a `tables` document for one agent; the hub keeps
 * the latest one per agent with a version (1, 2, ...) and its state: pending until the
 * agent reports a verdict, then applied or refused (with the agent's reason). The
 * gateway signs it with the current hub key (configMessage: agent id + version + bytes)
 * when it sends it, now or on the agent's next connect.
 *
 * The hub checks only the envelope (YAML, a mapping with a `tables` list and nothing
 * else): the agent validates the tables against its own source with its own loader.
 * Kept in registry settings under "agent-config:<agent id>".
 */
import { createHash } from 'node:crypto';
import { parse } from 'yaml';
import { DovetailError } from '@dovetail/shared';
import type { Registry } from '../store/types.ts';
import { Mutex } from '../store/common.ts';

/** A tables section larger than this is refused at push (the API body limit is 64 KiB anyway). */
export const MAX_CONFIG_BYTES = 60 * 1024;

export type RemoteConfigStatus = 'pending' | 'applied' | 'refused';

export interface RemoteConfigRecord {
  agentId: string;
  version: number;
  /** The YAML text exactly as pushed; these bytes are signed and sent. */
  document: string;
  /** hex sha256 of the document bytes (shown instead of the document). */
  sha256: string;
  pushedAt: string;
  pushedBy: string;
  status: RemoteConfigStatus;
  /** The agent's reason when refused. */
  reason: string | null;
  resultAt: string | null;
}

const settingKey = (agentId: string) => `agent-config:${agentId}`;

/** Throws HUB_BAD_REQUEST unless `text` is YAML holding exactly a `tables` list. */
export function checkConfigDocument(text: string): void {
  if (Buffer.byteLength(text, 'utf8') > MAX_CONFIG_BYTES) throw new DovetailError('HUB_BAD_REQUEST', `document: larger than ${MAX_CONFIG_BYTES} bytes`, { field: 'document' });
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new DovetailError('HUB_BAD_REQUEST', `document: not valid YAML (${(err as Error).message.split('\n')[0]})`, { field: 'document' });
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new DovetailError('HUB_BAD_REQUEST', 'document: must be a mapping with a "tables" list', { field: 'document' });
  const extra = Object.keys(doc).filter((k) => k !== 'tables');
  if (extra.length) throw new DovetailError('HUB_BAD_REQUEST', `document: only "tables" can be pushed (source, hub and agent settings stay local); found ${extra.join(', ')}`, { field: 'document' });
  if (!Array.isArray((doc as { tables?: unknown }).tables)) throw new DovetailError('HUB_BAD_REQUEST', 'document: tables must be a list', { field: 'document' });
}

export class RemoteConfigs {
  private readonly mutex = new Mutex();
  constructor(private readonly registry: Registry) {}

  async get(agentId: string): Promise<RemoteConfigRecord | undefined> {
    const v = await this.registry.getSetting(settingKey(agentId));
    return v === undefined ? undefined : (JSON.parse(v) as RemoteConfigRecord);
  }

  /** Stores `document` as the agent's next version (pending). */
  push(agentId: string, document: string, by: string, now: Date): Promise<RemoteConfigRecord> {
    checkConfigDocument(document);
    return this.mutex.run(async () => {
      const prev = await this.get(agentId);
      const rec: RemoteConfigRecord = {
        agentId, version: (prev?.version ?? 0) + 1, document, sha256: createHash('sha256').update(document, 'utf8').digest('hex'),
        pushedAt: now.toISOString(), pushedBy: by, status: 'pending', reason: null, resultAt: null,
      };
      await this.registry.putSetting(settingKey(agentId), JSON.stringify(rec));
      return rec;
    });
  }

  /** The config to send on connect, if the agent has not given its verdict on the latest version yet. */
  async pending(agentId: string): Promise<RemoteConfigRecord | undefined> {
    const rec = await this.get(agentId);
    return rec?.status === 'pending' ? rec : undefined;
  }

  /** Records the agent's verdict; ignored (undefined) unless it is about the latest version. */
  result(agentId: string, version: number, ok: boolean, reason: string, now: Date): Promise<RemoteConfigRecord | undefined> {
    return this.mutex.run(async () => {
      const rec = await this.get(agentId);
      if (!rec || rec.version !== version) return undefined;
      const next: RemoteConfigRecord = { ...rec, status: ok ? 'applied' : 'refused', reason: ok ? null : reason.slice(0, 2000), resultAt: now.toISOString() };
      await this.registry.putSetting(settingKey(agentId), JSON.stringify(next));
      return next;
    });
  }
}
