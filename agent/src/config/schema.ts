/**
 * The YAML shape as a TypeBox schema (before defaults). Every object rejects
 * unknown keys so a typo ("tabels", "curser") is an error naming the key, never a
 * silently ignored setting. Defaults and units are documented in types.ts and
 * applied by load.ts.
 */
import { Type, type TLiteral, type TSchema } from '@sinclair/typebox';
import { ENTITY_NAMES } from '@dovetail/shared';

const Str = Type.String({ minLength: 1 });
const oneOf = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)) as TLiteral<T>[]);
const Obj = (props: Record<string, TSchema>) => Type.Object(props, { additionalProperties: false });
const Opt = Type.Optional;
const Int = (min: number, max = Number.MAX_SAFE_INTEGER) => Type.Integer({ minimum: min, maximum: max });

export const FIELD_TYPES = ['string', 'code', 'decimal', 'integer', 'boolean', 'datetime', 'date'] as const;
export const STRATEGIES = ['cursor', 'diff', 'mssql-ct', 'mssql-cdc'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const FieldLongSchema = Obj({
  column: Opt(Str),
  /** Computed exact decimal `a - b` of two columns (type decimal). */
  subtract: Opt(Type.Array(Str, { minItems: 2, maxItems: 2 })),
  /** Several columns read as one text, joined by "," (for a crosswalk over flags). */
  columns: Opt(Type.Array(Str, { minItems: 1 })),
  /** IANA zone of this datetime field's naive values, instead of source.timeZone. */
  timeZone: Opt(Str),
  type: Opt(oneOf(FIELD_TYPES)),
  trim: Opt(Type.Boolean()),
  crosswalk: Opt(Type.Record(Type.String(), Type.Union([Type.String(), Type.Null()]))),
  crosswalkDefault: Opt(Type.Union([Type.String(), Type.Null()])),
  nullIf: Opt(Type.Union([Type.String(), Type.Number(), Type.Array(Type.Union([Type.String(), Type.Number()]))])),
  const: Opt(Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()])),
  required: Opt(Type.Boolean()),
});

/** `name: company_name` (a string column) or the long form. */
export const FieldSchema = Type.Union([Type.String({ minLength: 1 }), FieldLongSchema]);
const MapSchema = Type.Record(Type.String(), FieldSchema);

const ChildSchema = Obj({
  table: Str,
  parentKey: Type.Union([Str, Type.Array(Str, { minItems: 1 })]),
  orderBy: Opt(Type.Union([Str, Type.Array(Str)])),
  into: Str,
  where: Opt(Str),
  map: MapSchema,
});

const TableSchema = Obj({
  name: Str,
  table: Str,
  key: Type.Union([Str, Type.Array(Str, { minItems: 1 })]),
  entity: oneOf(ENTITY_NAMES),
  strategy: oneOf(STRATEGIES),
  cursor: Opt(Obj({
    column: Str,
    type: Opt(oneOf(['timestamp', 'integer', 'rowversion'] as const)),
    overlapMs: Opt(Int(0)),
    overlapUnits: Opt(Int(0)),
  })),
  captureInstance: Opt(Str),
  schedule: Opt(Obj({
    every: Opt(Type.String({ pattern: '^\\d+(ms|s|m|h)$', hint: 'a duration like "500ms", "5s", "2m" or "1h"' })),
    cron: Opt(Str),
  })),
  pageSize: Opt(Int(1, 1_000_000)),
  where: Opt(Str),
  keyTemplate: Opt(Str),
  map: MapSchema,
  children: Opt(Type.Record(Type.String(), ChildSchema)),
  onGap: Opt(oneOf(['resnapshot', 'stop'] as const)),
});

export const ConfigSchema = Obj({
  agent: Obj({
    name: Str,
    dataDir: Opt(Str),
    logLevel: Opt(oneOf(LOG_LEVELS)),
  }),
  hub: Obj({
    url: Str,
    maxInFlightBatches: Opt(Int(1, 10_000)),
    maxBatchEvents: Opt(Int(1, 100_000)),
    maxBatchBytes: Opt(Int(1024, 64 * 1024 * 1024)),
    reconnectInitialMs: Opt(Int(1)),
    reconnectMaxMs: Opt(Int(1)),
    heartbeatMs: Opt(Int(100)),
  }),
  source: Obj({
    type: oneOf(['postgres', 'mssql', 'odbc'] as const),
    system: Str,
    url: Opt(Str),
    connectionString: Opt(Str),
    password: Opt(Type.String()),
    passwordFile: Opt(Str),
    timeZone: Str,
    maxConnections: Opt(Int(1, 100)),
    queryTimeoutMs: Opt(Int(1)),
    dialect: Opt(oneOf(['postgres', 'mysql', 'sqlite', 'mssql', 'generic'] as const)),
  }),
  tables: Opt(Type.Array(TableSchema)),
});
