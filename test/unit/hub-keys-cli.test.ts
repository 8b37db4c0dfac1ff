/**
 * dovetail-hub commands of issue 4 against an in-process hub (memory store, port 0):
 * destinations list / rotate-secret (secret printed once, never listed or logged),
 * keys rotate, push-config usage; a destination's tenant in the hub config.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@dovetail/shared';
import { main, parseArgs } from '../../hub/src/cli.ts';
import { parseHubConfig } from '../../hub/src/config.ts';
import { startHub, type Hub } from '../../hub/src/hub.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import { tempDir } from '../helpers/paths.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const logLines: string[] = [];
const logger = createLogger({ name: 'hub', level: 'info', destination: new Writable({ write(c, _e, cb) { logLines.push(String(c)); cb(); } }) });
let hub: Hub;
let dir: string;

const run = async (args: string[]): Promise<string> => {
  const out: string[] = [];
  assert.equal(await main([...args, '--data-dir', dir], {}, (s) => out.push(s)), 0);
  return out.join('\n');
};

before(async () => {
  dir = tempDir('dovetail-hub-cli-');
  const config = parseHubConfig(`listen: { port: 0 }
destinations:
  - { name: crm, type: webhook, url: "http://127.0.0.1:9/hook", secret: "${SECRET}", tenant: acme }
  - { name: erp-mirror, type: webhook, url: "http://127.0.0.1:9/m", secret: "${SECRET}" }
keys: { agentKeyGraceMs: 3600000 }
`, { baseDir: dir });
  assert.deepEqual([config.destinations[0]!.tenant, config.destinations[1]!.tenant, config.keys.agentKeyGraceMs], ['acme', 'default', 3_600_000]);
  hub = await startHub({ ...config, dataDir: dir }, { logger, store: createMemoryStore() });
});

after(async () => {
  await hub.close();
});

test('hub config: destination tenant and key grace are validated', () => {
  const err = (yaml: string) => { try { parseHubConfig(yaml, { baseDir: '/x', file: 'hub.yaml' }); } catch (e) { return (e as Error).message; } return ''; };
  assert.equal(err(`destinations:\n  - { name: a, type: webhook, url: "http://x/", secret: ${SECRET}, tenant: "a b" }`), 'hub.yaml: destinations[0].tenant: may contain only letters, digits, "_", "." and "-"');
  assert.equal(err('keys: { agentKeyGraceMs: -1 }'), 'hub.yaml: keys.agentKeyGraceMs: must be an integer from 0 to 31536000000');
  assert.equal(err('keys: { grace: 1 }'), 'hub.yaml: keys.grace: unknown key (allowed: agentKeyGraceMs)');
});

test('destinations list and rotate-secret: the new secret is printed once, on the first line', async () => {
  const before = await run(['destinations', 'list']);
  assert.match(before, /^NAME\s+TYPE\s+TENANT\s+CURSOR\s+PENDING\s+DLQ\s+SECRET\s+PREVIOUS SECRET UNTIL\s+LAST ERROR\ncrm\s+webhook\s+acme\s+0\s+0\s+0\s+config\s+-\s+-\nerp-mirror\s+webhook\s+default\s/);
  const out = await run(['destinations', 'rotate-secret', 'crm', '--overlap', '2h']);
  const [secret, note] = out.split('\n');
  assert.match(secret!, /^whsec_[A-Za-z0-9+/]{43}=$/);
  assert.match(note!, /^# new signing secret for destination "crm"; shown once, give it to the receiver now\. Webhooks carry both signatures until \S+Z\.$/);
  const listed = JSON.parse(await run(['destinations', 'list', '--json'])) as Array<{ name: string; secretSource: string; previousSecretValidUntil: string | null }>;
  assert.deepEqual(listed.map((d) => [d.name, d.secretSource, d.previousSecretValidUntil !== null]), [['crm', 'store', true], ['erp-mirror', 'config', false]]);
  assert.ok(!(await run(['destinations', 'list', '--json'])).includes(secret!));
  assert.ok(!logLines.join('').includes(secret!.slice(6)), 'the new secret is in no log line');
  await assert.rejects(main(['destinations', 'rotate-secret', 'nope', '--data-dir', dir], {}, () => {}), { code: 'HUB_NOT_FOUND' });
  await assert.rejects(main(['destinations', 'rotate-secret', 'crm', '--overlap', 'soon', '--data-dir', dir], {}, () => {}), /--overlap "soon" is not a duration/);
});

test('keys rotate prints old and new key ids; push-config needs --file and an agent', async () => {
  const old = hub.identity.keyId;
  const out = await run(['keys', 'rotate']);
  assert.equal(out, `hub key rotated: ${old} -> ${hub.identity.keyId}; announced to 0 connected agent(s), the others on their next connect`);
  assert.notEqual(hub.identity.keyId, old);
  assert.deepEqual(parseArgs(['agents', 'push-config', 'agt_1', '--file', 't.yaml']), { command: 'agents push-config', flags: { id: 'agt_1', file: 't.yaml' } });
  await assert.rejects(main(['agents', 'push-config', 'agt_1', '--data-dir', dir], {}, () => {}), /--file tables\.yaml is required/);
  const f = join(dir, 't.yaml');
  writeFileSync(f, 'tables: []\n');
  await assert.rejects(main(['agents', 'push-config', 'agt_nope', '--file', f, '--data-dir', dir], {}, () => {}), { code: 'HUB_NOT_FOUND' });
  for (const cmd of [['keys', 'rotate'], ['destinations', 'list'], ['destinations', 'rotate-secret'], ['agents', 'push-config']]) {
    const help: string[] = [];
    assert.equal(await main([...cmd, '--help'], {}, (s) => help.push(s)), 0);
    assert.match(help.join('\n'), new RegExp(`^Usage: dovetail-hub ${cmd.join(' ')}`));
  }
});
