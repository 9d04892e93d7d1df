import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const DIST = path.resolve(import.meta.dirname, '../../dist/engine/pipeline');

describe('BlockWorkers', () => {
  // Closing a pool whose workers were still loading aborted the process (V8 fatal error, exit
  // 134) after about one short backup in a hundred; this churns pools the way short backups do.
  it('close() never aborts the process, however short the pool lived (200 pools)', () => {
    const script = `
      const { BlockWorkers } = await import(${JSON.stringify(path.join(DIST, 'block-workers.js'))});
      const { BufferPool } = await import(${JSON.stringify(path.join(DIST, 'buffer-pool.js'))});
      const buf = await new BufferPool(65536, 1).acquire();
      for (let i = 0; i < 200; i++) {
        const pool = new BlockWorkers(2, { compression: 'none', level: 0, keys: undefined });
        await pool.hash(buf, 65536);
        await pool.close();
      }
      console.log('survived');`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 240_000 });
    expect(run.stderr).not.toContain('FATAL ERROR');
    expect({ status: run.status, stdout: run.stdout.trim() }).toEqual({ status: 0, stdout: 'survived' });
  }, 300_000);
});
