/**
 * `npm test`: runs every *.test.ts under test/{unit,contract,integration,e2e} (or the
 * folders named on the command line) with node's test runner.
 *
 * Integration tests use real services when they answer (PostgreSQL, MariaDB, ODBC
 * drivers, NATS) and skip with a reason when they do not; under CI=true (or
 * DOVETAIL_REQUIRE_SERVICES=1) a missing service is a failure instead.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';

const root = dirname(fileURLToPath(import.meta.url));
const folders = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const selected = folders.length ? folders : ['unit', 'contract', 'integration', 'e2e'];

function walk(dir: string): string[] {
  let out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return out;
  }
  for (const n of names) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out = out.concat(walk(p));
    else if (n.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = selected.flatMap((f) => walk(join(root, f)));
if (files.length === 0) {
  console.error(`no test files under ${selected.join(', ')}`);
  process.exit(1);
}
const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
