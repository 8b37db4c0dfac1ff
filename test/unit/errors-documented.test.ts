import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '@dovetail/shared';
import { REPO } from '../helpers/paths.ts';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (n === 'node_modules') return [];
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('every error code thrown in product code is documented in ERROR_CODES', () => {
  const used = new Set<string>();
  for (const dir of ['shared', 'agent/src', 'hub/src']) {
    for (const file of sources(join(REPO, dir))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/DovetailError\(\s*'([A-Z_]+)'/g)) used.add(m[1]!);
    }
  }
  const undocumented = [...used].filter((c) => !(c in ERROR_CODES));
  assert.deepEqual(undocumented, []);
  assert.ok(used.size > 5, 'the scan found the codes');
});
