import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { encodeFrame, decodeFrame, toHex, fromHex, isDovetailError, PROTOCOL_VERSION, type Frame } from '@dovetail/shared';
import { REPO } from '../helpers/paths.ts';

const dir = join(REPO, 'test', 'fixtures', 'frames');
const GOLDEN: Record<string, Frame> = {
  challenge: { t: 'challenge', v: 1, nonce: new Uint8Array(32).fill(0xab), hubKeyId: '0123456789abcdef', ts: '2026-12-03T00:00:00.000Z' },
  ack: { t: 'ack', v: 1, seq: 42 },
  batch: { t: 'batch', v: 1, seq: 7, body: new Uint8Array([1, 2, 3]), sig: new Uint8Array(64).fill(9) },
  nack: { t: 'nack', v: 1, seq: 8, code: 'PROTO_SEQ_GAP', message: 'expected seq 5' },
};

// Golden frames pin the wire format: a change to the encoding fails here before it fails in the field.
for (const [name, frame] of Object.entries(GOLDEN)) {
  test(`golden frame ${name} decodes and re-encodes byte for byte`, () => {
    const file = join(dir, `${name}.hex`);
    if (!existsSync(file) && process.env.UPDATE_GOLDEN === '1') writeFileSync(file, toHex(encodeFrame(frame)) + '\n');
    const bytes = fromHex(readFileSync(file, 'utf8').trim());
    assert.equal(toHex(encodeFrame(frame)), toHex(bytes));
    const decoded = decodeFrame(bytes) as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(frame)) {
      if (v instanceof Uint8Array) assert.equal(toHex(decoded[k] as Uint8Array), toHex(v));
      else assert.equal(decoded[k], v);
    }
  });
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isDovetailError(e) ? e.code : `non-dovetail: ${String(e)}`;
  }
  return undefined;
}

test('malformed, truncated, oversized and unknown frames get exact codes', () => {
  const good = encodeFrame(GOLDEN.batch!);
  assert.equal(code(() => decodeFrame(good.subarray(0, good.byteLength - 10))), 'PROTO_MALFORMED');
  assert.equal(code(() => decodeFrame(new Uint8Array([0xc1]))), 'PROTO_MALFORMED');
  assert.equal(code(() => decodeFrame(encodeFrame({ t: 'ack', v: 1, seq: 1 }), 4)), 'PROTO_TOO_LARGE');
  assert.equal(code(() => decodeFrame(encodeFrame({ t: 'nope', v: PROTOCOL_VERSION } as unknown as Frame))), 'PROTO_MALFORMED');
  assert.equal(code(() => decodeFrame(encodeFrame({ t: 'ack', v: 99, seq: 1 } as unknown as Frame))), 'PROTO_UNSUPPORTED_VERSION');
  assert.equal(code(() => decodeFrame(encodeFrame({ t: 'ack', v: 1, seq: -1 } as unknown as Frame))), 'PROTO_MALFORMED');
  assert.equal(code(() => decodeFrame(encodeFrame({ t: 'batch', v: 1, seq: 1, body: 'x', sig: new Uint8Array(64) } as unknown as Frame))), 'PROTO_MALFORMED');
});
