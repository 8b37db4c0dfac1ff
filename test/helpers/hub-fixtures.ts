/** Builders for hub tests: canonical events and signed batch chains. */
import { GENESIS_HASH, keyPairFromSeed, signBatch, type CanonicalEvent, type KeyPair, type SignedBatch } from '@dovetail/shared';

export function event(id: string, entity: CanonicalEvent['entity'] = 'customer', key = 'ALFKI', agent = 'agt_test'): CanonicalEvent {
  return {
    id, entity, op: 'upsert', key,
    data: { code: key, name: `Name ${id}`, balance: '12.50000' },
    source: { agent, system: 'erp', table: 'customers', position: id },
    occurredAt: '2024-05-01T10:00:00.000+02:00',
    capturedAt: '2024-05-01T08:00:01.000Z',
    correlationId: null,
    schema: `${entity}/1`,
  };
}

export function seedKey(n: number): KeyPair {
  return keyPairFromSeed(new Uint8Array(32).fill(n));
}

/** Signs batches seq 1.. for an agent, chaining prev hashes like the real agent. */
export class BatchChain {
  prev: Uint8Array = GENESIS_HASH;
  seq = 0;
  constructor(public agentId: string, public key: KeyPair) {}
  next(events: CanonicalEvent[]): SignedBatch {
    this.seq += 1;
    const b = signBatch({ v: 1, agent: this.agentId, seq: this.seq, prev: this.prev, createdAt: '2024-05-01T08:00:02.000Z', events }, this.key.secretKey);
    this.prev = b.hash;
    return b;
  }
}
