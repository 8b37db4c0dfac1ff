/**
 * Config flows one way: read -> YAML parse -> `${env:NAME}` substitution -> schema
 * validation (unknown keys rejected) -> defaults -> cross-field checks -> compiled
 * form -> deep freeze. Every error names the file and the exact key path, e.g.
 * `agent.yaml: tables[2].cursor.column: required`. This module is the only reader
 * of process.env (as the default of `opts.env`).
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import cron from 'node-cron';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { DovetailError, ENTITIES, isDovetailError, isValidTimeZone, type EntityName } from '@dovetail/shared';
import {
  formatPath, missingRequired, parseTargetPath, resolveSchemaPath, type PathSegment,
} from '../mapping/paths.ts';
import { compileField, DateTimeReader, FieldError } from '../mapping/convert.ts';
import { expandPresets } from '../presets/index.ts';
import { ConfigSchema } from './schema.ts';
import type {
  AgentConfig, ChildConfig, CursorConfig, FieldMapping, FieldType, Schedule, SourceConfig, TableConfig,
} from './types.ts';

export type Env = Record<string, string | undefined>;

/** Defaults, units in the names. */
export const DEFAULTS = {
  dataDir: './agent-data',
  logLevel: 'info',
  maxInFlightBatches: 32,
  maxBatchEvents: 500,
  maxBatchBytes: 1024 * 1024,
  reconnectInitialMs: 500,
  reconnectMaxMs: 30_000,
  heartbeatMs: 15_000,
  pageSize: 5000,
  maxConnections: 4,
  queryTimeoutMs: 30_000,
  cursorOverlapMs: 5000,
  cursorOverlapUnits: 0,
  /** A table without `schedule` polls every 5 s. */
  scheduleEveryMs: 5000,
  onGap: 'resnapshot',
} as const;

/** More problems than this in one file are cut off; the first ones are what the user fixes first. */
const MAX_ISSUES = 10;

export interface ConfigIssue { keyPath: string; message: string }

type Seg = string | number;

function keyPathOf(segs: readonly Seg[]): string {
  let s = '';
  for (const seg of segs) s += typeof seg === 'number' ? `[${seg}]` : (s ? '.' : '') + seg;
  return s || '(root)';
}

class Issues {
  readonly list: ConfigIssue[] = [];
  private readonly paths: string[] = [];
  add(segs: readonly Seg[], message: string): void {
    const kp = keyPathOf(segs);
    // One problem per key: a missing parent also fails every child check.
    if (this.paths.some((p) => kp === p || kp.startsWith(p + '.') || kp.startsWith(p + '['))) return;
    this.paths.push(kp);
    this.list.push({ keyPath: kp, message });
  }
  throwIfAny(label: string, absPath: string): void {
    if (this.list.length === 0) return;
    const shown = this.list.slice(0, MAX_ISSUES);
    const more = this.list.length - shown.length;
    const message = shown.map((i) => `${label}: ${i.keyPath}: ${i.message}`).join('\n') + (more > 0 ? `\n(${more} more)` : '');
    throw new DovetailError('CONFIG_INVALID', message, { path: absPath, keyPath: shown[0]!.keyPath, issues: shown });
  }
}

// ---- schema errors -> key paths and plain messages ---------------------------------

const SECRET_KEY_RE = /password|url|connectionstring/i;

function show(v: unknown, segs: readonly Seg[]): string {
  const last = segs[segs.length - 1];
  if (typeof last === 'string' && SECRET_KEY_RE.test(last)) return '<redacted>';
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? s.slice(0, 40) + '…' : s;
}

type SchemaInfo = TSchema & { type?: string; anyOf?: SchemaInfo[]; const?: unknown; hint?: string; minimum?: number; maximum?: number; minItems?: number; pattern?: string };

function kindOfValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function kindOfSchema(s: SchemaInfo): string | undefined {
  if (s.type === 'integer') return 'number';
  return s.type;
}

