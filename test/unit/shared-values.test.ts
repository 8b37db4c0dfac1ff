import { test } from 'node:test';
import assert from 'node:assert/strict';
import { naiveToOffsetDateTime, normalizeOffsetDateTime, toDecimalString, redactSecrets } from '@dovetail/shared';

test('decimals stay exact strings', () => {
  assert.equal(toDecimalString('1234.50000'), '1234.50000');
  assert.equal(toDecimalString('-922337203685477.5808'), '-922337203685477.5808');
  assert.equal(toDecimalString(9223372036854775807n), '9223372036854775807');
  assert.equal(toDecimalString('1.5E+3'), '1500');
  assert.equal(toDecimalString('.5'), '0.5');
  assert.equal(toDecimalString(null), null);
  assert.throws(() => toDecimalString(0.1), TypeError);
  assert.throws(() => toDecimalString('abc'), TypeError);
});

test('naive datetimes take the source zone offset and keep every fraction digit', () => {
  assert.equal(naiveToOffsetDateTime('2024-07-01 10:00:00.1234567', 'America/Chicago'), '2024-07-01T10:00:00.1234567-05:00');
  assert.equal(naiveToOffsetDateTime('2024-01-15 23:59:59', 'America/Chicago'), '2024-01-15T23:59:59-06:00');
  assert.equal(naiveToOffsetDateTime('2024-01-01 10:00:00', 'Asia/Kolkata'), '2024-01-01T10:00:00+05:30');
  assert.equal(naiveToOffsetDateTime('1996-07-04', 'UTC'), '1996-07-04T00:00:00+00:00');
});

test('datetimes with offsets are normalised, not shifted', () => {
  assert.equal(normalizeOffsetDateTime('2024-01-02 03:04:05.123456+01'), '2024-01-02T03:04:05.123456+01:00');
  assert.equal(normalizeOffsetDateTime('2024-01-02T03:04:05-05:30'), '2024-01-02T03:04:05-05:30');
});

test('connection string passwords and tokens are redacted', () => {
  assert.equal(redactSecrets('postgres://erp:s3cret@db:5432/erp'), 'postgres://erp:***@db:5432/erp');
  assert.equal(redactSecrets('Server=db;User Id=sa;Password=p@ss;'), 'Server=db;User Id=sa;Password=***;');
  assert.equal(redactSecrets('secret whsec_abc123=='), 'secret whsec_***');
});

test('credentials in URL query parameters are redacted', () => {
  assert.equal(redactSecrets('POST http://bob:pw@crm.local/hook?apikey=QueryKey77&x=1 failed'), 'POST http://bob:***@crm.local/hook?apikey=***&x=1 failed');
  assert.equal(redactSecrets('https://h/x?access_token=abc#f'), 'https://h/x?access_token=***#f');
  assert.equal(redactSecrets('https://h/x?page=2'), 'https://h/x?page=2');
});
