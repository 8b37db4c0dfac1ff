/**
 * What a new operator hits first: credentials in a webhook URL, header config, secrets in
 * error texts, read-only CLI commands without the service's env variables, a busy port,
 * --version and a bare `dovetail-hub`, which hub file is missing, and the agent's own name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES, createLogger, encodeKey, isDovetailError, type CanonicalEvent } from '@dovetail/shared';
import { loadHubLocation, parseHubConfig } from '../../hub/src/config.ts';
import { startHub } from '../../hub/src/hub.ts';
import { main } from '../../hub/src/cli.ts';
import { DeliveryRouter } from '../../hub/src/delivery/router.ts';
import { createWebhookConnector } from '../../hub/src/delivery/webhook.ts';
import type { Connector } from '../../hub/src/delivery/types.ts';
import { createMemoryStore } from '../../hub/src/store/memory.ts';
import { HUB_BIN, REPO, tempDir } from '../helpers/paths.ts';
import { BatchChain, event, seedKey } from '../helpers/hub-fixtures.ts';

const silent = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write(_c, _e, cb) { cb(); } }) });
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const HUB_VERSION = (JSON.parse(readFileSync(join(REPO, 'hub', 'package.json'), 'utf8')) as { version: string }).version;

function configError(text: string, env: Record<string, string> = {}): string {
  try {
    parseHubConfig(text, { baseDir: '/etc/dovetail', env, file: 'hub.yaml' });
  } catch (err) {
    assert.ok(isDovetailError(err, 'CONFIG_INVALID'), String(err));
    return err.message;
  }
  return assert.fail('expected CONFIG_INVALID');
}

const dest = (extra: string, url = 'https://crm.example/hook') => `destinations:\n  - {name: crm, type: webhook, url: "${url}", secret: "${SECRET}"${extra}}\n`;

function run(args: string[], cwd = REPO): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [HUB_BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c; });
    child.stderr.on('data', (c: Buffer) => { stderr += c; });
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

test('config: a webhook URL with user:password is refused, naming the key and suggesting headers, never echoing the password', () => {
  const msg = configError(dest('', 'https://bob:hunter2@crm.example/hook'));
  assert.equal(msg, 'hub.yaml: destinations[0].url: must not contain credentials (user:password@); send them as a header instead, e.g. headers: { Authorization: "Basic ${env:CRM_BASIC_AUTH}" } or "Bearer ${env:CRM_TOKEN}"');
  // Also when the credentials come from the environment.
  const viaEnv = configError(dest('', '${env:CRM_URL}'), { CRM_URL: 'https://bob:hunter2@crm.example/hook' });
  assert.match(viaEnv, /^hub\.yaml: destinations\[0\]\.url: must not contain credentials/);
  assert.doesNotMatch(msg + viaEnv, /hunter2/);
  assert.equal(configError(dest('', 'https://apionly@crm.example/hook')).split(':').slice(0, 2).join(':'), 'hub.yaml: destinations[0].url');
  assert.throws(() => createWebhookConnector({ url: 'https://bob:pw@crm.example/hook', secret: SECRET }), TypeError);
});

test('config: headers per webhook destination, with ${env:...} values; bad names, reserved names and missing variables are refused', () => {
  const c = parseHubConfig(dest(', headers: {Authorization: "Bearer ${env:CRM_TOKEN}", X-Tenant: acme}'), { baseDir: '/etc', env: { CRM_TOKEN: 't0k' } });
  assert.deepEqual(c.destinations[0]!.headers, { Authorization: 'Bearer t0k', 'X-Tenant': 'acme' });
  assert.ok(Object.isFrozen(c.destinations[0]!.headers));
  assert.equal(configError(dest(', headers: {Authorization: "Bearer ${env:CRM_TOKEN}"}')), 'hub.yaml: destinations[0].headers.Authorization: environment variable CRM_TOKEN is not set');
  assert.match(configError(dest(', headers: {Webhook-Signature: x}')), /^hub\.yaml: destinations\[0\]\.headers\.Webhook-Signature: is set by the hub itself/);
  assert.equal(configError(dest(', headers: {"Bad Name": x}')), 'hub.yaml: destinations[0].headers.Bad Name: is not a valid HTTP header name');
  assert.equal(configError(dest(', headers: [Authorization]')), 'hub.yaml: destinations[0].headers: must be a mapping of header name to value');
  const broken = configError(dest(', headers: {Authorization: "${env:T}"}'), { T: 'Bearer abc\r\nX-Evil: 1' });
  assert.equal(broken, 'hub.yaml: destinations[0].headers.Authorization: must not contain line breaks or NUL');
  assert.equal(configError(dest(', retryInitialDelayMs: 10000, retryMaxDelayMs: 5000')), 'hub.yaml: destinations[0].retryMaxDelayMs: must be at least retryInitialDelayMs (10000)');
  const d = parseHubConfig(dest(', retryInitialDelayMs: 1000, retryMaxDelayMs: 60000, maxAttempts: 5'), { baseDir: '/etc' }).destinations[0]!;
  assert.deepEqual([d.retryInitialDelayMs, d.retryMaxDelayMs, d.maxAttempts], [1000, 60_000, 5]);
});

test('error texts: last errors and DLQ entries are redacted (URL credentials, ?apikey=), in the router and again in the API', async () => {
  const store = createMemoryStore();
  const leaky: Connector = {
    type: 'test',
    async deliver() {
      return { ok: false, retryable: false, error: 'network error: Request cannot be constructed from a URL that includes credentials: https://bob:hunter2@crm.example/hook?apikey=K3Y&x=1' };
    },
  };
  const r = new DeliveryRouter({ log: store.log, state: store.delivery, logger: silent, destinations: [{ name: 'crm', connector: leaky }] });
  await r.start();
  const events: CanonicalEvent[] = [event('e1')];
  await store.log.append('agt_a', new BatchChain('agt_a', seedKey(1)).next(events), events, new Date().toISOString());
  for (let i = 0; i < 200 && (await store.delivery.dlqCount('crm')) === 0; i++) await new Promise((res) => setImmediate(res));
  await r.stop();
  const expected = 'network error: Request cannot be constructed from a URL that includes credentials: https://bob:***@crm.example/hook?apikey=***&x=1';
  assert.equal(r.status()[0]!.lastError, expected);
  assert.equal((await store.delivery.listDlq('crm', 1))[0]!.lastError, expected);

  // The webhook connector's network errors quote what the cause says; the query key does not survive.
  const throwing = (async () => { throw new TypeError('fetch failed', { cause: new Error('connect to https://crm.example/hook?apikey=K3Y refused') }); }) as unknown as typeof fetch;
  const w = createWebhookConnector({ url: 'https://crm.example/hook?apikey=K3Y', secret: SECRET, fetch: throwing });
  const wr = await w.deliver(event('e2'), { attempt: 1, signal: new AbortController().signal });
  assert.deepEqual(wr, { ok: false, retryable: true, error: 'network error: connect to https://crm.example/hook?apikey=*** refused (https://crm.example/hook)' });

  // An entry stored raw (by an older hub) is redacted on the way out of the API.
  const dir = tempDir('dovetail-hub-redact-');
  const store2 = createMemoryStore();
  const hub = await startHub(parseHubConfig(`listen: {port: 0}\ndataDir: ./data\n${dest('')}`, { baseDir: dir }), { logger: silent, store: store2, fetch: (async () => new Response(null, { status: 204 })) as unknown as typeof fetch });
  try {
    await store2.delivery.addDlq('crm', { offset: 9, eventId: 'old', agentId: 'a', entity: 'customer', key: 'K', attempts: 3, lastError: 'HTTP 500 from https://crm.example/hook?apikey=K3Y', failedAt: 'now' });
    const admin = readFileSync(join(dir, 'data', 'admin.token'), 'utf8').trim();
    const res = await hub.app.inject({ method: 'GET', url: '/v1/destinations/crm/dlq', headers: { authorization: `Bearer ${admin}` } });
    assert.equal((res.json() as { entries: Array<{ lastError: string }> }).entries[0]!.lastError, 'HTTP 500 from https://crm.example/hook?apikey=***');
  } finally {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: status and other read-only commands read only listen/dataDir, so a destination ${env:...} unset in this shell does not matter', async () => {
  const dir = tempDir('dovetail-hub-loc-');
  const cfg = join(dir, 'hub.yaml');
  const text = `listen: {port: 0}\ndataDir: ./data\ndestinations:\n  - {name: crm, type: webhook, url: "\${env:CRM_URL}", secret: "\${env:CRM_SECRET}", headers: {Authorization: "Bearer \${env:CRM_TOKEN}"}}\n`;
  writeFileSync(cfg, text);
  assert.deepEqual(loadHubLocation(cfg), { listen: { host: '127.0.0.1', port: 0 }, dataDir: join(dir, 'data') });
  const hub = await startHub(parseHubConfig(text, { baseDir: dir, env: { CRM_URL: 'http://127.0.0.1:9/hook', CRM_SECRET: SECRET, CRM_TOKEN: 't' } }), { logger: silent, store: createMemoryStore() });
  try {
    for (const args of [['status'], ['destinations', 'list'], ['agents', 'list'], ['dlq', 'list', 'crm']]) {
      const out: string[] = [];
      assert.equal(await main([...args, '--config', cfg], {}, (s) => out.push(s)), 0, args.join(' '));
    }
    // `run` still needs them, and says which.
    await assert.rejects(main(['run', '--config', cfg], {}, () => {}), (e: unknown) => isDovetailError(e, 'CONFIG_INVALID') && /destinations\[0\]\.url: environment variable CRM_URL is not set/.test(e.message));
  } finally {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: HUB_NOT_RUNNING says which file is missing and how to start the hub', async () => {
  const dir = tempDir('dovetail-hub-nr-');
  try {
    const cfg = join(dir, 'hub.yaml');
    writeFileSync(cfg, 'dataDir: ./data\n');
    mkdirSync(join(dir, 'data'));
    writeFileSync(join(dir, 'data', 'admin.token'), 'dvt_admin_x\n');
    const msg = async (args: string[]) => {
      try {
        await main(args, {}, () => {});
      } catch (e) {
        assert.ok(isDovetailError(e, 'HUB_NOT_RUNNING'), String(e));
        return e.message;
      }
      return assert.fail('expected HUB_NOT_RUNNING');
    };
    assert.equal(await msg(['status', '--config', cfg]),
      `no running hub found for data directory ${join(dir, 'data')}: missing hub.json, so the hub is probably not running; start it with "dovetail-hub run --config ${cfg}", or pass --hub URL --admin-token T`);
    rmSync(join(dir, 'data', 'admin.token'));
    assert.equal(await msg(['status', '--data-dir', join(dir, 'data')]),
      `no running hub found for data directory ${join(dir, 'data')}: missing hub.json and admin.token, so the hub is probably not running; start it with "dovetail-hub run --data-dir ${join(dir, 'data')}", or pass --hub URL --admin-token T`);
    writeFileSync(join(dir, 'data', 'hub.json'), JSON.stringify({ url: 'http://127.0.0.1:1', pid: 1 }));
    assert.match(await msg(['status', '--data-dir', join(dir, 'data')]), /: missing admin\.token, so the hub's admin\.token is gone \(it is created on the first run\); start it with/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('run on a busy port: one line with HUB_LISTEN_FAILED naming host:port, exit 1, no files created', async () => {
  assert.equal(typeof ERROR_CODES.HUB_LISTEN_FAILED, 'string');
  const busy: Server = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const port = (busy.address() as { port: number }).port;
  const dir = tempDir('dovetail-hub-busy-');
  try {
    await assert.rejects(startHub(parseHubConfig(`listen: {port: ${port}}\ndataDir: ./data\n`, { baseDir: dir }), { logger: silent }),
      (e: unknown) => isDovetailError(e, 'HUB_LISTEN_FAILED') && e.message.startsWith(`cannot listen on 127.0.0.1:${port}: the address is already in use`));
    const r = await run(['run', '--data-dir', join(dir, 'cli-data'), '--port', String(port)]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `dovetail-hub: HUB_LISTEN_FAILED: cannot listen on 127.0.0.1:${port}: the address is already in use (another hub or another program listens there); stop it, or choose another port with --port or listen.port in the config\n`);
    assert.equal(existsSync(join(dir, 'cli-data', 'hub.key')), false);
    assert.equal(existsSync(join(dir, 'cli-data', 'admin.token')), false);
    assert.equal(existsSync(join(dir, 'data', 'hub.key')), false);
  } finally {
    await new Promise<void>((r) => busy.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--version prints the version; no command prints help on stderr and exits 2', async () => {
  const [v, none] = await Promise.all([run(['--version']), run([])]);
  assert.deepEqual([v.code, v.stdout, v.stderr], [0, `${HUB_VERSION}\n`, '']);
  assert.equal(none.code, 2);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^Usage: dovetail-hub <command> \[options\]\n[\s\S]*dlq replay DESTINATION/);
});

test("enrollment keeps the agent's own name beside the token's label; agents show and --json show it", async () => {
  const dir = tempDir('dovetail-hub-name-');
  const hub = await startHub(parseHubConfig('listen: {port: 0}\ndataDir: ./data\n', { baseDir: dir }), { logger: silent, store: createMemoryStore() });
  try {
    const dataDir = join(dir, 'data');
    const cli = async (...args: string[]) => {
      const out: string[] = [];
      assert.equal(await main([...args, '--data-dir', dataDir], {}, (s) => out.push(s)), 0);
      return out.join('\n');
    };
    const { token } = JSON.parse(await cli('agents', 'enroll', '--name', 'plant-9', '--json')) as { token: string };
    const res = await fetch(`${hub.url}/v1/enroll`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, publicKey: encodeKey(seedKey(7).publicKey), name: 'erp-east', host: 'erp-01', version: '0.1.0' }),
    });
    const { agentId } = (await res.json()) as { agentId: string };
    const view = JSON.parse(await cli('agents', 'show', agentId, '--json')) as { name: string; agentName: string };
    assert.deepEqual([view.name, view.agentName], ['plant-9', 'erp-east']);
    assert.match(await cli('agents', 'show', agentId), /\nagent's own name: erp-east \(from its config at enrollment; "plant-9" is the enrollment token's label\)\n/);
    const table = (await cli('agents', 'list')).split('\n');
    assert.match(table[0]!, /^ID\s+NAME\s+TENANT\s+STATUS\s+ONLINE\s+LAST SEQ\s+EVENTS\s+LAST SEEN\s+HOST\s+VERSION\s+AGENT NAME$/);
    assert.match(table[1]!, new RegExp(`^${agentId}\\s+plant-9\\s+default\\s+active\\s.*\\serp-east$`));
  } finally {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
