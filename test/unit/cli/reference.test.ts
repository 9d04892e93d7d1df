import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bashCompletion, manPage } from '../../../src/cli/reference.js';
import { runCli } from '../../helpers/cli.js';
import { makeTempDir } from '../../helpers/temp.js';

const COMMANDS = ['init', 'backup', 'restore', 'ls', 'rm', 'protect', 'unprotect', 'tag', 'expire', 'stats', 'scrub', 'forget', 'cleanup', 'due', 'check', 'metrics', 'db', 'mount', 'umount', 'nbd'];

const has = (tool: string) => spawnSync('which', [tool]).status === 0;

describe('manPage()', () => {
  it('holds the --help of the program and of every command', async () => {
    const page = manPage('2026-01-01');
    expect(page).toMatch(/^\.TH BACKY2 1 "2026-01-01" "backy2 \d+\.\d+\.\d+" "User Commands"\n/);
    for (const command of COMMANDS) {
      expect(page, command).toContain(`.SS backy2 ${command}\n`);
      const help = (await runCli([command, '--help'])).stdout;
      // Each line of the help is in the page, as roff text.
      const first = help.split('\n').find((l) => l.startsWith('Usage:')) ?? '';
      expect(page, command).toContain(first.replace(/\\/g, '\\e').replace(/-/g, '\\-'));
    }
    expect(page).toContain('.SS backy2 db rebuild\n');
  });

  it.runIf(has('groff'))('renders without a groff warning', () => {
    const file = path.join(makeTempDir(), 'backy2.1');
    writeFileSync(file, manPage());
    const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', file], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('bashCompletion()', () => {
  function complete(script: string, words: string[]): string[] {
    const out = execFileSync('bash', ['-c', `source "$1"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _backy2; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', script], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean);
  }

  it('completes commands, their options and subcommands', () => {
    const file = path.join(makeTempDir(), 'backy2');
    writeFileSync(file, bashCompletion());
    execFileSync('bash', ['-n', file]);
    expect(complete(file, ['backy2', 'for'])).toEqual(['forget']);
    expect(complete(file, ['backy2', 'forget', '--keep-w'])).toEqual(['--keep-weekly', '--keep-within']);
    expect(complete(file, ['backy2', '--store', '/tmp', 'che'])).toEqual(['check']);
    expect(complete(file, ['backy2', 'db', 're'])).toEqual(['rebuild']);
    expect(complete(file, ['backy2', 'db', 'rebuild', '--f'])).toEqual(['--force']);
    expect(complete(file, ['backy2', '--metr'])).toEqual(['--metrics-file']);
  });
});
