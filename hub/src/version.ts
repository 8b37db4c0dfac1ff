import { readFileSync } from 'node:fs';

/** The hub's version as published in hub/package.json (`dovetail-hub --version`). */
export const HUB_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
