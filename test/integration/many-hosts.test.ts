/**
 * Many backup hosts on one PostgreSQL catalog and one block store (a shared directory, and
 * radosgw S3): each host is a set of backy2 processes with a host name of its own (`unshare
 * --uts` and `hostname`, as root; else `host:` in its config), run concurrently, some of them
 * killed with SIGKILL. Whatever happens, a valid version restores byte-identical.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { S3Store } from '../../src/engine/blockstore/s3-store.js';
import { BIN, type CliRun } from '../helpers/cli.js';
import { ceph } from '../helpers/ceph.js';
import { sha256File } from '../helpers/image.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { makeTempDir } from '../helpers/temp.js';

const B = 64 * 1024;
const LEASE_S = 3;
/** Hosts get a UTS namespace with their own host name when this runs as root. */
const OWN_HOSTNAMES = process.getuid?.() === 0 && spawnSync('unshare', ['--uts', 'hostname', 'probe']).status === 0;
let server: TestPostgres;
let dir: string;
let storeDir: string;
let url: string;
/** Where the blocks go: the store directory, or a bucket of the test cluster's radosgw. */
let blocksIn: 'directory' | 's3' = 'directory';
let bucket = '';

beforeAll(async () => {
  server = await startPostgres();
}, 60_000);
afterAll(() => server?.down());

beforeEach(async () => {
  dir = makeTempDir('backy2-hosts-');
  storeDir = path.join(dir, 'store');
  url = await server.createDatabase();
  bucket = `backy2-hosts-${randomBytes(5).toString('hex')}`;
  const r = await cli('host-1', ['init']);
  expect(r.code, r.stderr).toBe(0);
});

/** The config of one backup host (its identity is its host name, or `host:` without namespaces). */
function configOf(host: string): string {
  const file = path.join(dir, `${host}.yaml`);
  const c = blocksIn === 's3' ? ceph() : undefined;
  const blockStore = c ? `blockStore:\n  type: s3\n  endpoint: ${c.s3Endpoint}\n  bucket: ${bucket}\n  prefix: backy2/\n` : '';
  writeFileSync(file, `store: ${storeDir}\n${blockStore}catalog:\n  url: ${url}\n  lease: ${LEASE_S}s\n${OWN_HOSTNAMES ? '' : `host: ${host}\n`}backup:\n  blockSize: 64KiB\n`);
  return file;
}

function cli(host: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return start(host, args, env).done;
}

/** Starts backy2 as `host` without waiting; killed with SIGKILL by the caller. */
function start(host: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<CliRun> } {
  const c = blocksIn === 's3' ? ceph() : undefined;
  const credentials = c ? { AWS_ACCESS_KEY_ID: c.accessKeyId, AWS_SECRET_ACCESS_KEY: c.secretAccessKey } : {};
  const fullEnv = { PATH: process.env.PATH, HOME: process.env.HOME, BACKY2_CONFIG: configOf(host), ...credentials, ...env };
  // unshare and sh exec into backy2: the child's pid is backy2's, for SIGKILL.
  const child = OWN_HOSTNAMES
    ? spawn('unshare', ['--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', host, BIN, ...args], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(BIN, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliRun>((resolve) => child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 137 : 1), stdout, stderr })));
  return { child, done };
}

interface Listed {
  uid: string;
  image: string;
  status: string;
  tags: string[];
  host: string | null;
}

