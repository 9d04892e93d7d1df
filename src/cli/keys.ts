import { readFile } from 'node:fs/promises';
import { KeyError, UsageError, errnoCode } from '../engine/errors.js';
import { readRawKeyFile, type KeySource } from '../engine/objects/key-files.js';
import type { KeyProvider } from '../engine/store.js';
import type { CliIo, Globals } from './io.js';

/**
 * Where the key of an encrypted store comes from, in this order: `--key-file` (a raw key file),
 * `--password-file`, `$BACKY2_PASSWORD_FILE`, `$BACKY2_PASSWORD`, else a prompt on the terminal.
 * Asked only when a store turns out to be encrypted; `ask: false` (commands that need no key)
 * takes a key that was given, to check it, but never prompts for one.
 */
export function keyProvider(globals: Globals, io: CliIo, options: { ask?: boolean } = {}): KeyProvider {
  return async (storeId) => {
    if (globals.keyFile !== undefined) return readRawKeyFile(globals.keyFile, storeId);
    const passphrase = await passphraseOf(globals, io, options.ask === false ? undefined : `Passphrase of store ${storeId.slice(0, 8)}…: `);
    return passphrase === undefined ? undefined : ({ kind: 'passphrase', passphrase } satisfies KeySource);
  };
}

/**
 * A passphrase from the usual places (see keyProvider), or undefined when there is none and no
 * terminal to ask on.
 */
export async function passphraseOf(globals: Pick<Globals, 'passwordFile'>, io: CliIo, prompt: string | undefined): Promise<string | undefined> {
  const file = globals.passwordFile ?? (io.env.BACKY2_PASSWORD_FILE || undefined);
  if (file !== undefined) return readPassphraseFile(file);
  if (io.env.BACKY2_PASSWORD) return io.env.BACKY2_PASSWORD;
  return prompt === undefined ? undefined : io.readSecret?.(prompt);
}

/**
 * A new passphrase: from a file when given, else asked twice on the terminal.
 * @throws {UsageError} when there is neither, or the two answers differ
 */
export async function newPassphrase(file: string | undefined, io: CliIo, what: string): Promise<string> {
  if (file !== undefined) return readPassphraseFile(file);
  const first = await io.readSecret?.(`New passphrase for ${what}: `);
  if (first === undefined) throw new UsageError(`A new passphrase for ${what} is needed`, { hint: 'give it in a file (--new-password-file FILE) or run on a terminal' });
  if ((await io.readSecret?.('Again: ')) !== first) throw new UsageError('The two passphrases differ');
  if (first.length === 0) throw new UsageError('An empty passphrase protects nothing');
  return first;
}

/** The first line of a file, without its line break (how passphrase files are written). */
async function readPassphraseFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new KeyError(`Cannot read passphrase file "${file}": ${errnoCode(err) === 'ENOENT' ? 'no such file' : (errnoCode(err) ?? String(err))}`, { cause: err });
  }
  const line = text.split(/\r?\n/)[0] ?? '';
  if (line.length === 0) throw new KeyError(`Passphrase file "${file}" is empty`);
  return line;
}

/**
 * scrypt cost of new key files. `BACKY2_KDF_N` (a power of two, at least 1024) lowers it for the
 * test suite, as restic weakens its KDF in tests; never set it for real stores.
 */
export function kdfFromEnvironment(io: CliIo): { N: number; r: number; p: number } | undefined {
  const n = io.env.BACKY2_KDF_N ? Number(io.env.BACKY2_KDF_N) : undefined;
  if (n === undefined) return undefined;
  if (!Number.isInteger(Math.log2(n)) || n < 1024) throw new UsageError(`Bad BACKY2_KDF_N ${io.env.BACKY2_KDF_N}: a power of two of at least 1024`);
  return { N: n, r: 8, p: 1 };
}
