/**
 * Ed25519 over tweetnacl, with the checks tweetnacl 1.0.3 leaves out.
 *
 * tweetnacl accepts a signature whose scalar S is not reduced (S >= L), so the
 * same message has more than one valid signature. We reject those before
 * calling it: a signature is valid only in its canonical form (RFC 8032 5.1.7).
 */
import nacl from 'tweetnacl';
import { createHash, createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
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

/*
 * Signing and verifying go through Node's OpenSSL Ed25519. tweetnacl's pure-JS SHA-512
 * costs ~12 ms per 300 KB batch body on each side (the benchmark's top hot spot);
 * OpenSSL does the same deterministic signature (RFC 8032) in well under 1 ms. Keys are
 * still made by tweetnacl, and a unit test checks both produce identical signatures.
 */
const PUBLIC_DER_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PRIVATE_DER_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** Key objects by key bytes; bounded because a hub sees one or two keys per agent. */
const KEY_CACHE_MAX = 4096;
const keyCache = new Map<string, KeyObject>();

function cachedKey(kind: 'pub' | 'priv', raw: Uint8Array): KeyObject {
  const id = kind + Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
  let k = keyCache.get(id);
  if (!k) {
    const der = Buffer.concat([kind === 'pub' ? PUBLIC_DER_PREFIX : PRIVATE_DER_PREFIX, raw]);
    k = kind === 'pub' ? createPublicKey({ key: der, format: 'der', type: 'spki' }) : createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
    keyCache.set(id, k);
  }
  return k;
}

export function sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  if (secretKey.byteLength !== 64) throw new RangeError('Ed25519 secret key must be 64 bytes (seed || public key)');
  return new Uint8Array(cryptoSign(null, message, cachedKey('priv', secretKey.subarray(0, 32))));
}

/** Strict verification: right lengths, canonical S (tweetnacl skips this check), then the signature itself. */
export function verify(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.byteLength !== 64 || publicKey.byteLength !== 32) return false;
  if (!isCanonicalScalar(signature.subarray(32, 64))) return false;
  try {
    return cryptoVerify(null, message, cachedKey('pub', publicKey), signature);
  } catch {
    return false; // not a valid point encoding
  }
}

/** Domain separation: every signed thing is prefixed by its purpose, so a signature made for one purpose never verifies for another. */
export const DOMAIN = {
  batch: 'dovetail/batch/v1\0',
  auth: 'dovetail/auth/v1\0',
  hubConfig: 'dovetail/config/v1\0',
  hubCall: 'dovetail/call/v1\0',
  keyAnnounce: 'dovetail/key/v1\0',
  /** The hub's proof, on every connect, that it holds the key the agent pinned (mutual authentication). */
  hubAuth: 'dovetail/hub-auth/v1\0',
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
