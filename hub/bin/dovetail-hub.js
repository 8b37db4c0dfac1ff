#!/usr/bin/env node
// Runs the TypeScript entry point through tsx's loader, so `npx dovetail-hub` works right after `npm ci`.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli.ts');
