/**
 * Webhook connector per the Standard Webhooks spec (standardwebhooks.com):
 *   POST <url>, body = the canonical event as JSON, serialised once; those bytes are signed and sent.
 *   webhook-id        = event.id (stable: the receiver's idempotency key across retries)
 *   webhook-timestamp = unix seconds of this attempt
 *   webhook-signature = "v1," + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)),
 *                       key = base64-decoded part of the "whsec_<base64>" secret; during a
 *                       secret rotation overlap one such signature per secret, space-separated.
 *
 * Outcome (isRetryableStatus): 2xx delivered; 408, 429 and 5xx retried (the receiver
 * is busy or broken right now, the same request may succeed later); network errors and
 * timeouts retried; every other status (3xx, 4xx) goes to the DLQ at once, because the
 * receiver rejected this request and repeating it unchanged cannot succeed. Redirects are
 * not followed, so a signed body is never forwarded to a host the operator did not name.
 */
import { createHmac } from 'node:crypto';
import { redactSecrets, type CanonicalEvent } from '@dovetail/shared';
import { realTimers, type Connector, type DeliveryResult, type Timers } from './types.ts';

export interface WebhookOptions {
  url: string;
  /**
   * "whsec_<base64>", or a function giving the secrets to sign with right now (current
   * first; two during a rotation overlap, each adding one "v1,<sig>" to webhook-signature).
   */
  secret: string | ((nowMs: number) => readonly string[]);
  /** Per-request timeout in ms. Default 10 000. */
  timeoutMs?: number;
  /**
   * Extra request headers (e.g. Authorization). Never logged. Cannot replace the headers
   * the connector sets (content-type, user-agent, webhook-*): those are applied last.
   */
  headers?: Readonly<Record<string, string>>;
  /** Injected for tests. Default global fetch. */
  fetch?: typeof fetch;
  timers?: Timers;
}

export function decodeWebhookSecret(secret: string): Buffer {
  const m = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret);
  if (!m) throw new TypeError('webhook secret must be "whsec_" followed by base64');
  return Buffer.from(m[1]!, 'base64');
}

export function signWebhook(key: Uint8Array, id: string, timestampSec: number, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSec}.${body}`).digest('base64')}`;
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

export function createWebhookConnector(opts: WebhookOptions): Connector {
  const fixed = typeof opts.secret === 'string' ? [decodeWebhookSecret(opts.secret)] : null;
  const secretsAt = opts.secret;
  const keysAt = (nowMs: number): Buffer[] => fixed ?? (secretsAt as (n: number) => readonly string[])(nowMs).map(decodeWebhookSecret);
  const doFetch = opts.fetch ?? fetch;
  const timers = opts.timers ?? realTimers;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const u = new URL(opts.url);
  // fetch refuses such a URL at every delivery; the config loader rejects it with a clear error first.
  if (u.username !== '' || u.password !== '') throw new TypeError('webhook url must not contain credentials; pass them in headers');
  const extra = { ...(opts.headers ?? {}) };
  return {
    type: 'webhook',
    async deliver(event: CanonicalEvent, ctx): Promise<DeliveryResult> {
      const body = JSON.stringify(event);
      const nowMs = timers.now();
      const ts = Math.floor(nowMs / 1000);
      const signature = keysAt(nowMs).map((k) => signWebhook(k, event.id, ts, body)).join(' ');
      const ac = new AbortController();
      let timedOut = false;
      const timer = timers.setTimeout(() => { timedOut = true; ac.abort(); }, timeoutMs);
      const onStop = () => ac.abort();
      ctx.signal.addEventListener('abort', onStop, { once: true });
      try {
        const res = await doFetch(opts.url, {
          method: 'POST',
          redirect: 'manual',
          signal: ac.signal,
          headers: requestHeaders(extra, event.id, ts, signature),
          body,
        });
        // Drain so the connection can be reused; the body is not used.
        await res.arrayBuffer().catch(() => undefined);
        if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
        return { ok: false, retryable: isRetryableStatus(res.status), status: res.status, error: `HTTP ${res.status} from ${redactUrl(opts.url)}` };
      } catch (err) {
        const why = timedOut ? `timeout after ${timeoutMs} ms` : ctx.signal.aborted ? 'aborted by shutdown' : `network error: ${causeText(err)}`;
        // Error texts can quote the request (URL, headers): redacted before they reach status or the DLQ.
        return { ok: false, retryable: true, error: redactSecrets(`${why} (${redactUrl(opts.url)})`) };
      } finally {
        timers.clearTimeout(timer);
        ctx.signal.removeEventListener('abort', onStop);
      }
    },
  };
}

const OWN_HEADERS = new Set(['content-type', 'user-agent', 'webhook-id', 'webhook-timestamp', 'webhook-signature']);

/** Configured headers, minus any that would clash (case-insensitively) with the connector's own, then its own. */
function requestHeaders(extra: Record<string, string>, id: string, ts: number, signature: string): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(extra)) if (!OWN_HEADERS.has(k.toLowerCase())) h[k] = v;
  return { ...h, 'content-type': 'application/json', 'user-agent': 'dovetail-hub', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': signature };
}

function causeText(err: unknown): string {
  const e = err as { cause?: { code?: string; message?: string }; message?: string };
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}

/** URLs may embed credentials or tokens in the query; DLQ entries and logs get origin + path only. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '<invalid url>';
  }
}
