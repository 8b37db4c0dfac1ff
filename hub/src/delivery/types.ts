import type { CanonicalEvent } from '@dovetail/shared';

/** What a connector reports for one delivery attempt. `retryable` decides retry vs DLQ. */
export type DeliveryResult =
  | { ok: true; status?: number }
  | { ok: false; retryable: boolean; error: string; status?: number };

/** A destination connector: delivers one canonical event. Must not throw for delivery failures. */
export interface Connector {
  readonly type: string;
  deliver(event: CanonicalEvent, ctx: { attempt: number; signal: AbortSignal }): Promise<DeliveryResult>;
}

/** Injected time: tests drive retries without sleeping. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
