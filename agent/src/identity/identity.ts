/**
 * The agent's identity: its Ed25519 key pair (`agent.key`, owner-only) and what
 * enrollment returned (`identity.json`: agent id, tenant, the pinned hub key).
 *
 * The private key is created locally, written once with mode 0600 and never leaves
 * this module except as bytes handed to the signer; it is never logged.
 */
import { AGENT_VERSION } from '../version.ts';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { open, readFile, rename, stat, unlink, writeFile, mkdir } from 'node:fs/promises';
import {
  DovetailError, announceKey, announcementToJson, decodeKey, decodePrivateKeyFile, encodeKey, encodePrivateKeyFile, generateKeyPair, isDovetailError, keyId,
  type KeyPair,
} from '@dovetail/shared';

export const KEY_FILE = 'agent.key';
export const IDENTITY_FILE = 'identity.json';

/** What identity.json holds. */
export interface IdentityFile {
  agentId: string;
  tenant: string;
  name: string;
  hubUrl: string;
  /** base64 of the hub's 32-byte Ed25519 public key, pinned at enrollment. */
  hubPublicKey: string;
  hubKeyId: string;
  enrolledAt: string;
}

export interface Identity {
  agentId: string;
  tenant: string;
  name: string;
  hubUrl: string;
  hubPublicKey: Uint8Array;
  hubKeyId: string;
  enrolledAt: string;
  /** This agent's key pair. Never log it. */
  keyPair: KeyPair;
  /** Key id of this agent's public key (sent in `auth`). */
  keyId: string;
}

export interface EnrollOptions {
  /** Hub base URL, http(s)://host[:port]. */
  hubUrl: string;
  /** One-time enrollment token from the hub operator. Never logged, never in an error message. */
  token: string;
  name: string;
  dataDir: string;
  /** Replace an existing identity (re-enrollment after revocation). Default false. */
  force?: boolean;
  /** Injected transport; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Agent version sent to the hub; default the agent package version. */
  version?: string;
  now?: () => Date;
  /** Abort the HTTP request after this many ms. Default 30 000. */
  timeoutMs?: number;
}

export const keyPath = (dataDir: string): string => join(dataDir, KEY_FILE);
export const identityPath = (dataDir: string): string => join(dataDir, IDENTITY_FILE);

const enrollHint = (dataDir: string) =>
  `run \`dovetail-agent enroll --hub <hub url> --token <token>\` (data dir ${dataDir})`;

/**
 * Writes the key file so that it never exists with wider permissions: created
 * exclusively with 0600 (umask can only narrow it). Fails if the file exists.
 */
