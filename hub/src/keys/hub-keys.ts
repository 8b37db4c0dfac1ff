/**
 * The hub's key ring: the current Ed25519 key (hub.key) and the chain of announcements
 * (hub-key-chain.json) from every earlier hub key to it, each signed by the key it
 * replaces. An agent that pinned an older key follows the chain to the current one.
 *
 * Rotation order, so a crash at any point leaves a usable key:
 *   1. write the new key to hub.key.next (0600)
 *   2. append its announcement to the chain file (atomic replace) — the commit point
 *   3. rename hub.key.next -> hub.key
 * On start, a leftover hub.key.next is finished (renamed) when the chain already
 * announces it, and deleted otherwise (the old key was never replaced).
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DovetailError, announceKey, announcementFromJson, announcementToJson, decodePrivateKeyFile, encodePrivateKeyFile, generateKeyPair, isKeyAnnouncementJson, keyId,
  MAX_KEY_CHAIN, type KeyAnnouncement, type KeyPair,
} from '@dovetail/shared';
import { HUB_KEY_FILE, loadOrCreateHubKey, writeSecret, type HubIdentity } from '../identity.ts';

export const HUB_KEY_NEXT_FILE = 'hub.key.next';
export const HUB_KEY_CHAIN_FILE = 'hub-key-chain.json';

/** What the gateway and API need: the current key (read at each use) and the chain to it. */
export interface HubKeySource extends HubIdentity {
  /** Announcements after `fromKeyId` up to the current key; the newest MAX_KEY_CHAIN when fromKeyId is unknown or absent. */
  chainFrom(fromKeyId?: string): KeyAnnouncement[];
}

export class HubKeyring implements HubKeySource {
  private id: HubIdentity;
  private chain: KeyAnnouncement[];
  /** True when the key file was created on this start. */
  readonly created: boolean;
  /** True when the key file is readable by group or others. */
  readonly looseMode: boolean;
  /** Set when start-up finished (or discarded) an interrupted rotation. */
  readonly recovered: 'finished' | 'discarded' | null;

  constructor(private readonly dataDir: string) {
    this.chain = readChain(join(dataDir, HUB_KEY_CHAIN_FILE));
    const next = join(dataDir, HUB_KEY_NEXT_FILE);
    let recovered: HubKeyring['recovered'] = null;
    if (existsSync(next)) {
      let nextKey: KeyPair | undefined;
      try {
        nextKey = decodePrivateKeyFile(readFileSync(next, 'utf8'));
      } catch { /* half-written: never announced */ }
      if (nextKey && this.chain.at(-1)?.newKeyId === keyId(nextKey.publicKey)) {
        renameSync(next, join(dataDir, HUB_KEY_FILE));
        recovered = 'finished';
      } else {
        rmSync(next, { force: true });
        recovered = 'discarded';
      }
    }
    const loaded = loadOrCreateHubKey(dataDir);
    this.id = { keyPair: loaded.keyPair, keyId: loaded.keyId };
    this.created = loaded.created;
    this.looseMode = loaded.looseMode;
    this.recovered = recovered;
  }

  get keyPair(): KeyPair {
    return this.id.keyPair;
  }

  get keyId(): string {
    return this.id.keyId;
  }

  chainFrom(fromKeyId?: string): KeyAnnouncement[] {
    if (fromKeyId === this.id.keyId) return [];
    const i = fromKeyId === undefined ? -1 : this.chain.findIndex((a) => a.oldKeyId === fromKeyId);
    return (i < 0 ? this.chain : this.chain.slice(i)).slice(-MAX_KEY_CHAIN);
  }

  /** Every rotation so far, oldest first. */
  history(): KeyAnnouncement[] {
    return [...this.chain];
  }

  /** Replaces the hub key; returns the announcement (signed by the old key). Synchronous: nothing else signs in between. */
  rotate(now: Date): KeyAnnouncement {
    const next = generateKeyPair();
    const nextPath = join(this.dataDir, HUB_KEY_NEXT_FILE);
    writeSecret(nextPath, encodePrivateKeyFile(next));
    const ann = announceKey({ role: 'hub', subject: 'hub', at: now.toISOString() }, this.id.keyPair, next);
    const chain = [...this.chain, ann];
    const chainPath = join(this.dataDir, HUB_KEY_CHAIN_FILE);
    const tmp = `${chainPath}.tmp-${process.pid}`;
    writeFileSync(tmp, `${JSON.stringify(chain.map(announcementToJson), null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, chainPath);
    renameSync(nextPath, join(this.dataDir, HUB_KEY_FILE));
    this.chain = chain;
    this.id = { keyPair: next, keyId: ann.newKeyId };
    return ann;
  }
}

function readChain(path: string): KeyAnnouncement[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const raw = JSON.parse(text) as unknown;
  if (!Array.isArray(raw) || !raw.every(isKeyAnnouncementJson)) throw new DovetailError('HUB_INTERNAL', `${path} is not a list of hub key announcements; restore it from a backup`, { path });
  return raw.map(announcementFromJson);
}
