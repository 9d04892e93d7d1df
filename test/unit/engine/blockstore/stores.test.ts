import { readdirSync } from 'node:fs';
import path from 'node:path';
import { expect, vi } from 'vitest';
import { FileStore } from '../../../../src/engine/blockstore/file-store.js';
import { MemoryStore } from '../../../../src/engine/blockstore/memory-store.js';
import { describeBlockStore } from '../../../contract/block-store.js';
import { makeTempDir } from '../../../helpers/temp.js';

/** Every temp file under a directory tree. */
function tempFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.startsWith('.tmp-')) out.push(path.join(entry.parentPath, entry.name));
  }
  return out;
}

describeBlockStore('memory', async () => ({ store: new MemoryStore() }));

describeBlockStore('file', async () => {
  const dir = makeTempDir();
  return { store: await FileStore.open(dir), leftovers: async () => tempFiles(dir) };
});

/** FileStore as loaded without the native helper (reads through Node's file handles). */
async function fileStoreWithoutNative(): Promise<typeof FileStore> {
  vi.resetModules();
  vi.stubEnv('BACKY2_NATIVE', '0');
  try {
    const { native } = await import('../../../../src/engine/sys/native.js');
    expect(native).toBeUndefined();
    return (await import('../../../../src/engine/blockstore/file-store.js')).FileStore;
  } finally {
    vi.unstubAllEnvs();
    vi.resetModules();
  }
}

describeBlockStore('file without the native helper', async () => {
  const dir = makeTempDir();
  return { store: await (await fileStoreWithoutNative()).open(dir), leftovers: async () => tempFiles(dir) };
});
