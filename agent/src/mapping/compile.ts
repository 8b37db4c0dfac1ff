/**
 * The declarative mapper: a table's `map` (canonical path -> column + type) is
 * compiled once into a tree of converters; `toEvent` walks that tree per row.
 *
 * Documented behaviours:
 * - Unmapped optional fields are left out of `data`; required arrays of the entity
 *   (addresses, contacts, lines, trackingNumbers) default to [].
 * - A nested object (an address, a contact, `shipTo`) whose column-mapped fields are
 *   ALL null is dropped: removed from its list, or null as a property. Constant
 *   fields do not count, so `addresses[1].type: { const: shipping }` with an empty
 *   ship-to address yields no second address. Null scalars inside lists
 *   (`trackingNumbers[2]`) are dropped too.
 * - Key: `keyTemplate` placeholders are read from the mapped data (upserts) or by
 *   converting the key columns with the same field mapping (deletes, whose row is
 *   gone), so both ops yield the same key. Without a template, the key column
 *   values, trimmed, joined by "/".
 * - `occurredAt`: the change's occurredAt read like a datetime field; when absent or
 *   unreadable, the capture time.
 */
import {
  DovetailError, ENTITIES, schemaId, validateEvent,
  type CanonicalEvent, type EntityName,
} from '@dovetail/shared';
import type { TSchema } from '@sinclair/typebox';
import type { RowChange } from '../capture/types.ts';
import type { FieldMapping, TableConfig } from '../config/types.ts';
import type { Row } from '../sources/types.ts';
import { compileField, DateTimeReader, FieldError, type CompiledField } from './convert.ts';
import { eventId } from './hash.ts';
import {
  formatPath, parseTargetPath, propertiesOf, requiredOf, resolveSchemaPath, shapeOf,
  type PathSegment,
} from './paths.ts';

export interface Mapper {
  /** Map one captured change to a validated canonical event. Throws DovetailError AGENT_MAPPING / AGENT_VALIDATION. */
  toEvent(change: RowChange, capturedAt: Date): CanonicalEvent;
}

export interface MapperOptions {
  /** IANA zone naive ERP datetimes are read in (source.timeZone). */
  timeZone: string;
  /** source.system */
  system: string;
  agentId: string;
}

// ---- compiled tree -------------------------------------------------------------

const LEAF = 0;
const OBJ = 1;
const ARR = 2;
const CHILD = 3;
const EMPTY_LIST = 4;

interface LeafNode { t: typeof LEAF; f: CompiledField; fromColumn: boolean }
/** A required list of the entity that nothing maps: []. */
interface EmptyListNode { t: typeof EMPTY_LIST }
interface ObjNode {
  t: typeof OBJ;
  /**
   * Property names in sorted order, so every object is built with sorted keys and
   * plain JSON.stringify is a stable serialisation for the id hash (no per-row sort).
   */
  names: string[];
  nodes: TreeNode[];
  /** Root objects are never dropped. */
  droppable: boolean;
  hasColumns: boolean;
}
interface ArrNode { t: typeof ARR; nodes: TreeNode[] }
interface ChildNode { t: typeof CHILD; name: string; into: string; item: ObjNode }
type TreeNode = LeafNode | ObjNode | ArrNode | ChildNode | EmptyListNode;

type Draft =
  | { kind: 'obj'; props: Map<string, Draft> }
  | { kind: 'arr'; items: Map<number, Draft> }
  | { kind: 'leaf'; field: CompiledField; fromColumn: boolean }
  | { kind: 'child'; name: string; into: string; item: ObjNode };

