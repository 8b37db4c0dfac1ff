/**
 * T-SQL dialect: [bracket] identifiers, @p1 parameters, OFFSET/FETCH limits, and
 * `typedParam` for strategies written against the generic driver interface.
 */
import type { ColumnInfo, Dialect } from '../types.ts';
import { quoteIdent, sqlTypeText, type ParamColumn } from './columns.ts';

export interface MssqlDialect extends Dialect {
  readonly name: 'mssql';
  /**
   * Parameter i converted to the column's own type, for generic strategies that pass
   * plain Values through SourceDriver.query (strings arrive as NVARCHAR there):
   * a rowversion cursor "0x00000000000007E7" becomes CONVERT(binary(8), @p1, 1) and is
   * compared as binary; a VARCHAR(15) key becomes CAST(@p1 AS varchar(15)) so SQL_*
   * collations compare it with the column's own (non-Unicode) rules.
   */
  typedParam(i: number, column: ColumnInfo | ParamColumn): string;
}

function param(i: number): string {
  if (!Number.isInteger(i) || i < 1) throw new RangeError(`parameter index must be >= 1, got ${i}`);
  return `@p${i}`;
}

export const mssqlDialect: MssqlDialect = {
  name: 'mssql',
  quoteIdent,
  quoteTable(name: string): string {
    const parts = name.split('.');
    if (parts.length > 3 || parts.some((p) => p.length === 0)) {
      throw new TypeError(`table name must be "table", "schema.table" or "db.schema.table", got ${JSON.stringify(name)}`);
    }
    return parts.map(quoteIdent).join('.');
  },
  param,
  limit(sql: string, n: number): string {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`limit must be a positive integer, got ${n}`);
    // OFFSET/FETCH needs the ORDER BY the Dialect contract promises; TOP would need rewriting the SELECT.
    return `${sql} OFFSET 0 ROWS FETCH NEXT ${n} ROWS ONLY`;
  },
  typedParam(i: number, column: ColumnInfo | ParamColumn): string {
    const p = param(i);
    const t = column.type;
    // Style 1: the text must start with "0x"; exactly what Row binary values look like.
    if (t === 'rowversion' || t === 'timestamp' || t === 'binary' || t === 'varbinary') return `CONVERT(${sqlTypeText(column)}, ${p}, 1)`;
    return `CAST(${p} AS ${sqlTypeText(column)})`;
  },
};

/** "dbo.Customers" -> { schema: "dbo", name: "Customers" } ("dbo" when no schema is given). */
export function splitTable(table: string): { schema: string; name: string } {
  const parts = table.split('.');
  const name = parts[parts.length - 1];
  const schema = parts.length >= 2 ? parts[parts.length - 2] : 'dbo';
  if (!name || !schema) throw new TypeError(`bad table name ${JSON.stringify(table)}`);
  return { schema, name };
}
