/**
 * A scripted FAKE of the slice of the `mssql` package that the SQL Server driver
 * calls (agent/src/sources/mssql/api.ts). It is a fake because no SQL Server can run
 * on the build machines; the same expectations run against a real server in
 * test/integration/mssql.test.ts when MSSQL_URL is set.
 *
 * It records every statement with its typed parameters and the isolation level of
 * the transaction it ran in, and answers from a script: rules tried in order, the
 * first whose pattern matches the SQL replies (rows, or an Error to throw). A
 * statement no rule matches fails the test loudly.
 */
import type { MssqlApi, MssqlPool, MssqlRequest, MssqlTransaction } from '../../agent/src/sources/mssql/api.ts';

export interface FakeType { type: string; length?: number }
export interface FakeParam { name: string; type: FakeType; value: unknown }
export interface FakeCall {
  sql: string;
  params: FakeParam[];
  /** Isolation level of the enclosing transaction (5 = SNAPSHOT), null outside one. */
  isolation: number | null;
  /** Transaction number (1, 2, ...), null outside one. */
  tx: number | null;
}
export type Reply = Array<Record<string, unknown>> | Error;
export interface Rule {
  match: RegExp;
  reply: Reply | ((call: FakeCall) => Reply);
  /** Answer only this many times (then the rule is skipped). */
  times?: number;
}

export interface FakeMssql {
  api: MssqlApi;
  calls: FakeCall[];
  /** begin:<level> / commit / rollback, in order. */
  events: string[];
  poolConfigs: Array<Record<string, unknown>>;
  /** Add rules in front of the existing ones (newest wins). */
  script(...rules: Rule[]): void;
  param(call: FakeCall, name: string): FakeParam;
}

export const SNAPSHOT = 5;
export const READ_COMMITTED = 2;

/** A SQL Server error as mssql reports it (RequestError with the server's number). */
export function sqlError(number: number, message = `SQL Server error ${number}`): Error {
  return Object.assign(new Error(message), { name: 'RequestError', code: 'EREQUEST', number, state: 1, class: 14 });
}

export function createFakeMssql(rules: Rule[] = []): FakeMssql {
  const calls: FakeCall[] = [];
  const events: string[] = [];
  const poolConfigs: Array<Record<string, unknown>> = [];
  let script: Rule[] = [...rules];
  let txCount = 0;

  function answer(call: FakeCall): Promise<{ recordset: Array<Record<string, unknown>> }> {
    calls.push(call);
    for (const rule of script) {
      if (!rule.match.test(call.sql)) continue;
      if (rule.times !== undefined) {
        if (rule.times <= 0) continue;
        rule.times--;
      }
      const out = typeof rule.reply === 'function' ? rule.reply(call) : rule.reply;
      if (out instanceof Error) return Promise.reject(out);
      return Promise.resolve({ recordset: out.map((r) => ({ ...r })) });
    }
    return Promise.reject(new Error(`fake mssql: no script for statement: ${call.sql.slice(0, 200)}`));
  }

  function request(ctx: { isolation: number | null; tx: number | null }): MssqlRequest {
    const params: FakeParam[] = [];
    const req: MssqlRequest = {
      input(name, type, value) {
        params.push({ name, type: type as FakeType, value });
        return req;
      },
      query(sql) {
        return answer({ sql, params, isolation: ctx.isolation, tx: ctx.tx });
      },
    };
    return req;
  }

  class Pool implements MssqlPool {
    constructor(config: Record<string, unknown>) {
      poolConfigs.push(config);
    }
    async connect(): Promise<unknown> { return this; }
    async close(): Promise<unknown> { return undefined; }
    request(): MssqlRequest { return request({ isolation: null, tx: null }); }
    static parseConnectionString(s: string): Record<string, unknown> {
      if (!s.includes('=')) throw new Error(`cannot parse ${s}`);
      return { server: 'fake-server', options: { encrypt: true }, pool: {} };
    }
  }

  class Transaction implements MssqlTransaction {
    #ctx = { isolation: null as number | null, tx: null as number | null };
    constructor(_pool: MssqlPool) {}
    async begin(level: number): Promise<unknown> {
      this.#ctx = { isolation: level, tx: ++txCount };
      events.push(`begin:${level}`);
      return this;
    }
    async commit(): Promise<unknown> { events.push('commit'); return undefined; }
    async rollback(): Promise<unknown> { events.push('rollback'); return undefined; }
    request(): MssqlRequest { return request(this.#ctx); }
  }

  const t = (type: string) => (length?: number): FakeType => (length === undefined ? { type } : { type, length });
  const api: MssqlApi = {
    ConnectionPool: Pool,
    Transaction,
    ISOLATION_LEVEL: { READ_COMMITTED, SNAPSHOT },
    MAX: 65535,
    TYPES: {
      VarChar: t('VarChar'), NVarChar: t('NVarChar'), Char: t('Char'), NChar: t('NChar'),
      Int: t('Int'), BigInt: t('BigInt'), SmallInt: t('SmallInt'), TinyInt: t('TinyInt'), Bit: t('Bit'),
      Float: t('Float'), Binary: t('Binary'), VarBinary: t('VarBinary'), UniqueIdentifier: t('UniqueIdentifier'),
    },
  };

  return {
    api, calls, events, poolConfigs,
    script(...more) { script = [...more, ...script]; },
    param(call, name) {
      const p = call.params.find((x) => x.name === name);
      if (!p) throw new Error(`no parameter ${name} in ${call.sql.slice(0, 80)}`);
      return p;
    },
  };
}

/** sys.columns rows as describe() reads them. */
export function describeRows(cols: Array<[name: string, type: string, maxLength?: number, precision?: number, scale?: number]>): Array<Record<string, unknown>> {
  return cols.map(([name, type, maxLength = 4, precision = 0, scale = 0]) => ({
    name, type_name: type, max_length: maxLength, precision, scale, is_nullable: false, collation_name: null,
  }));
}
