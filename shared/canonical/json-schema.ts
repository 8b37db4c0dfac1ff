import { ENTITIES } from './entities.ts';
import { EventEnvelope } from './envelope.ts';

/**
 * The JSON Schema documents consumers read: one per entity version and one for the
 * envelope. TypeBox schemas are JSON Schema already; this strips TypeBox's symbol keys.
 */
export function jsonSchemas(): Record<string, object> {
  const out: Record<string, object> = {
    'event.schema.json': { $schema: 'https://json-schema.org/draft/2020-12/schema', ...JSON.parse(JSON.stringify(EventEnvelope)), $id: 'https://dovetail.dev/schemas/event.schema.json' },
  };
  for (const [name, e] of Object.entries(ENTITIES)) {
    const file = `${name}.v${e.version}.schema.json`;
    out[file] = { $schema: 'https://json-schema.org/draft/2020-12/schema', ...JSON.parse(JSON.stringify(e.schema)), $id: `https://dovetail.dev/schemas/${file}`, title: `${name}/${e.version}` };
  }
  return out;
}
