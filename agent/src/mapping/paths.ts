/**
 * Canonical target paths ("addresses[0].line1", "uom.base", "extra.gpClass") and
 * how they resolve against an entity's TypeBox schema. Used by the config loader
 * (to reject paths that do not exist, naming them) and by the mapper (to build
 * objects and default required arrays).
 */
import type { TSchema } from '@sinclair/typebox';

export type PathSegment = string | number;

const SEGMENT_RE = /([A-Za-z_][A-Za-z0-9_]*)|\[(\d{1,4})\]|(\.)/y;

/** "addresses[0].line1" -> ["addresses", 0, "line1"]; null when the text is not a path. */
export function parseTargetPath(text: string): PathSegment[] | null {
  const out: PathSegment[] = [];
  SEGMENT_RE.lastIndex = 0;
  let expectName = true;
  let pos = 0;
  while (pos < text.length) {
    SEGMENT_RE.lastIndex = pos;
    const m = SEGMENT_RE.exec(text);
    if (!m) return null;
    if (m[1] !== undefined) {
      if (!expectName) return null;
      out.push(m[1]);
      expectName = false;
    } else if (m[2] !== undefined) {
      if (expectName) return null;
      out.push(Number(m[2]));
    } else {
      if (expectName) return null;
      expectName = true;
    }
    pos = SEGMENT_RE.lastIndex;
  }
  return out.length > 0 && !expectName ? out : null;
}

export function formatPath(segs: readonly PathSegment[]): string {
  let s = '';
  for (const seg of segs) s += typeof seg === 'number' ? `[${seg}]` : (s ? '.' : '') + seg;
  return s;
}

type SchemaLike = TSchema & {
  type?: string;
  anyOf?: SchemaLike[];
  properties?: Record<string, SchemaLike>;
  patternProperties?: Record<string, SchemaLike>;
  required?: string[];
  items?: SchemaLike;
};

/** Strip the `| null` that Opt() adds; a union of several non-null kinds stays as is (a scalar union). */
export function unwrapNullable(schema: TSchema): TSchema {
  const s = schema as SchemaLike;
  if (Array.isArray(s.anyOf)) {
    const nonNull = s.anyOf.filter((v) => v.type !== 'null');
    if (nonNull.length === 1) return unwrapNullable(nonNull[0]!);
  }
  return schema;
}

export type SchemaShape = 'object' | 'record' | 'array' | 'open' | 'scalar';

export function shapeOf(schema: TSchema): SchemaShape {
  const s = unwrapNullable(schema) as SchemaLike;
  if (s.type === 'object' && s.properties) return 'object';
  if (s.type === 'object' && s.patternProperties) return 'record';
  if (s.type === 'array') return 'array';
  if (s.type === undefined && !s.anyOf && !('const' in s)) return 'open';
  return 'scalar';
}

export function propertiesOf(schema: TSchema): Record<string, TSchema> {
  return ((unwrapNullable(schema) as SchemaLike).properties ?? {}) as Record<string, TSchema>;
}

export function requiredOf(schema: TSchema): string[] {
  return (unwrapNullable(schema) as SchemaLike).required ?? [];
}

export function itemsOf(schema: TSchema): TSchema | undefined {
  return (unwrapNullable(schema) as SchemaLike).items;
}

function recordValueOf(schema: TSchema): TSchema | undefined {
  const pp = (unwrapNullable(schema) as SchemaLike).patternProperties;
  return pp ? Object.values(pp)[0] : undefined;
}

export type Resolved = { ok: true; schema: TSchema; shape: SchemaShape } | { ok: false; reason: string };

/**
 * Walk `segs` through `schema`. Returns the schema at the end, or why the path does
 * not exist (naming the deepest valid prefix and the fields it has).
 */
export function resolveSchemaPath(schema: TSchema, segs: readonly PathSegment[], what: string): Resolved {
  let cur: TSchema = schema;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!;
    const shape = shapeOf(cur);
    const here = i === 0 ? what : formatPath(segs.slice(0, i));
    if (shape === 'open') return { ok: true, schema: cur, shape };
    if (typeof seg === 'string') {
      if (shape === 'object') {
        const props = propertiesOf(cur);
        const next = props[seg];
        if (!next) return { ok: false, reason: `not a field of ${here} (it has: ${Object.keys(props).join(', ')})` };
        cur = next;
      } else if (shape === 'record') {
        cur = recordValueOf(cur)!;
      } else {
        return { ok: false, reason: `${here} is ${shape === 'array' ? 'a list; use an index like [0]' : 'not an object'}` };
      }
    } else {
      if (shape !== 'array') return { ok: false, reason: `${here} is not a list` };
      cur = itemsOf(cur)!;
    }
  }
  return { ok: true, schema: cur, shape: shapeOf(cur) };
}

/**
 * Required fields of `schema` that no mapped path covers. Required arrays are not
 * reported (the mapper defaults them to []); nested objects and list items that
 * have some mapped field are checked field by field, so a mapped `contacts[0].title`
 * without `contacts[0].name` is reported. `mapped` holds paths relative to `schema`.
 */
export function missingRequired(schema: TSchema, mapped: readonly PathSegment[][], prefix = ''): string[] {
  const out: string[] = [];
  const props = propertiesOf(schema);
  const required = new Set(requiredOf(schema));
  for (const [name, prop] of Object.entries(props)) {
    const shape = shapeOf(prop);
    const under = mapped.filter((p) => p[0] === name).map((p) => p.slice(1));
    const here = prefix + name;
    if (under.length === 0) {
      if (required.has(name) && shape !== 'array') out.push(here);
      continue;
    }
    if (under.some((p) => p.length === 0)) continue;
    if (shape === 'array') {
      const items = itemsOf(prop);
      if (!items || shapeOf(items) !== 'object') continue;
      const byIndex = new Map<number, PathSegment[][]>();
      for (const p of under) {
        if (typeof p[0] !== 'number') continue;
        const list = byIndex.get(p[0]) ?? [];
        list.push(p.slice(1));
        byIndex.set(p[0], list);
      }
      for (const [idx, rest] of byIndex) {
        if (rest.some((r) => r.length === 0)) continue;
        out.push(...missingRequired(items, rest, `${here}[${idx}].`));
      }
    } else if (shape === 'object') {
      out.push(...missingRequired(prop, under, `${here}.`));
    }
  }
  return out;
}
