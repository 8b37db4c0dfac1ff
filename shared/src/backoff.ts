/**
 * Exponential backoff with full jitter applied after the cap, so a fleet of agents
 * reconnecting after a hub restart spreads over the whole [0, cap] window instead
 * of bunching at the cap.
 */
export interface BackoffOptions {
  /** First retry's upper bound in ms. Default 500. */
  initialMs?: number;
  /** Upper bound in ms before jitter. Default 30 000. */
  maxMs?: number;
  /** Multiplier per attempt. Default 2. */
  factor?: number;
  /** Injected for tests; default Math.random. */
  random?: () => number;
}

export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialMs ?? 500;
  const max = opts.maxMs ?? 30_000;
  const factor = opts.factor ?? 2;
  const random = opts.random ?? Math.random;
  const capped = Math.min(max, initial * Math.pow(factor, Math.max(0, attempt)));
  return Math.floor(random() * capped);
}
