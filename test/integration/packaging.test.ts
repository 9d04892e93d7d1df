import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeImage } from '../helpers/image.js';
import { makeTempDir } from '../helpers/temp.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const UNITS = ['backy2-mount.service', 'backy2-nbd.service', 'backy2-forget.service', 'backy2-forget.timer', 'backy2-scrub.service', 'backy2-scrub.timer', 'backy2-check.service', 'backy2-check.timer'];

/** Runs a command of the installed package (PATH has /usr/bin first); returns stdout, throws with stderr. */
function installed(args: readonly string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync('backy2', args, { encoding: 'utf8', env: { PATH: `/usr/bin:/bin:/usr/sbin:/sbin`, HOME: process.env.HOME, ...env } });
  if (r.status !== 0) throw new Error(`backy2 ${args.join(' ')} exited with ${r.status}: ${r.stderr}`);
  return r.stdout;
}

describe('the Debian package (scripts/build-deb)', () => {
  it('builds, installs with dpkg -i, backs up and restores as installed, has its man page and units, and is removed by dpkg -r', (ctx) => {
    if (!has('dpkg-deb')) ctx.skip('dpkg-deb is not installed (Debian package "dpkg"): the package cannot be built on this machine');
    if (process.getuid?.() !== 0) ctx.skip('installing a package needs root');
    if (spawnSync('dpkg-query', ['-W', '-f', '${Status}', 'backy2'], { encoding: 'utf8' }).stdout.includes('install ok installed')) {
      ctx.skip('a backy2 package is installed on this machine already: the test does not replace it');
    }
    const out = makeTempDir('backy2-deb-');
    const deb = execFileSync(path.join(ROOT, 'scripts/build-deb'), [out], { encoding: 'utf8', cwd: ROOT }).trim().split('\n').pop() ?? '';
    const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    expect(path.basename(deb)).toMatch(new RegExp(`^backy2_${version.replace(/\./g, '\\.')}_\\w+\\.deb$`));
    const control = execFileSync('dpkg-deb', ['-f', deb], { encoding: 'utf8' });
    expect(control).toMatch(/^Depends: nodejs \(>= 20\.15\), libfuse2 \| libfuse2t64$/m);
    const contents = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 << 20 });
    for (const file of ['./usr/bin/backy2', './etc/backy2.yaml', './usr/share/man/man1/backy2.1.gz', './usr/share/bash-completion/completions/backy2', './usr/lib/backy2/node_modules/better-sqlite3/build/Release/better_sqlite3.node']) {
      expect(contents, file).toContain(file);
    }
    expect(contents).not.toContain('node_modules/vitest/');
    expect(contents).not.toContain('node_modules/typescript/');
    expect(execFileSync('dpkg-deb', ['--ctrl-tarfile', deb]).length).toBeGreaterThan(0);

    const hadConfig = existsSync('/etc/backy2.yaml');
    const env = { DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('dpkg', ['-i', '--force-confold', deb], { env: { ...process.env, ...env }, stdio: 'pipe' });
    try {
      // The program as installed.
      expect(installed(['--version'], {}).trim()).toBe(version);
      const dir = makeTempDir('backy2-deb-run-');
      const store = { BACKY2_STORE: path.join(dir, 'store') };
      installed(['init'], store);
      const image = path.join(dir, 'disk.img');
      makeImage(image, [{ kind: 'random', length: 6 << 20 }, { kind: 'zero', length: 2 << 20 }]);
      const uid = installed(['backup', image, 'vm1'], store).trim();
      const restored = path.join(dir, 'restored.img');
      installed(['restore', uid, restored, '--sparse'], store);
      expect(readFileSync(restored).equals(readFileSync(image))).toBe(true);
      installed(['forget', '--keep-last', '1', '--dry-run'], store);
      expect(installed(['check'], store)).toMatch(/^BACKY2 OK: /);
      // The example config changes nothing while it is all comments.
      if (!hadConfig) expect(readFileSync('/etc/backy2.yaml', 'utf8').split('\n').every((l) => l === '' || l.startsWith('#'))).toBe(true);
      // The manual page and the completion.
      expect(execFileSync('man', ['-w', 'backy2'], { encoding: 'utf8' }).trim()).toBe('/usr/share/man/man1/backy2.1.gz');
      expect(spawnSync('bash', ['-n', '/usr/share/bash-completion/completions/backy2']).status).toBe(0);
      // The units.
      for (const unit of UNITS) expect(existsSync(`/lib/systemd/system/${unit}`), unit).toBe(true);
      if (has('systemd-analyze')) {
        const verify = spawnSync('systemd-analyze', ['verify', ...UNITS.map((u) => `/lib/systemd/system/${u}`)], { encoding: 'utf8' });
        const complaints = `${verify.stdout}${verify.stderr}`.split('\n').filter((l) => /backy2/.test(l));
        expect(complaints, `${verify.stdout}${verify.stderr}`).toEqual([]);
        expect(verify.status, `${verify.stdout}${verify.stderr}`).toBe(0);
      }
      for (const timer of ['backy2-forget.timer', 'backy2-scrub.timer', 'backy2-check.timer']) {
        const text = readFileSync(`/lib/systemd/system/${timer}`, 'utf8');
        expect(text, timer).toContain('Persistent=true');
        expect(text, timer).toMatch(/RandomizedDelaySec=/);
      }
      for (const service of ['backy2-forget.service', 'backy2-scrub.service', 'backy2-check.service']) {
        expect(readFileSync(`/lib/systemd/system/${service}`, 'utf8'), service).toMatch(/Type=oneshot[\s\S]*IOSchedulingClass=idle/);
      }
    } finally {
      execFileSync('dpkg', ['-r', 'backy2'], { env: { ...process.env, ...env }, stdio: 'pipe' });
      // -r keeps conffiles; leave the machine as it was.
      if (!hadConfig) execFileSync('dpkg', ['--purge', 'backy2'], { env: { ...process.env, ...env }, stdio: 'pipe' });
    }
    expect(existsSync('/usr/bin/backy2')).toBe(false);
    expect(existsSync('/usr/lib/backy2')).toBe(false);
    if (!hadConfig) expect(existsSync('/etc/backy2.yaml')).toBe(false);
  });
});
