import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, isDovetailError } from '@dovetail/shared';
import { parseHubConfig } from '../../hub/src/config.ts';
import { main, parseArgs, parseDuration } from '../../hub/src/cli.ts';
import { startHub } from '../../hub/src/hub.ts';
import { tempDir } from '../helpers/paths.ts';

const configError = (text: string, env = {}) => {
  try {
    parseHubConfig(text, { baseDir: '/etc/dovetail', env, file: 'hub.yaml' });
  } catch (err) {
    assert.ok(isDovetailError(err, 'CONFIG_INVALID'), String(err));
    return err.message;
  }
  return assert.fail('expected CONFIG_INVALID');
};

test('config: defaults, dataDir relative to the config, env expansion in secret', () => {
  const c = parseHubConfig('destinations:\n  - {name: crm, type: webhook, url: "https://crm.example/hook", secret: "${env:S}"}\n', { baseDir: '/etc/dovetail', env: { S: 'whsec_AAAA' } });
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8700 });
  assert.equal(c.dataDir, '/etc/dovetail/hub-data');
  assert.equal(c.maxHandshakes, 64);
  assert.deepEqual(c.destinations[0], { name: 'crm', type: 'webhook', url: 'https://crm.example/hook', secret: 'whsec_AAAA', entities: [], maxAttempts: 70, retryInitialDelayMs: 5000, retryMaxDelayMs: 3_600_000, headers: {}, concurrency: 4, timeoutMs: 10_000, tenant: 'default' });
  assert.ok(Object.isFrozen(c.destinations[0]));
});

test('config: unknown keys and bad values name the key path', () => {
  assert.equal(configError('listen: {prot: 1}'), 'hub.yaml: listen.prot: unknown key (allowed: host, port)');
  assert.equal(configError('destinations:\n  - {name: a, type: webhook, url: "http://x/", secret: whsec_AA, entitys: [customer]}'),
    'hub.yaml: destinations[0].entitys: unknown key (allowed: name, type, url, secret, entities, maxAttempts, concurrency, timeoutMs, tenant, headers, retryInitialDelayMs, retryMaxDelayMs)');
  assert.match(configError('destinations:\n  - {name: a, type: webhook, url: "http://x/", secret: whsec_AA, entities: [custard]}'), /^hub\.yaml: destinations\[0\]\.entities\[0\]: must be one of /);
  assert.equal(configError('destinations:\n  - {name: a, type: webhook, url: "http://x/", secret: "${env:NOPE}"}'), 'hub.yaml: destinations[0].secret: environment variable NOPE is not set');
  assert.equal(configError('destinations:\n  - {name: a, type: webhook, url: "http://x/", secret: plain}'), 'hub.yaml: destinations[0].secret: must be "whsec_" followed by base64');
  assert.equal(configError('listen: {port: 70000}'), 'hub.yaml: listen.port: must be an integer from 0 to 65535');
});

test('cli: argument parsing and durations', () => {
  assert.deepEqual(parseArgs(['agents', 'enroll', '--name', 'p1', '--ttl=30m']), { command: 'agents enroll', flags: { name: 'p1', ttl: '30m' } });
  assert.throws(() => parseArgs(['agents', 'enroll', '--bogus', 'x']), /unknown option --bogus/);
  assert.throws(() => parseArgs(['frobnicate']), /unknown command "frobnicate"/);
  assert.deepEqual(['90s', '30m', '1h', '2d', '45'].map(parseDuration), [90, 1800, 3600, 172800, 45]);
  assert.throws(() => parseDuration('1 week'), /not a duration/);
});

test('cli: every command has useful --help', async () => {
  for (const cmd of [['run'], ['agents', 'enroll'], ['agents', 'list'], ['status'], []]) {
    const out: string[] = [];
    assert.equal(await main([...cmd, '--help'], {}, (s) => out.push(s)), 0);
    assert.match(out.join('\n'), /^Usage: dovetail-hub/);
  }
});

test('cli: HUB_NOT_RUNNING without a hub; enroll, list and status against a running one', async () => {
  const dir = tempDir('dovetail-hub-cli-');
  try {
    await assert.rejects(main(['status', '--data-dir', join(dir, 'data')], {}, () => {}), (e: unknown) => isDovetailError(e, 'HUB_NOT_RUNNING'));
    mkdirSync(join(dir, 'data'));
    // A stale hub.json (hub crashed) gives the same clear error, not a stack trace.
    writeFileSync(join(dir, 'data', 'hub.json'), JSON.stringify({ url: 'http://127.0.0.1:1', pid: 1 }));
    writeFileSync(join(dir, 'data', 'admin.token'), 'dvt_admin_x\n');
    await assert.rejects(main(['agents', 'list', '--data-dir', join(dir, 'data')], {}, () => {}), (e: unknown) => isDovetailError(e, 'HUB_NOT_RUNNING'));
    rmSync(join(dir, 'data'), { recursive: true });
    const cfg = join(dir, 'hub.yaml');
    writeFileSync(cfg, 'listen: {port: 0}\ndataDir: ./data\n');
    const hub = await startHub(parseHubConfig('listen: {port: 0}\ndataDir: ./data\n', { baseDir: dir }), {
      logger: createLogger({ name: 't', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) }),
    });
    try {
      const out: string[] = [];
      assert.equal(await main(['agents', 'enroll', '--name', 'plant-9', '--config', cfg, '--json'], {}, (s) => out.push(s)), 0);
      const issued = JSON.parse(out[0]!) as { token: string; expiresAt: string };
      assert.match(issued.token, /^dvt_enroll_/);
      out.length = 0;
      assert.equal(await main(['agents', 'list', '--data-dir', join(dir, 'data')], {}, (s) => out.push(s)), 0);
      assert.equal(out[0], 'no agents registered');
      out.length = 0;
      assert.equal(await main(['status', '--config', cfg], {}, (s) => out.push(s)), 0);
      assert.match(out[0]!, /agents: 0 registered, 0 online\nevents stored: 0/);
    } finally {
      await hub.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
