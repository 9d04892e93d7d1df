import type { Command } from 'commander';
import { collectMetrics } from '../../engine/operations/metrics.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withCatalog } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { renderExposition } from '../ui/exposition.js';

/** Wires `backy2 metrics` into the program. */
export function registerMetrics(program: Command, ctx: CommandContext): void {
  program
    .command('metrics')
    .description('print the store\'s metrics in the Prometheus text format (what --metrics-file writes)')
    .option('--json', 'print the metric families as JSON instead')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 metrics', 'backy2 --metrics-file /var/lib/prometheus/node-exporter/backy2.prom backup /dev/vg0/vm1 vm1'],
        'Per image: backy2_last_backup_success_timestamp_seconds and the duration, size, read, written,\n' +
          'deduplicated, sparse and skipped bytes of its newest valid backup; backy2_versions by status;\n' +
          'backy2_image_check_level (as backy2 check). Store-wide: stored, logical and invalid blocks and\n' +
          'bytes; the last cleanup, scrub and forget and their totals (counters). With --metrics-file\n' +
          'PATH (or metrics.file in the config, or BACKY2_METRICS_FILE) every command rewrites that file\n' +
          'atomically when it ends, for node_exporter\'s textfile collector.',
      ),
    )
    .action(async (_opts: unknown, command: Command) => {
      ctx.exitCode = await runMetrics(globalsOf(command), ctx.io);
    });
}

/**
 * Prints the metrics of the whole store.
 * @returns the exit status
 */
export async function runMetrics(globals: Globals, io: CliIo): Promise<number> {
  return withCatalog(globals, io, async (store) => {
    const families = await collectMetrics(store);
    if (globals.json) printJson(io, families);
    else io.stdout(renderExposition(families));
    return 0;
  });
}