function insert(root: Draft, segs: PathSegment[], leaf: Draft, display: string): void {
  let cur = root;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!;
    const last = i === segs.length - 1;
    const next = segs[i + 1];
    const fresh = (): Draft => (last ? leaf : typeof next === 'number' ? { kind: 'arr', items: new Map() } : { kind: 'obj', props: new Map() });
    let child: Draft | undefined;
    if (typeof seg === 'string') {
      if (cur.kind !== 'obj') throw new TypeError(`mapping path ${display} conflicts with another mapped path`);
      child = cur.props.get(seg);
      if (child === undefined) cur.props.set(seg, (child = fresh()));
    } else {
      if (cur.kind !== 'arr') throw new TypeError(`mapping path ${display} conflicts with another mapped path`);
      child = cur.items.get(seg);
      if (child === undefined) cur.items.set(seg, (child = fresh()));
    }
    if (last && child !== leaf) throw new TypeError(`mapping path ${display} conflicts with another mapped path`);
    cur = child;
  }
}

function subSchema(schema: TSchema | undefined, seg: PathSegment): TSchema | undefined {
  if (!schema) return undefined;
  const r = resolveSchemaPath(schema, [seg], '');
  return r.ok ? r.schema : undefined;
}

function finalize(d: Draft, schema: TSchema | undefined, droppable: boolean): TreeNode {
  switch (d.kind) {
    case 'leaf':
      return { t: LEAF, f: d.field, fromColumn: d.fromColumn };
    case 'child':
      return { t: CHILD, name: d.name, into: d.into, item: d.item };
    case 'arr': {
      const idx = [...d.items.keys()].sort((a, b) => a - b);
      return { t: ARR, nodes: idx.map((i) => finalize(d.items.get(i)!, subSchema(schema, i), true)) };
    }
    case 'obj': {
      const entries: [string, TreeNode][] = [...d.props].map(([n, child]) => [n, finalize(child, subSchema(schema, n), true)]);
      if (schema && shapeOf(schema) === 'object') {
        const props = propertiesOf(schema);
        for (const r of requiredOf(schema)) {
          if (!d.props.has(r) && props[r] && shapeOf(props[r]) === 'array') entries.push([r, { t: EMPTY_LIST }]);
        }
      }
      entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      const nodes = entries.map((e) => e[1]);
      return { t: OBJ, names: entries.map((e) => e[0]), nodes, droppable, hasColumns: nodes.some(hasColumns) };
    }
  }
}

function hasColumns(n: TreeNode): boolean {
  switch (n.t) {
    case LEAF: return n.fromColumn;
    case OBJ: return n.hasColumns;
    case ARR: return n.nodes.some(hasColumns);
    case CHILD: return true;
    case EMPTY_LIST: return false;
  }
}

function compileTree(
  map: Readonly<Record<string, FieldMapping>>,
  schema: TSchema,
  dt: DateTimeReader,
  extra: { segs: PathSegment[]; draft: Draft; display: string }[] = [],
): { root: ObjNode; fields: Map<string, CompiledField> } {
  const root: Draft = { kind: 'obj', props: new Map() };
  const fields = new Map<string, CompiledField>();
  for (const [path, fm] of Object.entries(map)) {
    const segs = parseTargetPath(path);
    if (!segs) throw new TypeError(`not a canonical path: ${path}`);
    const field = compileField(path, fm, dt);
    fields.set(formatPath(segs), field);
    insert(root, segs, { kind: 'leaf', field, fromColumn: fm.column !== undefined || fm.subtract !== undefined || fm.columns !== undefined }, path);
  }
  for (const e of extra) insert(root, e.segs, e.draft, e.display);
  return { root: finalize(root, schema, false) as ObjNode, fields };
}

// ---- per-row building ----------------------------------------------------------

interface BuildState {
  /** Set when a column-mapped value in the current object is non-null. */
  seen: boolean;
  children: Record<string, Row[]> | undefined;
}

