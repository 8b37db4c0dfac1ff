/**
 * The agent's identity: its Ed25519 key pair (`agent.key`, owner-only) and what
 * enrollment returned (`identity.json`: agent id, tenant, the pinned hub key).
 *
 * The private key is created locally, written once with mode 0600 and never leaves
 * this module except as bytes handed to the signer; it is never logged.
 */
import { join } from 'node:path';
import { hostname } from 'node:os';
import { open, readFile, rename, stat, unlink, writeFile, mkdir } from 'node:fs/promises';
import {
  DovetailError, decodeKey, decodePrivateKeyFile, encodeKey, encodePrivateKeyFile, generateKeyPair, keyId,
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

let cachedVersion: string | undefined;
/** The agent package version (sent in enroll and auth). */
export async function agentVersion(): Promise<string> {
  if (cachedVersion === undefined) {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    cachedVersion = pkg.version ?? '0.0.0';
  }
  return cachedVersion;
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
    let res: Response;
    try {
      res = await doFetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({
          token: opts.token,
          publicKey: encodeKey(kp.publicKey),
          name: opts.name,
          host: hostname(),
          version: opts.version ?? await agentVersion(),
        }),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
      });
    } catch (err) {
      const why = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      throw new DovetailError('AGENT_ENROLL_FAILED', `could not reach the hub at ${url}: ${why}`, { url }, { cause: err });
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (res.status !== 200) {
      const { code, message } = hubError(body);
      const detail = code ? `${code}: ${message ?? '(no message)'}` : (message ?? text.slice(0, 200));
      throw new DovetailError(
        'AGENT_ENROLL_FAILED',
        `the hub at ${url} refused enrollment (HTTP ${res.status}) ${detail}`.trim(),
        { url, status: res.status, hubCode: code },
      );
    }
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
    return { ...file, hubPublicKey, keyPair: kp, keyId: keyId(kp.publicKey) };
  } finally {
    await removeIfPresent(pendingKey);
  }
}
