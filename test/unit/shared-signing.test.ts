import { test } from 'node:test';
import assert from 'node:assert/strict';
import nacl from 'tweetnacl';
import { keyPairFromSeed, verify, sign, toHex, fromHex, isCanonicalScalar, signBatch, verifyBatchSignature, GENESIS_HASH, decodeBatchBody } from '@dovetail/shared';

const PUB = '3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29';
const SIG = 'b0b47780f096ae60bfff8d8e7b19c36b321ae6e69cca972f2ff987ef30f20d29774b53bae404485c4391ddf1b3f37aaa8a9747f984eb0884e8aa533386e73305';
const SIG_S_PLUS_L = 'b0b47780f096ae60bfff8d8e7b19c36b321ae6e69cca972f2ff987ef30f20d29641f4917ff675ab4192ed59492ed59bf8a9747f984eb0884e8aa533386e73315';
const msg = new TextEncoder().encode('hello world');

test('RFC 8032 vector: zero seed gives the known public key and signature', () => {
  const kp = keyPairFromSeed(new Uint8Array(32));
  assert.equal(toHex(kp.publicKey), PUB);
  assert.equal(toHex(sign(msg, kp.secretKey)), SIG);
  assert.equal(verify(msg, fromHex(SIG), kp.publicKey), true);
});

test('a non-canonical signature (S + L) is rejected although tweetnacl alone accepts it', () => {
  const pub = fromHex(PUB);
  assert.equal(nacl.sign.detached.verify(msg, fromHex(SIG_S_PLUS_L), pub), true, 'tweetnacl 1.0.3 accepts S+L; if this changes, the extra check is still required by the spec');
  assert.equal(verify(msg, fromHex(SIG_S_PLUS_L), pub), false);
});

test('scalar check: L itself and above are not canonical, L-1 is', () => {
  const L = fromHex('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010');
  assert.equal(isCanonicalScalar(L), false);
  const below = L.slice();
  below[0] = 0xec;
  assert.equal(isCanonicalScalar(below), true);
  const above = L.slice();
  above[31] = 0x11;
  assert.equal(isCanonicalScalar(above), false);
});

test('wrong lengths never verify', () => {
  const kp = keyPairFromSeed(new Uint8Array(32));
  assert.equal(verify(msg, fromHex(SIG).subarray(0, 63), kp.publicKey), false);
  assert.equal(verify(msg, fromHex(SIG), kp.publicKey.subarray(0, 31)), false);
});

test('batch signature covers the exact body bytes under the batch domain', () => {
  const kp = keyPairFromSeed(new Uint8Array(32).fill(7));
  const b = signBatch({ v: 1, agent: 'a1', seq: 1, prev: GENESIS_HASH, createdAt: '2026-01-01T00:00:00+00:00', events: [] }, kp.secretKey);
  assert.equal(verifyBatchSignature(b.body, b.sig, kp.publicKey), true);
  const tampered = b.body.slice();
  tampered[tampered.length - 1]! ^= 1;
  assert.equal(verifyBatchSignature(tampered, b.sig, kp.publicKey), false);
  // The same signature must not verify as a raw (undomained) message.
  assert.equal(verify(b.body, b.sig, kp.publicKey), false);
  assert.equal(decodeBatchBody(b.body).agent, 'a1');
});

test('OpenSSL signing is byte-identical to tweetnacl and verifies both ways', () => {
  for (let i = 0; i < 20; i++) {
    const kp = nacl.sign.keyPair();
    const m = nacl.randomBytes(i * 997);
    const ours = sign(m, kp.secretKey);
    assert.equal(toHex(ours), toHex(nacl.sign.detached(m, kp.secretKey)));
    assert.equal(verify(m, ours, kp.publicKey), true);
    assert.equal(nacl.sign.detached.verify(m, ours, kp.publicKey), true);
    const other = nacl.sign.keyPair();
    assert.equal(verify(m, ours, other.publicKey), false);
  }
  // A public key that is not a point on the curve is refused, not thrown.
  assert.equal(verify(msg, fromHex(SIG), new Uint8Array(32).fill(0xff)), false);
});
