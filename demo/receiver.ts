/**
 * A demo CRM webhook receiver: verifies each delivery's Standard Webhooks signature
 * (401 when it does not verify), counts deliveries and duplicates (the same
 * webhook-id twice), and keeps the current state of each record per (entity, key),
 * applying upserts and deletes in arrival order, like an idempotent consumer would:
 * a repeated webhook-id is acknowledged but not applied again.
 *
 * In-process: `startReceiver({ secret })`. As a process:
 *   node --import tsx demo/receiver.ts --port 0 --secret whsec_... [--host 127.0.0.1]
 * prints `receiver listening on <url>` once ready, serves GET /stats and GET /state,
 * and prints its final stats as one JSON line on SIGTERM/SIGINT.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';

/** A larger body is refused (413): the demo hub never sends one, a runaway client might. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** Lag samples kept for the progress line. */
const LAG_WINDOW = 200;

export interface ReceiverStats {
  /** Accepted deliveries with a webhook-id seen for the first time. */
  delivered: number;
  /** Accepted deliveries whose webhook-id was already seen (acknowledged, not applied). */
  duplicates: number;
  /** Deliveries refused because the signature did not verify. */
  rejected: number;
  /** Canonical events applied to the state (a delivery may carry several). */
  events: number;
  /** Events whose event id was already applied under another webhook-id. */
  duplicateEvents: number;
  /** Bodies that verified but held no recognisable event. */
  malformed: number;
  /** Records currently held, and how many of them are deleted (tombstones). */
  records: number;
  deleted: number;
  /** Median of (arrival - occurredAt) over the last events, ms; null before any. */
  lagMs: number | null;
  lastDeliveryAt: string | null;
}

/** A canonical event as it arrives (only the fields the receiver reads). */
interface Arrived { id: string; entity: string; op: 'upsert' | 'delete'; key: string; data: unknown; occurredAt?: string }

export interface Receiver {
  url: string;
  port: number;
  stats(): ReceiverStats;
  /**
   * Current state per "<entity>:<key>": the last upsert's data, or null when the
   * last event was a delete (a tombstone, so "deleted" differs from "never seen").
   */
  state(): Map<string, unknown>;
  close(): Promise<void>;
}

export interface ReceiverOptions {
  /** Standard Webhooks secret ("whsec_<base64>"). */
  secret: string;
  port?: number;
  host?: string;
  /** Arrival clock (for lag). */
  now?: () => number;
}

/** A fresh Standard Webhooks secret. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

export function stateKey(entity: string, key: string): string {
  return `${entity}:${key}`;
}

function isEvent(x: unknown): x is Arrived {
  if (typeof x !== 'object' || x === null) return false;
  const e = x as Record<string, unknown>;
  return typeof e.entity === 'string' && typeof e.key === 'string' && (e.op === 'upsert' || e.op === 'delete');
}

/** The hub may send one event, an array, `{ events: [...] }`, or a Standard Webhooks `{ type, data }` wrapper. */
export function eventsOf(body: unknown): Arrived[] {
  if (isEvent(body)) return [body];
  if (Array.isArray(body)) return body.flatMap(eventsOf);
  if (typeof body === 'object' && body !== null) {
    const b = body as Record<string, unknown>;
    if (Array.isArray(b.events)) return b.events.flatMap(eventsOf);
    if (b.data !== undefined) return eventsOf(b.data);
  }
  return [];
}

function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function startReceiver(opts: ReceiverOptions): Promise<Receiver> {
  const wh = new Webhook(opts.secret);
  const now = opts.now ?? Date.now;
  const seenWebhooks = new Set<string>();
  const seenEvents = new Set<string>();
  const state = new Map<string, unknown>();
  const lags: number[] = [];
  const s = { delivered: 0, duplicates: 0, rejected: 0, events: 0, duplicateEvents: 0, malformed: 0, lastDeliveryAt: null as string | null };

  function stats(): ReceiverStats {
    let deleted = 0;
    for (const v of state.values()) if (v === null) deleted++;
    const sorted = [...lags].sort((a, b) => a - b);
    const lagMs = sorted.length ? sorted[Math.floor(sorted.length / 2)]! : null;
    return { ...s, records: state.size, deleted, lagMs };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/stats') return json(res, 200, stats());
    if (req.method === 'GET' && path === '/state') return json(res, 200, Object.fromEntries(state));
    if (req.method !== 'POST') return json(res, 405, { error: 'POST a webhook, or GET /stats or /state' });
    const body = await readBody(req);
    if (body === null) return json(res, 413, { error: `body over ${MAX_BODY_BYTES} bytes` });
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    let parsed: unknown;
    try {
      parsed = wh.verify(body.toString('utf8'), headers);
    } catch {
      s.rejected++;
      return json(res, 401, { error: 'signature does not verify' });
    }
    const webhookId = headers['webhook-id']!;
    s.lastDeliveryAt = new Date(now()).toISOString();
    if (seenWebhooks.has(webhookId)) {
      s.duplicates++;
      return json(res, 200, { duplicate: true });
    }
    seenWebhooks.add(webhookId);
    s.delivered++;
    const events = eventsOf(parsed);
    if (events.length === 0) s.malformed++;
    const at = now();
    for (const ev of events) {
      if (typeof ev.id === 'string') {
        if (seenEvents.has(ev.id)) {
          s.duplicateEvents++;
          continue;
        }
        seenEvents.add(ev.id);
      }
      state.set(stateKey(ev.entity, ev.key), ev.op === 'delete' ? null : ev.data);
      s.events++;
      const occurred = typeof ev.occurredAt === 'string' ? Date.parse(ev.occurredAt) : NaN;
      if (Number.isFinite(occurred)) {
        lags.push(at - occurred);
        if (lags.length > LAG_WINDOW) lags.shift();
      }
    }
    return json(res, 200, { ok: true, events: events.length });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => json(res, 500, { error: String(err) }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') return reject(new Error('receiver: no TCP address'));
      const host = opts.host ?? '127.0.0.1';
      resolve({
        url: `http://${host}:${addr.port}/webhook`,
        port: addr.port,
        stats,
        state: () => new Map(state),
        close: () => new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
      });
    });
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help')) {
    process.stdout.write('usage: node --import tsx demo/receiver.ts --secret whsec_... [--port 0] [--host 127.0.0.1]\n');
    return;
  }
  const secret = arg(argv, '--secret');
  if (!secret) {
    process.stderr.write('receiver: --secret whsec_... is required\n');
    process.exitCode = 2;
    return;
  }
  const r = await startReceiver({ secret, port: Number(arg(argv, '--port') ?? 0), host: arg(argv, '--host') ?? '127.0.0.1' });
  process.stdout.write(`receiver listening on ${r.url}\n`);
  const stop = async () => {
    await r.close();
    process.stdout.write(`${JSON.stringify(r.stats())}\n`);
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main(process.argv.slice(2));
}
