/**
 * Files in the data directory that identify this hub: its Ed25519 key (hub.key) and the
 * operator admin token (admin.token), both 0600 and created on first run; and hub.json,
 * written while listening so the CLI can find the running hub.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import { decodePrivateKeyFile, encodePrivateKeyFile, generateKeyPair, keyId, type KeyPair } from '@dovetail/shared';

export const HUB_KEY_FILE = 'hub.key';
export const ADMIN_TOKEN_FILE = 'admin.token';
export const HUB_INFO_FILE = 'hub.json';

export interface HubIdentity { keyPair: KeyPair; keyId: string }
export interface HubInfo { url: string; pid: number }

export function ensureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
}

/** Writes atomically with mode 0600: never a window where the secret is world-readable or half-written. */
export function writeSecret(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export function loadOrCreateHubKey(dataDir: string): HubIdentity & { created: boolean; looseMode: boolean } {
  const path = join(dataDir, HUB_KEY_FILE);
  let created = false;
  if (!existsSync(path)) {
    writeSecret(path, encodePrivateKeyFile(generateKeyPair()));
    created = true;
  }
  const keyPair = decodePrivateKeyFile(readFileSync(path, 'utf8'));
  const looseMode = process.platform !== 'win32' && (statSync(path).mode & 0o077) !== 0;
  return { keyPair, keyId: keyId(keyPair.publicKey), created, looseMode };
}

export function newToken(kind: 'admin' | 'enroll' | 'api'): string {
  return `dvt_${kind}_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function tokenMatches(token: string, expectedHash: string): boolean {
  const a = Buffer.from(hashToken(token), 'hex');
  const b = Buffer.from(expectedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export function loadOrCreateAdminToken(dataDir: string): { token: string; created: boolean } {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  if (existsSync(path)) return { token: readFileSync(path, 'utf8').trim(), created: false };
  const token = newToken('admin');
  writeSecret(path, `${token}\n`);
  return { token, created: true };
}

export function readAdminToken(dataDir: string): string | undefined {
  try {
    return readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function writeHubInfo(dataDir: string, info: HubInfo): void {
  const path = join(dataDir, HUB_INFO_FILE);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(info)}\n`);
  renameSync(`${path}.tmp`, path);
}

export function readHubInfo(dataDir: string): HubInfo | undefined {
  try {
    const v = JSON.parse(readFileSync(join(dataDir, HUB_INFO_FILE), 'utf8')) as Partial<HubInfo>;
    return typeof v.url === 'string' && typeof v.pid === 'number' ? { url: v.url, pid: v.pid } : undefined;
  } catch {
    return undefined;
  }
}

export function removeHubInfo(dataDir: string): void {
  rmSync(join(dataDir, HUB_INFO_FILE), { force: true });
}
