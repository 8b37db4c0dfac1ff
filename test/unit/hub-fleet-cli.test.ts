/** dovetail-hub fleet commands: argument parsing, help, usage errors (the commands themselves run in test/e2e/fleet-agents). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main, parseArgs } from '../../hub/src/cli.ts';

test('fleet commands take one positional ID; listings take --json', () => {
  assert.deepEqual(parseArgs(['agents', 'show', 'agt_0123', '--json']), { command: 'agents show', flags: { id: 'agt_0123', json: true } });
  assert.deepEqual(parseArgs(['agents', 'revoke', 'agt_1', '--hub', 'http://h', '--admin-token', 'T']), { command: 'agents revoke', flags: { id: 'agt_1', hub: 'http://h', 'admin-token': 'T' } });
  assert.deepEqual(parseArgs(['tokens', 'create', '--scope', 'read', '--tenant', 'acme', '--name', 'ci']), { command: 'tokens create', flags: { scope: 'read', tenant: 'acme', name: 'ci' } });
  assert.deepEqual(parseArgs(['tokens', 'revoke', 'tok_9']), { command: 'tokens revoke', flags: { id: 'tok_9' } });
  assert.deepEqual(parseArgs(['audit', '--json', '--limit', '5']), { command: 'audit', flags: { json: true, limit: '5' } });
  assert.deepEqual(parseArgs(['agents', 'enroll', '--name', 'p', '--site', 'dallas']), { command: 'agents enroll', flags: { name: 'p', site: 'dallas' } });
  assert.throws(() => parseArgs(['agents', 'list', 'extra']), /unknown command "agents list extra"/);
  assert.throws(() => parseArgs(['tokens', 'list', '--scope', 'read']), /unknown option --scope for "tokens list"/);
});

test('every fleet command has --help; groups alone print the command list', async () => {
  for (const cmd of [['agents', 'show'], ['agents', 'disable'], ['agents', 'enable'], ['agents', 'revoke'], ['tokens', 'create'], ['tokens', 'list'], ['tokens', 'revoke'], ['audit']]) {
    const out: string[] = [];
    assert.equal(await main([...cmd, '--help'], {}, (s) => out.push(s)), 0);
    assert.match(out.join('\n'), new RegExp(`^Usage: dovetail-hub ${cmd.join(' ')}`));
  }
  const out: string[] = [];
  assert.equal(await main(['tokens'], {}, (s) => out.push(s)), 2);
  assert.match(out[0]!, /tokens create\s+create an operator API token/);
});

test('usage errors: missing ID, bad scope, bad limit', async () => {
  await assert.rejects(main(['agents', 'show', '--data-dir', '/nonexistent'], {}, () => {}), /agent ID is required/);
  await assert.rejects(main(['tokens', 'create', '--scope', 'root', '--data-dir', '/nonexistent'], {}, () => {}), /--scope must be read, operate or admin/);
  await assert.rejects(main(['audit', '--limit', '0', '--data-dir', '/nonexistent'], {}, () => {}), /--limit "0" must be a whole number from 1 to 1000/);
});
