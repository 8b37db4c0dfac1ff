/** Public API of @dovetail/hub. */
export * from './store/types.ts';
export { createMemoryStore } from './store/memory.ts';
export { openLevelStore } from './store/level.ts';
export { AgentGateway, type GatewayOptions } from './gateway/gateway.ts';
export { DeliveryRouter, type DestinationSpec, type DestinationStatus, type RouterOptions } from './delivery/router.ts';
export { createWebhookConnector, decodeWebhookSecret, isRetryableStatus, signWebhook, type WebhookOptions } from './delivery/webhook.ts';
export { realTimers, type Connector, type DeliveryResult, type Timers } from './delivery/types.ts';
export { buildApi, ADMIN_TOKEN_SETTING, DEFAULT_TOKEN_TTL_SECONDS, type ApiDeps } from './http/api.ts';
export { loadHubConfig, parseHubConfig, defaultHubConfig, DEFAULT_PORT, type HubConfig, type WebhookDestinationConfig } from './config.ts';
export { startHub, type Hub, type HubState, type StartHubOptions } from './hub.ts';
export { hashToken, readHubInfo, readAdminToken, HUB_KEY_FILE, ADMIN_TOKEN_FILE, HUB_INFO_FILE, type HubIdentity, type HubInfo } from './identity.ts';
export { FleetTracker, parseStatusReport, DEFAULT_OFFLINE_AFTER_MS, type FleetOptions, type LiveView, type TableView, type BufferView, type ErrorView } from './fleet/fleet.ts';
export { BOOTSTRAP_ADMIN, API_VERSION, type Principal } from './http/api.ts';
export { buildOpenApi, collectRoutes, type RouteDoc, type RouteConfig } from './http/openapi.ts';