function buildNode(n: TreeNode, row: Row, st: BuildState): unknown {
  switch (n.t) {
    case LEAF: {
      const v = n.f.read(row);
      if (v !== null && n.fromColumn) st.seen = true;
      return v;
    }
    case OBJ:
      return buildObj(n, row, st);
    case ARR: {
      const out: unknown[] = [];
      for (let i = 0; i < n.nodes.length; i++) {
        const v = buildNode(n.nodes[i]!, row, st);
        if (v !== null) out.push(v);
      }
      return out;
    }
    case CHILD: {
      const rows = st.children?.[n.name];
      const out: unknown[] = [];
      if (!rows || rows.length === 0) return out;
      st.seen = true;
      const inner: BuildState = { seen: false, children: undefined };
      for (let i = 0; i < rows.length; i++) {
        try {
          out.push(buildObj(n.item, rows[i]!, inner));
        } catch (err) {
          throw err instanceof FieldError ? err.withPrefix(`${n.into}[${i}].`) : err;
        }
      }
      return out;
    }
    case EMPTY_LIST:
      return [];
  }
}

function buildObj(n: ObjNode, row: Row, st: BuildState): Record<string, unknown> | null {
  const outer = st.seen;
  st.seen = false;
  const out: Record<string, unknown> = {};
  for (let i = 0; i < n.nodes.length; i++) {
    const v = buildNode(n.nodes[i]!, row, st);
    if (v !== undefined) out[n.names[i]!] = v;
  }
  const mine = st.seen;
  st.seen = outer || mine;
  return n.droppable && n.hasColumns && !mine ? null : out;
}

// ---- keys ----------------------------------------------------------------------

type KeyPart = string | { field: CompiledField; segs: PathSegment[] };

function parseKeyTemplate(tpl: string, fields: Map<string, CompiledField>): KeyPart[] {
  const parts: KeyPart[] = [];
  let last = 0;
  for (const m of tpl.matchAll(/\{([^{}]+)\}/g)) {
    if (m.index > last) parts.push(tpl.slice(last, m.index));
    const segs = parseTargetPath(m[1]!.trim());
    const field = segs ? fields.get(formatPath(segs)) : undefined;
    if (!segs || !field) throw new TypeError(`keyTemplate placeholder {${m[1]}} is not a mapped field`);
    parts.push({ field, segs });
    last = m.index + m[0].length;
  }
  if (last < tpl.length) parts.push(tpl.slice(last));
  return parts;
}

function keyText(v: unknown, what: string): string {
  if (v === null || v === undefined) throw new FieldError(what, null, 'key value is null', undefined);
  const s = typeof v === 'string' ? v : String(v);
  if (s === '') throw new FieldError(what, null, 'key value is blank', v);
  return s;
}

function getPath(data: Record<string, unknown>, segs: PathSegment[]): unknown {
  let cur: unknown = data;
  for (const s of segs) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[s];
  }
  return cur;
}

// ---- the mapper ----------------------------------------------------------------

