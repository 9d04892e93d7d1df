import { InvalidArgumentError, type Command } from 'commander';
import { changeTags } from '../../engine/operations/versions.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';

/** Wires `backy2 tag` into the program. */
export function registerTag(program: Command, ctx: CommandContext): void {
  program
    .command('tag')
    .description('add or remove tags of a version')
    .argument('<version>', 'version: uid, unique uid prefix, IMAGE or IMAGE@latest (its newest valid backup)')
    .argument('<action>', 'add or rm', (value: string) => {
      if (value !== 'add' && value !== 'rm') throw new InvalidArgumentError('must be "add" or "rm"');
      return value;
    })
    .argument('<tag...>', 'tags')
    .option('--json', 'print the version\'s tags as JSON')
    .addHelpText('after', helpAfter(['backy2 tag v1kx3f9qm7wz add before-upgrade keep', 'backy2 tag v1kx3f9qm7wz rm keep']))
    .action(async (uid: string, action: 'add' | 'rm', tags: string[], _opts: unknown, command: Command) => {
      ctx.exitCode = await runTag({ uid, action, tags }, globalsOf(command), ctx.io);
    });
}

/**
 * Changes tags and prints the resulting ones.
 * @returns the exit status
 */
export async function runTag(options: { uid: string; action: 'add' | 'rm'; tags: readonly string[] }, globals: Globals, io: CliIo): Promise<number> {
  return withCatalog(globals, io, async (store) => {
    const change = options.action === 'add' ? { add: options.tags } : { remove: options.tags };
    const version = await changeTags(store, options.uid, change);
    if (globals.json) printJson(io, { uid: version.uid, tags: version.tags });
    else io.stdout(`${version.tags.join(',')}\n`);
    return 0;
  });
}
