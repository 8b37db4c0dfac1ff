/**
 * Hub config: YAML -> validate (unknown keys rejected, error names the key path) ->
 * defaults -> freeze. `${env:NAME}` is expanded in destination url, secret and header
 * values only, from the env passed in (nothing else here reads process.env).
 *
 * Webhook retries per destination: retry n waits a random time in
 * [0, min(retryMaxDelayMs, retryInitialDelayMs * 2^(n-1))]; defaults and the schedule they
 * give (about 30 h before the DLQ) are in ./delivery/retry.ts.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';
import { DovetailError, ENTITY_NAMES } from '@dovetail/shared';
import { DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_INITIAL_DELAY_MS, DEFAULT_RETRY_MAX_DELAY_MS } from './delivery/retry.ts';

export interface WebhookDestinationConfig {
  name: string;
  type: 'webhook';
  url: string;
  /** "whsec_<base64>". */
  secret: string;
  /** Entities delivered; empty = all. */
  entities: string[];
  /** Attempts before an event goes to the DLQ. Default 70 (about 30 h with the default delays). */
  maxAttempts: number;
  /** Upper bound of the first retry's delay, ms (full jitter). Default 5 000. */
  retryInitialDelayMs: number;
  /** Cap of a retry's delay, ms, before jitter. Default 3 600 000 (1 h). */
  retryMaxDelayMs: number;
  /**
   * Extra HTTP headers sent with every webhook (e.g. Authorization for a receiver behind an
   * API gateway). Values may use ${env:NAME}; they are never logged or shown. Default none.
   */
  headers: Readonly<Record<string, string>>;
  /** Default 4. */
  concurrency: number;
  /** Default 10 000. */
  timeoutMs: number;
  /** Only events from agents of this tenant are delivered here. Default "default". */
  tenant: string;
}

export interface HubConfig {
  listen: { host: string; port: number };
  /** Absolute path. */
  dataDir: string;
  logLevel: string;
  maxHandshakes: number;
  destinations: WebhookDestinationConfig[];
  fleet: {
    /** Silence (no status frame, ping or batch) after which a connected agent counts as offline, ms. Default 60 000. */
    offlineAfterMs: number;
  };
  keys: {
    /**
     * After an agent key rotation the old key still verifies batches (signed before the
     * rotation, still buffered) and auth for this long, ms; then it is retired. Default
     * 86 400 000 (24 h). An agent may ask for a shorter grace, never a longer one.
     */
    agentKeyGraceMs: number;
  };
}

export const DEFAULT_PORT = 8700;
/** Headers the webhook connector sets itself: a configured value would break signing or framing. */
const RESERVED_HEADERS = ['content-type', 'content-length', 'host', 'transfer-encoding', 'connection', 'user-agent', 'webhook-id', 'webhook-timestamp', 'webhook-signature'];
/** 24 h: long enough for an agent offline over a weekend night to drain what it buffered before the rotation. */
export const DEFAULT_AGENT_KEY_GRACE_MS = 86_400_000;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Obj = Record<string, unknown>;

function invalid(path: string, msg: string, file: string): never {
  throw new DovetailError('CONFIG_INVALID', `${file}: ${path}: ${msg}`, { path, file });
}

function obj(v: unknown, path: string, allowed: string[], file: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) invalid(path, 'must be a mapping', file);
  for (const k of Object.keys(v as Obj)) if (!allowed.includes(k)) invalid(path ? `${path}.${k}` : k, `unknown key (allowed: ${allowed.join(', ')})`, file);
  return v as Obj;
}

function str(v: unknown, path: string, file: string): string {
  if (typeof v !== 'string' || v.length === 0) invalid(path, 'must be a non-empty string', file);
  return v as string;
}

function int(v: unknown, path: string, file: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) invalid(path, `must be an integer from ${min} to ${max}`, file);
  return v as number;
}

function expandEnv(v: string, path: string, env: Record<string, string | undefined>, file: string): string {
  return v.replace(/\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
    const val = env[name];
    if (val === undefined || val === '') invalid(path, `environment variable ${name} is not set`, file);
    return val as string;
  });
}

