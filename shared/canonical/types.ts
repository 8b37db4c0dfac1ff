import { Type, type TSchema } from '@sinclair/typebox';

/** Exact decimal as a string: money, quantities, rates. Never a float. */
export const Decimal = Type.String({ pattern: '^-?\\d+(\\.\\d+)?$', description: 'exact decimal number as a string', examples: ['12.50000'] });
/** ISO 8601 datetime with an offset; fraction digits as the source had them. */
export const DateTime = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$',
  description: 'ISO 8601 datetime with offset',
  examples: ['2024-07-01T10:00:00.1234567-05:00'],
});
export const DateOnly = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: 'calendar date' });
export const Code = Type.String({ minLength: 1, maxLength: 200 });

export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/** Optional and nullable: a mapping may leave it out, or the ERP may hold no value. */
export const Opt = <T extends TSchema>(t: T) => Type.Optional(Nullable(t));
/** Source columns the mapping passes through unchanged under `extra`. */
export const Extra = Opt(Type.Record(Type.String(), Type.Unknown()));
