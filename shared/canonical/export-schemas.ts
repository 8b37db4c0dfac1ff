/** Writes shared/canonical/schemas/*.json; `npm run schemas`. A unit test checks the files are current. */
import { writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonSchemas } from './json-schema.ts';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'schemas');
mkdirSync(dir, { recursive: true });
for (const [file, schema] of Object.entries(jsonSchemas())) {
  writeFileSync(join(dir, file), JSON.stringify(schema, null, 2) + '\n');
  console.log(`wrote ${join(dir, file)}`);
}