const KIND_WORDS: Record<string, string> = {
  string: 'a string', number: 'a number', boolean: 'true or false', null: 'null', array: 'a list', object: 'a mapping',
};

function messageFor(e: ValueError, segs: readonly Seg[]): string {
  const s = e.schema as SchemaInfo;
  const got = ` (got ${show(e.value, segs)})`;
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty: return 'required';
    case ValueErrorType.ObjectAdditionalProperties: return 'unknown key';
    case ValueErrorType.String: return 'must be a string' + got;
    case ValueErrorType.Number: return 'must be a number' + got;
    case ValueErrorType.Integer: return 'must be a whole number' + got;
    case ValueErrorType.Boolean: return 'must be true or false' + got;
    case ValueErrorType.Array: return 'must be a list' + got;
    case ValueErrorType.Object: return 'must be a mapping' + got;
    case ValueErrorType.StringMinLength: return 'must not be empty';
    case ValueErrorType.ArrayMinItems: return `must have at least ${s.minItems} item(s)`;
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.IntegerMinimum: return `must be at least ${s.minimum}` + got;
    case ValueErrorType.NumberMaximum:
    case ValueErrorType.IntegerMaximum: return `must be at most ${s.maximum}` + got;
    case ValueErrorType.StringPattern: return `must be ${s.hint ?? `text matching ${s.pattern}`}` + got;
    case ValueErrorType.Literal: return `must be ${JSON.stringify(s.const)}` + got;
    default: return e.message + got;
  }
}

