/**
 * Agent key rotation on the hub: the agent announces its new key under its current one
 * (signature by the old key, proof of possession by the new one); the hub makes the new
 * key active and keeps the old one usable for a grace period, so batches the agent signed
 * and buffered before the rotation are still accepted. After the grace the old key is
 * retired: anything signed by it is refused with PROTO_KEY_RETIRED.
 */
import {
  DovetailError, announcementFromJson, decodeKey, isKeyAnnouncementJson, verifyKeyAnnouncement, encodeKey,
  type KeyAnnouncement, type KeyAnnouncementJson,
} from '@dovetail/shared';
import type { AgentRecord, PreviousAgentKey, Registry } from '../store/types.ts';
import { Mutex } from '../store/common.ts';

/** Old keys kept per agent (retired ones are dropped at the next rotation); a bound on record growth. */
const MAX_PREVIOUS_KEYS = 8;

export interface AgentKey {
  publicKey: Uint8Array;
  keyId: string;
  /** True when its grace ended: it no longer verifies anything. */
  retired: boolean;
  /** null for the active key. */
  retiresAt: string | null;
}

/** The active key first, then previous keys newest first (retired ones flagged, for a clear refusal). */
export function agentKeys(agent: AgentRecord, now: Date): AgentKey[] {
  const out: AgentKey[] = [{ publicKey: decodeKey(agent.publicKey), keyId: agent.keyId, retired: false, retiresAt: null }];
  for (const k of agent.previousKeys ?? []) {
    out.push({ publicKey: decodeKey(k.publicKey), keyId: k.keyId, retired: Date.parse(k.retiresAt) <= now.getTime(), retiresAt: k.retiresAt });
  }
  return out;
}

export function findAgentKey(agent: AgentRecord, id: string, now: Date): AgentKey | undefined {
  return agentKeys(agent, now).find((k) => k.keyId === id);
}

export interface RotationResult {
  agent: AgentRecord;
  previousKeyId: string;
  retiresAt: string;
  /** False when the announced key was already active (a retried request): nothing changed. */
  changed: boolean;
}

export class AgentKeyRotation {
  private readonly mutex = new Mutex();
  constructor(private readonly registry: Registry, private readonly maxGraceMs: number) {}

  /**
   * Registers `body` (an announcement in JSON form) for `agentId`. Throws HUB_BAD_REQUEST
   * (malformed), HUB_NOT_FOUND, HUB_AGENT_DISABLED, HUB_AUTH_FAILED (signatures do not
   * verify with the agent's ACTIVE key), HUB_CONFLICT (the old key is not the active one).
   * Idempotent: announcing the key that is already active returns changed=false.
   */
  rotate(agentId: string, body: unknown, graceMs: number | undefined, now: Date): Promise<RotationResult> {
    if (!isKeyAnnouncementJson(body)) throw new DovetailError('HUB_BAD_REQUEST', 'announcement: needs role, subject, oldKeyId, newPublicKey, newKeyId, at, sig, pop', { field: 'announcement' });
    const a: KeyAnnouncement = announcementFromJson(body as KeyAnnouncementJson);
    if (a.role !== 'agent' || a.subject !== agentId) {
      throw new DovetailError('HUB_BAD_REQUEST', `announcement: is for ${a.role} ${a.subject}, not agent ${agentId}`, { field: 'announcement' });
    }
    if (graceMs !== undefined && (!Number.isSafeInteger(graceMs) || graceMs < 0)) throw new RangeError('graceMs must be a non-negative integer');
    const grace = Math.min(graceMs ?? this.maxGraceMs, this.maxGraceMs);
    return this.mutex.run(async () => {
      const agent = await this.registry.getAgent(agentId);
      if (!agent) throw new DovetailError('HUB_NOT_FOUND', `agent ${agentId} is not registered`, { agentId });
      if (agent.status !== 'active') throw new DovetailError('HUB_AGENT_DISABLED', `agent ${agentId} is ${agent.status}; its key cannot be rotated`, { agentId });
      if (agent.keyId === a.newKeyId) {
        const prev = agent.previousKeys?.[0];
        return { agent, previousKeyId: prev?.keyId ?? a.oldKeyId, retiresAt: prev?.retiresAt ?? now.toISOString(), changed: false };
      }
      if (a.oldKeyId !== agent.keyId) {
        throw new DovetailError('HUB_CONFLICT', `agent ${agentId}'s active key is ${agent.keyId}; an announcement signed by key ${a.oldKeyId} cannot rotate it`, { agentId });
      }
      if (!verifyKeyAnnouncement(a, decodeKey(agent.publicKey))) {
        throw new DovetailError('HUB_AUTH_FAILED', `key announcement for agent ${agentId} does not verify (signature by key ${agent.keyId} or proof of possession of key ${a.newKeyId})`, { agentId });
      }
      const retiresAt = new Date(now.getTime() + grace).toISOString();
      const kept = (agent.previousKeys ?? []).filter((k) => Date.parse(k.retiresAt) > now.getTime());
      const previousKeys: PreviousAgentKey[] = [
        { publicKey: agent.publicKey, keyId: agent.keyId, rotatedAt: now.toISOString(), retiresAt },
        ...kept,
      ].slice(0, MAX_PREVIOUS_KEYS);
      const updated = await this.registry.updateAgent(agentId, { publicKey: encodeKey(a.newPublicKey), keyId: a.newKeyId, previousKeys });
      return { agent: updated, previousKeyId: agent.keyId, retiresAt, changed: true };
    });
  }
}
