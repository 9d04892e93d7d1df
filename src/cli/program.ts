import { Command, Option } from 'commander';
import { PACKAGE_VERSION } from '../engine/support/package-version.js';
import { globalsOf, type CommandContext } from './command-context.js';
import { registerBackup } from './commands/backup.js';
import { registerCheck } from './commands/check.js';
import { registerCleanup } from './commands/cleanup.js';
import { registerDb } from './commands/db.js';
import { registerDue } from './commands/due.js';
import { registerExpire } from './commands/expire.js';
import { registerForget } from './commands/forget.js';
import { registerInit } from './commands/init.js';
import { registerKey } from './commands/key.js';
import { registerLs } from './commands/ls.js';
import { registerMetrics } from './commands/metrics.js';
import { registerMount } from './commands/mount.js';
import { registerNbd } from './commands/nbd.js';
import { registerProtect } from './commands/protect.js';
import { registerRestore } from './commands/restore.js';
import { registerRm } from './commands/rm.js';
import { registerScrub } from './commands/scrub.js';
import { registerStats } from './commands/stats.js';
import { registerTag } from './commands/tag.js';
import { EXIT_STATUS_HELP } from './help.js';

/** Builds the `backy2` command line with every command registered. */
export function buildProgram(ctx: CommandContext): Command {
  const program = new Command('backy2')
    .description('Deduplicating block-based backup and restore of disk images, block devices and Ceph RBD images')
    .version(PACKAGE_VERSION, '-V, --version', 'print the version')
    .addOption(new Option('--store <path>', 'store directory (catalog and blocks); overrides config and BACKY2_STORE'))
    .addOption(new Option('-c, --config <file>', 'YAML config file (default: BACKY2_CONFIG, else /etc/backy2.yaml if present)'))
    .option('--password-file <file>', 'passphrase of an encrypted store (else BACKY2_PASSWORD_FILE, BACKY2_PASSWORD, or asked on a terminal)')
    .option('--key-file <file>', 'raw key file of an encrypted store (private to its owner), for unattended hosts')
    .option('--debug', 'show stack traces of internal errors')
    .addOption(
      new Option('--metrics-file <path>', 'after the command, write the store\'s metrics there for Prometheus (node_exporter textfile); config: metrics.file').env(
        'BACKY2_METRICS_FILE',
      ),
    )
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.io.stdout(s),
      writeErr: (s) => ctx.io.stderr(s),
      outputError: () => undefined,
    })
    .addHelpText(
      'after',
      `
Store: --store PATH, else BACKY2_STORE, else the config file's "store", else ~/.local/share/backy2.
A store is a directory with catalog.sqlite and the blocks; \`backy2 init\` creates it.

Examples:
  backy2 init /srv/backy2 && export BACKY2_STORE=/srv/backy2
  backy2 backup /dev/vg0/vm1 vm1
  backy2 ls vm1
  backy2 restore v1kx3f9qm7wz /tmp/vm1.img --sparse
${EXIT_STATUS_HELP}
`,
    );
  registerInit(program, ctx);
  registerBackup(program, ctx);
  registerRestore(program, ctx);
  registerLs(program, ctx);
  registerRm(program, ctx);
  registerProtect(program, ctx);
  registerTag(program, ctx);
  registerExpire(program, ctx);
  registerStats(program, ctx);
  registerScrub(program, ctx);
  registerForget(program, ctx);
  registerCleanup(program, ctx);
  registerDue(program, ctx);
  registerCheck(program, ctx);
  registerMetrics(program, ctx);
  registerDb(program, ctx);
  registerMount(program, ctx);
  registerNbd(program, ctx);
  registerKey(program, ctx);
  program.hook('preAction', (_program, action) => {
    ctx.ran = globalsOf(action);
  });
  const configure = (command: Command): void => {
    command.exitOverride();
    command.configureOutput({ writeOut: (s) => ctx.io.stdout(s), writeErr: (s) => ctx.io.stderr(s), outputError: () => undefined });
    command.commands.forEach(configure);
  };
  program.commands.forEach(configure);
  return program;
}
