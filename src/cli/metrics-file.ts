import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { collectMetrics } from '../engine/operations/metrics.js';
import { openStore } from '../engine/store.js';
import { loadConfig } from '../engine/support/config.js';
import type { CliIo, Globals } from './io.js';
import { describeError } from './report-error.js';
import { renderExposition } from './ui/exposition.js';

/**
 * Writes `text` to `file` atomically: a temp file in the same directory (named `.<name>.tmp-…`,
 * which node_exporter's textfile collector ignores), fsynced, renamed over the file, and the
 * directory fsynced. Readers see the old file or the new one, never a part. The file is readable
 * by everyone (0644): it holds figures, not data, and the exporter runs as another user.
 */
export function writeFileAtomic(file: string, text: string): void {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fd = openSync(temp, 'wx', 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/**
 * After a command: writes the store's metrics to the metrics file (`--metrics-file`, else the
 * config's `metrics.file`), if one is set. A failure is one warning line on stderr and does not
 * change the command's exit status; it is not printed when the command failed for the same
 * reason (a missing store, a bad config).
 * @param failedWith the error code the command failed with, if it did
 */
export async function writeMetricsAfter(globals: Globals, io: CliIo, failedWith: string | undefined): Promise<void> {
  let file: string | undefined;
  try {
    const config = await loadConfig({ configFile: globals.config, storePath: globals.store, env: io.env });
    file = globals.metricsFile ?? config.metricsFile;
    if (file === undefined) return;
    // Metrics come from the catalog alone: an encrypted store's key is not needed.
    const store = await openStore(config, { withoutKey: true });
    let text: string;
    try {
      text = renderExposition(await collectMetrics(store));
    } finally {
      await store.close();
    }
    writeFileAtomic(path.resolve(file), text);
  } catch (err) {
    const e = describeError(err, io, globals.debug);
    if (failedWith !== undefined && failedWith === e.code) return;
    io.stderr(`backy2: warning: metrics${file === undefined ? '' : ` file "${file}"`} not written: ${e.message}\n`);
  }
}
