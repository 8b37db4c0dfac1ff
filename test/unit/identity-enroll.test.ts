import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { chmod, readFile, stat, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import { generateKeyPair, encodeKey, keyId, isDovetailError, encodePrivateKeyFile, decodeKey } from '@dovetail/shared';
import { enroll, loadIdentity, readKeyFile, writeKeyFile } from '../../agent/src/identity/identity.ts';
import { tempDir } from '../helpers/paths.ts';

const posix = process.platform !== 'win32';
const hubKp = generateKeyPair();

type Handler = (body: Record<string, unknown>, res: ServerResponse) => void;
async function hubStub(handler: Handler): Promise<{ url: string; requests: { path: string; body: Record<string, unknown> }[]; close: () => Promise<void> }> {
  const requests: { path: string; body: Record<string, unknown> }[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => {
      const body = JSON.parse(data) as Record<string, unknown>;
      requests.push({ path: `${req.method} ${req.url}`, body });
      handler(body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => server.close(() => r())) };
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};
const accept: Handler = (_b, res) => json(res, 200, { agentId: 'agt_42', tenant: 'acme', hubPublicKey: encodeKey(hubKp.publicKey), hubKeyId: keyId(hubKp.publicKey) });

test('enroll registers a locally generated key, pins the hub key and writes 0600 files', async () => {
  const hub = await hubStub(accept);
  const dir = tempDir();
  try {
    const id = await enroll({ hubUrl: hub.url + '/', token: 'dvt_enroll_secret123', name: 'acme-erp', dataDir: dir, version: '9.9.9', now: () => new Date('2024-05-01T00:00:00Z') });
    assert.equal(hub.requests.length, 1);
    const req = hub.requests[0]!;
    assert.equal(req.path, 'POST /v1/enroll');
    assert.deepEqual(Object.keys(req.body).sort(), ['host', 'name', 'publicKey', 'token', 'version']);
    assert.equal(req.body.token, 'dvt_enroll_secret123');
    assert.equal(req.body.name, 'acme-erp');
    assert.equal(req.body.host, hostname());
    assert.equal(req.body.version, '9.9.9');
    assert.deepEqual(decodeKey(req.body.publicKey as string), id.keyPair.publicKey);

    assert.equal(id.agentId, 'agt_42');
    assert.equal(id.tenant, 'acme');
    assert.equal(id.hubKeyId, keyId(hubKp.publicKey));

    const onDisk = JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8'));
    assert.deepEqual(onDisk, {
      agentId: 'agt_42', tenant: 'acme', name: 'acme-erp', hubUrl: hub.url,
      hubPublicKey: encodeKey(hubKp.publicKey), hubKeyId: keyId(hubKp.publicKey), enrolledAt: '2024-05-01T00:00:00.000Z',
    });
    if (posix) assert.equal((await stat(join(dir, 'agent.key'))).mode & 0o777, 0o600);
    assert.deepEqual((await readdir(dir)).sort(), ['agent.key', 'identity.json'], 'no temp files left');

    const loaded = await loadIdentity(dir);
    assert.deepEqual(loaded.keyPair.secretKey, id.keyPair.secretKey);
    assert.deepEqual(loaded.hubPublicKey, hubKp.publicKey);
    assert.equal(loaded.keyId, keyId(id.keyPair.publicKey));

    // A second enroll refuses to overwrite without force; with force the key changes.
    await assert.rejects(enroll({ hubUrl: hub.url, token: 't2', name: 'acme-erp', dataDir: dir }), (err: unknown) => {
      assert.ok(isDovetailError(err, 'AGENT_ENROLL_FAILED'));
      assert.match(err.message, /already enrolled .*--force/);
      return true;
    });
    assert.equal(hub.requests.length, 1, 'refused before contacting the hub');
    const again = await enroll({ hubUrl: hub.url, token: 't2', name: 'acme-erp', dataDir: dir, force: true });
    assert.notDeepEqual(again.keyPair.publicKey, id.keyPair.publicKey);
    assert.deepEqual((await loadIdentity(dir)).keyPair.publicKey, again.keyPair.publicKey);
  } finally {
    await hub.close();
  }
});

test('enroll reports the hub code on 4xx and leaves no identity behind', async () => {
  const hub = await hubStub((_b, res) => json(res, 409, { code: 'HUB_TOKEN_USED', message: 'enrollment token was already used' }));
  const dir = tempDir();
  try {
    await assert.rejects(enroll({ hubUrl: hub.url, token: 'dvt_enroll_secret123', name: 'n', dataDir: dir }), (err: unknown) => {
      assert.ok(isDovetailError(err, 'AGENT_ENROLL_FAILED'));
      assert.equal(err.message, `the hub at ${hub.url}/v1/enroll refused enrollment (HTTP 409) HUB_TOKEN_USED: enrollment token was already used`);
      assert.equal(err.context.hubCode, 'HUB_TOKEN_USED');
      assert.doesNotMatch(err.message, /secret123/);
      return true;
    });
    assert.deepEqual(await readdir(dir), []);
    await assert.rejects(loadIdentity(dir), (err: unknown) => {
      assert.ok(isDovetailError(err, 'AGENT_NOT_ENROLLED'));
      assert.match(err.message, /dovetail-agent enroll --hub/);
      return true;
    });
  } finally {
    await hub.close();
  }
});

test('enroll: unreachable hub and a hub key that does not match its id are clear errors', async () => {
  const hub = await hubStub(accept);
  const url = hub.url;
  await hub.close();
  await assert.rejects(enroll({ hubUrl: url, token: 't', name: 'n', dataDir: tempDir() }), (err: unknown) => {
    assert.ok(isDovetailError(err, 'AGENT_ENROLL_FAILED'));
    assert.match(err.message, new RegExp(`^could not reach the hub at ${url}/v1/enroll: .*ECONNREFUSED`));
    return true;
  });
  const liar = await hubStub((_b, res) => json(res, 200, { agentId: 'a', tenant: 't', hubPublicKey: encodeKey(hubKp.publicKey), hubKeyId: 'ffffffffffffffff' }));
  try {
    await assert.rejects(enroll({ hubUrl: liar.url, token: 't', name: 'n', dataDir: tempDir() }), (err: unknown) => isDovetailError(err, 'AGENT_ENROLL_FAILED'));
  } finally {
    await liar.close();
  }
});

test('key file: created 0600, refused when group/other can read it, with the chmod fix', { skip: !posix && 'POSIX modes only' }, async () => {
  const dir = tempDir();
  const path = join(dir, 'agent.key');
  const kp = generateKeyPair();
  await writeKeyFile(path, kp);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  await assert.rejects(writeKeyFile(path, kp), { code: 'EEXIST' });
  assert.deepEqual((await readKeyFile(path)).secretKey, kp.secretKey);

  await chmod(path, 0o644);
  await assert.rejects(readKeyFile(path), (err: unknown) => {
    assert.ok(isDovetailError(err, 'AGENT_KEY_PERMISSIONS'));
    assert.equal(err.message, `private key file ${path} has mode 0644 and is accessible by group or others; fix it with: chmod 600 ${path}`);
    assert.doesNotMatch(err.message, new RegExp(encodePrivateKeyFile(kp).slice(8, 30).replace(/[+/]/g, '.')));
    return true;
  });
  await chmod(path, 0o640);
  await assert.rejects(readKeyFile(path), (err: unknown) => isDovetailError(err, 'AGENT_KEY_PERMISSIONS'));
  // Windows has no mode bits: the check is skipped there.
  assert.deepEqual((await readKeyFile(path, 'win32')).secretKey, kp.secretKey);
});

test('loadIdentity: missing key file and malformed identity.json are AGENT_NOT_ENROLLED', async () => {
  const dir = tempDir();
  await writeFile(join(dir, 'identity.json'), JSON.stringify({ agentId: 'a', tenant: 't', name: 'n', hubUrl: 'http://h', hubPublicKey: encodeKey(hubKp.publicKey), hubKeyId: 'k', enrolledAt: 'x' }));
  await assert.rejects(loadIdentity(dir), (err: unknown) => {
    assert.ok(isDovetailError(err, 'AGENT_NOT_ENROLLED'));
    assert.match(err.message, /agent\.key does not exist/);
    return true;
  });
  await writeFile(join(dir, 'identity.json'), '{"agentId": 1}');
  await assert.rejects(loadIdentity(dir), (err: unknown) => isDovetailError(err, 'AGENT_NOT_ENROLLED'));
});
