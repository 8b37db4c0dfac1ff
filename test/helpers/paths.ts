import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The reference kit beside the repository (../shared); tests read sample data from it, never copy it. */
export const KIT = process.env.DOVETAIL_KIT ?? resolve(REPO, '..', 'shared');
export const DATA = join(KIT, 'data');
export const AGENT_BIN = join(REPO, 'agent', 'bin', 'dovetail-agent.js');
export const HUB_BIN = join(REPO, 'hub', 'bin', 'dovetail-hub.js');

export function tempDir(prefix = 'dovetail-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Skip reason when the reference kit's sample data is not beside the repository (a
 * clone on its own); under CI it is always there, so its absence fails instead.
 */
export function kitMissing(): string | undefined {
  if (existsSync(DATA)) return undefined;
  const reason = `sample data not found at ${DATA} (set DOVETAIL_KIT to the reference kit folder)`;
  if (process.env.CI === 'true') throw new Error(reason);
  return reason;
}
