/**
 * OpenAPI 3.1 document generated from the fastify route schemas (the same ones that
 * validate requests), so the published contract cannot drift from what is enforced.
 * Collects routes through the onRoute hook; call collectRoutes() before routes are added.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import type { ApiScope } from '../store/types.ts';

export interface RouteDoc {
  method: string;
  url: string;
  schema: Record<string, unknown>;
  scope: ApiScope | 'none' | 'enrollment-token' | 'agent-key';
  summary: string;
}

/** Route config fields this API uses. */
export interface RouteConfig { scope?: ApiScope | 'none' | 'enrollment-token' | 'agent-key'; summary?: string }

export function collectRoutes(app: FastifyInstance): RouteDoc[] {
  const routes: RouteDoc[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    const cfg = (r.config ?? {}) as RouteConfig;
    for (const m of methods) {
      if (m === 'HEAD' || r.url.includes('*')) continue;
      routes.push({ method: m.toLowerCase(), url: r.url, schema: (r.schema ?? {}) as Record<string, unknown>, scope: cfg.scope ?? 'none', summary: cfg.summary ?? '' });
    }
  });
  return routes;
}

/** `{$ref: 'Agent'}` (fastify shared-schema id) -> `{$ref: '#/components/schemas/Agent'}`, recursively; strips TypeBox symbols via JSON. */
function toOpenApi(schema: unknown): unknown {
  const plain = JSON.parse(JSON.stringify(schema ?? {})) as unknown;
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const [k, val] of Object.entries(v)) {
        if (k === '$id') continue;
        o[k] = k === '$ref' && typeof val === 'string' && !val.startsWith('#') ? `#/components/schemas/${val.replace(/#$/, '')}` : walk(val);
      }
      return o;
    }
    return v;
  };
  return walk(plain);
}

function parameters(schema: unknown, where: 'path' | 'query'): unknown[] {
  const s = schema as { properties?: Record<string, unknown>; required?: string[] } | undefined;
  if (!s?.properties) return [];
  return Object.entries(s.properties).map(([name, sch]) => ({
    name, in: where, required: where === 'path' || (s.required ?? []).includes(name), schema: toOpenApi(sch),
  }));
}

const SCOPE_TEXT: Record<RouteDoc['scope'], string> = {
  none: 'No authentication.',
  'enrollment-token': 'Authenticated by the one-time enrollment token in the body.',
  'agent-key': "Authenticated by the agent's active key: the body is signed by it (and by the new key, as proof of possession).",
  read: 'Bearer token with scope read, operate or admin.',
  operate: 'Bearer token with scope operate or admin.',
  admin: 'Bearer token with scope admin.',
};

export function buildOpenApi(routes: RouteDoc[], shared: TSchema[], info: { title: string; version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const responses: Record<string, unknown> = {};
    const resp = (r.schema.response ?? {}) as Record<string, unknown>;
    for (const [status, sch] of Object.entries(resp)) {
      responses[status] = { description: status.startsWith('2') ? 'OK' : 'Error', content: { 'application/json': { schema: toOpenApi(sch) } } };
    }
    responses.default = { description: 'Error {code, message}', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    const op: Record<string, unknown> = {
      summary: r.summary,
      description: SCOPE_TEXT[r.scope],
      'x-dovetail-scope': r.scope,
      parameters: [...parameters(r.schema.params, 'path'), ...parameters(r.schema.querystring, 'query')],
      responses,
      ...(r.scope === 'read' || r.scope === 'operate' || r.scope === 'admin' ? { security: [{ bearer: [] }] } : { security: [] }),
    };
    if (r.schema.body) op.requestBody = { required: true, content: { 'application/json': { schema: toOpenApi(r.schema.body) } } };
    (paths[path] ??= {})[r.method] = op;
  }
  const schemas: Record<string, unknown> = {};
  for (const s of shared) schemas[String((s as { $id?: string }).$id)] = toOpenApi(s);
  return {
    openapi: '3.1.0',
    info,
    paths,
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'admin.token from the data directory, or an API token from `dovetail-hub tokens create`' } } },
  };
}
