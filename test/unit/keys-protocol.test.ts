/** Issue 4 protocol pieces: key announcements and chains, the hub's per-connection proof, signed remote config, new frames. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DOMAIN, announceKey, announcementFromJson, announcementToJson, configMessage, decodeFrame, encodeFrame, followKeyChain,
  hubProofMessage, keyId, sign, signConfig, verify, verifyConfig, verifyKeyAnnouncement, type Frame,
} from '@dovetail/shared';
import { seedKey } from '../helpers/hub-fixtures.ts';

const AT = '2026-01-02T03:04:05.000Z';
const k1 = seedKey(1);
const k2 = seedKey(2);
const k3 = seedKey(3);
const k9 = seedKey(9);

test('a key announcement verifies under the old key only, with proof of possession of the new key', () => {
  const a = announceKey({ role: 'agent', subject: 'agt_1', at: AT }, k1, k2);
  assert.deepEqual([a.oldKeyId, a.newKeyId], [keyId(k1.publicKey), keyId(k2.publicKey)]);
  assert.equal(verifyKeyAnnouncement(a, k1.publicKey), true);
  assert.equal(verifyKeyAnnouncement(a, k9.publicKey), false, 'not under another key');
  // Any field changed breaks the old key's signature.
  assert.equal(verifyKeyAnnouncement({ ...a, subject: 'agt_2' }, k1.publicKey), false);
  assert.equal(verifyKeyAnnouncement({ ...a, at: '2026-01-02T03:04:06.000Z' }, k1.publicKey), false);
  // Announcing a key one does not hold: the old key signs, but the pop cannot be made for k3.
  const stolen = announceKey({ role: 'agent', subject: 'agt_1', at: AT }, k1, k9);
  assert.equal(verifyKeyAnnouncement({ ...stolen, newPublicKey: k3.publicKey, newKeyId: keyId(k3.publicKey) }, k1.publicKey), false);
  // JSON form round-trips.
  assert.equal(verifyKeyAnnouncement(announcementFromJson(announcementToJson(a)), k1.publicKey), true);
  // An agent announcement does not pass as a hub announcement.
  assert.equal(verifyKeyAnnouncement({ ...a, role: 'hub' }, k1.publicKey), false);
});

test('followKeyChain walks from the pinned key through verified links, skips old ones and stops at a forged one', () => {
  const a12 = announceKey({ role: 'hub', subject: 'hub', at: AT }, k1, k2);
  const a23 = announceKey({ role: 'hub', subject: 'hub', at: AT }, k2, k3);
  const pinned1 = { publicKey: k1.publicKey, keyId: keyId(k1.publicKey) };
  assert.equal(followKeyChain(pinned1, [a12, a23], 'hub', 'hub').keyId, keyId(k3.publicKey));
  // Pinned at k2 already: a12 is skipped.
  assert.equal(followKeyChain({ publicKey: k2.publicKey, keyId: keyId(k2.publicKey) }, [a12, a23], 'hub', 'hub').keyId, keyId(k3.publicKey));
  // A forged link (k9 signs "k2 -> k9" claiming to be k2) stops the walk at k2.
  const forged = { ...announceKey({ role: 'hub', subject: 'hub', at: AT }, k9, k3), oldKeyId: keyId(k2.publicKey) };
  assert.equal(followKeyChain(pinned1, [a12, forged], 'hub', 'hub').keyId, keyId(k2.publicKey));
  // An agent's announcement is not followed as a hub key.
  const agentAnn = announceKey({ role: 'agent', subject: 'hub', at: AT }, k1, k2);
  assert.equal(followKeyChain(pinned1, [agentAnn], 'hub', 'hub').keyId, keyId(k1.publicKey));
});

test('the hub proof binds both nonces and the hub key id', () => {
  const an = new Uint8Array(32).fill(1);
  const hn = new Uint8Array(32).fill(2);
  const sig = sign(hubProofMessage(an, hn, keyId(k1.publicKey)), k1.secretKey);
  assert.equal(verify(hubProofMessage(an, hn, keyId(k1.publicKey)), sig, k1.publicKey), true);
  assert.equal(verify(hubProofMessage(new Uint8Array(32).fill(3), hn, keyId(k1.publicKey)), sig, k1.publicKey), false, 'another connection\'s agent nonce');
  assert.equal(verify(hubProofMessage(an, new Uint8Array(32).fill(3), keyId(k1.publicKey)), sig, k1.publicKey), false, 'another challenge');
  assert.equal(Buffer.from(hubProofMessage(an, hn, 'k')).subarray(0, DOMAIN.hubAuth.length).toString(), DOMAIN.hubAuth);
});

test('a signed config is bound to the agent id and the version', () => {
  const doc = new TextEncoder().encode('tables: []\n');
  const sig = signConfig('agt_1', 3, doc, k1.secretKey);
  assert.equal(verifyConfig('agt_1', 3, doc, sig, k1.publicKey), true);
  assert.equal(verifyConfig('agt_2', 3, doc, sig, k1.publicKey), false, 'another agent');
  assert.equal(verifyConfig('agt_1', 2, doc, sig, k1.publicKey), false, 'another version');
  assert.equal(verifyConfig('agt_1', 3, new TextEncoder().encode('tables: [ ]\n'), sig, k1.publicKey), false, 'other bytes');
  assert.equal(verifyConfig('agt_1', 3, doc, sig, k9.publicKey), false, 'another hub key');
  assert.throws(() => configMessage('agt_1', 0, doc), RangeError);
});

test('new frames round-trip and are shape-checked', () => {
  const chain = [announceKey({ role: 'hub', subject: 'hub', at: AT }, k1, k2)];
  const frames: Frame[] = [
    { t: 'hub-proof', v: 1, hubKeyId: 'abc', sig: new Uint8Array(64).fill(7), chain },
    { t: 'hub-key', v: 1, chain },
    { t: 'config', v: 1, agent: 'agt_1', version: 2, doc: new Uint8Array([1, 2]), hubKeyId: 'abc', sig: new Uint8Array(64) },
    { t: 'config-result', v: 1, version: 2, ok: false, reason: 'CONFIG_INVALID: x' },
  ];
  for (const f of frames) {
    const back = decodeFrame(encodeFrame(f)) as unknown as Record<string, unknown>;
    assert.equal(back.t, f.t);
  }
  const proof = decodeFrame(encodeFrame(frames[0]!)) as Extract<Frame, { t: 'hub-proof' }>;
  assert.equal(verifyKeyAnnouncement(proof.chain[0]!, k1.publicKey), true, 'announcement bytes survive the frame codec');
  const bad = (f: Record<string, unknown>) => assert.throws(() => decodeFrame(encodeFrame(f as unknown as Frame)), { code: 'PROTO_MALFORMED' });
  bad({ t: 'hub-key', v: 1, chain: [] });
  bad({ t: 'hub-key', v: 1, chain: [{ ...chain[0], sig: new Uint8Array(3) }] });
  bad({ t: 'config', v: 1, agent: 'a', version: 0, doc: new Uint8Array(1), hubKeyId: 'k', sig: new Uint8Array(64) });
  bad({ t: 'config-result', v: 1, version: 1, ok: 'yes', reason: '' });
});
