import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { initStoreFor, runCli } from '../../helpers/cli.js';
import { makeImage } from '../../helpers/image.js';
import { makeTempDir } from '../../helpers/temp.js';
import { parseExposition } from '../../helpers/exposition.js';

const B = 64 * 1024;
let dir: string;
let config: string;
let args: (...rest: string[]) => string[];
let image: string;

beforeEach(async () => {
  dir = makeTempDir();
  config = path.join(dir, 'backy2.yaml');
  writeFileSync(config, 'backup:\n  blockSize: 64KiB\n');
  args = (...rest) => ['--store', path.join(dir, 'store'), '--config', config, ...rest];
  await initStoreFor({}, args());
  image = path.join(dir, 'img');
  makeImage(image, [{ kind: 'random', length: 3 * B }, { kind: 'zero', length: 2 * B }]);
});

describe('backy2 metrics', () => {
  it('prints per image the newest valid backup, versions by status, and store and run figures', async () => {
    const before = Date.now() / 1000;
    expect((await runCli(args('backup', image, 'vm1'))).code).toBe(0);
    expect((await runCli(args('scrub', '--all'))).code).toBe(0);
    expect((await runCli(args('cleanup'))).code).toBe(0);
    const r = await runCli(args('metrics'));
    expect(r.code, r.stderr).toBe(0);
    const m = parseExposition(r.stdout);
    expect(m.get('backy2_last_backup_success_timestamp_seconds{image="vm1"}')).toBeGreaterThanOrEqual(before);
    expect(m.get('backy2_last_backup_read_bytes{image="vm1"}')).toBe(3 * B);
    expect(m.get('backy2_last_backup_written_bytes{image="vm1"}')).toBe(3 * B);
    expect(m.get('backy2_last_backup_stored_bytes{image="vm1"}')).toBe(3 * B);
    expect(m.get('backy2_last_backup_sparse_bytes{image="vm1"}')).toBe(2 * B);
    expect(m.get('backy2_last_backup_deduplicated_bytes{image="vm1"}')).toBe(0);
    expect(m.get('backy2_versions{image="vm1",status="valid"}')).toBe(1);
    expect(m.get('backy2_versions{image="vm1",status="invalid"}')).toBe(0);
    expect(m.get('backy2_store_stored_bytes')).toBe(3 * B);
    expect(m.get('backy2_scrub_last_checked_blocks')).toBe(3);
    expect(m.get('backy2_scrub_bad_blocks_total')).toBe(0);
    expect(m.get('backy2_cleanup_runs_total')).toBe(1);
    expect(m.get('backy2_forget_runs_total')).toBe(0);
    expect(r.stdout).toContain('# TYPE backy2_cleanup_freed_bytes_total counter\n');
    const json = JSON.parse((await runCli(args('metrics', '--json'))).stdout) as { name: string }[];
    expect(json.map((f) => f.name)).toContain('backy2_image_check_level');
  });

  it('--metrics-file is rewritten atomically after every command, and metrics.file in the config too', async () => {
    const file = path.join(dir, 'prom', 'backy2.prom');
    mkdirSync(path.dirname(file));
    expect((await runCli(args('--metrics-file', file, 'backup', image, 'vm1'))).code).toBe(0);
    expect(parseExposition(readFileSync(file, 'utf8')).get('backy2_versions{image="vm1",status="valid"}')).toBe(1);
    expect(statSync(file).mode & 0o777).toBe(0o644);
    writeFileSync(config, `backup:\n  blockSize: 64KiB\nmetrics:\n  file: ${file}\n`);
    expect((await runCli(args('backup', image, 'vm2'))).code).toBe(0);
    expect(parseExposition(readFileSync(file, 'utf8')).get('backy2_versions{image="vm2",status="valid"}')).toBe(1);
    // A failing command still refreshes it; --help does not.
    const mtime = statSync(file).mtimeMs;
    expect((await runCli(args('restore', 'vzzzzzzzzzzz', path.join(dir, 'x')))).code).toBe(4);
    expect(statSync(file).mtimeMs).toBeGreaterThanOrEqual(mtime);
    writeFileSync(file, 'stale\n');
    expect((await runCli(args('ls', '--help'))).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('stale\n');
    expect(readdirSync(path.dirname(file))).toEqual(['backy2.prom']);
  });

  it('a metrics file that cannot be written is one warning; the command\'s exit status stands', async () => {
    const r = await runCli(args('--metrics-file', path.join(dir, 'no-such-dir', 'x.prom'), 'ls'));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^backy2: warning: metrics file ".*x\.prom" not written: /);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    // No store: the command says so, and the metrics say nothing more.
    const missing = await runCli(['--store', path.join(dir, 'none'), '--metrics-file', path.join(dir, 'm.prom'), 'ls']);
    expect(missing.code).toBe(4);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(path.join(dir, 'm.prom'))).toBe(false);
  });
});
