import { readFileSync } from 'node:fs';

/** The backy2 package's version (not a backup version), from package.json. */
export const PACKAGE_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
