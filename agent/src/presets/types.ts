/**
 * A table preset: a ready-made table config in the YAML shape (before defaults), so
 * the expansion goes through the same schema validation and compilation as a table
 * written by hand, and every error still names `tables[i].<key>`.
 */

/** A field in the YAML long form (see FieldLongSchema in ../config/schema.ts). */
export type PresetField = Record<string, unknown>;

export interface PresetChild {
  /** Unqualified table name; the expansion gives it the parent table's schema prefix. */
  table: string;
  parentKey: string[];
  orderBy: string[];
  /** SQL filter; `{COLUMN}` is quoted for the source's dialect at expansion (PostgreSQL folds bare names to lower case). */
  where?: string;
  into: string;
  map: Record<string, PresetField>;
}

export interface TablePreset {
  /** One line for `unknown preset` errors and docs. */
  description: string;
  /** Default `table` (the ERP's table name, unqualified). */
  table: string;
  entity: string;
  key: string[];
  strategy: 'cursor' | 'diff';
  cursor?: { column: string; type: 'timestamp' | 'integer' | 'rowversion' };
  /** Default `where`; `{COLUMN}` is quoted for the source's dialect at expansion. */
  where?: string;
  map: Record<string, PresetField>;
  children?: Record<string, PresetChild>;
}