async function list(host = 'host-1'): Promise<Listed[]> {
  const r = await cli(host, ['ls', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Listed[];
}

/** Writes `blocks` (buffers of B bytes) as an image file. */
function writeImage(file: string, blocks: readonly Buffer[]): void {
  writeFileSync(file, Buffer.concat(blocks));
}

/** Restores every valid version and compares it with the expected SHA-256 (by its first tag). */
async function expectRestorable(expected: ReadonlyMap<string, string>): Promise<number> {
  const valid = (await list()).filter((v) => v.status === 'valid');
  for (const v of valid) {
    const out = path.join(dir, `out-${v.uid}`);
    const r = await cli('host-1', ['restore', v.uid, out, '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(await sha256File(out), `${v.uid} ${v.tags.join(',')}`).toBe(expected.get(v.tags[0] ?? ''));
  }
  return valid.length;
}

async function blockObjects(): Promise<number> {
  const isBlock = (name: string) => /^[0-9a-f]{64}$/.test(name);
  if (blocksIn === 'directory') {
    const root = path.join(storeDir, 'blocks');
    return readdirSync(root).reduce((n, shard) => n + readdirSync(path.join(root, shard)).filter(isBlock).length, 0);
  }
  const c = ceph();
  const s3 = await S3Store.open({ endpoint: c.s3Endpoint, bucket, prefix: 'backy2/', accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey });
  let n = 0;
  for await (const o of s3.list('blocks/')) if (isBlock(path.basename(o.key))) n++;
  await s3.close();
  return n;
}

/** A one-line error of backy2 (no stack trace). */
function expectOneLineError(r: CliRun): void {
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('backy2: took over'));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^backy2: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe.each(['directory', 's3'] as const)('many backup hosts on one PostgreSQL catalog, blocks in a %s', (where) => {
  beforeAll(() => {
    blocksIn = where;
  });

  it('4 hosts back up overlapping images at once: every version valid and byte-identical, shared blocks stored once', async () => {
    const common = Array.from({ length: 16 }, () => randomBytes(B));
    const expected = new Map<string, string>();
    const jobs = [1, 2, 3, 4].map(async (h) => {
      const own = path.join(dir, `own-${h}.img`);
      writeImage(own, [...common, ...Array.from({ length: 8 }, () => randomBytes(B)), Buffer.alloc(4 * B)]);
      const shared = path.join(dir, `shared-${h}.img`);
      writeImage(shared, [...common].reverse());
      expected.set(`own-${h}`, await sha256File(own));
      expected.set(`shared-${h}`, await sha256File(shared));
      for (const [file, image] of [[own, `vm${h}`], [shared, `shared${h}`]] as const) {
        const r = await cli(`host-${h}`, ['backup', file, image, '-t', path.basename(file, '.img')]);
        expect(r.code, r.stderr).toBe(0);
      }
    });
    await Promise.all(jobs);
    const versions = await list();
    expect(versions).toHaveLength(8);
    expect(versions.every((v) => v.status === 'valid')).toBe(true);
    expect(new Set(versions.map((v) => v.host))).toEqual(new Set(['host-1', 'host-2', 'host-3', 'host-4']));
    expect(await expectRestorable(expected)).toBe(8);
    // 16 common blocks and 8 of each host's own: stored once each, in the store and the catalog.
    expect(await blockObjects()).toBe(16 + 4 * 8);
    const [row] = await server.sql('SELECT count(*)::int AS n FROM backy2.blocks', new URL(url).pathname.slice(1));
    expect(row?.n).toBe(16 + 4 * 8);
  });

  it('cleanup in a loop on one host while three others back up and remove versions, with kill -9 everywhere: every valid version restores, no referenced block is missing', async () => {
    const pool = Array.from({ length: 24 }, () => randomBytes(B));
    const expected = new Map<string, string>();
    const ROUNDS = Number(process.env.BACKY2_TEST_ROUNDS ?? 5);
    let writing = 3;
    let kills = 0;
    const killSoon = (job: { child: ChildProcess }) => {
      if (Math.random() < 0.35) {
        setTimeout(() => {
          if (job.child.exitCode === null && job.child.kill('SIGKILL')) kills++;
        }, 150 + Math.random() * 700);
      }
    };
    const writer = async (h: number) => {
      const file = path.join(dir, `vm${h}.img`);
      for (let round = 0; round < ROUNDS; round++) {
        // 14 blocks picked from a pool all hosts share: blocks come, go and come back across hosts.
        writeImage(file, Array.from({ length: 14 }, () => pool[Math.floor(Math.random() * pool.length)] as Buffer));
        const tag = `h${h}r${round}`;
        expected.set(tag, await sha256File(file));
        const job = start(`host-${h}`, ['backup', file, `vm${h}`, '-t', tag]);
        killSoon(job);
        await job.done;
        const valid = (await list(`host-${h}`)).filter((v) => v.image === `vm${h}` && v.status === 'valid');
        if (valid.length > 2) {
          const rm = start(`host-${h}`, ['rm', '--force', ...valid.slice(0, -2).map((v) => v.uid)]);
          killSoon(rm);
          await rm.done;
        }
      }
      writing--;
    };
    const cleaner = async () => {
      let runs = 0;
      while (writing > 0 || runs === 0) {
        const job = start('host-4', ['cleanup']);
        killSoon(job);
        const r = await job.done;
        if (r.code !== 137) expect([0, 11], r.stderr).toContain(r.code);
        runs++;
      }
      return runs;
    };
    const [runs] = await Promise.all([cleaner(), writer(1), writer(2), writer(3)]);
    expect(runs).toBeGreaterThan(0);
    const restored = await expectRestorable(expected);
    expect(restored).toBeGreaterThan(0);
    const scrub = await cli('host-2', ['scrub', '--all']);
    expect(scrub.code, scrub.stderr + scrub.stdout).toBe(0);
    // A last cleanup without kills, then everything again.
    const last = await cli('host-4', ['cleanup']);
    expect(last.code, last.stderr).toBe(0);
    expect(await expectRestorable(expected)).toBe(restored);
    expect((await cli('host-3', ['scrub', '--all'])).code).toBe(0);
    console.log(`cleanup loop: ${ROUNDS} rounds × 3 writer hosts, ${runs} cleanups, ${kills} processes killed, ${restored} valid versions restored`);
  });

});

describe('many backup hosts on one PostgreSQL catalog: leases and restarts', () => {
  beforeAll(() => {
    blocksIn = 'directory';
  });

  it('a dead host: its leases expire, others go on meanwhile and then take over its image, and its version stays incomplete', async () => {
    const file = path.join(dir, 'vm1.img');
    writeImage(file, Array.from({ length: 40 }, () => randomBytes(B)));
    const other = path.join(dir, 'vm2.img');
    writeImage(other, Array.from({ length: 8 }, () => randomBytes(B)));
    // Slow writes keep the backup running until it is killed.
    const dying = start('host-dead', ['backup', file, 'vm1', '-t', 'dead'], { BACKY2_FAULTS: JSON.stringify({ latencyMs: 100 }) });
    for (let i = 0; i < 100 && !(await list()).some((v) => v.host === 'host-dead'); i++) await new Promise((r) => setTimeout(r, 100));
    dying.child.kill('SIGKILL');
    await dying.done;
    const killedAt = Date.now();

    const refused = await cli('host-1', ['backup', file, 'vm1', '-t', 'early']);
    expect(refused.code).toBe(11);
    expectOneLineError(refused);
    expect(refused.stderr).toMatch(/backup by process \d+ on host-dead/);
    const meanwhile = await cli('host-2', ['backup', other, 'vm2', '-t', 'meanwhile']);
    expect(meanwhile.code, meanwhile.stderr).toBe(0);

    await new Promise((r) => setTimeout(r, Math.max(0, killedAt + LEASE_S * 1000 + 500 - Date.now())));
    const taken = await cli('host-1', ['backup', file, 'vm1', '-t', 'after']);
    expect(taken.code, taken.stderr).toBe(0);
    expect(taken.stderr).toMatch(/^backy2: took over the lock of image vm1 \(backup by process \d+ on host-dead\): its lease expired \d+ s ago/m);
    const versions = await list();
    // Tags come with the commit: the killed backup has none.
    expect(versions.map((v) => [v.tags[0] ?? null, v.host, v.status])).toEqual([
      [null, 'host-dead', 'incomplete'],
      ['meanwhile', 'host-2', 'valid'],
      ['after', 'host-1', 'valid'],
    ]);
    const expected = new Map([['after', await sha256File(file)], ['meanwhile', await sha256File(other)]]);
    expect(await expectRestorable(expected)).toBe(2);
    const rm = await cli('host-1', ['rm', '--force', versions[0]?.uid ?? '']);
    expect(rm.code, rm.stderr).toBe(0);
  });

  it('PostgreSQL restarted in the middle of backups: clear errors, nothing valid but broken, reruns succeed', async () => {
    const files = [1, 2, 3].map((h) => {
      const file = path.join(dir, `vm${h}.img`);
      writeImage(file, Array.from({ length: 48 }, () => randomBytes(B)));
      return file;
    });
    const expected = new Map<string, string>();
    for (const [i, f] of files.entries()) expected.set(`vm${i + 1}`, await sha256File(f));
    const jobs = files.map((f, i) => start(`host-${i + 1}`, ['backup', f, `vm${i + 1}`, '-t', `vm${i + 1}`], { BACKY2_FAULTS: JSON.stringify({ latencyMs: 150 }) }));
    // Crash the server once every backup has begun its version.
    const database = new URL(url).pathname.slice(1);
    for (let i = 0; i < 100; i++) {
      const [row] = await server.sql('SELECT count(*)::int AS n FROM backy2.versions', database);
      if (row?.n === 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    server.stop('immediate');
    await new Promise((r) => setTimeout(r, 1500));
    server.start();
    const results = await Promise.all(jobs.map((j) => j.done));
    for (const r of results) {
      if (r.code !== 0) {
        expect([10, 11], r.stderr).toContain(r.code);
        expectOneLineError(r);
      }
    }
    const failed = results.filter((r) => r.code !== 0).length;
    expect(await expectRestorable(expected)).toBe(results.length - failed);
    for (const [i, f] of files.entries()) {
      if (results[i]?.code === 0) continue;
      const again = await cli(`host-${i + 1}`, ['backup', f, `vm${i + 1}`, '-t', `vm${i + 1}`]);
      expect(again.code, again.stderr).toBe(0);
    }
    expect(await expectRestorable(expected)).toBe(3);
    // A backup cut off is never valid: it stays incomplete, or it dropped its version itself when
    // the database came back while it gave up (which run it is depends on timing).
    const versions = await list();
    expect(versions.filter((v) => v.status === 'incomplete').length).toBeLessThanOrEqual(failed);
    expect(versions.filter((v) => v.status === 'valid')).toHaveLength(3);
    console.log(`PostgreSQL restart: ${failed} of 3 backups failed and were rerun, ${3 - failed} finished through the restart; errors: ${[...new Set(results.map((r) => r.stderr.trim()).filter(Boolean))].join(' | ')}`);
  });
});