export function compileMapping(table: TableConfig, opts: MapperOptions): Mapper {
  const entity = table.entity as EntityName;
  const def = ENTITIES[entity];
  if (!def) throw new TypeError(`unknown entity ${table.entity}`);
  const schema = def.schema as TSchema;
  const dt = new DateTimeReader(opts.timeZone);

  const childDrafts: { segs: PathSegment[]; draft: Draft; display: string }[] = [];
  for (const [name, child] of Object.entries(table.children ?? {})) {
    const segs = parseTargetPath(child.into);
    if (!segs) throw new TypeError(`children.${name}.into is not a canonical path: ${child.into}`);
    const r = resolveSchemaPath(schema, segs, entity);
    const items = r.ok && r.shape === 'array' ? subSchema(r.schema, 0) : undefined;
    if (!items) throw new TypeError(`children.${name}.into ${child.into} is not a list of ${entity}`);
    const { root } = compileTree(child.map, items, dt);
    childDrafts.push({ segs, draft: { kind: 'child', name, into: child.into, item: { ...root, droppable: false } }, display: child.into });
  }
  const { root, fields } = compileTree(table.map, schema, dt, childDrafts);

  const keyCols = table.key;
  const keyParts = table.keyTemplate ? parseKeyTemplate(table.keyTemplate, fields) : null;
  const schemaName = schemaId(entity);
  const tableName = table.name;
  const st: BuildState = { seen: false, children: undefined };
  let lastCapturedMs = Number.NaN;
  let lastCapturedIso = '';

  function rawKey(change: RowChange, strict: boolean): string {
    let s = '';
    for (let i = 0; i < keyCols.length; i++) {
      const col = keyCols[i]!;
      let v = change.key[col];
      if (v === undefined && change.row) v = change.row[col];
      if (v === null || v === undefined) {
        if (strict) throw new FieldError(`key`, col, 'key column is null or missing', v === undefined ? undefined : null);
        s += (i ? '/' : '') + '?';
        continue;
      }
      const text = typeof v === 'string' ? v.trim() : String(v);
      if (text === '' && strict) throw new FieldError('key', col, 'key column is blank', v);
      s += (i ? '/' : '') + (text === '' ? '?' : text);
    }
    return s;
  }

  function templateKey(parts: KeyPart[], data: Record<string, unknown> | null, change: RowChange): string {
    let s = '';
    for (const p of parts) {
      if (typeof p === 'string') {
        s += p;
      } else if (data !== null) {
        s += keyText(getPath(data, p.segs), p.field.path);
      } else {
        const col = p.field.column;
        s += keyText(col === null ? p.field.convert(undefined) : p.field.convert(change.key[col]), p.field.path);
      }
    }
    return s;
  }

  function isoOf(d: Date): string {
    const ms = d.getTime();
    if (ms !== lastCapturedMs) {
      if (Number.isNaN(ms)) throw new RangeError('capturedAt is an invalid Date');
      lastCapturedMs = ms;
      lastCapturedIso = d.toISOString().slice(0, -1) + '+00:00';
    }
    return lastCapturedIso;
  }

  return {
    toEvent(change: RowChange, capturedAt: Date): CanonicalEvent {
      const capturedIso = isoOf(capturedAt);
      let data: Record<string, unknown> | null = null;
      let key: string;
      try {
        if (change.op === 'upsert') {
          if (!change.row) throw new FieldError('row', null, 'an upsert carries no row', undefined);
          st.seen = false;
          st.children = change.children;
          data = buildObj(root, change.row, st);
          st.children = undefined;
        }
        key = keyParts ? templateKey(keyParts, data, change) : rawKey(change, true);
      } catch (err) {
        st.children = undefined;
        if (!(err instanceof FieldError)) throw err;
        const k = rawKey(change, false);
        throw new DovetailError('AGENT_MAPPING', `${tableName} ${k}: ${err.message}`, {
          table: tableName, key: k, field: err.path, column: err.column, reason: err.reason,
          position: change.position,
        }, { cause: err });
      }
      let occurredAt = capturedIso;
      if (typeof change.occurredAt === 'string' && change.occurredAt !== '') {
        occurredAt = dt.read(change.occurredAt) ?? capturedIso;
      }
      const event: CanonicalEvent = {
        id: eventId(opts.agentId, tableName, key, change.op, change.position, data === null ? 'null' : JSON.stringify(data)),
        entity,
        op: change.op,
        key,
        data,
        source: { agent: opts.agentId, system: opts.system, table: tableName, position: change.position },
        occurredAt,
        capturedAt: capturedIso,
        correlationId: null,
        schema: schemaName,
      };
      const issues = validateEvent(event);
      if (issues.length > 0) {
        const detail = issues.map((i) => `${i.path}: ${i.message}`).join('; ');
        throw new DovetailError('AGENT_VALIDATION', `${tableName} ${key}: ${schemaName} validation failed: ${detail}`, {
          table: tableName, key, issues, position: change.position,
        });
      }
      return event;
    },
  };
}
