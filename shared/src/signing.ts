/**
 * Ed25519 over tweetnacl, with the checks tweetnacl 1.0.3 leaves out.
 *
 * tweetnacl accepts a signature whose scalar S is not reduced (S >= L), so the
 * same message has more than one valid signature. We reject those before
 * calling it: a signature is valid only in its canonical form (RFC 8032 5.1.7).
 */
import nacl from 'tweetnacl';
import { createHash } from 'node:crypto';
import { fromB64, toB64, concatBytes, toHex } from './bytes.ts';

export interface KeyPair {
  publicKey: Uint8Array; // 32 bytes
  secretKey: Uint8Array; // 64 bytes (seed || public key), tweetnacl layout
}

/** Group order L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const L = new Uint8Array([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
]);

/** True when the 32-byte little-endian scalar is strictly below L. */
export function isCanonicalScalar(s: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    const a = s[i]!;
    const b = L[i]!;
    if (a < b) return true;
    if (a > b) return false;
  }
  return false; // equal to L
}

export function generateKeyPair(): KeyPair {
  const kp = nacl.sign.keyPair();
  return { publicKey: kp.publicKey, secretKey: kp.secretKey };
}

export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.byteLength !== 32) throw new RangeError('Ed25519 seed must be 32 bytes');
  const kp = nacl.sign.keyPair.fromSeed(seed);
  return { publicKey: kp.publicKey, secretKey: kp.secretKey };
}

export function sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return nacl.sign.detached(message, secretKey);
}

/** Strict verification: right lengths, canonical S, then tweetnacl's check. */
export function verify(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.byteLength !== 64 || publicKey.byteLength !== 32) return false;
  if (!isCanonicalScalar(signature.subarray(32, 64))) return false;
  return nacl.sign.detached.verify(message, signature, publicKey);
}

/** Domain separation: every signed thing is prefixed by its purpose, so a signature made for one purpose never verifies for another. */
export const DOMAIN = {
  batch: 'dovetail/batch/v1\0',
  auth: 'dovetail/auth/v1\0',
  hubConfig: 'dovetail/config/v1\0',
  hubCall: 'dovetail/call/v1\0',
  keyAnnounce: 'dovetail/key/v1\0',
} as const;

const domainBytes = new Map<string, Uint8Array>();
export function domainMessage(domain: (typeof DOMAIN)[keyof typeof DOMAIN], body: Uint8Array): Uint8Array {
  let prefix = domainBytes.get(domain);
  if (!prefix) {
    prefix = new TextEncoder().encode(domain);
    domainBytes.set(domain, prefix);
  }
  return concatBytes(prefix, body);
}

export function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest());
}

/** Key id: first 16 hex digits of sha256(public key). Shown to operators; never secret. */
export function keyId(publicKey: Uint8Array): string {
  return toHex(sha256(publicKey)).slice(0, 16);
}

export const encodeKey = toB64;
export const decodeKey = fromB64;

/** Private key file format: one line, "ed25519:" + base64 of the 32-byte seed. */
export function encodePrivateKeyFile(kp: KeyPair): string {
  return `ed25519:${toB64(kp.secretKey.subarray(0, 32))}\n`;
}

export function decodePrivateKeyFile(text: string): KeyPair {
  const m = /^ed25519:([A-Za-z0-9+/=]+)\s*$/.exec(text);
  if (!m) throw new TypeError('private key file is not in "ed25519:<base64 seed>" form');
  return keyPairFromSeed(fromB64(m[1]!));
}
