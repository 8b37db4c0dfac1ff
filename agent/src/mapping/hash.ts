import { createHash } from 'node:crypto';

/** Length of an event id: 32 base64url chars = 192 bits of SHA-256. */
export const EVENT_ID_LENGTH = 32;

/**
 * Stable event id: the same change (agent, table, key, op, position, data) always
 * gets the same id, so a re-capture after a crash is recognised downstream as the
 * same delivery (idempotency key). Fields are length-prefixed so no two different
 * tuples serialise alike. `dataJson` must be a stable serialisation of the data:
 * the mapper builds every object with sorted keys, so JSON.stringify is one.
 */
export function eventId(agentId: string, table: string, key: string, op: string, position: string, dataJson: string): string {
  return createHash('sha256')
    .update(`dovetail-event-v1|${agentId.length}:${agentId}|${table.length}:${table}|${key.length}:${key}|${op}|${position.length}:${position}|${dataJson}`)
    .digest('base64url')
    .slice(0, EVENT_ID_LENGTH);
}
