import type { Progress } from '../../engine/support/progress.js';
import { formatBytes } from '../../engine/support/units.js';
import type { CliIo, Globals } from '../io.js';

/** A progress sink that the command stops when done. */
export interface ProgressView extends Progress {
  stop(): void;
}

const SILENT: ProgressView = { stop: () => undefined };

/**
 * A progress bar with rate and ETA on standard error, drawn only on a terminal and never with
 * --json.
 * @param label what is in progress, e.g. "backup vm1"
 */
export async function progressView(io: CliIo, globals: Globals, label: string): Promise<ProgressView> {
  if (!io.stderrIsTTY || globals.json) return SILENT;
  // Loaded only for a terminal: it costs memory that scripts and cron jobs need not pay.
  const { default: cliProgress } = await import('cli-progress');
  const started = Date.now();
  let done = 0;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 64,
      fps: 5,
      format: (options, params) => {
        const width = options.barsize ?? 30;
        const filled = Math.round(params.progress * width);
        const seconds = (Date.now() - started) / 1000;
        const rate = seconds > 0 ? formatBytes(done / seconds) : '-';
        const eta = Number.isFinite(params.eta) && params.eta > 0 ? `${Math.round(params.eta)}s` : '-';
        return `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.floor(params.progress * 100)}% ${formatBytes(done)}/${formatBytes(params.total)} ${rate}/s ETA ${eta}`;
      },
    },
    cliProgress.Presets.legacy,
  );
  let running = false;
  return {
    start: ({ totalBytes }) => {
      bar.start(Math.max(1, totalBytes), 0);
      running = true;
    },
    advance: (bytes) => {
      done += bytes;
      if (running) bar.update(done);
    },
    stop: () => {
      if (running) bar.stop();
      running = false;
    },
  };
}
