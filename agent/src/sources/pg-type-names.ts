/**
 * PostgreSQL information_schema data_type -> the short lower-case names used across
 * drivers; shared by the native source and the ODBC source's PostgreSQL dialect.
 */
export const PG_TYPE_NAMES: Readonly<Record<string, string>> = {
  'character varying': 'varchar',
  'timestamp without time zone': 'timestamp',
  'timestamp with time zone': 'timestamptz',
  'time without time zone': 'time',
  'time with time zone': 'timetz',
  'double precision': 'float8',
  real: 'float4',
};