export async function writeKeyFile(path: string, kp: KeyPair): Promise<void> {
  const fh = await open(path, 'wx', 0o600);
  try {
    await fh.writeFile(encodePrivateKeyFile(kp), 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Reads a key file, refusing one that group or others can access (POSIX only). */
export async function readKeyFile(path: string, platform: NodeJS.Platform = process.platform): Promise<KeyPair> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DovetailError('AGENT_NOT_ENROLLED', `private key file ${path} does not exist; ${enrollHint(join(path, '..'))}`, { path });
    }
    throw err;
  }
  // Windows has no POSIX mode bits; ACLs there are set by the service installer.
  if (platform !== 'win32' && (st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new DovetailError(
      'AGENT_KEY_PERMISSIONS',
      `private key file ${path} has mode ${mode} and is accessible by group or others; fix it with: chmod 600 ${path}`,
      { path, mode },
    );
  }
  try {
    return decodePrivateKeyFile(await readFile(path, 'utf8'));
  } catch (err) {
    // The decode error never quotes the file content (it is the secret).
    throw new DovetailError('AGENT_NOT_ENROLLED', `private key file ${path} is not in "ed25519:<base64 seed>" form; re-enroll with --force`, { path }, { cause: err });
  }
}

function isIdentityFile(x: unknown): x is IdentityFile {
  const o = x as Record<string, unknown> | null;
  return !!o && typeof o === 'object' &&
    ['agentId', 'tenant', 'name', 'hubUrl', 'hubPublicKey', 'hubKeyId', 'enrolledAt'].every((k) => typeof o[k] === 'string');
}

export async function loadIdentity(dataDir: string): Promise<Identity> {
  const path = identityPath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DovetailError('AGENT_NOT_ENROLLED', `this agent is not enrolled: ${path} does not exist; ${enrollHint(dataDir)}`, { dataDir });
    }
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new DovetailError('AGENT_NOT_ENROLLED', `${path} is not valid JSON; re-enroll with --force`, { path }, { cause: err });
  }
  if (!isIdentityFile(parsed)) {
    throw new DovetailError('AGENT_NOT_ENROLLED', `${path} lacks agentId/tenant/name/hubUrl/hubPublicKey/hubKeyId/enrolledAt; re-enroll with --force`, { path });
  }
  const keyPair = await readKeyFile(keyPath(dataDir));
  return {
    agentId: parsed.agentId,
    tenant: parsed.tenant,
    name: parsed.name,
    hubUrl: parsed.hubUrl,
    hubPublicKey: decodeKey(parsed.hubPublicKey),
    hubKeyId: parsed.hubKeyId,
    enrolledAt: parsed.enrolledAt,
    keyPair,
    keyId: keyId(keyPair.publicKey),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function removeIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Pulls {code, message} out of a hub error body, accepting `{code,message}` and `{error:{code,message}}`. */
interface HubReply { status: number; body: unknown; text: string; code?: string | undefined; message?: string | undefined }

/**
 * POST JSON to the hub. A network failure becomes `unreachable(why)`; any HTTP answer is
 * returned with the hub's {code, message} picked out, for the caller to judge.
 */
async function postToHub(doFetch: typeof fetch, url: string, payload: unknown, timeoutMs: number, unreachable: (why: string, cause: unknown) => Error): Promise<HubReply> {
  let res: Response;
  try {
    res = await doFetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const why = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw unreachable(why, err);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text, ...hubError(body) };
}

function hubError(body: unknown): { code?: string; message?: string } {
  const o = body as Record<string, unknown> | null;
  if (!o || typeof o !== 'object') return {};
  const inner = (typeof o.error === 'object' && o.error !== null ? o.error : o) as Record<string, unknown>;
  return {
    code: typeof inner.code === 'string' ? inner.code : undefined,
    message: typeof inner.message === 'string' ? inner.message : typeof o.message === 'string' ? o.message : undefined,
  };
}

/**
 * Enrolls this agent: generates its key pair locally, registers the public key with the
 * one-time token and pins the hub's key. The new key is written (0600) before the request,
 * under a temporary name, and moved into place only when the hub accepted it, so a failed
 * enrollment leaves the previous identity (or none) untouched.
 */
export async function enroll(opts: EnrollOptions): Promise<Identity> {
  const { dataDir } = opts;
  const hubUrl = opts.hubUrl.replace(/\/+$/, '');
  if (!/^https?:\/\//.test(hubUrl)) throw new TypeError(`enroll: hubUrl must start with http:// or https://, got ${JSON.stringify(opts.hubUrl)}`);
  if (!opts.token) throw new TypeError('enroll: token is required');
  if (!opts.name) throw new TypeError('enroll: name is required');
  const doFetch = opts.fetch ?? globalThis.fetch;
  const now = opts.now ?? (() => new Date());

  await mkdir(dataDir, { recursive: true });
  if (!opts.force && (await exists(identityPath(dataDir)) || await exists(keyPath(dataDir)))) {
    throw new DovetailError(
      'AGENT_ENROLL_FAILED',
      `this agent is already enrolled (${identityPath(dataDir)} exists); pass --force to replace its identity`,
      { dataDir },
    );
  }

  const kp = generateKeyPair();
  const pendingKey = `${keyPath(dataDir)}.new`;
  await removeIfPresent(pendingKey); // a crashed earlier attempt; its key was never registered
  await writeKeyFile(pendingKey, kp);

  const url = `${hubUrl}/v1/enroll`;
  try {
    const reply = await postToHub(doFetch, url, {
      token: opts.token,
      publicKey: encodeKey(kp.publicKey),
      name: opts.name,
      host: hostname(),
      version: opts.version ?? AGENT_VERSION,
    }, opts.timeoutMs ?? 30_000, (why, cause) => new DovetailError('AGENT_ENROLL_FAILED', `could not reach the hub at ${url}: ${why}`, { url }, { cause }));
    if (reply.status !== 200) {
      const detail = reply.code ? `${reply.code}: ${reply.message ?? '(no message)'}` : (reply.message ?? reply.text.slice(0, 200));
      throw new DovetailError(
        'AGENT_ENROLL_FAILED',
        `the hub at ${url} refused enrollment (HTTP ${reply.status}) ${detail}`.trim(),
        { url, status: reply.status, hubCode: reply.code },
      );
    }
    const body = reply.body;
    const b = body as Record<string, unknown> | undefined;
    if (!b || typeof b.agentId !== 'string' || typeof b.tenant !== 'string' ||
        typeof b.hubPublicKey !== 'string' || typeof b.hubKeyId !== 'string') {
      throw new DovetailError('AGENT_ENROLL_FAILED', `the hub at ${url} answered 200 without agentId/tenant/hubPublicKey/hubKeyId`, { url });
    }
    const hubPublicKey = decodeKey(b.hubPublicKey);
    if (hubPublicKey.byteLength !== 32 || keyId(hubPublicKey) !== b.hubKeyId) {
      throw new DovetailError('AGENT_ENROLL_FAILED', `the hub at ${url} sent a public key that does not match its key id ${b.hubKeyId}`, { url });
    }
    const file: IdentityFile = {
      agentId: b.agentId, tenant: b.tenant, name: opts.name, hubUrl,
      hubPublicKey: b.hubPublicKey, hubKeyId: b.hubKeyId, enrolledAt: now().toISOString(),
    };
    // Both files are ready before either moves, so only two renames separate old from new.
    const tmp = `${identityPath(dataDir)}.tmp`;
    await writeFile(tmp, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
    await rename(pendingKey, keyPath(dataDir));
    await rename(tmp, identityPath(dataDir));
    // A config pushed to the previous identity is not this agent's: the hub holds none for the new id.
    await removeIfPresent(join(dataDir, 'remote-config.json'));
    return { ...file, hubPublicKey, keyPair: kp, keyId: keyId(kp.publicKey) };
  } finally {
    await removeIfPresent(pendingKey);
  }
}

// ---- key rotation and hub key pinning (issue 4) ----

export const KEY_NEXT_FILE = 'agent.key.next';
export const keyNextPath = (dataDir: string): string => join(dataDir, KEY_NEXT_FILE);

export interface RotateKeyOptions {
  dataDir: string;
  /** Shorter grace for the old key than the hub's default (24 h), seconds. The hub caps it. */
  graceSeconds?: number;
  /** Only finish an interrupted rotation (agent.key.next present); do nothing otherwise. Default false. */
  resumeOnly?: boolean;
  fetch?: typeof fetch;
  now?: () => Date;
  /** Abort the HTTP request after this many ms. Default 30 000. */
  timeoutMs?: number;
}

export interface RotateKeyResult {
  agentId: string;
  oldKeyId: string;
  newKeyId: string;
  /** When the hub stops accepting the old key. */
  retiresAt: string;
  /** True when an earlier, interrupted rotation's key was used. */
  resumed: boolean;
}

/**
 * Rotates this agent's key. Crash-safe order:
 *   1. the new key is written to agent.key.next (0600) — or an earlier one found there is reused;
 *   2. it is announced to the hub, signed by the current key, with proof of possession;
 *   3. only on the hub's confirmation, agent.key.next replaces agent.key (rename).
 * Interrupted before 3, agent.key is still the key the hub knows (or, if the hub confirmed,
 * one it keeps valid for the grace), and running this again finishes the same rotation.
 * A running agent picks the new agent.key up within a few seconds.
 */
export async function rotateAgentKey(opts: RotateKeyOptions): Promise<RotateKeyResult | undefined> {
  const { dataDir } = opts;
  const doFetch = opts.fetch ?? globalThis.fetch;
  const now = opts.now ?? (() => new Date());
  const id = await loadIdentity(dataDir);
  const nextPath = keyNextPath(dataDir);
  let next: KeyPair | undefined;
  let resumed = false;
  if (await exists(nextPath)) {
    try {
      next = await readKeyFile(nextPath);
      resumed = true;
    } catch (err) {
      if (isDovetailError(err, 'AGENT_KEY_PERMISSIONS')) throw err;
      await removeIfPresent(nextPath); // half-written by a crash: it was never announced
    }
  }
  if (!next) {
    if (opts.resumeOnly) return undefined;
    next = generateKeyPair();
    await writeKeyFile(nextPath, next);
  }
  const announcement = announceKey({ role: 'agent', subject: id.agentId, at: now().toISOString() }, id.keyPair, next);
  const url = `${id.hubUrl.replace(/\/+$/, '')}/v1/agents/${encodeURIComponent(id.agentId)}/keys`;
  const reply = await postToHub(
    doFetch, url,
    { announcement: announcementToJson(announcement), ...(opts.graceSeconds === undefined ? {} : { graceSeconds: opts.graceSeconds }) },
    opts.timeoutMs ?? 30_000,
    (why) => new DovetailError('AGENT_KEY_ROTATION_FAILED', `could not reach the hub at ${url}: ${why}; the current key stays in use, run the rotation again when the hub is reachable`, { url }),
  );
  if (reply.status !== 200) {
    // The hub looked at this key and said no: it never will, so the next run starts with a fresh one.
    if (reply.status >= 400 && reply.status < 500) await removeIfPresent(nextPath);
    throw new DovetailError('AGENT_KEY_ROTATION_FAILED', `the hub at ${url} refused the new key (HTTP ${reply.status}) ${reply.code ? `${reply.code}: ` : ''}${reply.message ?? reply.text.slice(0, 200)}; the current key stays in use`, { url, status: reply.status, hubCode: reply.code });
  }
  const body = reply.body;
  const b = body as { keyId?: unknown; retiresAt?: unknown } | undefined;
  if (b?.keyId !== announcement.newKeyId || typeof b.retiresAt !== 'string') {
    throw new DovetailError('AGENT_KEY_ROTATION_FAILED', `the hub at ${url} answered 200 without confirming key ${announcement.newKeyId}; the current key stays in use`, { url });
  }
  await rename(nextPath, keyPath(dataDir));
  return { agentId: id.agentId, oldKeyId: id.keyId, newKeyId: announcement.newKeyId, retiresAt: b.retiresAt, resumed };
}

/** Pins a new hub key (reached through announcements signed by the pinned one) in identity.json, atomically. */
export async function pinHubKey(dataDir: string, hubPublicKey: Uint8Array): Promise<void> {
  const path = identityPath(dataDir);
  const file = JSON.parse(await readFile(path, 'utf8')) as IdentityFile;
  const next: IdentityFile = { ...file, hubPublicKey: encodeKey(hubPublicKey), hubKeyId: keyId(hubPublicKey) };
  const tmp = `${path}.tmp`;
  await writeFile(tmp, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, path);
}
