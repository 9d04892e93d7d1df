import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deferCleanup } from './cleanup.js';

/** A fresh temp directory, removed after the current test. */
export function makeTempDir(prefix = 'backy2-test-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  deferCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
