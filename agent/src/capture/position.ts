/** Position (de)serialisation shared by the strategies: JSON text, validated on the way in. */
import { DovetailError } from '@dovetail/shared';

export function encodeJson(p: unknown): string {
  return JSON.stringify(p);
}

export function decodeJson<P>(strategy: string, s: string, check: (v: Record<string, unknown>) => boolean): P {
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch (err) {
    throw new DovetailError('AGENT_POSITION_INVALID', `${strategy} position is not JSON`, { strategy }, { cause: err });
  }
  if (typeof v !== 'object' || v === null || !check(v as Record<string, unknown>)) {
    throw new DovetailError('AGENT_POSITION_INVALID', `${strategy} position has an unknown shape or version`, { strategy });
  }
  return v as P;
}

/** A snapshot id that tells operators when it started. */
export function snapshotId(now: Date): string {
  return `snap-${now.toISOString()}`;
}
