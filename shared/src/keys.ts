/**
 * Signed statements about keys and config, shared by agent and hub:
 *
 * - Key announcements (DOMAIN.keyAnnounce): "subject's key moves from oldKeyId to
 *   newPublicKey", signed by the OLD key (authority) and by the NEW key (proof of
 *   possession, so nobody can announce a key they do not hold). Agent keys are announced
 *   to the hub; hub keys are announced to agents as a chain from the key they pinned.
 * - The hub's per-connection proof (DOMAIN.hubAuth): a signature over the agent's nonce
 *   and the hub's nonce, so a recorded proof is useless on any other connection.
 * - Remote config (DOMAIN.hubConfig): bound to the agent id and the config version, so a
 *   config signed for one agent, or an older version, cannot be replayed as another.
 */
import { DOMAIN, domainMessage, keyId, sign, verify, type KeyPair } from './signing.ts';
import { concatBytes, fromB64, toB64 } from './bytes.ts';

export type KeyRole = 'hub' | 'agent';

export interface KeyAnnouncement {
  role: KeyRole;
  /** The agent id for an agent key; "hub" for the hub key. */
  subject: string;
  oldKeyId: string;
  newPublicKey: Uint8Array;
  newKeyId: string;
  /** ISO time the announcement was made (informational; shown in the audit log). */
  at: string;
  /** Signature by the old key. */
  sig: Uint8Array;
  /** Proof of possession: the same statement signed by the new key. */
  pop: Uint8Array;
}

/** The JSON form (HTTP bodies, files): bytes as base64. */
export interface KeyAnnouncementJson {
  role: KeyRole; subject: string; oldKeyId: string; newPublicKey: string; newKeyId: string; at: string; sig: string; pop: string;
}

const enc = new TextEncoder();

function announcementMessage(purpose: 'announce' | 'possess', a: Pick<KeyAnnouncement, 'role' | 'subject' | 'oldKeyId' | 'newPublicKey' | 'at'>): Uint8Array {
  // NUL separates fields that can never contain NUL (ids, ISO times); the key is fixed-length and last.
  return domainMessage(DOMAIN.keyAnnounce, concatBytes(enc.encode(`${purpose}\0${a.role}\0${a.subject}\0${a.oldKeyId}\0${a.at}\0`), a.newPublicKey));
}

/** Announces `newKey` as the successor of `oldKey` for `subject`. */
export function announceKey(fields: { role: KeyRole; subject: string; at: string }, oldKey: KeyPair, newKey: KeyPair): KeyAnnouncement {
  const a = { ...fields, oldKeyId: keyId(oldKey.publicKey), newPublicKey: newKey.publicKey, newKeyId: keyId(newKey.publicKey) };
  return { ...a, sig: sign(announcementMessage('announce', a), oldKey.secretKey), pop: sign(announcementMessage('possess', a), newKey.secretKey) };
}

/** True when `a` is signed by `oldPublicKey`, names it as the old key, and its new key proved possession. */
export function verifyKeyAnnouncement(a: KeyAnnouncement, oldPublicKey: Uint8Array): boolean {
  if (a.newPublicKey.byteLength !== 32 || keyId(a.newPublicKey) !== a.newKeyId) return false;
  if (keyId(oldPublicKey) !== a.oldKeyId || a.oldKeyId === a.newKeyId) return false;
  return verify(announcementMessage('announce', a), a.sig, oldPublicKey) && verify(announcementMessage('possess', a), a.pop, a.newPublicKey);
}

export interface PinnedKey { publicKey: Uint8Array; keyId: string }

/**
 * Walks `chain` from the pinned key: each announcement whose old key is the current one
 * and that verifies under it moves the pin forward. Announcements older than the pin are
 * skipped; a forged or broken link stops the walk there. Returns the newest key reached
 * (the pinned key itself when nothing applies).
 */
export function followKeyChain(pinned: PinnedKey, chain: readonly KeyAnnouncement[], role: KeyRole, subject: string): PinnedKey {
  let cur = pinned;
  for (const a of chain) {
    if (a.role !== role || a.subject !== subject || a.oldKeyId !== cur.keyId) continue;
    if (!verifyKeyAnnouncement(a, cur.publicKey)) break;
    cur = { publicKey: a.newPublicKey, keyId: a.newKeyId };
  }
  return cur;
}

export function announcementToJson(a: KeyAnnouncement): KeyAnnouncementJson {
  return { role: a.role, subject: a.subject, oldKeyId: a.oldKeyId, newPublicKey: toB64(a.newPublicKey), newKeyId: a.newKeyId, at: a.at, sig: toB64(a.sig), pop: toB64(a.pop) };
}

export function announcementFromJson(j: KeyAnnouncementJson): KeyAnnouncement {
  return { role: j.role, subject: j.subject, oldKeyId: j.oldKeyId, newPublicKey: fromB64(j.newPublicKey), newKeyId: j.newKeyId, at: j.at, sig: fromB64(j.sig), pop: fromB64(j.pop) };
}

const isStr = (x: unknown): x is string => typeof x === 'string';
const isBytes = (x: unknown, n?: number): x is Uint8Array => x instanceof Uint8Array && (n === undefined || x.byteLength === n);

/** Shape check for an announcement decoded from a frame (bytes) — not a signature check. */
export function isKeyAnnouncement(x: unknown): x is KeyAnnouncement {
  const o = x as Record<string, unknown> | null;
  return !!o && typeof o === 'object' && (o.role === 'hub' || o.role === 'agent') && isStr(o.subject) && isStr(o.oldKeyId) &&
    isBytes(o.newPublicKey, 32) && isStr(o.newKeyId) && isStr(o.at) && isBytes(o.sig, 64) && isBytes(o.pop, 64);
}

/** Shape check for the JSON form (HTTP body, chain file). */
export function isKeyAnnouncementJson(x: unknown): x is KeyAnnouncementJson {
  const o = x as Record<string, unknown> | null;
  return !!o && typeof o === 'object' && (o.role === 'hub' || o.role === 'agent') &&
    ['subject', 'oldKeyId', 'newPublicKey', 'newKeyId', 'at', 'sig', 'pop'].every((k) => isStr(o[k]));
}

/** Bytes the hub signs on each connection: agent nonce || hub nonce || hub key id, under DOMAIN.hubAuth. */
export function hubProofMessage(agentNonce: Uint8Array, hubNonce: Uint8Array, hubKeyId: string): Uint8Array {
  return domainMessage(DOMAIN.hubAuth, concatBytes(agentNonce, hubNonce, enc.encode(hubKeyId)));
}

/** Bytes the hub signs for a remote config: agent id || 0 || version || 0 || document bytes, under DOMAIN.hubConfig. */
export function configMessage(agentId: string, version: number, doc: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(version) || version < 1) throw new RangeError(`config version must be a positive integer, got ${version}`);
  return domainMessage(DOMAIN.hubConfig, concatBytes(enc.encode(`${agentId}\0${version}\0`), doc));
}

export function signConfig(agentId: string, version: number, doc: Uint8Array, hubSecretKey: Uint8Array): Uint8Array {
  return sign(configMessage(agentId, version, doc), hubSecretKey);
}

export function verifyConfig(agentId: string, version: number, doc: Uint8Array, sig: Uint8Array, hubPublicKey: Uint8Array): boolean {
  if (!Number.isSafeInteger(version) || version < 1) return false;
  return verify(configMessage(agentId, version, doc), sig, hubPublicKey);
}
