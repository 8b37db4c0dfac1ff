import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { TSchema } from '@sinclair/typebox';
import { ENTITIES, type EntityName } from './entities.ts';
import { EventEnvelope, type CanonicalEvent } from './envelope.ts';

export interface ValidationIssue { path: string; message: string }

const envelopeCheck = TypeCompiler.Compile(EventEnvelope);
const entityChecks = new Map<string, TypeCheck<TSchema>>(
  Object.entries(ENTITIES).map(([name, e]) => [name, TypeCompiler.Compile(e.schema as TSchema)]),
);

function issues(check: TypeCheck<TSchema>, value: unknown, prefix: string): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  for (const e of check.Errors(value)) {
    out.push({ path: prefix + (e.path || '/'), message: e.message });
    if (out.length >= 10) break;
  }
  return out;
}

/**
 * Validate an event: the envelope, then its data against the entity schema named by
 * `schema`. Returns [] when valid. Deletes carry data null.
 */
export function validateEvent(event: unknown): ValidationIssue[] {
  if (!envelopeCheck.Check(event)) return issues(envelopeCheck, event, '');
  const ev = event as CanonicalEvent;
  const entity = ENTITIES[ev.entity as EntityName];
  if (ev.schema !== `${ev.entity}/${entity.version}`) {
    return [{ path: '/schema', message: `expected ${ev.entity}/${entity.version}` }];
  }
  if (ev.op === 'delete') {
    return ev.data === null ? [] : [{ path: '/data', message: 'a delete carries data null' }];
  }
  const check = entityChecks.get(ev.entity)!;
  return check.Check(ev.data) ? [] : issues(check, ev.data, '/data');
}

export function schemaId(entity: EntityName): string {
  return `${entity}/${ENTITIES[entity].version}`;
}
