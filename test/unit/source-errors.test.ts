/** One place decides what a driver error means and whether to retry it. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { classifySourceError, isRetryable } from '../../agent/src/sources/errors.ts';
import { createDriver } from '../../agent/src/sources/registry.ts';
import { DovetailError } from '@dovetail/shared';
import { sourceConfig } from '../helpers/pglite-source.ts';

const err = (fields: Record<string, unknown>) => Object.assign(new Error('x'), fields);
const where = { op: 'query', source: 'test', table: 'dbo.T' };

it('retries transient failures and not permanent ones', () => {
  for (const e of [err({ code: 'ECONNREFUSED' }), err({ code: 'ECONNRESET' }), err({ code: '40P01' }), err({ code: '40001' }),
    err({ number: 1205 }), err({ code: 'ETIMEOUT' }), err({ originalError: err({ number: 1205 }) })]) {
    assert.equal(isRetryable(e), true, JSON.stringify(e));
    assert.equal(isRetryable(classifySourceError(e, where)), true);
  }
  for (const e of [err({ code: '42501' }), err({ code: '42P01' }), err({ code: '42703' }), err({ number: 229 }), err({ number: 230 }),
    err({ number: 208 }), err({ number: 207 }), new Error('unknown')]) {
    assert.equal(isRetryable(e), false, JSON.stringify(e));
    assert.equal(isRetryable(classifySourceError(e, where)), false);
  }
});

it('maps to stable codes and names the table, never message text', () => {
  assert.equal(classifySourceError(err({ code: '42501' }), where).code, 'AGENT_SOURCE_PERMISSION');
  assert.equal(classifySourceError(err({ number: 208 }), where).code, 'AGENT_SOURCE_MISSING_OBJECT');
  assert.equal(classifySourceError(err({ code: 'ECONNREFUSED' }), where).code, 'AGENT_SOURCE_UNREACHABLE');
  assert.equal(classifySourceError(new Error('Connection terminated'), where, { connectionLevel: true }).code, 'AGENT_SOURCE_UNREACHABLE');
  const e = classifySourceError(err({ code: 'XX000' }), where);
  assert.equal(e.code, 'AGENT_SOURCE_QUERY');
  assert.match(e.message, /query on dbo\.T failed/);
  assert.equal(isRetryable(new DovetailError('AGENT_SOURCE_UNREACHABLE', 'down')), true);
});

it('postgres connect failure is AGENT_SOURCE_UNREACHABLE and never shows the password', async () => {
  const d = await createDriver(sourceConfig('postgres://erp:s3cret@127.0.0.1:1/erp'));
  await assert.rejects(d.connect(), (e: unknown) => {
    assert.ok(e instanceof DovetailError);
    assert.equal(e.code, 'AGENT_SOURCE_UNREACHABLE');
    assert.equal(isRetryable(e), true);
    assert.doesNotMatch(`${e.message} ${JSON.stringify(e.context)}`, /s3cret/);
    return true;
  });
});

it('a source type whose driver module is absent is AGENT_SOURCE_DRIVER_MISSING (or loads)', async () => {
  for (const type of ['mssql', 'odbc'] as const) {
    try {
      const d = await createDriver(sourceConfig('x', { type }));
      assert.equal(typeof d.connect, 'function');
    } catch (e) {
      assert.equal((e as DovetailError).code, 'AGENT_SOURCE_DRIVER_MISSING');
    }
  }
});
