/**
 * A batch is the unit the agent signs, buffers and sends, and the hub verifies and stores.
 *
 * The body is msgpack; the signature covers DOMAIN.batch || body bytes exactly as
 * sent, and the hub stores those same bytes. Nothing is ever re-encoded before a
 * signature check (invariant 2).
 */
import { Packr } from 'msgpackr';
import type { CanonicalEvent } from '../canonical/index.ts';
import { DOMAIN, domainMessage, sha256, sign, verify } from './signing.ts';
import { DovetailError } from './errors.ts';

export const BATCH_VERSION = 1;
/** prevHash of an agent's first batch. */
export const GENESIS_HASH = new Uint8Array(32);

export interface BatchBody {
  v: number;
  agent: string;
  seq: number;
  /** sha256 of the previous batch's body bytes (GENESIS_HASH for seq 1). */
  prev: Uint8Array;
  createdAt: string;
  events: CanonicalEvent[];
}

export interface SignedBatch {
  seq: number;
  body: Uint8Array;
  sig: Uint8Array;
  /** sha256(body); the next batch's prev. */
  hash: Uint8Array;
}

// Records off: plain maps keep the body readable by any msgpack decoder (consumers, other languages).
export const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });

export function encodeBatchBody(body: BatchBody): Uint8Array {
  // A plain Uint8Array copy: msgpackr hands out a Buffer view into its working memory,
  // and Buffer#slice shares memory, so a stored body must own its bytes.
  return new Uint8Array(packr.pack(body));
}

export function decodeBatchBody(bytes: Uint8Array): BatchBody {
  let body: unknown;
  try {
    body = packr.unpack(bytes);
  } catch (err) {
    throw new DovetailError('PROTO_MALFORMED', 'batch body is not valid msgpack', {}, { cause: err });
  }
  const b = body as Partial<BatchBody> | null;
  if (
    !b || typeof b !== 'object' || b.v !== BATCH_VERSION || typeof b.agent !== 'string' ||
    typeof b.seq !== 'number' || !Number.isSafeInteger(b.seq) || b.seq < 1 ||
    !(b.prev instanceof Uint8Array) || b.prev.byteLength !== 32 || !Array.isArray(b.events)
  ) {
    throw new DovetailError('PROTO_MALFORMED', 'batch body lacks v/agent/seq/prev/events or has wrong types');
  }
  return b as BatchBody;
}

export function signBatch(body: BatchBody, secretKey: Uint8Array): SignedBatch {
  const bytes = encodeBatchBody(body);
  return {
    seq: body.seq,
    body: bytes,
    sig: sign(domainMessage(DOMAIN.batch, bytes), secretKey),
    hash: sha256(bytes),
  };
}

/** One event's msgpack bytes: batches are assembled from these, so each event is encoded once. */
export function packEvent(event: CanonicalEvent): Uint8Array {
  return packr.pack(event);
}

/** msgpack array header for n items. */
function arrayHeader(n: number): Uint8Array {
  if (n < 16) return new Uint8Array([0x90 | n]);
  if (n < 0x10000) return new Uint8Array([0xdc, n >> 8, n & 0xff]);
  return new Uint8Array([0xdd, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}

/**
 * The same bytes as encodeBatchBody({ ...head, events }), built from events packed
 * beforehand with packEvent: `events` is the body's last field, so the body is the
 * head map with an empty array, whose one-byte header (0x90) is replaced by the
 * real array header followed by the packed events.
 */
export function encodeBatchBodyPacked(head: Omit<BatchBody, 'events'>, packedEvents: readonly Uint8Array[]): Uint8Array {
  const headBytes = packr.pack({ v: head.v, agent: head.agent, seq: head.seq, prev: head.prev, createdAt: head.createdAt, events: [] });
  if (headBytes[headBytes.byteLength - 1] !== 0x90) throw new TypeError('batch head did not end with its empty events array');
  const hdr = arrayHeader(packedEvents.length);
  let total = headBytes.byteLength - 1 + hdr.byteLength;
  for (const e of packedEvents) total += e.byteLength;
  const out = new Uint8Array(total);
  out.set(headBytes.subarray(0, headBytes.byteLength - 1), 0);
  let off = headBytes.byteLength - 1;
  out.set(hdr, off);
  off += hdr.byteLength;
  for (const e of packedEvents) {
    out.set(e, off);
    off += e.byteLength;
  }
  return out;
}

export function signPackedBatch(head: Omit<BatchBody, 'events'>, packedEvents: readonly Uint8Array[], secretKey: Uint8Array): SignedBatch {
  const bytes = encodeBatchBodyPacked(head, packedEvents);
  return { seq: head.seq, body: bytes, sig: sign(domainMessage(DOMAIN.batch, bytes), secretKey), hash: sha256(bytes) };
}

export function verifyBatchSignature(body: Uint8Array, sig: Uint8Array, publicKey: Uint8Array): boolean {
  return verify(domainMessage(DOMAIN.batch, body), sig, publicKey);
}
