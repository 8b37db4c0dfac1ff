/** RFC 8032 test 1 vector and its malleated twin: the hub's verify must be strict. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import nacl from 'tweetnacl';
import { fromHex, keyPairFromSeed, sign, toHex, verify } from '@dovetail/shared';

const PK = '3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29';
const SIG = 'b0b47780f096ae60bfff8d8e7b19c36b321ae6e69cca972f2ff987ef30f20d29774b53bae404485c4391ddf1b3f37aaa8a9747f984eb0884e8aa533386e73305';
// Same R, S + L (group order): the same signature in non-canonical form.
const SIG_S_PLUS_L = 'b0b47780f096ae60bfff8d8e7b19c36b321ae6e69cca972f2ff987ef30f20d29641f4917ff675ab4192ed59492ed59bf8a9747f984eb0884e8aa533386e73315';
const MSG = new TextEncoder().encode('hello world');

test('a 32-zero-byte seed gives the known public key and signature', () => {
  const kp = keyPairFromSeed(new Uint8Array(32));
  assert.equal(toHex(kp.publicKey), PK);
  assert.equal(toHex(sign(MSG, kp.secretKey)), SIG);
  assert.equal(verify(MSG, fromHex(SIG), fromHex(PK)), true);
});

test('the S+L variant is rejected by shared verify, though tweetnacl alone accepts it', () => {
  assert.equal(nacl.sign.detached.verify(MSG, fromHex(SIG_S_PLUS_L), fromHex(PK)), true, 'tweetnacl 1.0.3 is malleable');
  assert.equal(verify(MSG, fromHex(SIG_S_PLUS_L), fromHex(PK)), false);
});

test('a flipped message bit or wrong lengths fail', () => {
  assert.equal(verify(new TextEncoder().encode('hello worle'), fromHex(SIG), fromHex(PK)), false);
  assert.equal(verify(MSG, fromHex(SIG).subarray(0, 63), fromHex(PK)), false);
});
