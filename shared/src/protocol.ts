/**
 * Wire frames between agent and hub. Every frame is a msgpack map with a type `t`
 * and protocol version `v`. Encoding, decoding and shape checks live here, apart
 * from socket code; golden frames in test/fixtures pin the format.
 */
import { Packr } from 'msgpackr';
import { DovetailError } from './errors.ts';
import { DOMAIN, domainMessage } from './signing.ts';
import { concatBytes } from './bytes.ts';
import { isKeyAnnouncement, type KeyAnnouncement } from './keys.ts';

export const PROTOCOL_VERSION = 1;
/** Frames above this are refused by both sides (ws maxPayload). Batches are capped well below it. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
export const AGENT_WS_PATH = '/v1/agents/connect';

/** WebSocket close codes (4000-4999 is the application range). */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  TOO_LARGE: 1009,
  PROTOCOL_ERROR: 4000,
  AUTH_FAILED: 4001,
  /** Agent revoked or disabled: stop retrying, ask for re-enrollment. */
  REVOKED: 4003,
  /** Hub is at its handshake limit: retry with backoff. */
  BUSY: 4029,
} as const;

export interface ChallengeFrame { t: 'challenge'; v: number; nonce: Uint8Array; hubKeyId: string; ts: string }
export interface AuthFrame {
  t: 'auth'; v: number; agent: string; nonce: Uint8Array; sig: Uint8Array;
  version: string; host: string; keyId: string;
}
export interface ReadyFrame { t: 'ready'; v: number; lastSeq: number; lastHash: Uint8Array }
export interface BatchFrame { t: 'batch'; v: number; seq: number; body: Uint8Array; sig: Uint8Array }
export interface AckFrame { t: 'ack'; v: number; seq: number }
export interface NackFrame { t: 'nack'; v: number; seq: number; code: string; message: string }
export interface ErrorFrame { t: 'error'; v: number; code: string; message: string }
export interface StatusFrame { t: 'status'; v: number; status: Record<string, unknown> }
/**
 * Sent by the hub right after `challenge` when the agent put its own nonce in the socket
 * URL (AGENT_NONCE_PARAM): the hub's signature over hubProofMessage(agent nonce, challenge
 * nonce, hubKeyId), plus the announcements leading from the key the agent pinned
 * (AGENT_PIN_PARAM) to hubKeyId when the hub key was rotated since.
 */
export interface HubProofFrame { t: 'hub-proof'; v: number; hubKeyId: string; sig: Uint8Array; chain: KeyAnnouncement[] }
/** A hub key rotation announced to a connected agent (signed by the old hub key). */
export interface HubKeyFrame { t: 'hub-key'; v: number; chain: KeyAnnouncement[] }
/** A remote config document (YAML text with a `tables` section), signed with configMessage by the hub key hubKeyId. */
export interface ConfigFrame { t: 'config'; v: number; agent: string; version: number; doc: Uint8Array; hubKeyId: string; sig: Uint8Array }
/** The agent's verdict on a config frame. */
export interface ConfigResultFrame { t: 'config-result'; v: number; version: number; ok: boolean; reason: string }

export type AgentFrame = AuthFrame | BatchFrame | StatusFrame | ConfigResultFrame;
export type HubFrame = ChallengeFrame | ReadyFrame | AckFrame | NackFrame | ErrorFrame | HubProofFrame | HubKeyFrame | ConfigFrame;

/** Query parameters of the agent socket URL: the agent's nonce (base64url, 32 bytes) and the hub key id it pinned. */
export const AGENT_NONCE_PARAM = 'nonce';
export const AGENT_PIN_PARAM = 'pin';
/** Announcements carried in one frame, at most (a hub rotates its key rarely). */
export const MAX_KEY_CHAIN = 64;
export type Frame = AgentFrame | HubFrame;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });

export function encodeFrame(frame: Frame): Uint8Array {
  return packr.pack(frame);
}

const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;
const isStr = (x: unknown): x is string => typeof x === 'string';
const isSeq = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const isChain = (x: unknown): x is KeyAnnouncement[] => Array.isArray(x) && x.length <= MAX_KEY_CHAIN && x.every(isKeyAnnouncement);

const SHAPES: Record<string, (f: Record<string, unknown>) => boolean> = {
  challenge: (f) => isBytes(f.nonce) && isStr(f.hubKeyId) && isStr(f.ts),
  auth: (f) => isStr(f.agent) && isBytes(f.nonce) && isBytes(f.sig) && isStr(f.version) && isStr(f.host) && isStr(f.keyId),
  ready: (f) => isSeq(f.lastSeq) && isBytes(f.lastHash),
  batch: (f) => isSeq(f.seq) && isBytes(f.body) && isBytes(f.sig),
  ack: (f) => isSeq(f.seq),
  nack: (f) => isSeq(f.seq) && isStr(f.code) && isStr(f.message),
  error: (f) => isStr(f.code) && isStr(f.message),
  status: (f) => typeof f.status === 'object' && f.status !== null,
  'hub-proof': (f) => isStr(f.hubKeyId) && isBytes(f.sig) && isChain(f.chain),
  'hub-key': (f) => isChain(f.chain) && (f.chain as unknown[]).length > 0,
  config: (f) => isStr(f.agent) && isSeq(f.version) && (f.version as number) >= 1 && isBytes(f.doc) && isStr(f.hubKeyId) && isBytes(f.sig),
  'config-result': (f) => isSeq(f.version) && typeof f.ok === 'boolean' && isStr(f.reason),
};

/** Decode and shape-check one frame. Throws DovetailError PROTO_* on anything else. */
export function decodeFrame(data: Uint8Array, maxBytes = MAX_FRAME_BYTES): Frame {
  if (data.byteLength > maxBytes) throw new DovetailError('PROTO_TOO_LARGE', `frame of ${data.byteLength} bytes exceeds ${maxBytes}`);
  let f: unknown;
  try {
    f = packr.unpack(data);
  } catch (err) {
    throw new DovetailError('PROTO_MALFORMED', 'frame is not valid msgpack', {}, { cause: err });
  }
  if (!f || typeof f !== 'object' || Array.isArray(f)) throw new DovetailError('PROTO_MALFORMED', 'frame is not a map');
  const rec = f as Record<string, unknown>;
  const check = typeof rec.t === 'string' && Object.hasOwn(SHAPES, rec.t) ? SHAPES[rec.t] : undefined;
  if (!check) throw new DovetailError('PROTO_MALFORMED', `unknown frame type ${JSON.stringify(rec.t)}`);
  if (rec.v !== PROTOCOL_VERSION) throw new DovetailError('PROTO_UNSUPPORTED_VERSION', `frame version ${String(rec.v)} is not ${PROTOCOL_VERSION}`);
  if (!check(rec)) throw new DovetailError('PROTO_MALFORMED', `frame "${rec.t}" has missing or mistyped fields`);
  return rec as unknown as Frame;
}

/**
 * Bytes an agent signs to answer a challenge: nonce (32 bytes) || agent id || 0x00 || hub key id,
 * under DOMAIN.auth. Binding the hub key id means a response made for one hub key is useless to another.
 */
export function authMessage(nonce: Uint8Array, agentId: string, hubKeyId: string): Uint8Array {
  const enc = new TextEncoder();
  return domainMessage(DOMAIN.auth, concatBytes(nonce, enc.encode(agentId), new Uint8Array([0]), enc.encode(hubKeyId)));
}
