export { loadAgentConfig, parseAgentConfig, describeConfigError, DEFAULTS, type ConfigIssue, type Env } from './load.ts';
export type * from './types.ts';
