/**
 * Table presets: `preset: dynamics-gp/customers` in a table of agent.yaml stands for
 * a whole table config (table, key, entity, strategy, cursor, where, map, children).
 * The loader expands it BEFORE schema validation, so the expansion is checked and
 * compiled exactly like a hand-written table and errors keep naming `tables[i].…`.
 *
 * What the user may still set, and how it combines with the preset:
 * - `name` (required), `schedule`, `pageSize`, `onGap`, `captureInstance`: as for any table.
 * - `table`: the source table, e.g. `dbo.RM00101` (default the ERP table name). Child
 *   tables (SOP30300 lines) take the same schema prefix.
 * - `strategy`: replaces the preset's; a preset cursor is dropped unless the strategy is cursor.
 * - `cursor`: merged key by key over the preset's (`cursor: { overlapMs: 10000 }` keeps its column).
 * - `where`: replaces the preset's filter; `where: null` removes it.
 * - `map`: per canonical path, the user's field replaces the preset's whole field;
 *   `path: null` removes the preset's field.
 * `key`, `entity`, `children` and `keyTemplate` belong to the preset: setting them is
 * an error (write the table without a preset to change them).
 */
import { ODBC_DIALECTS, type OdbcDialectName } from '../sources/odbc/dialects.ts';
import { inferDialect } from '../sources/odbc/driver.ts';
import { DYNAMICS_GP_PRESETS } from './dynamics-gp.ts';
import type { TablePreset } from './types.ts';

export type { TablePreset, PresetChild, PresetField } from './types.ts';

/** One line per preset family. */
export const PRESETS: Readonly<Record<string, TablePreset>> = Object.freeze({ ...DYNAMICS_GP_PRESETS });

export function presetNames(): string[] {
  return Object.keys(PRESETS).sort();
}

/** Keys owned by the preset; a table with `preset` may not set them. */
export const PRESET_OWNED_KEYS = ['key', 'entity', 'children', 'keyTemplate'] as const;

type Problem = (path: (string | number)[], message: string) => void;

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Which identifier quoting the source speaks, from the (not yet validated) raw `source` block. */
export function sourceDialect(source: unknown): OdbcDialectName {
  if (!isPlainObject(source)) return 'generic';
  if (source.type === 'postgres') return 'postgres';
  if (source.type === 'mssql') return 'mssql';
  if (typeof source.dialect === 'string' && source.dialect in ODBC_DIALECTS) return source.dialect as OdbcDialectName;
  const url = typeof source.url === 'string' ? source.url : typeof source.connectionString === 'string' ? source.connectionString : '';
  return inferDialect(url);
}

function quoteWhere(where: string, dialect: OdbcDialectName): string {
  const q = ODBC_DIALECTS[dialect].quoteIdent;
  return where.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => q(name));
}

/** "dbo.SOP30200" + "SOP30300" -> "dbo.SOP30300". */
function sibling(parentTable: unknown, child: string): string {
  if (typeof parentTable !== 'string') return child;
  const dot = parentTable.lastIndexOf('.');
  return dot < 0 ? child : `${parentTable.slice(0, dot + 1)}${child}`;
}

/**
 * Expand one raw table entry that has `preset`. Problems are reported relative to
 * the entry (e.g. ["preset"], ["map"]); returns null when the entry cannot be expanded.
 */
export function expandPresetTable(entry: Record<string, unknown>, dialect: OdbcDialectName, problem: Problem): Record<string, unknown> | null {
  const name = entry.preset;
  const preset = typeof name === 'string' && Object.prototype.hasOwnProperty.call(PRESETS, name) ? PRESETS[name] : undefined;
  if (!preset) {
    problem(['preset'], `unknown preset ${JSON.stringify(name)}; known presets: ${presetNames().join(', ')}`);
    return null;
  }
  let ok = true;
  for (const k of PRESET_OWNED_KEYS) {
    if (k in entry) {
      problem([k], `set by preset ${name}; remove it, or write this table without a preset to change it`);
      ok = false;
    }
  }
  if (entry.map !== undefined && !isPlainObject(entry.map)) {
    problem(['map'], 'must be a mapping of canonical path -> field (each replaces the preset\'s field; null removes it)');
    ok = false;
  }
  if (!ok) return null;

  // Copies: the compiled config is deep-frozen and must not freeze (or share) the preset constants.
  const p = structuredClone(preset);
  const { preset: _preset, map: userMap, cursor: userCursor, where: userWhere, ...rest } = entry;
  const out: Record<string, unknown> = { table: p.table, key: p.key, entity: p.entity, strategy: p.strategy, ...rest };

  const strategy = out.strategy;
  if (userCursor !== undefined) {
    out.cursor = isPlainObject(userCursor) && p.cursor ? { ...p.cursor, ...userCursor } : userCursor;
  } else if (strategy === 'cursor' && p.cursor) {
    out.cursor = p.cursor;
  }

  if (userWhere === undefined) {
    if (p.where !== undefined) out.where = quoteWhere(p.where, dialect);
  } else if (userWhere !== null) {
    out.where = userWhere;
  }

  const map: Record<string, unknown> = { ...p.map };
  for (const [path, field] of Object.entries((userMap as Record<string, unknown> | undefined) ?? {})) {
    if (field === null) delete map[path];
    else map[path] = field;
  }
  out.map = map;

  if (p.children) {
    const children: Record<string, unknown> = {};
    for (const [cname, c] of Object.entries(p.children)) {
      const child: Record<string, unknown> = { table: sibling(out.table, c.table), parentKey: c.parentKey, orderBy: c.orderBy, into: c.into, map: c.map };
      if (c.where !== undefined) child.where = quoteWhere(c.where, dialect);
      children[cname] = child;
    }
    out.children = children;
  }
  return out;
}

/**
 * Expand every `tables[i]` that has `preset` in a raw (parsed, env-substituted, not
 * yet validated) config, in place of the entry. Other entries pass through untouched.
 */
export function expandPresets(raw: unknown, problem: Problem): unknown {
  if (!isPlainObject(raw) || !Array.isArray(raw.tables)) return raw;
  if (!raw.tables.some((t) => isPlainObject(t) && 'preset' in t)) return raw;
  const dialect = sourceDialect(raw.source);
  const tables = raw.tables.map((t: unknown, i: number) => {
    if (!isPlainObject(t) || !('preset' in t)) return t;
    return expandPresetTable(t, dialect, (path, message) => problem(['tables', i, ...path], message)) ?? t;
  });
  return { ...raw, tables };
}
