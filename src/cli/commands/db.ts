import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { exportVersions, importVersions, rebuildCatalogAt } from '../../engine/operations/catalog-rebuild.js';
import { copyCatalog } from '../../engine/operations/catalog-copy.js';
import { catalogName, migrateCatalog } from '../../engine/catalog/open-catalog.js';
import { catalogLocation, loadConfig } from '../../engine/support/config.js';
import { UsageError } from '../../engine/errors.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { catalogLog, withStore } from '../context.js';
import { keyProvider } from '../keys.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';

/** Wires `backy2 db rebuild|export|import|migrate|copy` into the program. */
export function registerDb(program: Command, ctx: CommandContext): void {
  const db = program.command('db').description('catalog maintenance: rebuild it from the block store, move version metadata, migrate or copy it');
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
  db.command('migrate')
    .description('bring the catalog\'s schema up to this backy2 (a shared PostgreSQL catalog is never migrated implicitly)')
    .option('--json', 'print the schema versions as JSON')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 db migrate'],
        'Run it once every backup host runs this backy2 or newer: an older backy2 refuses a\n' +
          'newer schema, and this one refuses an older PostgreSQL catalog until it is migrated.\n' +
          'A SQLite catalog migrates when it is opened.',
      ),
    )
    .action(async (_opts: unknown, command: Command) => {
      ctx.exitCode = await runDbMigrate(globalsOf(command), ctx.io);
    });
  db.command('copy')
    .description('copy the catalog into a new one (a SQLite catalog into PostgreSQL), which becomes the store\'s catalog')
    .requiredOption('--to <catalog>', 'postgresql://user@host[:port]/database, or a SQLite file')
    .option('--password-file <file>', 'file with the database password (else the URL, PGPASSWORD or ~/.pgpass)')
    .option('--json', 'print the figures as JSON')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 db copy --to postgresql://backy2@db.example/backy2 --password-file /etc/backy2/pg-password'],
        'Refused while a backy2 command uses the store. Afterwards the block store belongs to\n' +
          'the new catalog and the old one is refused: set `catalog:` in the config of every\n' +
          'backup host to the new one.',
      ),
    )
    .action(async (opts: { to: string; passwordFile?: string }, command: Command) => {
      ctx.exitCode = await runDbCopy({ to: opts.to, passwordFile: opts.passwordFile }, globalsOf(command), ctx.io);
    });
}

/** Rebuilds the catalog. @returns the exit status */
export async function runDbRebuild(options: { force?: boolean | undefined }, globals: Globals, io: CliIo): Promise<number> {
  const config = await loadConfig({ configFile: globals.config, storePath: globals.store, env: io.env });
  const result = await rebuildCatalogAt(config, { force: options.force, keys: keyProvider(globals, io) });
  if (globals.json) printJson(io, result);
  else {
    io.stderr(
      `Rebuilt catalog ${catalogName(config.store.catalog)}: ${result.versions} versions (${result.incompleteVersions} with missing blocks, marked invalid), ` +
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

/** Applies missing schema migrations. @returns the exit status */
export async function runDbMigrate(globals: Globals, io: CliIo): Promise<number> {
  const config = await loadConfig({ configFile: globals.config, storePath: globals.store, env: io.env });
  const result = await migrateCatalog(config.store.catalog, { host: config.host, log: catalogLog(io) });
  const name = catalogName(config.store.catalog);
  if (globals.json) printJson(io, { catalog: name, ...result });
  else if (result.from === result.to) io.stderr(`Catalog ${name} is up to date: schema version ${result.to}\n`);
  else io.stderr(`Migrated catalog ${name} from schema version ${result.from} to ${result.to}\n`);
  return 0;
}

/** Copies the catalog into a new one. @returns the exit status */
export async function runDbCopy(options: { to: string; passwordFile?: string | undefined }, globals: Globals, io: CliIo): Promise<number> {
  const config = await loadConfig({ configFile: globals.config, storePath: globals.store, env: io.env });
  const to = catalogLocation(options.to, options.passwordFile);
  const result = await copyCatalog(config, to, { log: catalogLog(io) });
  if (globals.json) printJson(io, result);
  else {
    io.stderr(
      `Copied catalog ${result.from} to ${result.to}: ${result.versions} versions, ${result.blocks} blocks, ${result.rows.segments} map segments; ` +
        `the store now belongs to ${result.to} (set \`catalog: ${result.to}\` in the config of every backup host)\n`,
    );
  }
  return 0;
}
