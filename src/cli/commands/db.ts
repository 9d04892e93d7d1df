import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { exportVersions, importVersions, rebuildCatalogAt } from '../../engine/operations/catalog-rebuild.js';
import { loadConfig } from '../../engine/support/config.js';
import { UsageError } from '../../engine/errors.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { keyProvider } from '../keys.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';

/** Wires `backy2 db rebuild|export|import` into the program. */
export function registerDb(program: Command, ctx: CommandContext): void {
  const db = program.command('db').description('catalog maintenance: rebuild it from the block store, move version metadata');
  db.command('rebuild')
    .description('recreate the catalog from the block store alone (manifests, map segments, blocks)')
    .option('--force', 'move a catalog that still has versions aside (kept as <file>.old-<time>) and rebuild')
    .option('--json', 'print the figures as JSON')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 db rebuild', 'backy2 db rebuild --force'],
        'Versions whose blocks are not all in the block store come back as invalid. Tags,\n' +
          'protection and what scrubs found come from the manifests (rewritten on every change)\n' +
          'and the invalid/ markers. Refused while another command uses the catalog.',
      ),
    )
    .action(async (opts: { force?: boolean }, command: Command) => {
      ctx.exitCode = await runDbRebuild({ force: opts.force }, globalsOf(command), ctx.io);
    });
  db.command('export')
    .description('print version metadata and block maps (not blocks) as JSON')
    .argument('<version...>', 'versions (uid, unique uid prefix, IMAGE or IMAGE@latest (its newest valid backup))')
    .addHelpText('after', helpAfter(['backy2 db export v1kx3f9qm7wz > vm1.json']))
    .action(async (uids: string[], _opts: unknown, command: Command) => {
      ctx.exitCode = await runDbExport({ uids }, globalsOf(command), ctx.io);
    });
  db.command('import')
    .description('add versions exported by `db export`; their blocks must be in this block store')
    .argument('[file]', 'JSON file, or - for standard input', '-')
    .addHelpText('after', helpAfter(['backy2 --store /other db import vm1.json', 'backy2 db export v1kx3f9qm7wz | backy2 --config other.yaml db import']))
    .action(async (file: string, _opts: unknown, command: Command) => {
      ctx.exitCode = await runDbImport({ file }, globalsOf(command), ctx.io);
    });
}

/** Rebuilds the catalog. @returns the exit status */
export async function runDbRebuild(options: { force?: boolean | undefined }, globals: Globals, io: CliIo): Promise<number> {
  const config = await loadConfig({ configFile: globals.config, storePath: globals.store, env: io.env });
  const result = await rebuildCatalogAt(config, { force: options.force, keys: keyProvider(globals, io) });
  if (globals.json) printJson(io, result);
  else {
    io.stderr(
      `Rebuilt catalog "${config.store.catalogPath}": ${result.versions} versions (${result.incompleteVersions} with missing blocks, marked invalid), ` +
        `${result.segments} map segments, ${result.blocks} blocks` +
        `${result.badManifests.length ? `; unreadable manifests: ${result.badManifests.join(', ')}` : ''}` +
        `${result.movedTo ? `; the old catalog is at ${result.movedTo}` : ''}\n`,
    );
  }
  return result.incompleteVersions > 0 || result.badManifests.length > 0 ? 3 : 0;
}

/** Prints versions' metadata as JSON. @returns the exit status */
export async function runDbExport(options: { uids: readonly string[] }, globals: Globals, io: CliIo): Promise<number> {
  return withStore(globals, io, async (store) => {
    printJson(io, await exportVersions(store, options.uids));
    return 0;
  });
}

/** Imports versions' metadata. @returns the exit status */
export async function runDbImport(options: { file: string }, globals: Globals, io: CliIo): Promise<number> {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(options.file === '-' ? 0 : options.file, 'utf8'));
  } catch (err) {
    throw new UsageError(`Cannot read version metadata from "${options.file}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return withStore(globals, io, async (store) => {
    const results = await importVersions(store, data);
    for (const r of results) io.stderr(`Imported ${r.uid}${r.complete ? '' : ' as invalid: some of its blocks are not in this block store'}\n`);
    return results.every((r) => r.complete) ? 0 : 3;
  });
}
