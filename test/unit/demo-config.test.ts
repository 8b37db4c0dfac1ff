import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentYaml, hubYaml } from '../../demo/config.ts';
import { newWebhookSecret } from '../../demo/receiver.ts';
import { parseAgentConfig } from '../../agent/src/config/index.ts';
import { parseHubConfig } from '../../hub/src/config.ts';

test('demo agent.yaml passes the agent config loader with the intended strategies', () => {
  const cfg = parseAgentConfig(agentYaml({
    erpUrl: 'postgres://postgres@127.0.0.1:5555/postgres', hubUrl: 'http://127.0.0.1:8700', dataDir: '/tmp/demo-agent', timeZone: 'America/Chicago',
  }), '/tmp/demo/agent.yaml', {});
  assert.deepEqual(cfg.tables.map((t) => `${t.name}:${t.entity}:${t.strategy}`), [
    'customers:customer:diff', 'items:product:cursor', 'stock:inventory_level:diff', 'orders:sales_order:cursor',
  ]);
  assert.equal(cfg.source.maxConnections, 1);
  assert.equal(cfg.source.timeZone, 'America/Chicago');
  assert.deepEqual(Object.keys(cfg.tables[3]!.children), ['lines']);
});

test('demo hub.yaml passes the hub config loader with the webhook destination', () => {
  const secret = newWebhookSecret();
  const cfg = parseHubConfig(hubYaml({ port: 18700, dataDir: '/tmp/demo-hub', webhookUrl: 'http://127.0.0.1:9/webhook', webhookSecret: secret }), { baseDir: '/tmp' });
  assert.equal(cfg.listen.port, 18700);
  assert.equal(cfg.destinations.length, 1);
  assert.equal(cfg.destinations[0]!.secret, secret);
  assert.equal(cfg.destinations[0]!.url, 'http://127.0.0.1:9/webhook');
});

test('demo: token parsing and the summary line', async () => {
  const { parseToken, summaryLine } = await import('../../demo/demo.ts');
  assert.equal(parseToken('enrollment token for "demo": dvt_enroll_abc-DEF_123 (expires 2024-07-01T10:00:00Z)\n'), 'dvt_enroll_abc-DEF_123');
  assert.equal(parseToken('{"token":"tok-1","expiresAt":"x"}'), 'tok-1');
  assert.equal(parseToken('nothing here'), null);
  assert.equal(summaryLine({ changes: 40, captured: 455, delivered: 455, duplicates: 0, lost: 0 }),
    'demo: 40 changes made, 455 events captured, 455 delivered, 0 duplicates, 0 lost');
});
