/**
 * The compiled agent configuration (after YAML parse -> schema validation with
 * unknown keys rejected -> defaults -> freeze). Units are in the names.
 *
 * YAML shape (example):
 *
 *   agent:
 *     name: acme-erp               # shown to operators
 *     dataDir: ./agent-data        # LevelDB outbox, identity, keys; relative to the config file
 *     logLevel: info
 *   hub:
 *     url: http://127.0.0.1:8700   # http(s) base; the socket is ws(s)://.../v1/agents/connect
 *     maxInFlightBatches: 32
 *     maxBatchEvents: 500
 *     maxBatchBytes: 1048576
 *   source:
 *     type: postgres               # postgres | mssql | odbc
 *     system: erp                  # source.system in events
 *     url: postgres://erp@127.0.0.1:5432/erp   # or connectionString; password via passwordFile / env:NAME
 *     timeZone: America/Chicago    # how naive ERP datetimes are read
 *     maxConnections: 1
 *   tables:
 *     - name: customers            # unique; the key of offsets and status
 *       table: public.customers
 *       key: [customer_id]
 *       entity: customer
 *       strategy: cursor           # cursor | diff | mssql-ct | mssql-cdc
 *       cursor: { column: updated_at, type: timestamp, overlapMs: 5000 }
 *       schedule: { every: 5s }    # or { cron: "*\/5 * * * *" }
 *       pageSize: 5000
 *       where: "deleted = false"   # optional fixed filter (config, never from the hub)
 *       map:                       # canonical path: column | { column, type, ... } | { const } | { template }
 *         customerId: { column: customer_id, type: code }
 *         name: { column: company_name, type: string }
 *         creditLimit: { column: credit_limit, type: decimal }
 *         updatedAt: { column: updated_at, type: datetime }
 *         status: { column: status_code, crosswalk: { A: active, H: on_hold, I: inactive } }
 *         addresses[0].line1: address
 *       children:
 *         lines:
 *           table: public.order_lines
 *           parentKey: [order_id]      # child columns matching the parent's key, in order
 *           orderBy: [line_no]
 *           into: lines                # canonical array path the mapped children go to
 *           map: { lineNumber: { column: line_no, type: code }, ... }
 *     - name: gp-customers         # or a preset instead of table/key/entity/map/children
 *       preset: dynamics-gp/customers   # see agent/src/presets; overrides: table, strategy, cursor, where, schedule, map.<path>
 */

export type FieldType = 'string' | 'code' | 'decimal' | 'integer' | 'boolean' | 'datetime' | 'date';

export interface FieldMapping {
  /** Source column; absent when `const`, `subtract` or `columns` is given. */
  column?: string;
  /**
   * Computed decimal `a - b` of two numeric columns, in exact decimal arithmetic (no
   * floats); null when either is null. For ERPs that store no derived quantity, e.g.
   * GP's available = QTYONHND - ATYALLOC. Only with type decimal.
   */
  subtract?: [string, string];
  /**
   * Several columns read as one value: their texts (trimmed) joined by ",", e.g.
   * GP's INACTIVE and HOLD flags as "0,1" for a status crosswalk. A null column reads as "".
   */
  columns?: string[];
  /** IANA zone for this datetime field's naive values, instead of source.timeZone (GP's DEX_ROW_TS is UTC). */
  timeZone?: string;
  type: FieldType;
  /** Trim trailing CHAR padding (default true for code, false otherwise). */
  trim: boolean;
  /** ERP value -> canonical value (after trim; null allowed). Unmapped values: `crosswalkDefault` or a mapping error. */
  crosswalk?: Record<string, string | null>;
  crosswalkDefault?: string | null;
  /**
   * Values meaning "no value" (e.g. "1900-01-01" for GP dates, "" for blank CHAR) -> null.
   * Compared after trim; for date/datetime fields "1900-01-01" also matches "1900-01-01 00:00:00[.000]".
   */
  nullIf?: string[];
  /** Constant value instead of a column (converted once by `type`; without a type its JS kind picks one). */
  const?: string | number | boolean | null;
  /** Required: a null result is a mapping error (quarantine). Default false. */
  required: boolean;
}

export interface ChildConfig {
  table: string;
  parentKey: string[];
  orderBy: string[];
  into: string;
  where?: string;
  map: Record<string, FieldMapping>;
}

export type Schedule = { everyMs: number } | { cron: string };

export interface CursorConfig {
  column: string;
  /** timestamp: naive or offset datetime; integer: identity/sequence; rowversion: SQL Server binary(8). */
  type: 'timestamp' | 'integer' | 'rowversion';
  /** Re-read window behind the last cursor value for late commits (timestamp: ms, integer/rowversion: units). */
  overlapMs: number;
  overlapUnits: number;
}

export interface TableConfig {
  name: string;
  table: string;
  /** Key columns (YAML: a list or one name); never empty. */
  key: string[];
  /** A canonical entity name (ENTITY_NAMES). */
  entity: string;
  strategy: 'cursor' | 'diff' | 'mssql-ct' | 'mssql-cdc';
  cursor?: CursorConfig;
  /** CDC capture instance name (mssql-cdc), default "<schema>_<table>". */
  captureInstance?: string;
  /** YAML `{ every: "5s" }` ("500ms", "2m", "1h") or `{ cron: "..." }` (node-cron syntax, quoted); default every 5 s. */
  schedule: Schedule;
  /** Rows per poll/snapshot page; default 5000. */
  pageSize: number;
  where?: string;
  /** Canonical key template from mapped fields, e.g. "{sku}/{warehouse}"; default the single key field value(s) joined by "/". */
  keyTemplate?: string;
  map: Record<string, FieldMapping>;
  children: Record<string, ChildConfig>;
  /** What to do when the position becomes invalid: resnapshot (default) or stop. */
  onGap: 'resnapshot' | 'stop';
}

export interface SourceConfig {
  type: 'postgres' | 'mssql' | 'odbc';
  system: string;
  /**
   * Connection string; never logged. `${env:NAME}` is substituted at load, and a
   * `password:` / `passwordFile:` is merged in: URL form (scheme://) as the URL's
   * password, key=value form as `Password={...}` (mssql) or `PWD={...}` (odbc).
   */
  url: string;
  timeZone: string;
  maxConnections: number;
  queryTimeoutMs: number;
  /** ODBC only: which SQL dialect the DSN speaks, for generated SQL. */
  dialect?: 'postgres' | 'mysql' | 'sqlite' | 'mssql' | 'generic';
}

export interface AgentConfig {
  /** Absolute path of the config file. */
  configPath: string;
  /** dataDir is absolute (resolved against the config file's folder). */
  agent: { name: string; dataDir: string; logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  hub: {
    url: string;
    maxInFlightBatches: number;
    maxBatchEvents: number;
    maxBatchBytes: number;
    reconnectInitialMs: number;
    reconnectMaxMs: number;
    heartbeatMs: number;
  };
  source: SourceConfig;
  tables: TableConfig[];
}