function parseYaml(text: string, file: string): unknown {
  try {
    return parse(text) ?? {};
  } catch (err) {
    throw new DovetailError('CONFIG_PARSE', `${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
}

/** Where the hub listens and keeps its data: what the CLI needs to find a running hub. */
export interface HubLocation {
  listen: { host: string; port: number };
  /** Absolute path. */
  dataDir: string;
}

function locationOf(root: Obj, baseDir: string, file: string): HubLocation {
  const listen = root.listen === undefined ? {} : obj(root.listen, 'listen', ['host', 'port'], file);
  const host = listen.host === undefined ? '127.0.0.1' : str(listen.host, 'listen.host', file);
  const port = listen.port === undefined ? DEFAULT_PORT : int(listen.port, 'listen.port', file, 0, 65535);
  const dataDir = resolve(baseDir, root.dataDir === undefined ? './hub-data' : str(root.dataDir, 'dataDir', file));
  return { listen: { host, port }, dataDir };
}

/**
 * Reads only listen and dataDir from a hub config file, for the CLI commands that talk to a
 * running hub: they must work in a shell that lacks the destinations' ${env:...} variables
 * (the operator's, not the service's), and a destination typo is `run`'s to report.
 */
export function loadHubLocation(path: string): HubLocation {
  const text = readConfigFile(path);
  const raw = parseYaml(text, path);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) invalid('', 'must be a mapping', path);
  return locationOf(raw as Obj, dirname(resolve(path)), path);
}

/** Parses config text. baseDir resolves a relative dataDir (the config file's folder). */
export function parseHubConfig(text: string, opts: { baseDir: string; env?: Record<string, string | undefined>; file?: string }): HubConfig {
  const file = opts.file ?? '<config>';
  const env = opts.env ?? {};
  const raw = parseYaml(text, file);
  const root = obj(raw, '', ['listen', 'dataDir', 'logLevel', 'destinations', 'maxHandshakes', 'fleet', 'keys'], file);
  const keysRaw = root.keys === undefined ? {} : obj(root.keys, 'keys', ['agentKeyGraceMs'], file);
  const agentKeyGraceMs = keysRaw.agentKeyGraceMs === undefined ? DEFAULT_AGENT_KEY_GRACE_MS : int(keysRaw.agentKeyGraceMs, 'keys.agentKeyGraceMs', file, 0, 365 * 86_400_000);
  const fleetRaw = root.fleet === undefined ? {} : obj(root.fleet, 'fleet', ['offlineAfterMs'], file);
  const offlineAfterMs = fleetRaw.offlineAfterMs === undefined ? 60_000 : int(fleetRaw.offlineAfterMs, 'fleet.offlineAfterMs', file, 1000, 86_400_000);
  const { listen: { host, port }, dataDir } = locationOf(root, opts.baseDir, file);
  const logLevel = root.logLevel === undefined ? 'info' : str(root.logLevel, 'logLevel', file);
  if (!LOG_LEVELS.includes(logLevel)) invalid('logLevel', `must be one of ${LOG_LEVELS.join(', ')}`, file);
  const maxHandshakes = root.maxHandshakes === undefined ? 64 : int(root.maxHandshakes, 'maxHandshakes', file, 1, 100_000);
  const dl = root.destinations === undefined ? [] : root.destinations;
  if (!Array.isArray(dl)) invalid('destinations', 'must be a list', file);
  const names = new Set<string>();
  const destinations = (dl as unknown[]).map((d, i): WebhookDestinationConfig => {
    const p = `destinations[${i}]`;
    const o = obj(d, p, ['name', 'type', 'url', 'secret', 'entities', 'maxAttempts', 'concurrency', 'timeoutMs', 'tenant', 'headers', 'retryInitialDelayMs', 'retryMaxDelayMs'], file);
    const tenant = o.tenant === undefined ? 'default' : str(o.tenant, `${p}.tenant`, file);
    if (!/^[A-Za-z0-9_.-]+$/.test(tenant)) invalid(`${p}.tenant`, 'may contain only letters, digits, "_", "." and "-"', file);
    const name = str(o.name, `${p}.name`, file);
    if (!/^[A-Za-z0-9_-]+$/.test(name)) invalid(`${p}.name`, 'may contain only letters, digits, "_" and "-"', file);
    if (names.has(name)) invalid(`${p}.name`, `"${name}" is used by another destination`, file);
    names.add(name);
    if (o.type !== 'webhook') invalid(`${p}.type`, 'must be "webhook"', file);
    const url = expandEnv(str(o.url, `${p}.url`, file), `${p}.url`, env, file);
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      invalid(`${p}.url`, 'must be an http(s) URL', file);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') invalid(`${p}.url`, 'must be an http(s) URL', file);
    // fetch refuses such URLs at every delivery, and the password would sit in memory and error texts.
    if (parsed.username !== '' || parsed.password !== '') {
      invalid(`${p}.url`, 'must not contain credentials (user:password@); send them as a header instead, e.g. headers: { Authorization: "Basic ${env:CRM_BASIC_AUTH}" } or "Bearer ${env:CRM_TOKEN}"', file);
    }
    const headers = parseHeaders(o.headers, `${p}.headers`, env, file);
    const secret = expandEnv(str(o.secret, `${p}.secret`, file), `${p}.secret`, env, file);
    if (!/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(secret)) invalid(`${p}.secret`, 'must be "whsec_" followed by base64', file);
    let entities: string[] = [];
    if (o.entities !== undefined) {
      if (!Array.isArray(o.entities)) invalid(`${p}.entities`, 'must be a list of entity names', file);
      entities = (o.entities as unknown[]).map((e, j) => {
        if (typeof e !== 'string' || !(ENTITY_NAMES as string[]).includes(e)) invalid(`${p}.entities[${j}]`, `must be one of ${ENTITY_NAMES.join(', ')}`, file);
        return e as string;
      });
    }
    const retryInitialDelayMs = o.retryInitialDelayMs === undefined ? DEFAULT_RETRY_INITIAL_DELAY_MS : int(o.retryInitialDelayMs, `${p}.retryInitialDelayMs`, file, 1, 86_400_000);
    const retryMaxDelayMs = o.retryMaxDelayMs === undefined ? Math.max(DEFAULT_RETRY_MAX_DELAY_MS, retryInitialDelayMs) : int(o.retryMaxDelayMs, `${p}.retryMaxDelayMs`, file, 1, 86_400_000);
    if (retryMaxDelayMs < retryInitialDelayMs) invalid(`${p}.retryMaxDelayMs`, `must be at least retryInitialDelayMs (${retryInitialDelayMs})`, file);
    return {
      name, type: 'webhook', url, secret, entities,
      maxAttempts: o.maxAttempts === undefined ? DEFAULT_MAX_ATTEMPTS : int(o.maxAttempts, `${p}.maxAttempts`, file, 1, 1000),
      retryInitialDelayMs, retryMaxDelayMs, headers,
      concurrency: o.concurrency === undefined ? 4 : int(o.concurrency, `${p}.concurrency`, file, 1, 256),
      timeoutMs: o.timeoutMs === undefined ? 10_000 : int(o.timeoutMs, `${p}.timeoutMs`, file, 1, 600_000),
      tenant,
    };
  });
  return deepFreeze({ listen: { host, port }, dataDir, logLevel, maxHandshakes, destinations, fleet: { offlineAfterMs }, keys: { agentKeyGraceMs } });
}

function parseHeaders(v: unknown, path: string, env: Record<string, string | undefined>, file: string): Readonly<Record<string, string>> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) invalid(path, 'must be a mapping of header name to value', file);
  const out: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [name, raw] of Object.entries(v as Obj)) {
    const hp = `${path}.${name}`;
    // RFC 9110 token characters.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) invalid(hp, 'is not a valid HTTP header name', file);
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.includes(lower)) invalid(hp, `is set by the hub itself and cannot be configured (reserved: ${RESERVED_HEADERS.join(', ')})`, file);
    if (seen.has(lower)) invalid(hp, 'is given twice (header names are case-insensitive)', file);
    seen.add(lower);
    // The value is never echoed in an error: it usually is a credential.
    const value = expandEnv(str(raw, hp, file), hp, env, file);
    if (/[\r\n\0]/.test(value)) invalid(hp, 'must not contain line breaks or NUL', file);
    out[name] = value;
  }
  return out;
}

function readConfigFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new DovetailError('CONFIG_NOT_FOUND', `cannot read hub config ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file: path }, { cause: err });
  }
}

export function loadHubConfig(path: string, env: Record<string, string | undefined> = {}): HubConfig {
  return parseHubConfig(readConfigFile(path), { baseDir: dirname(resolve(path)), env, file: path });
}

/** Defaults only, for `run` without --config. */
export function defaultHubConfig(baseDir: string): HubConfig {
  return parseHubConfig('{}', { baseDir });
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
