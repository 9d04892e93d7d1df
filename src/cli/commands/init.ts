import type { Command } from 'commander';
import { initStore } from '../../engine/operations/init-store.js';
import { loadConfig } from '../../engine/support/config.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';

/** Wires `backy2 init` into the program. */
export function registerInit(program: Command, ctx: CommandContext): void {
  program
    .command('init')
    .description('create a store: the catalog and the block store with its settings')
    .argument('[path]', 'store directory (default: --store, BACKY2_STORE, the config\'s store, else ~/.local/share/backy2)')
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 init /srv/backy2', 'backy2 --config /etc/backy2.yaml init      # the catalog and block store the config names (e.g. S3)'],
        'Every other command refuses a path that holds no store, so a typo never creates an empty\n' +
          'store. The store directory, catalog and objects are private to their owner (0700/0600,\n' +
          'whatever the umask): they hold raw disk data.',
      ),
    )
    .action(async (path: string | undefined, _opts: unknown, command: Command) => {
      ctx.exitCode = await runInit({ path }, globalsOf(command), ctx.io);
    });
}

/**
 * Creates a store.
 * @returns the exit status
 */
export async function runInit(options: { path?: string | undefined }, globals: Globals, io: CliIo): Promise<number> {
  const config = await loadConfig({ configFile: globals.config, storePath: options.path ?? globals.store, env: io.env });
  const result = await initStore(config);
  if (globals.json) printJson(io, { path: result.path, catalog: result.catalog, blockStore: result.blockStore, storeId: result.settings.storeId });
  else io.stderr(`Created store ${result.settings.storeId} at ${result.path} (catalog ${result.catalog}, blocks in ${result.blockStore})\n`);
  return 0;
}
