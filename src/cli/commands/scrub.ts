import { InvalidArgumentError, type Command } from 'commander';
import { ExitCode } from '../../engine/errors.js';
import { scrub, type ScrubFinding, type ScrubOptions, type ScrubResult } from '../../engine/operations/scrub.js';
import { formatBytes } from '../../engine/support/units.js';
import { globalsOf, type CommandContext } from '../command-context.js';
import { withStore } from '../context.js';
import { helpAfter } from '../help.js';
import { printJson, type CliIo, type Globals } from '../io.js';
import { progressView } from '../ui/progress.js';

/** Parsed arguments of `backy2 scrub`: the engine's options, as typed. */
export type ScrubCommandOptions = Omit<ScrubOptions, 'progress' | 'signal'> & { readonly uids: readonly string[] };

const MAX_JSON_FINDINGS = 1000;

function percentage(value: string): number {
  const n = Number(value);
  if (!(n > 0 && n <= 100)) throw new InvalidArgumentError('must be a number above 0 and at most 100');
  return n;
}

/** Wires `backy2 scrub` into the program. */
export function registerScrub(program: Command, ctx: CommandContext): void {
  program
    .command('scrub')
    .description('re-read stored blocks and check them; mark bad blocks and the versions using them invalid')
    .argument('[version...]', 'versions to check (uid, unique uid prefix, IMAGE or IMAGE@latest (its newest valid backup))')
    .option('-p, --percent <n>', 'check this share of the distinct blocks, map segments and manifests, other ones each day (15 a day: all within a week)', percentage)
    .option('-s, --source <source>', 'also compare with the source, byte for byte (one version)')
    .option('--all', 'check every version; a block shared by versions is read once')
    .option('--image <image>', 'with --all: only versions of this image')
    .option('--without-key', 'an encrypted store without its key: check headers and the checksum of every stored byte (finds bitrot), change nothing')
    .option('--json', 'print the counters and findings as one JSON object')
    .addHelpText(
      'after',
      helpAfter(
        ['backy2 scrub v1kx3f9qm7wz', 'backy2 scrub --all -p 15', 'backy2 scrub v1kx3f9qm7wz -s /dev/vg0/vm1-snap'],
        'A bad or missing block is marked invalid, and so is every version that uses it; the next\n' +
          'backup of such an image re-reads and re-stores those blocks. Invalid versions can still be\n' +
          'restored. A complete scrub without findings makes an invalid version valid again. A\n' +
          'difference from the source fails the scrub (exit status 3) but marks nothing. -p P checks the\n' +
          'blocks, map segments and manifests whose digest falls into a window of P% of the digest\n' +
          'space that moves on by P% every day (UTC): about P% of the distinct ones in scope, however\n' +
          'many versions share them, different ones on consecutive days, all of them within 100/P days;\n' +
          'the summary tells the coverage. Every manifest and map segment checked is compared with the\n' +
          'catalog and repaired from the catalog or the block store, whichever copy is good; a segment\n' +
          'with no good copy makes its versions invalid. Exit status 3 when anything was found,\n' +
          'repaired or not.',
      ),
    )
    .action(async (uids: string[], opts: Omit<ScrubCommandOptions, 'uids'>, command: Command) => {
      ctx.exitCode = await runScrub({ uids, ...opts }, globalsOf(command), ctx.io);
    });
}

function describe(f: ScrubFinding): string {
  switch (f.type) {
    case 'bad-block':
      return `bad block ${f.digest}: ${f.message}`;
    case 'version-invalid':
      return f.badBlocks > 0 ? `version ${f.uid} (${f.image}) is invalid: it uses ${f.badBlocks} bad block(s)` : `version ${f.uid} (${f.image}) is invalid: its block map is damaged`;
    case 'version-valid':
      return `version ${f.uid} (${f.image}) is valid again`;
    case 'source-mismatch':
      return `version ${f.uid}: block ${f.block} at offset ${f.offset} ${f.reason}`;
    case 'manifest-repaired':
      return `repaired the manifest of ${f.uid} from the catalog: ${f.reason}`;
    case 'segment-repaired':
      return `repaired map segment ${f.digest} in the ${f.where}: ${f.reason}`;
    case 'bad-segment':
      return `map segment ${f.digest} is lost (no good copy): ${f.reason}`;
    case 'metadata-not-repaired':
      return `not repaired: ${f.what}: ${f.reason}`;
  }
}

function coverage(checked: number, inScope: number): string {
  return inScope === 0 ? 'all' : `${((100 * checked) / inScope).toFixed(1)}%`;
}

/**
 * Scrubs and reports.
 * @returns 0, or 3 when bad blocks or source differences were found
 */
export async function runScrub(options: ScrubCommandOptions, globals: Globals, io: CliIo): Promise<number> {
  return withStore(globals, io, async (store) => {
    const progress = await progressView(io, globals, 'scrub');
    const findings: ScrubFinding[] = [];
    let unrepaired = false;
    let result: ScrubResult;
    try {
      const run = scrub(store, {
        uids: options.uids,
        all: options.all === true,
        image: options.image,
        percent: options.percent,
        source: options.source,
        withoutKey: options.withoutKey,
        progress,
        signal: io.signal,
      });
      let step = await run.next();
      while (!step.done) {
        if (!globals.json) io.stderr(`${describe(step.value)}\n`);
        if (findings.length < MAX_JSON_FINDINGS) findings.push(step.value);
        if (step.value.type === 'metadata-not-repaired') unrepaired = true;
        step = await run.next();
      }
      result = step.value;
    } finally {
      progress.stop();
    }
    if (globals.json) printJson(io, { ...result, findings });
    else {
      io.stderr(
        `Scrubbed ${result.versions} version(s): ${result.blocksChecked} of ${result.blocksInScope} distinct blocks (${formatBytes(result.bytesChecked)}, ${coverage(result.blocksChecked, result.blocksInScope)}) checked, ` +
          `${result.badBlocks} bad; ${result.manifestsChecked} manifests and ${result.segmentsChecked} of ${result.segmentsInScope} map segments checked, ` +
          `${result.metadataRepaired} repaired, ${result.badSegments} lost; ${result.versionsInvalidated} version(s) marked invalid, ` +
          `${result.sourceMismatches} source difference(s)\n`,
      );
    }
    const problems = result.badBlocks + result.sourceMismatches + result.badSegments + result.metadataRepaired;
    return problems > 0 || unrepaired ? ExitCode.problems : ExitCode.ok;
  }, { withoutKey: options.withoutKey === true });
}
