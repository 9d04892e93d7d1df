import type { Command } from 'commander';
import { formatRawKey } from '../../engine/objects/key-files.js';
import { addKey, changePassphrase, listKeys, removeKey } from '../../engine/operations/keys.js';
import { UsageError } from '../../engine/errors.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { kdfFromEnvironment, newPassphrase } from '../keys.js';
import { formatDate, renderTable } from '../ui/table.js';
import { writePrivateFile } from './init.js';

type KeyAction = 'list' | 'add' | 'remove' | 'passwd' | 'export';

/** Wires `backy2 key` into the program. */
export function registerKey(program: Command, ctx: CommandContext): void {
  const key = program.command('key').description('passphrases of an encrypted store: list, add, remove, passwd, export');
  const run = (action: KeyAction, arg?: string) => async (opts: { newPasswordFile?: string; json?: boolean }, command: Command) => {
    ctx.exitCode = await runKey({ action, arg, newPasswordFile: opts.newPasswordFile }, globalsOf(command), ctx.io);
  };
  key
    .command('list')
    .description('list the key files (no passphrase needed)')
    .option('--json', 'print a JSON array')
    .addHelpText('after', helpAfter(['backy2 key list']))
    .action(run('list'));
  key
    .command('add')
    .description('add a key file for another passphrase; rewrites no data')
    .option('--new-password-file <file>', 'the new passphrase (else asked twice on a terminal)')
    .option('--json', 'print the new key file as JSON')
    .addHelpText('after', helpAfter(['backy2 --password-file old.pass key add --new-password-file second.pass']))
    .action(run('add'));
  key
    .command('remove')
    .argument('<id>', 'key file id (or a unique prefix), see backy2 key list')
    .description('remove a key file; the last one is refused')
    .option('--json', 'print the removed key file as JSON')
    .addHelpText('after', helpAfter(['backy2 --password-file admin.pass key remove 3f9a']))
    .action(async (id: string, _opts: unknown, command: Command) => {
      ctx.exitCode = await runKey({ action: 'remove', arg: id }, globalsOf(command), ctx.io);
    });
  key
    .command('passwd')
    .description('change the passphrase that opened the store (a new key file, then the old one goes)')
    .option('--new-password-file <file>', 'the new passphrase (else asked twice on a terminal)')
    .option('--json', 'print the new key file as JSON')
    .addHelpText('after', helpAfter(['backy2 --password-file old.pass key passwd --new-password-file new.pass']))
    .action(run('passwd'));
  key
    .command('export')
    .argument('<file>', 'raw key file to create (mode 0600)')
    .description('write the master key to a raw key file, for unattended hosts (--key-file)')
    .addHelpText('after', helpAfter(['backy2 --password-file admin.pass key export /root/backy2.key && backy2 --key-file /root/backy2.key ls']))
    .action(async (file: string, _opts: unknown, command: Command) => {
      ctx.exitCode = await runKey({ action: 'export', arg: file }, globalsOf(command), ctx.io);
    });
}

/**
 * Runs a key action.
 * @returns the exit status
 */
export async function runKey(options: { action: KeyAction; arg?: string | undefined; newPasswordFile?: string | undefined }, globals: Globals, io: CliIo): Promise<number> {
  const withoutKey = options.action === 'list' || options.action === 'remove';
  return withStore(
    globals,
    io,
    async (store) => {
      const kdf = kdfFromEnvironment(io);
      switch (options.action) {
        case 'list': {
          const keys = await listKeys(store);
          if (globals.json) printJson(io, keys);
          else io.stdout(renderTable(['ID', 'CREATED', 'HOST', 'KDF'], keys.map((k) => [k.id, formatDate(k.createdAt), k.host, k.kdf])));
          return 0;
        }
        case 'add':
        case 'passwd': {
          const passphrase = await newPassphrase(options.newPasswordFile, io, 'the key file');
          const made = options.action === 'add' ? await addKey(store, passphrase, { kdf }) : await changePassphrase(store, passphrase, { kdf });
          if (globals.json) printJson(io, made);
          else io.stderr(`${options.action === 'add' ? 'Added' : 'Changed the passphrase: new'} key file ${made.id}\n`);
          return 0;
        }
        case 'remove': {
          const removed = await removeKey(store, options.arg ?? '');
          if (globals.json) printJson(io, removed);
          else io.stderr(`Removed key file ${removed.id}\n`);
          return 0;
        }
        case 'export': {
          if (!store.masterKey) throw new UsageError(`Store ${store.blocks.properties.location} is not encrypted: it has no key to export`);
          writePrivateFile(options.arg ?? '', formatRawKey(store.settings.storeId, store.masterKey));
          io.stderr(`Wrote the master key of store ${store.settings.storeId} to ${options.arg ?? ''}: keep it as safe as the data\n`);
          return 0;
        }
      }
    },
    { withoutKey },
  );
}
