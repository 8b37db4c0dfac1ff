/**
 * Default webhook retry policy. Standard Webhooks asks senders to keep retrying for
 * hours, so a receiver that is down for minutes (a deploy) or a night loses nothing and
 * nobody has to replay the DLQ by hand.
 *
 * Retry n (n = 1 after the first failed attempt) waits a random time in
 * [0, min(maxMs, initialMs * 2^(n-1))] (full jitter, so destinations recovering together
 * do not get a thundering herd). With the defaults the upper bounds are 5 s, 10 s, 20 s,
 * 40 s, 80 s, ... 42 min 40 s (retry 10), then 1 h for every later retry. 70 attempts make
 * an expected 30 h from the first attempt to the DLQ; the window is at least 24 h with a
 * probability above 99 % (59 retries capped at 1 h, each uniform in [0, 1 h]).
 */
import type { BackoffOptions } from '@dovetail/shared';

/** Attempts (the first one included) before an event goes to the DLQ. */
export const DEFAULT_MAX_ATTEMPTS = 70;
/** Upper bound of the first retry's delay, ms. */
export const DEFAULT_RETRY_INITIAL_DELAY_MS = 5_000;
/** Cap of any retry's delay before jitter, ms (1 h). */
export const DEFAULT_RETRY_MAX_DELAY_MS = 3_600_000;

export const DEFAULT_RETRY_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialMs: DEFAULT_RETRY_INITIAL_DELAY_MS, maxMs: DEFAULT_RETRY_MAX_DELAY_MS, factor: 2,
});

/** Human-readable summary, for --help and docs. */
export const RETRY_SCHEDULE_TEXT =
  'retry n waits a random time up to min(1 h, 5 s x 2^(n-1)) (full jitter): up to 5 s, 10 s, 20 s, ... 42 min 40 s, then 1 h each; ' +
  '70 attempts = about 30 h (at least 24 h) before the DLQ';
