/**
 * Remote config from the hub: a YAML document holding only a `tables` list, signed by the
 * hub key the agent pinned (configMessage binds the agent id and the version).
 *
 * Checks, in order, each one a reason to refuse that leaves the running config untouched:
 *   1. signature: the frame names this agent and the pinned hub key, and verifies under it;
 *   2. version: never older than the running one (a replayed old config is a rollback);
 *   3. content: only `tables`; no `${env:...}` (it would copy local secrets into events);
 *      no SQL filter (`where`) the local config does not already have for that table
 *      (the hub never sends SQL: invariant 4);
 *   4. the local config file with its `tables` replaced goes through parseAgentConfig, the
 *      same loader as a local edit, so a bad mapping or schedule is refused with its key path.
 * An accepted config is kept in <dataDir>/remote-config.json and applied again after a restart.
 */
import { join } from 'node:path';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { DovetailError, isDovetailError, verifyConfig, type ConfigFrame } from '@dovetail/shared';
import { parseAgentConfig, type Env } from './config/load.ts';
import type { AgentConfig } from './config/types.ts';

export const REMOTE_CONFIG_FILE = 'remote-config.json';

export interface RemoteConfigFile {
  version: number;
  /** The YAML text exactly as signed. */
  document: string;
  appliedAt: string;
}

export interface PinnedHub { agentId: string; hubKeyId: string; hubPublicKey: Uint8Array }

/** Null when the frame is for this agent and signed by the pinned hub key; otherwise the reason to refuse. */
export function configFrameProblem(f: ConfigFrame, pinned: PinnedHub): string | null {
  if (f.agent !== pinned.agentId) return `config is addressed to agent ${f.agent}, not ${pinned.agentId}`;
  if (f.hubKeyId !== pinned.hubKeyId) return `config is signed by hub key ${f.hubKeyId}, not the pinned hub key ${pinned.hubKeyId}`;
  if (!verifyConfig(f.agent, f.version, f.doc, f.sig, pinned.hubPublicKey)) return `config version ${f.version} signature does not verify with the pinned hub key ${pinned.hubKeyId}`;
  return null;
}

type Raw = Record<string, unknown>;
const isObj = (v: unknown): v is Raw => !!v && typeof v === 'object' && !Array.isArray(v);

function refuse(message: string): never {
  throw new DovetailError('AGENT_CONFIG_REFUSED', message);
}

/** The `where` filters a raw tables list holds: "table" and "table.children.name" -> SQL text. */
function whereFilters(tables: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (!Array.isArray(tables)) return out;
  for (const t of tables) {
    if (!isObj(t) || typeof t.name !== 'string') continue;
    if (t.where !== undefined) out.set(t.name, String(t.where));
    if (isObj(t.children)) {
      for (const [c, child] of Object.entries(t.children)) if (isObj(child) && child.where !== undefined) out.set(`${t.name}.children.${c}`, String(child.where));
    }
  }
  return out;
}

/**
 * The merged config: the local file's text with `tables` replaced by the remote document's.
 * Throws AGENT_CONFIG_REFUSED (content rules) or CONFIG_INVALID/CONFIG_PARSE (the loader).
 */
export function mergeRemoteConfig(localText: string, configPath: string, document: string, env?: Env): AgentConfig {
  if (/\$\{env:/.test(document)) refuse('remote config may not use ${env:...} substitutions (they would expose local environment values)');
  let remote: unknown;
  try {
    remote = parse(document);
  } catch (err) {
    refuse(`remote config is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!isObj(remote)) refuse('remote config must be a mapping with a "tables" list');
  const extra = Object.keys(remote).filter((k) => k !== 'tables');
  if (extra.length) refuse(`remote config may set only "tables" (source, hub and agent settings stay local); found ${extra.join(', ')}`);
  if (!Array.isArray(remote.tables)) refuse('remote config "tables" must be a list');
  const local = parse(localText) as unknown;
  if (!isObj(local)) refuse('the local config file is not a mapping');
  const localWhere = whereFilters(local.tables);
  for (const [where, sql] of whereFilters(remote.tables)) {
    if (localWhere.get(where) !== sql) refuse(`remote config sets a SQL filter at ${where.replace('.children.', ' child ')} (where) that the local config does not have; SQL filters are set only in the local agent.yaml`);
  }
  return parseAgentConfig(stringify({ ...local, tables: remote.tables }), configPath, env);
}

/** A one-line reason for the hub (config-result), from whatever the checks threw. */
export function refusalReason(err: unknown): string {
  if (isDovetailError(err)) return `${err.code}: ${err.message}`.slice(0, 2000);
  return `AGENT_CONFIG_REFUSED: ${err instanceof Error ? err.message : String(err)}`.slice(0, 2000);
}

export const remoteConfigPath = (dataDir: string): string => join(dataDir, REMOTE_CONFIG_FILE);

export async function readRemoteConfig(dataDir: string): Promise<RemoteConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(remoteConfigPath(dataDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const v = JSON.parse(text) as Partial<RemoteConfigFile>;
  if (typeof v.version !== 'number' || typeof v.document !== 'string' || typeof v.appliedAt !== 'string') {
    throw new DovetailError('AGENT_CONFIG_REFUSED', `${remoteConfigPath(dataDir)} lacks version/document/appliedAt; delete it to run the local config`);
  }
  return v as RemoteConfigFile;
}

export async function writeRemoteConfig(dataDir: string, rec: RemoteConfigFile): Promise<void> {
  const path = remoteConfigPath(dataDir);
  const tmp = `${path}.tmp`;
  await writeFile(tmp, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, path);
}
