/**
 * Operational errors carry a stable `code`; code never branches on message text.
 * Programmer mistakes throw TypeError/RangeError instead.
 *
 * Every code is listed in ERROR_CODES with a one-line explanation; a unit test
 * checks that each code thrown in the codebase is documented here.
 */
export const ERROR_CODES = {
  // configuration
  CONFIG_INVALID: 'A configuration file failed validation; the message names the key path.',
  CONFIG_NOT_FOUND: 'The configuration file does not exist or cannot be read.',
  CONFIG_PARSE: 'The configuration file is not valid YAML.',
  // agent
  AGENT_ALREADY_RUNNING: 'Another agent process holds the data directory (LevelDB LOCK).',
  AGENT_NOT_ENROLLED: 'The agent has no identity yet; run `dovetail-agent enroll` first.',
  AGENT_KEY_PERMISSIONS: 'The private key file is readable by users other than its owner.',
  AGENT_ENROLL_FAILED: 'The hub refused or could not process the enrollment request.',
  AGENT_SOURCE_UNREACHABLE: 'The ERP database could not be reached (retried).',
  AGENT_SOURCE_QUERY: 'A query against the ERP database failed.',
  AGENT_SOURCE_PERMISSION: 'The database login lacks a permission the capture strategy needs.',
  AGENT_SOURCE_MISSING_OBJECT: 'A configured table or column does not exist in the ERP database.',
  AGENT_SOURCE_DRIVER_MISSING: 'The driver for the configured source type is not installed.',
  AGENT_SOURCE_NOT_CONFIGURED: 'A database feature the strategy needs (Change Tracking, CDC) is not enabled.',
  AGENT_POSITION_INVALID: 'A stored capture position is no longer valid; the table is re-snapshotted.',
  AGENT_MAPPING: 'A row could not be mapped to its canonical entity; it is quarantined.',
  AGENT_VALIDATION: 'A mapped event failed canonical schema validation; it is quarantined.',
  AGENT_UNKNOWN_TABLE: 'A table name given on the command line is not in the configuration.',
  // hub
  HUB_UNKNOWN_AGENT: 'The connecting agent is not registered.',
  HUB_AGENT_DISABLED: 'The agent is disabled or revoked.',
  HUB_AUTH_FAILED: 'Challenge-response authentication failed.',
  HUB_TOKEN_INVALID: 'The enrollment token is unknown.',
  HUB_TOKEN_USED: 'The enrollment token was already used.',
  HUB_TOKEN_EXPIRED: 'The enrollment token expired.',
  HUB_UNAUTHORIZED: 'The operator API request lacks a valid token.',
  HUB_NOT_FOUND: 'The requested resource does not exist.',
  HUB_ALREADY_RUNNING: 'Another hub process holds the data directory (LevelDB LOCK).',
  HUB_NOT_RUNNING: 'The CLI could not reach a running hub for this data directory.',
  HUB_LISTEN_FAILED: 'The hub could not listen on its configured host:port (in use, no permission, or no such address).',
  HUB_DELIVERY_FAILED: 'A destination rejected or did not answer a delivery.',
  HUB_BAD_REQUEST: 'An HTTP API request has a missing or invalid field; the message names it.',
  HUB_KEY_IN_USE: 'The public key offered at enrollment is already registered to another agent.',
  HUB_INTERNAL: 'The hub hit an unexpected internal error; details are in the hub log.',
  HUB_FORBIDDEN: 'The operator API token is valid but its scope or tenant does not allow this action.',
  HUB_TENANT_MISMATCH: 'An agent tried to write events claiming another registered agent (or tenant) as their source.',
  HUB_CONFLICT: 'The request conflicts with the current state (e.g. enabling a revoked agent, revoking a revoked token).',
  // protocol
  PROTO_MALFORMED: 'A frame could not be decoded.',
  PROTO_TOO_LARGE: 'A frame exceeds the maximum size.',
  PROTO_UNSUPPORTED_VERSION: 'A frame carries a protocol version this side does not speak.',
  PROTO_UNEXPECTED: 'A frame arrived that is not allowed in the connection state.',
  PROTO_BAD_SIGNATURE: 'A batch signature does not verify (or is non-canonical).',
  PROTO_SEQ_GAP: 'A batch seq is not the next one the hub expects.',
  PROTO_CHAIN_MISMATCH: 'A batch prevHash does not match the hash of the previous batch.',
  PROTO_SEQ_CONFLICT: 'A batch reuses a seq the hub already holds with different bytes.',
  PROTO_BODY_MISMATCH: 'The batch body names a different agent or seq than the frame.',
  PROTO_KEY_RETIRED: 'A batch or auth is signed by an agent key whose rotation grace period has ended (the key is retired).',
  AGENT_KEY_ROTATION_FAILED: 'The hub refused or could not confirm the new agent key; the old key stays in use and `dovetail-agent keys rotate` can be run again.',
  AGENT_HUB_UNVERIFIED: 'The hub did not prove it holds the pinned hub key (or a key announced under it); the agent refuses to authenticate.',
  AGENT_CONFIG_REFUSED: 'A remote config from the hub failed its signature, version or validation checks; the running config is unchanged.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class DovetailError extends Error {
  readonly code: ErrorCode;
  readonly context: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DovetailError';
    this.code = code;
    this.context = context;
  }
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.context };
  }
}

export function isDovetailError(err: unknown, code?: ErrorCode): err is DovetailError {
  return err instanceof DovetailError && (code === undefined || err.code === code);
}
