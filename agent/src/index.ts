export { Agent, type AgentState } from './agent.ts';
export { loadAgentConfig } from './config/load.ts';
export type { AgentConfig, TableConfig, SourceConfig } from './config/types.ts';
export { compileMapping } from './mapping/index.ts';
export { createDriver } from './sources/registry.ts';
export { createStrategy } from './capture/registry.ts';
export { Outbox } from './outbox/outbox.ts';
export { runPreview } from './preview.ts';
export type { SourceDriver, Row, Value, Dialect, ColumnInfo } from './sources/types.ts';
