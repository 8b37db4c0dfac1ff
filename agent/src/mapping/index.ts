export { compileMapping, type Mapper, type MapperOptions } from './compile.ts';
export { eventId, EVENT_ID_LENGTH } from './hash.ts';
export { parseTargetPath, formatPath, resolveSchemaPath, missingRequired, type PathSegment } from './paths.ts';
export { compileField, DateTimeReader, FieldError, type CompiledField } from './convert.ts';
