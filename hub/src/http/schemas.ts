/**
 * JSON Schemas of the operator API, written once (TypeBox) and used three ways:
 * fastify validates requests with them, serialises responses with them, and
 * /v1/openapi.json is generated from the same route schemas.
 *
 * Response objects list every field: fastify's serializer drops what a schema does not name.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Str = Type.String;

export const ErrorBody = Type.Object({
  code: Str({ description: 'Stable error code (see ERROR_CODES)' }),
  message: Str(),
}, { $id: 'Error' });

export const Scope = Type.Unsafe<'read' | 'operate' | 'admin'>({
  type: 'string', enum: ['read', 'operate', 'admin'],
  description: 'read: GET routes; operate: + disable/enable agents, issue enrollment tokens; admin: + revoke agents, API tokens, keys',
});

const Name = Str({ minLength: 1, maxLength: 100 });
const Tenant = Str({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_.-]+$' });

export const IdParams = Type.Object({ id: Str({ minLength: 1, maxLength: 100 }) });

export const EnrollBody = Type.Object({
  token: Str({ minLength: 1, maxLength: 200 }),
  publicKey: Str({ minLength: 1, maxLength: 100, description: 'base64 of the 32-byte Ed25519 public key' }),
  name: Type.Optional(Str({ minLength: 1, maxLength: 200 })),
  host: Type.Optional(Str({ minLength: 1, maxLength: 200 })),
  version: Type.Optional(Str({ minLength: 1, maxLength: 50 })),
});
export const EnrollReply = Type.Object({ agentId: Str(), tenant: Str(), hubPublicKey: Str(), hubKeyId: Str() });

export const EnrollTokenBody = Type.Object({
  name: Name,
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 30 * 24 * 3600, description: 'default 3600 (1 hour)' })),
  tenant: Type.Optional(Tenant),
  site: Type.Optional(Name),
});
export const EnrollTokenReply = Type.Object({
  token: Str({ description: 'shown once; only its sha256 is stored' }), expiresAt: Str(), tenant: Str(), site: Nullable(Str()),
});

const ErrorView = Type.Object({ code: Str(), message: Str(), at: Nullable(Str()), table: Type.Optional(Str()) });

export const TableView = Type.Object({
  table: Str(),
  phase: Str({ description: 'snapshotting | streaming | gap | error | idle | unknown' }),
  progress: Nullable(Type.Object({ done: Type.Integer(), total: Type.Integer() })),
  eventsCaptured: Type.Integer(),
  quarantined: Type.Integer(),
  lastPollAt: Nullable(Str()),
  lastCommitAt: Nullable(Str()),
  lastError: Nullable(ErrorView),
});

export const BufferView = Type.Object({
  depth: Type.Integer({ description: 'batches waiting in the agent outbox' }),
  bytes: Type.Integer(),
  nextSeq: Nullable(Type.Integer()),
  lastAckedSeq: Nullable(Type.Integer()),
  lastAckAt: Nullable(Str()),
  oldestPendingAt: Nullable(Str()),
});

export const AgentView = Type.Object({
  id: Str(), tenant: Str(),
  name: Str({ description: "operator's label: the name given to the enrollment token" }),
  agentName: Nullable(Str({ description: 'the name the agent gave itself (its config) when it enrolled; null if not known' })),
  site: Nullable(Str()), publicKey: Str(), keyId: Str(),
  status: Str({ description: 'active | disabled | revoked' }),
  createdAt: Str(), lastSeenAt: Nullable(Str()), version: Nullable(Str()), host: Nullable(Str()),
  lastSeq: Type.Integer(), eventsStored: Type.Integer(),
  online: Type.Boolean({ description: 'connected and heard from within the offline threshold (default 60 s)' }),
  connectedAt: Nullable(Str()), statusAt: Nullable(Str()), remote: Nullable(Str()),
  agentState: Nullable(Str()), uplinkState: Nullable(Str()),
  buffer: Nullable(BufferView),
  lagMs: Nullable(Type.Integer({ description: 'age of the oldest unsent change, ms' })),
  tables: Type.Array(TableView),
  lastError: Nullable(ErrorView),
  previousKeys: Type.Array(Type.Object({
    keyId: Str(), rotatedAt: Str(), retiresAt: Str(),
    retired: Type.Boolean({ description: 'its grace ended: nothing signed by it is accepted' }),
  }), { description: 'keys this agent rotated away from, newest first' }),
  configVersion: Nullable(Type.Integer({ description: 'remote config version the agent reports running (0: its local file only)' })),
  config: Nullable(Type.Object({
    version: Type.Integer(), status: Str({ description: 'pending | applied | refused' }), reason: Nullable(Str()),
    sha256: Str(), pushedAt: Str(), pushedBy: Str(), resultAt: Nullable(Str()),
  }, { description: 'the latest remote config pushed to this agent' })),
}, { $id: 'Agent' });
export type AgentViewT = Static<typeof AgentView>;

export const AgentList = Type.Object({ agents: Type.Array(Type.Ref('Agent')) });

export const DestinationView = Type.Object({
  name: Str(), type: Str(), cursor: Type.Integer(), pending: Type.Integer(), inFlight: Type.Integer(), dlq: Type.Integer(), lastError: Nullable(Str()),
  tenant: Nullable(Str({ description: 'only events from agents of this tenant are delivered' })),
  secretSource: Str({ description: 'config (the hub config file) or store (rotated: kept in the hub store)' }),
  secretRotatedAt: Nullable(Str()),
  previousSecretValidUntil: Nullable(Str({ description: 'until then webhooks carry a signature with the previous secret too' })),
}, { $id: 'Destination' });
export const DestinationList = Type.Object({ destinations: Type.Array(Type.Ref('Destination')) });

export const StatusReply = Type.Object({
  hubKeyId: Str(),
  eventsStored: Type.Integer(),
  agents: Type.Object({ total: Type.Integer(), online: Type.Integer(), list: Type.Array(Type.Ref('Agent')) }),
  destinations: Type.Array(Type.Ref('Destination')),
});

export const TokenCreateBody = Type.Object({
  scope: Scope,
  tenant: Type.Optional(Tenant),
  name: Type.Optional(Name),
}, { additionalProperties: false });

export const TokenView = Type.Object({
  id: Str(), name: Str(), scope: Str(), tenant: Nullable(Str()), createdAt: Str(), createdBy: Str(), revokedAt: Nullable(Str()),
}, { $id: 'ApiToken' });
export const TokenCreated = Type.Object({
  id: Str(), name: Str(), scope: Str(), tenant: Nullable(Str()), createdAt: Str(), createdBy: Str(), revokedAt: Nullable(Str()),
  token: Str({ description: 'shown once; only its sha256 is stored' }),
});
export const TokenList = Type.Object({ tokens: Type.Array(Type.Ref('ApiToken')) });

export const AuditView = Type.Object({
  seq: Type.Integer(), at: Str(), actor: Str(), actorName: Str(), action: Str(), target: Str(),
  tenant: Nullable(Str()), remote: Nullable(Str()),
  detail: Type.Optional(Type.Record(Str(), Type.Union([Str(), Type.Number(), Type.Boolean(), Type.Null()]))),
}, { $id: 'AuditEntry' });
export const AuditQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) });
export const AuditList = Type.Object({ entries: Type.Array(Type.Ref('AuditEntry')) });

const B64 = (description: string) => Str({ minLength: 1, maxLength: 200, description });
export const KeyAnnouncementBody = Type.Object({
  role: Type.Unsafe<'agent' | 'hub'>({ type: 'string', enum: ['agent', 'hub'] }),
  subject: Str({ minLength: 1, maxLength: 100, description: 'the agent id' }),
  oldKeyId: Str({ minLength: 1, maxLength: 64 }),
  newPublicKey: B64('base64 of the new 32-byte Ed25519 public key'),
  newKeyId: Str({ minLength: 1, maxLength: 64 }),
  at: Str({ minLength: 1, maxLength: 40 }),
  sig: B64('signature by the old (active) key over the announcement (DOMAIN.keyAnnounce)'),
  pop: B64('proof of possession: the same statement signed by the new key'),
}, { additionalProperties: false });
export const AgentKeyBody = Type.Object({
  announcement: KeyAnnouncementBody,
  graceSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 365 * 86400, description: 'how long the old key stays valid; capped by the hub (default 24 h)' })),
}, { additionalProperties: false });
export const AgentKeyReply = Type.Object({ agentId: Str(), keyId: Str(), previousKeyId: Str(), retiresAt: Str(), changed: Type.Boolean() });

export const HubKeyRotateReply = Type.Object({ keyId: Str(), previousKeyId: Str(), at: Str(), agentsNotified: Type.Integer() });
export const HubKeysReply = Type.Object({
  keyId: Str(), publicKey: Str(),
  rotations: Type.Array(Type.Object({ oldKeyId: Str(), newKeyId: Str(), at: Str() })),
});

export const ConfigPushBody = Type.Object({
  document: Str({ minLength: 1, maxLength: 61440, description: 'YAML with a `tables` list only (the agent keeps its own source, hub and agent settings)' }),
}, { additionalProperties: false });
export const ConfigView = Type.Object({
  agentId: Str(), version: Type.Integer(), status: Str({ description: 'pending | applied | refused' }), reason: Nullable(Str()),
  sha256: Str(), pushedAt: Str(), pushedBy: Str(), resultAt: Nullable(Str()),
  sent: Type.Boolean({ description: 'sent to the connected agent now (otherwise on its next connect)' }),
});

export const NameParams = Type.Object({ name: Str({ minLength: 1, maxLength: 100 }) });
export const RotateSecretBody = Type.Object({
  overlapSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86400, description: 'both signatures are sent this long; default 86400 (24 h)' })),
}, { additionalProperties: false });
export const RotateSecretReply = Type.Object({
  name: Str(), secret: Str({ description: 'the new whsec_ secret, shown once' }), previousValidUntil: Nullable(Str()),
});

export const DlqQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })) });
export const DlqEntryView = Type.Object({
  eventId: Str({ description: 'the event id: also the webhook-id and idempotency key a replay is sent with' }),
  offset: Type.Integer({ description: 'position in the hub log; replays go in this order' }),
  agentId: Str(), entity: Str(), key: Str(),
  attempts: Type.Integer(),
  lastError: Str({ description: 'the last failure (secrets redacted)' }),
  failedAt: Str(),
});
export const DlqList = Type.Object({
  destination: Str(),
  total: Type.Integer({ description: 'entries in the DLQ (the list shows the first `limit`, oldest first)' }),
  entries: Type.Array(DlqEntryView),
});
export const DlqReplayBody = Type.Object({
  ids: Type.Optional(Type.Array(Str({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: 1000, description: 'event ids to replay; omit to replay the whole DLQ' })),
}, { additionalProperties: false });
export const DlqReplayReply = Type.Object({
  destination: Str(),
  replayed: Type.Integer({ description: 'entries moved from the DLQ to the replay queue' }),
  entries: Type.Array(Type.Object({ eventId: Str(), offset: Type.Integer(), entity: Str(), key: Str() })),
  notFound: Type.Array(Str(), { description: 'requested ids that are not in the DLQ' }),
  remaining: Type.Integer({ description: 'entries still in the DLQ' }),
});

/** Shared schemas registered with fastify.addSchema and emitted as OpenAPI components. */
export const SHARED_SCHEMAS: TSchema[] = [ErrorBody, AgentView, DestinationView, TokenView, AuditView];
