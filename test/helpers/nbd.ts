import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './cli.js';
import { deferCleanup } from './cleanup.js';
import { eventually } from './mount.js';

/** A running `backy2 nbd` started by a test. */
export interface NbdServer {
  readonly child: ChildProcess;
  readonly port: number;
  /** What it logged on stderr so far. */
  log(): string;
  /** What it printed on stdout so far (--json). */
  stdout(): string;
  /** SIGINT and wait for it to exit. */
  stop(): Promise<void>;
}

/** Starts `backy2 nbd` on a free port of 127.0.0.1 and waits until it listens. */
export async function startNbd(env: NodeJS.ProcessEnv, extra: readonly string[] = []): Promise<NbdServer> {
  const child = spawn(BIN, ['nbd', '-p', '0', ...extra], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  let stdout = '';
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  deferCleanup(async () => {
    if (child.exitCode === null) {
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
  const listening = / on (?:\[[^\]]+\]|[^\s:]+):(\d+)/;
  await eventually(() => listening.test(log) || child.exitCode !== null, 15_000, 'the NBD server');
  const port = Number(listening.exec(log)?.[1]);
  if (!port) throw new Error(`backy2 nbd failed: ${log}`);
  return {
    child,
    port,
    log: () => log,
    stdout: () => stdout,
    stop: async () => {
      child.kill('SIGINT');
      await exited;
    },
  };
}

/** The plaintext NBD URI of an export of a server on 127.0.0.1. */
export const nbdUri = (port: number, uid: string) => `nbd://127.0.0.1:${port}/${uid}`;
