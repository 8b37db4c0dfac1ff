/**
 * Destination signing secrets with rotation overlap. A destination starts with the secret
 * from the hub config; `rotate` generates a new "whsec_" secret, stores it in the hub
 * store (from then on it takes precedence over the config file) and keeps the previous
 * one for an overlap: during it every webhook carries both signatures (Standard
 * Webhooks allows several space-separated "v1,<sig>"), so the receiver can switch secrets
 * at its own pace; after it only the new one.
 *
 * Kept in registry settings under "destination-secret:<name>"; the secrets themselves are
 * never logged or returned except once, by rotate.
 */
import { randomBytes } from 'node:crypto';
import { DovetailError } from '@dovetail/shared';
import type { Registry } from '../store/types.ts';

/** Default overlap of old and new signatures: a day for the receiving team to deploy the new secret. */
export const DEFAULT_SECRET_OVERLAP_MS = 86_400_000;

interface StoredSecret {
  current: string;
  previous: string | null;
  previousUntil: string | null;
  rotatedAt: string;
}

export interface SecretInfo {
  /** "config" until the first rotation, "store" after. */
  source: 'config' | 'store';
  rotatedAt: string | null;
  /** While in the future, webhooks also carry the previous secret's signature. */
  previousValidUntil: string | null;
}

const settingKey = (name: string) => `destination-secret:${name}`;

export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

export class DestinationSecrets {
  private constructor(
    private readonly registry: Registry,
    private readonly fromConfig: Map<string, string>,
    private readonly stored: Map<string, StoredSecret>,
  ) {}

  static async load(registry: Registry, destinations: ReadonlyArray<{ name: string; secret: string }>): Promise<DestinationSecrets> {
    const stored = new Map<string, StoredSecret>();
    for (const d of destinations) {
      const v = await registry.getSetting(settingKey(d.name));
      if (v !== undefined) stored.set(d.name, JSON.parse(v) as StoredSecret);
    }
    return new DestinationSecrets(registry, new Map(destinations.map((d) => [d.name, d.secret])), stored);
  }

  has(name: string): boolean {
    return this.fromConfig.has(name);
  }

  /** Secrets to sign with at `nowMs`: the current one, then the previous one during its overlap. */
  signing(name: string, nowMs: number): string[] {
    const s = this.stored.get(name);
    if (!s) {
      const c = this.fromConfig.get(name);
      if (c === undefined) throw new TypeError(`destination ${name} has no secret`);
      return [c];
    }
    return s.previous !== null && s.previousUntil !== null && Date.parse(s.previousUntil) > nowMs ? [s.current, s.previous] : [s.current];
  }

  info(name: string): SecretInfo {
    const s = this.stored.get(name);
    return s ? { source: 'store', rotatedAt: s.rotatedAt, previousValidUntil: s.previousUntil } : { source: 'config', rotatedAt: null, previousValidUntil: null };
  }

  /** Generates and stores a new secret; returns it (the only time it is shown). Throws HUB_NOT_FOUND for an unknown destination. */
  async rotate(name: string, overlapMs: number, now: Date): Promise<{ secret: string; previousValidUntil: string | null }> {
    if (!this.fromConfig.has(name)) throw new DovetailError('HUB_NOT_FOUND', `destination ${name} is not configured`, { destination: name });
    if (!Number.isSafeInteger(overlapMs) || overlapMs < 0) throw new RangeError('overlapMs must be a non-negative integer');
    const [current] = this.signing(name, now.getTime());
    const secret = newWebhookSecret();
    const previousValidUntil = overlapMs > 0 ? new Date(now.getTime() + overlapMs).toISOString() : null;
    const rec: StoredSecret = { current: secret, previous: overlapMs > 0 ? current! : null, previousUntil: previousValidUntil, rotatedAt: now.toISOString() };
    await this.registry.putSetting(settingKey(name), JSON.stringify(rec));
    this.stored.set(name, rec);
    return { secret, previousValidUntil };
  }
}
