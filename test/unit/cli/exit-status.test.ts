import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT_STATUS_HELP } from '../../../src/cli/help.js';
import { ExitCode } from '../../../src/engine/errors.js';

const README = readFileSync(path.resolve(import.meta.dirname, '../../../README.md'), 'utf8');

describe('exit statuses are documented where users look', () => {
  for (const [name, code] of Object.entries(ExitCode)) {
    it(`${code} (${name}) is in --help and in the README's table`, () => {
      expect(EXIT_STATUS_HELP).toMatch(new RegExp(`^  ${code} +\\S`, 'm'));
      expect(README).toMatch(new RegExp(`^\\| ${code} \\| \\S`, 'm'));
    });
  }
});
