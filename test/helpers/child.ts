import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** Starts a TypeScript helper script under tsx and resolves once it prints `ready` (a line). */
export function startHelper(script: string, args: readonly string[], ready: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, script), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(ready)) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`${script} exited with ${code} before "${ready}"`)));
  });
}

/** Kills a child with SIGKILL and waits until it is gone. */
export function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}
