export * from './types.ts';
export * from './entities.ts';
export * from './envelope.ts';
export * from './validate.ts';
export { jsonSchemas } from './json-schema.ts';
