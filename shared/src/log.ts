/**
 * One logger factory for agent and hub: pino, JSON lines, with secrets redacted by
 * key name and passwords stripped from connection strings wherever they appear.
 */
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** Keys whose values never reach a log line, at any depth pino can address. */
const SECRET_KEYS = [
  'password', 'pwd', 'secret', 'token', 'privateKey', 'secretKey', 'seed', 'authorization',
  'apiKey', 'signingSecret', 'connectionString', 'adminToken',
];
const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `headers.${k}`]);

/** "postgres://user:pw@host/db" -> "postgres://user:***@host/db"; "Password=pw;" -> "Password=***;" */
export function redactSecrets(text: string): string {
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@')
    .replace(/\b(password|pwd|secret|token)\s*=\s*[^;\s&]*/gi, '$1=***')
    // Credentials carried as URL query parameters (webhook URLs often hold an API key).
    .replace(/([?&](?:api[_-]?key|apikey|access[_-]?token|auth|key|sig|signature|code)=)[^&#\s"']*/gi, '$1***')
    .replace(/\bwhsec_[A-Za-z0-9+/=]+/g, 'whsec_***')
    .replace(/\bdvt_[a-z]+_[A-Za-z0-9_-]+/g, 'dvt_***');
}

export interface LogOptions {
  name: string;
  level?: string;
  /** Default: stdout. Tests pass a stream to capture lines. */
  destination?: DestinationStream;
}

export function createLogger(opts: LogOptions): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '***' },
      formatters: {
        log(obj) {
          // Connection strings hide inside ordinary fields and error messages too.
          for (const [k, v] of Object.entries(obj)) if (typeof v === 'string') obj[k] = redactSecrets(v);
          return obj;
        },
      },
      serializers: {
        err(err: unknown) {
          const s = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
          if (typeof s.message === 'string') s.message = redactSecrets(s.message);
          if (typeof s.stack === 'string') s.stack = redactSecrets(s.stack);
          const code = (err as { code?: unknown }).code;
          if (code !== undefined) s.code = code;
          return s;
        },
      },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * The short form of an expected, retried failure (hub down, database restarting):
 * code and message without a stack trace, so a retry loop does not flood the log.
 */
export function briefError(err: unknown): { code?: string; error: string } {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return { ...(typeof code === 'string' ? { code } : {}), error: redactSecrets(message) };
}
