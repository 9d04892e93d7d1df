import { closeSync, constants as fsc, openSync, writeSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { UsageError, errnoCode } from '../../engine/errors.js';
import { formatRawKey } from '../../engine/objects/key-files.js';
import { digestAlgorithmOf } from '../../engine/objects/store-settings.js';
import { defaultCompression, initStore } from '../../engine/operations/init-store.js';
import { loadConfig } from '../../engine/support/config.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { kdfFromEnvironment, newPassphrase, passphraseOf } from '../keys.js';

/** Parsed arguments of `backy2 init`. */
export interface InitCommandOptions {
  readonly path?: string | undefined;
  readonly encryption?: 'none' | 'aes-256-gcm' | undefined;
  readonly compression?: 'none' | 'zstd' | undefined;
  readonly compressionLevel?: number | undefined;
  readonly digest?: 'blake3' | 'sha256' | undefined;
  /** Also write the master key into this raw key file (created private), for unattended hosts. */
  readonly exportKey?: string | undefined;
}

function level(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 19) throw new InvalidArgumentError('must be a zstd level from 1 to 19');
  return n;
}

/** Wires `backy2 init` into the program. */
export function registerInit(program: Command, ctx: CommandContext): void {
  program
    .command('init')
    .description('create a store: the catalog and the block store with its settings (and keys)')
    .argument('[path]', 'store directory (default: --store, BACKY2_STORE, the config\'s store, else ~/.local/share/backy2)')
    .addOption(new Option('--encryption <cipher>', 'encrypt every object (blocks, maps, manifests)').choices(['aes-256-gcm', 'none']).default('none'))
    .addOption(new Option('--compression <codec>', 'compress objects, each kept only when it saves space (default: zstd for S3 block stores, none for file stores)').choices(['zstd', 'none']))
    .option('--compression-level <n>', 'zstd level, 1 (fast) to 19 (small)', level)
    .addOption(new Option('--digest <hash>', 'what names (and dedups) blocks, fixed for the store: blake3 (about 5x faster than sha256 on x64), or sha256 for a store backy2 versions before blake3 must read').choices(['blake3', 'sha256']).default('blake3'))
    .option('--export-key <file>', 'also write the master key to this raw key file (mode 0600), for unattended hosts')
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      helpAfter(
        [
          'backy2 init /srv/backy2',
          'backy2 --config /etc/backy2.yaml init      # the catalog and block store the config names (e.g. S3)',
          'backy2 init /srv/backy2 --encryption aes-256-gcm --compression zstd --password-file /root/backy2.pass',
          'backy2 init /srv/backy2 --digest sha256    # readable by backy2 versions before blake3',
        ],
        'Every other command refuses a path that holds no store, so a typo never creates an empty\n' +
          'store. The store directory, catalog and objects are private to their owner (0700/0600,\n' +
          'whatever the umask): they hold raw disk data. With encryption, a random master key is made\n' +
          'and kept in the store wrapped under the passphrase (--password-file, BACKY2_PASSWORD_FILE,\n' +
          'BACKY2_PASSWORD, or asked twice on a terminal); `backy2 key` manages passphrases.',
      ),
    )
    .action(async (path: string | undefined, opts: Omit<InitCommandOptions, 'path'>, command: Command) => {
      ctx.exitCode = await runInit({ path, ...opts }, globalsOf(command), ctx.io);
    });
}

/**
 * Creates a store.
 * @returns the exit status
 */
export async function runInit(options: InitCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  const config = await loadConfig({ configFile: globals.config, storePath: options.path ?? globals.store, env: io.env });
  const encryption = options.encryption ?? 'none';
  const compression = options.compression ?? defaultCompression(config.store.blockStore.type);
  if (options.compressionLevel !== undefined && compression !== 'zstd') throw new UsageError('--compression-level needs --compression zstd');
  if (options.exportKey !== undefined && encryption === 'none') throw new UsageError('--export-key needs --encryption aes-256-gcm');
  const passphrase = encryption === 'none' ? undefined : ((await passphraseOf(globals, io, undefined)) ?? (await newPassphrase(undefined, io, 'the new store')));
  const result = await initStore(config, {
    encryption,
    compression,
    ...(options.compressionLevel !== undefined ? { compressionLevel: options.compressionLevel } : {}),
    ...(options.digest !== undefined ? { digest: options.digest } : {}),
    passphrase,
    kdf: kdfFromEnvironment(io),
  });
  if (options.exportKey !== undefined && result.masterKey) writePrivateFile(options.exportKey, formatRawKey(result.settings.storeId, result.masterKey));
  const s = result.settings;
  if (globals.json) {
    printJson(io, { path: result.path, catalog: result.catalog, blockStore: result.blockStore, storeId: s.storeId, digest: s.digest, encryption: s.encryption, compression: s.compression });
  } else {
    const named = `blocks named by ${digestAlgorithmOf(s) === 'blake3' ? 'BLAKE3' : 'SHA-256'}`;
    const how = [s.encryption !== 'none' ? `encrypted (${s.encryption})` : '', s.compression !== 'none' ? `compressed (${s.compression} level ${s.compressionLevel ?? 1})` : '', named].filter(Boolean).join(', ');
    io.stderr(`Created store ${s.storeId} at ${result.path}, ${how} (catalog ${result.catalog}, blocks in ${result.blockStore})\n`);
  }
  return 0;
}

/** Writes a new file only its owner can read (a key), refusing to overwrite one. */
export function writePrivateFile(file: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  } catch (err) {
    throw new UsageError(`Cannot create key file "${file}": ${errnoCode(err) === 'EEXIST' ? 'it exists' : (errnoCode(err) ?? String(err))}`, { cause: err });
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}
