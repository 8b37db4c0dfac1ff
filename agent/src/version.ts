import { readFileSync } from 'node:fs';

/** The agent's version as published in agent/package.json; reported to the hub on connect. */
export const AGENT_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