/** JSON pointer from TypeBox -> segments, numbers where the value at that level is a list. */
function pointerSegs(root: unknown, pointer: string): Seg[] {
  const out: Seg[] = [];
  if (pointer === '' || pointer === '/') return out;
  let cur: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur) && /^\d+$/.test(key)) {
      out.push(Number(key));
      cur = cur[Number(key)];
    } else {
      out.push(key);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

function schemaIssues(schema: TSchema, value: unknown, base: readonly Seg[], issues: Issues): void {
  for (const e of Value.Errors(schema, value)) {
    if (issues.list.length >= MAX_ISSUES * 2) return;
    const segs = [...base, ...pointerSegs(value, e.path)];
    if (e.type === ValueErrorType.Union) {
      const variants = ((e.schema as SchemaInfo).anyOf ?? []) as SchemaInfo[];
      if (variants.length > 0 && variants.every((v) => 'const' in v)) {
        issues.add(segs, `must be one of ${variants.map((v) => String(v.const)).join(', ')} (got ${show(e.value, segs)})`);
        continue;
      }
      // A union of kinds (string | mapping, string | list): explain against the variant the user meant.
      const match = variants.find((v) => kindOfSchema(v) === kindOfValue(e.value));
      if (match) {
        schemaIssues(match, e.value, segs, issues);
      } else {
        const kinds = [...new Set(variants.map((v) => KIND_WORDS[kindOfSchema(v) ?? ''] ?? 'a value'))];
        issues.add(segs, `must be ${kinds.join(' or ')} (got ${show(e.value, segs)})`);
      }
      continue;
    }
    issues.add(segs, messageFor(e, segs));
  }
}

// ---- env substitution ----------------------------------------------------------------

const ENV_RE = /\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g;

function substituteEnv(node: unknown, segs: Seg[], env: Env, issues: Issues): unknown {
  if (typeof node === 'string') {
    if (!node.includes('${env:')) return node;
    return node.replace(ENV_RE, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) {
        issues.add(segs, `environment variable ${name} is not set`);
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(node)) return node.map((v, i) => substituteEnv(v, [...segs, i], env, issues));
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = substituteEnv(v, [...segs, k], env, issues);
    return out;
  }
  return node;
}

// ---- compile helpers -------------------------------------------------------------------

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function parseDuration(text: string): number | null {
  const m = /^(\d+)(ms|s|m|h)$/.exec(text);
  return m ? Number(m[1]) * DURATION_UNITS[m[2]!]! : null;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** `}` is the only character that needs escaping inside a braced ODBC / mssql value. */
const braced = (s: string) => `{${s.replace(/\}/g, '}}')}}`;

function mergePassword(type: SourceConfig['type'], url: string, password: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    const u = new URL(url);
    u.password = encodeURIComponent(password);
    return u.toString();
  }
  const sep = url.trimEnd().endsWith(';') || url.trim() === '' ? '' : ';';
  return `${url}${sep}${type === 'odbc' ? 'PWD' : 'Password'}=${braced(password)}`;
}

type RawField = string | {
  column?: string; subtract?: string[]; columns?: string[]; timeZone?: string; type?: FieldType; trim?: boolean; crosswalk?: Record<string, string | null>;
  crosswalkDefault?: string | null; nullIf?: string | number | (string | number)[];
  const?: string | number | boolean | null; required?: boolean;
};
type RawChild = { table: string; parentKey: string | string[]; orderBy?: string | string[]; into: string; where?: string; map: Record<string, RawField> };
type RawTable = {
  name: string; table: string; key: string | string[]; entity: EntityName; strategy: TableConfig['strategy'];
  cursor?: { column: string; type?: CursorConfig['type']; overlapMs?: number; overlapUnits?: number };
  captureInstance?: string; schedule?: { every?: string; cron?: string }; pageSize?: number; where?: string;
  keyTemplate?: string; map: Record<string, RawField>; children?: Record<string, RawChild>; onGap?: TableConfig['onGap'];
};
type RawConfig = {
  agent: { name: string; dataDir?: string; logLevel?: AgentConfig['agent']['logLevel'] };
  hub: { url: string; maxInFlightBatches?: number; maxBatchEvents?: number; maxBatchBytes?: number; reconnectInitialMs?: number; reconnectMaxMs?: number; heartbeatMs?: number };
  source: {
    type: SourceConfig['type']; system: string; url?: string; connectionString?: string; password?: string; passwordFile?: string;
    timeZone: string; maxConnections?: number; queryTimeoutMs?: number; dialect?: SourceConfig['dialect'];
  };
  tables?: RawTable[];
};

function compileFieldConfig(raw: RawField, kp: Seg[], dt: DateTimeReader, issues: Issues): FieldMapping | null {
  if (typeof raw === 'string') return { column: raw, type: 'string', trim: false, required: false };
  const hasConst = Object.prototype.hasOwnProperty.call(raw, 'const');
  const sources = [raw.column !== undefined && 'column', hasConst && 'const', raw.subtract !== undefined && 'subtract', raw.columns !== undefined && 'columns'].filter(Boolean);
  if (sources.length > 1) {
    issues.add(kp, sources.length === 2 && hasConst && raw.column !== undefined
      ? 'give either column or const, not both'
      : `give only one of column, const, subtract or columns (got ${sources.join(', ')})`);
    return null;
  }
  if (sources.length === 0) {
    issues.add([...kp, 'column'], 'required (or give const)');
    return null;
  }
  if (raw.subtract !== undefined && (raw.type ?? 'decimal') !== 'decimal') {
    issues.add([...kp, 'type'], `subtract computes a decimal (got type ${raw.type})`);
    return null;
  }
  let type: FieldType = raw.type ?? (raw.subtract !== undefined ? 'decimal' : 'string');
  if (hasConst && raw.type === undefined) {
    const c = raw.const;
    if (typeof c === 'boolean') type = 'boolean';
    else if (typeof c === 'number') type = 'integer';
  }
  if (hasConst && typeof raw.const === 'number' && !Number.isSafeInteger(raw.const)) {
    issues.add([...kp, 'const'], `quote decimal constants ("${raw.const}") so no digits are lost`);
    return null;
  }
  const fm: FieldMapping = { type, trim: raw.trim ?? type === 'code', required: raw.required ?? false };
  if (raw.column !== undefined) fm.column = raw.column;
  if (raw.subtract !== undefined) fm.subtract = [raw.subtract[0]!, raw.subtract[1]!];
  if (raw.columns !== undefined) fm.columns = [...raw.columns];
  if (raw.timeZone !== undefined) {
    if (type !== 'datetime') {
      issues.add([...kp, 'timeZone'], `only valid with type datetime (type is ${type})`);
      return null;
    }
    if (!isValidTimeZone(raw.timeZone)) {
      issues.add([...kp, 'timeZone'], `not a known IANA time zone (got ${JSON.stringify(raw.timeZone)})`);
      return null;
    }
    fm.timeZone = raw.timeZone;
  }
  if (raw.crosswalk !== undefined) fm.crosswalk = { ...raw.crosswalk };
  if (raw.crosswalkDefault !== undefined) fm.crosswalkDefault = raw.crosswalkDefault;
  if (raw.nullIf !== undefined) fm.nullIf = (Array.isArray(raw.nullIf) ? raw.nullIf : [raw.nullIf]).map(String);
  if (hasConst) {
    fm.const = raw.const ?? null;
    try {
      compileField(keyPathOf(kp), fm, dt);
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      issues.add([...kp, 'const'], `${err.reason} for type ${type} (got ${JSON.stringify(raw.const)})`);
      return null;
    }
  }
  return fm;
}

/** Compile a `map`, checking every target path against `schema`. Returns the mapped paths as segments. */
function compileMap(
  raw: Record<string, RawField>, schema: TSchema, what: string, kp: Seg[], dt: DateTimeReader, issues: Issues,
): { map: Record<string, FieldMapping>; paths: PathSegment[][] } {
  const map: Record<string, FieldMapping> = {};
  const paths: PathSegment[][] = [];
  for (const [target, rawField] of Object.entries(raw)) {
    const fkp = [...kp, target];
    const segs = parseTargetPath(target);
    if (!segs) {
      issues.add(fkp, 'not a canonical path (expected names, dots and [index], e.g. addresses[0].line1)');
      continue;
    }
    const r = resolveSchemaPath(schema, segs, what);
    if (!r.ok) {
      issues.add(fkp, r.reason);
      continue;
    }
    if (r.shape === 'object' || r.shape === 'record') {
      issues.add(fkp, `${formatPath(segs)} is an object; map its fields (e.g. ${formatPath(segs)}.<field>)`);
      continue;
    }
    if (r.shape === 'array') {
      issues.add(fkp, `${formatPath(segs)} is a list; map items like ${formatPath(segs)}[0] or use children`);
      continue;
    }
    const fm = compileFieldConfig(rawField, fkp, dt, issues);
    if (fm) map[target] = fm;
    // Counted as mapped even when the field itself is wrong: that error is already reported.
    paths.push(segs);
  }
  return { map, paths };
}

function compileTable(t: RawTable, i: number, src: SourceConfig, dt: DateTimeReader, issues: Issues): TableConfig {
  const kp: Seg[] = ['tables', i];
  const key = list(t.key);
  const schema = ENTITIES[t.entity].schema as TSchema;

  if (t.strategy === 'cursor' && !t.cursor) issues.add([...kp, 'cursor'], 'required when strategy is cursor');
  if (t.strategy !== 'cursor' && t.cursor) issues.add([...kp, 'cursor'], `only valid with strategy cursor (strategy is ${t.strategy})`);
  if ((t.strategy === 'mssql-ct' || t.strategy === 'mssql-cdc') && !(src.type === 'mssql' || (src.type === 'odbc' && src.dialect === 'mssql'))) {
    issues.add([...kp, 'strategy'], `${t.strategy} needs source.type mssql (or odbc with dialect mssql)`);
  }

  let schedule: Schedule = { everyMs: DEFAULTS.scheduleEveryMs };
  if (t.schedule) {
    const { every, cron: expr } = t.schedule;
    if ((every === undefined) === (expr === undefined)) {
      issues.add([...kp, 'schedule'], 'give exactly one of every or cron');
    } else if (every !== undefined) {
      const ms = parseDuration(every);
      if (!ms) issues.add([...kp, 'schedule', 'every'], `must be a positive duration (got ${JSON.stringify(every)})`);
      else schedule = { everyMs: ms };
    } else if (expr !== undefined) {
      if (!cron.validate(expr)) issues.add([...kp, 'schedule', 'cron'], `not a valid cron expression (got ${JSON.stringify(expr)})`);
      else schedule = { cron: expr };
    }
  }

  const { map, paths } = compileMap(t.map, schema, t.entity, [...kp, 'map'], dt, issues);

  const children: Record<string, ChildConfig> = {};
  const covered: PathSegment[][] = [...paths];
  for (const [name, c] of Object.entries(t.children ?? {})) {
    const ckp: Seg[] = [...kp, 'children', name];
    const parentKey = list(c.parentKey);
    if (parentKey.length !== key.length) {
      issues.add([...ckp, 'parentKey'], `must list ${key.length} column(s), matching key [${key.join(', ')}] in order`);
    }
    const into = parseTargetPath(c.into);
    const r = into ? resolveSchemaPath(schema, into, t.entity) : null;
    if (!into || !r || !r.ok || r.shape !== 'array') {
      issues.add([...ckp, 'into'], r && !r.ok ? r.reason : `must be a list field of ${t.entity} (got ${JSON.stringify(c.into)})`);
      continue;
    }
    const itemsRes = resolveSchemaPath(r.schema, [0], c.into);
    if (!itemsRes.ok || itemsRes.shape !== 'object') {
      issues.add([...ckp, 'into'], `${c.into} is not a list of objects`);
      continue;
    }
    const clash = paths.find((p) => into.every((s, j) => p[j] === s));
    if (clash) issues.add([...ckp, 'into'], `${c.into} is also mapped by map.${formatPath(clash)}`);
    const child = compileMap(c.map, itemsRes.schema, `${c.into}[]`, [...ckp, 'map'], dt, issues);
    const missing = missingRequired(itemsRes.schema, child.paths);
    if (missing.length > 0) issues.add([...ckp, 'map'], `${c.into} items require ${missing.join(', ')} (not mapped)`);
    const cc: ChildConfig = { table: c.table, parentKey, orderBy: list(c.orderBy), into: c.into, map: child.map };
    if (c.where !== undefined) cc.where = c.where;
    children[name] = cc;
    covered.push(into);
  }

  const missing = missingRequired(schema, covered);
  if (missing.length > 0) issues.add([...kp, 'map'], `${t.entity} requires ${missing.join(', ')} (not mapped)`);

  if (t.keyTemplate !== undefined) {
    const holes = [...t.keyTemplate.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1]!.trim());
    if (holes.length === 0) issues.add([...kp, 'keyTemplate'], 'must contain at least one {field} placeholder');
    for (const h of holes) {
      const segs = parseTargetPath(h);
      const target = segs ? Object.keys(map).find((p) => formatPath(parseTargetPath(p) ?? []) === formatPath(segs)) : undefined;
      const fm = target !== undefined ? map[target] : undefined;
      if (!fm) {
        issues.add([...kp, 'keyTemplate'], `{${h}} is not a mapped field`);
      } else if (fm.subtract !== undefined || fm.columns !== undefined) {
        issues.add([...kp, 'keyTemplate'], `{${h}} is computed from several columns; a key field must map one key column`);
      } else if (fm.column !== undefined && !key.includes(fm.column)) {
        // Deletes carry only the key columns; a key built from other columns could not be rebuilt for them.
        issues.add([...kp, 'keyTemplate'], `{${h}} maps column ${fm.column}, which is not in key [${key.join(', ')}]`);
      }
    }
  }

  const out: TableConfig = {
    name: t.name,
    table: t.table,
    key,
    entity: t.entity,
    strategy: t.strategy,
    schedule,
    pageSize: t.pageSize ?? DEFAULTS.pageSize,
    map,
    children,
    onGap: t.onGap ?? DEFAULTS.onGap,
  };
  if (t.cursor) {
    out.cursor = {
      column: t.cursor.column,
      type: t.cursor.type ?? 'timestamp',
      overlapMs: t.cursor.overlapMs ?? DEFAULTS.cursorOverlapMs,
      overlapUnits: t.cursor.overlapUnits ?? DEFAULTS.cursorOverlapUnits,
    };
  }
  if (t.captureInstance !== undefined) out.captureInstance = t.captureInstance;
  if (t.where !== undefined) out.where = t.where;
  if (t.keyTemplate !== undefined) out.keyTemplate = t.keyTemplate;
  return out;
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

// ---- entry points ------------------------------------------------------------------------

/**
 * Parse and compile config text. `configPath` names the file in errors and anchors
 * relative paths (dataDir, passwordFile). Throws DovetailError CONFIG_PARSE /
 * CONFIG_INVALID.
 */
export function parseAgentConfig(yamlText: string, configPath: string, env: Env = process.env): AgentConfig {
  const absPath = resolve(configPath);
  const baseDir = dirname(absPath);
  const label = configPath;

  const doc = parseDocument(yamlText, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0];
    const text = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw new DovetailError('CONFIG_PARSE', `${label}${pos ? `:${pos.line}:${pos.col}` : ''}: ${text}`, {
      path: absPath, line: pos?.line ?? null, col: pos?.col ?? null,
    });
  }
  const parsed: unknown = doc.toJS({ maxAliasCount: 100 });
  const issues = new Issues();
  if (parsed === null || parsed === undefined) {
    issues.add([], 'the file is empty');
    issues.throwIfAny(label, absPath);
  }
  const substituted = substituteEnv(parsed, [], env, issues);
  issues.throwIfAny(label, absPath);
  // Presets become ordinary tables here, so everything below checks them like hand-written ones.
  const raw = expandPresets(substituted, (segs, message) => issues.add(segs, message));
  issues.throwIfAny(label, absPath);
  schemaIssues(ConfigSchema, raw, [], issues);
  issues.throwIfAny(label, absPath);
  const cfg = raw as RawConfig;

  // source
  const s = cfg.source;
  if (!isValidTimeZone(s.timeZone)) issues.add(['source', 'timeZone'], `not a known IANA time zone (got ${JSON.stringify(s.timeZone)})`);
  if ((s.url === undefined) === (s.connectionString === undefined)) issues.add(['source', 'url'], 'give exactly one of url or connectionString');
  if (s.password !== undefined && s.passwordFile !== undefined) issues.add(['source', 'passwordFile'], 'give either password or passwordFile, not both');
  if (s.dialect !== undefined && s.type !== 'odbc') issues.add(['source', 'dialect'], 'only valid with source.type odbc');
  let password = s.password;
  if (s.passwordFile !== undefined) {
    const file = resolve(baseDir, s.passwordFile);
    try {
      // Files written by editors end with a newline that is not part of the secret.
      password = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      issues.add(['source', 'passwordFile'], `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  let url = s.url ?? s.connectionString ?? '';
  if (password !== undefined && url !== '') {
    try {
      url = mergePassword(s.type, url, password);
    } catch {
      issues.add(['source', 'url'], 'not a valid URL');
    }
  }
  const source: SourceConfig = {
    type: s.type,
    system: s.system,
    url,
    timeZone: s.timeZone,
    maxConnections: s.maxConnections ?? DEFAULTS.maxConnections,
    queryTimeoutMs: s.queryTimeoutMs ?? DEFAULTS.queryTimeoutMs,
  };
  if (s.dialect !== undefined) source.dialect = s.dialect;

  // hub
  const h = cfg.hub;
  let hubUrlOk = false;
  try {
    hubUrlOk = ['http:', 'https:', 'ws:', 'wss:'].includes(new URL(h.url).protocol);
  } catch { /* reported below */ }
  if (!hubUrlOk) issues.add(['hub', 'url'], `must be an http(s) or ws(s) URL (got ${JSON.stringify(h.url)})`);
  const hub: AgentConfig['hub'] = {
    url: h.url,
    maxInFlightBatches: h.maxInFlightBatches ?? DEFAULTS.maxInFlightBatches,
    maxBatchEvents: h.maxBatchEvents ?? DEFAULTS.maxBatchEvents,
    maxBatchBytes: h.maxBatchBytes ?? DEFAULTS.maxBatchBytes,
    reconnectInitialMs: h.reconnectInitialMs ?? DEFAULTS.reconnectInitialMs,
    reconnectMaxMs: h.reconnectMaxMs ?? DEFAULTS.reconnectMaxMs,
    heartbeatMs: h.heartbeatMs ?? DEFAULTS.heartbeatMs,
  };
  if (hub.reconnectMaxMs < hub.reconnectInitialMs) issues.add(['hub', 'reconnectMaxMs'], `must be at least reconnectInitialMs (${hub.reconnectInitialMs})`);

  // tables
  const dt = new DateTimeReader(isValidTimeZone(s.timeZone) ? s.timeZone : 'UTC');
  const seen = new Map<string, number>();
  const tables = (cfg.tables ?? []).map((t, i) => {
    const first = seen.get(t.name);
    if (first !== undefined) issues.add(['tables', i, 'name'], `duplicate table name ${JSON.stringify(t.name)} (also tables[${first}])`);
    else seen.set(t.name, i);
    return compileTable(t, i, source, dt, issues);
  });

  issues.throwIfAny(label, absPath);

  const config: AgentConfig = {
    configPath: absPath,
    agent: {
      name: cfg.agent.name,
      dataDir: resolve(baseDir, cfg.agent.dataDir ?? DEFAULTS.dataDir),
      logLevel: cfg.agent.logLevel ?? DEFAULTS.logLevel,
    },
    hub,
    source,
    tables,
  };
  return deepFreeze(config);
}

/** Read, parse and compile the agent config file. Throws CONFIG_NOT_FOUND, CONFIG_PARSE, CONFIG_INVALID. */
export async function loadAgentConfig(path: string, opts: { env?: Env } = {}): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new DovetailError('CONFIG_NOT_FOUND', `${path}: cannot read the config file (${code})`, { path: resolve(path) }, { cause: err });
  }
  return parseAgentConfig(text, path, opts.env ?? process.env);
}

/** One text for the CLI: config errors as they are (they name file and key), anything else with its code. */
export function describeConfigError(err: unknown): string {
  if (isDovetailError(err)) return err.code.startsWith('CONFIG_') ? err.message : `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Just where the agent keeps its data and which tables it names, for `status` and
 * `resync`: these must work from a fresh shell where the database password and hub
 * URL variables are not set, so nothing else is validated or substituted.
 */
export async function loadAgentLocation(path: string): Promise<{ dataDir: string; tables: string[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new DovetailError('CONFIG_NOT_FOUND', `cannot read agent config ${path}: ${(err as Error).message}`, { path }, { cause: err });
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) return loadAgentConfig(path).then((c) => ({ dataDir: c.agent.dataDir, tables: c.tables.map((t) => t.name) }));
  const raw = (doc.toJS({ maxAliasCount: 100 }) ?? {}) as { agent?: { dataDir?: unknown }; tables?: unknown };
  const dir = raw.agent?.dataDir;
  if (dir !== undefined && (typeof dir !== 'string' || dir.includes('${'))) {
    // Unusual: an env-dependent data dir needs the full loader (and its variables).
    const c = await loadAgentConfig(path);
    return { dataDir: c.agent.dataDir, tables: c.tables.map((t) => t.name) };
  }
  const tables = Array.isArray(raw.tables) ? raw.tables.map((t) => (t as { name?: unknown })?.name).filter((n): n is string => typeof n === 'string') : [];
  return { dataDir: resolve(dirname(resolve(path)), dir ?? DEFAULTS.dataDir), tables };
}
