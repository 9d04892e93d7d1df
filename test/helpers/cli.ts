import { spawn } from 'node:child_process';
import path from 'node:path';
import { main } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/io.js';

/** Result of a CLI run. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The repository's bin/backy2 (runs the built dist/). */
export const BIN = path.resolve(import.meta.dirname, '../../bin/backy2');

/** Runs the CLI in-process with captured output and an environment without BACKY2_* surprises. */
export async function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    stderrIsTTY: false,
    env,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

/** Runs bin/backy2 as a child process. */
export function spawnCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

/** Creates the store that `env` names (`backy2 init`, in-process), failing the test when it cannot. */
export async function initStoreFor(env: NodeJS.ProcessEnv, args: readonly string[] = []): Promise<void> {
  const r = await runCli([...args, 'init'], env);
  if (r.code !== 0) throw new Error(`backy2 init failed (${r.code}): ${r.stderr}`);
}
