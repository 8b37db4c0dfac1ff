import { Type, type Static } from '@sinclair/typebox';
import { DateTime } from './types.ts';
import { ENTITY_NAMES } from './entities.ts';

export const EventSource = Type.Object({
  /** Agent id that captured the change. */
  agent: Type.String({ minLength: 1 }),
  /** Source system name from the agent config, e.g. "erp". */
  system: Type.String({ minLength: 1 }),
  /** Source table (or table config name) the change came from. */
  table: Type.String({ minLength: 1 }),
  /** Capture position as text: CT version, CDC LSN hex, cursor value, snapshot id. */
  position: Type.String(),
}, { additionalProperties: false });

export const EventEnvelope = Type.Object({
  /** Stable id: the same change always has the same id; destinations use it as the idempotency key. */
  id: Type.String({ minLength: 1, maxLength: 100 }),
  entity: Type.Union(ENTITY_NAMES.map((n) => Type.Literal(n))),
  op: Type.Union([Type.Literal('upsert'), Type.Literal('delete')]),
  /** Canonical key of the record ("ALFKI", "SKU-1/MAIN"); events with the same entity+key keep capture order. */
  key: Type.String({ minLength: 1 }),
  /** The entity (validated against its schema) for upserts; null for deletes. */
  data: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  source: EventSource,
  /** When the change happened in the ERP, when known; else the capture time. */
  occurredAt: DateTime,
  capturedAt: DateTime,
  correlationId: Type.Union([Type.String(), Type.Null()]),
  /** "<entity>/<version>", e.g. "customer/1". */
  schema: Type.String({ pattern: '^[a-z_]+/\\d+$' }),
}, { $id: 'event', additionalProperties: false });

export type CanonicalEvent = Static<typeof EventEnvelope>;
