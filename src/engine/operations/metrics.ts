/**
 * Metrics of a store for Prometheus (node_exporter's textfile collector, `backy2 metrics`, the
 * daemons' HTTP endpoint): per image its newest valid backup and versions by status, store-wide
 * space, and the last runs and totals of cleanup, scrub and forget. Plain data; the CLI renders
 * the text exposition format.
 */
import type { RunRecord, VersionRecord } from '../catalog/catalog.js';
import type { Store } from '../store.js';
import { PACKAGE_VERSION } from '../support/package-version.js';
import { assessImage } from './freshness.js';
import { scheduleOf } from './monitor.js';

/** One sample: labels and a value. */
export interface MetricSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A metric family: name, help, type and samples. */
export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  readonly samples: readonly MetricSample[];
}

/** Options of {@link collectMetrics}. */
export interface MetricsOptions {
  /** Current time (tests). @default Date.now() */
  readonly now?: number | undefined;
}

const STATUSES = ['valid', 'invalid', 'incomplete'] as const;

/**
 * Collects the metrics of the whole store.
 * @example
 * const families = await collectMetrics(store);
 */
export async function collectMetrics(store: Store, options: MetricsOptions = {}): Promise<MetricFamily[]> {
  const now = options.now ?? Date.now();
  const versions = await store.catalog.listVersions();
  const totals = await store.catalog.blockTotals();
  const runs = await store.catalog.listRuns();
  const locks = await store.catalog.listLocks();
  const images = [...new Set(versions.map((v) => v.image))].sort();
  const byImage = new Map<string, VersionRecord[]>(images.map((i) => [i, []]));
  for (const v of versions) byImage.get(v.image)?.push(v);

  const families: MetricFamily[] = [];
  const family = (name: string, help: string, type: MetricFamily['type'], samples: MetricSample[]) => families.push({ name, help, type, samples });
  const perImage = (pick: (v: VersionRecord) => number | undefined) => {
    const samples: MetricSample[] = [];
    for (const [image, list] of byImage) {
      const newest = list.filter((v) => v.kind === 'backup' && v.status === 'valid').at(-1);
      const value = newest ? pick(newest) : undefined;
      if (value !== undefined) samples.push({ labels: { image }, value });
    }
    return samples;
  };

  const perImageLabel = (pick: (v: VersionRecord) => string | undefined) => {
    const samples: MetricSample[] = [];
    for (const [image, list] of byImage) {
      const newest = list.filter((v) => v.kind === 'backup' && v.status === 'valid').at(-1);
      const host = newest ? pick(newest) : undefined;
      if (host !== undefined) samples.push({ labels: { image, host }, value: 1 });
    }
    return samples;
  };

  family('backy2_info', 'The backy2 program that wrote these metrics, and its backup host.', 'gauge', [{ labels: { version: PACKAGE_VERSION, host: store.config.host }, value: 1 }]);
  family('backy2_metrics_timestamp_seconds', 'When these metrics were collected.', 'gauge', [{ labels: {}, value: now / 1000 }]);
  family(
    'backy2_last_backup_success_timestamp_seconds',
    'When the newest valid backup of the image finished.',
    'gauge',
    perImage((v) => (v.createdAt + (v.stats?.durationSeconds ?? 0) * 1000) / 1000),
  );
  family('backy2_last_backup_host_info', 'The backup host that made the newest valid backup of the image.', 'gauge', perImageLabel((v) => v.host ?? undefined));
  family('backy2_last_backup_duration_seconds', 'How long the newest valid backup of the image took.', 'gauge', perImage((v) => v.stats?.durationSeconds));
  family('backy2_last_backup_size_bytes', 'Size of the image at its newest valid backup.', 'gauge', perImage((v) => v.size));
  family('backy2_last_backup_read_bytes', 'Bytes the newest valid backup read from the source.', 'gauge', perImage((v) => v.stats?.bytesRead));
  family('backy2_last_backup_written_bytes', 'Bytes the newest valid backup added to the store.', 'gauge', perImage((v) => v.stats?.bytesWritten));
  family('backy2_last_backup_stored_bytes', 'What the new blocks of the newest valid backup take in the store, after compression and encryption.', 'gauge', perImage((v) => v.stats?.bytesStored));
  family('backy2_last_backup_deduplicated_bytes', 'Bytes the newest valid backup read but found stored already.', 'gauge', perImage((v) => v.stats?.bytesDeduplicated));
  family('backy2_last_backup_sparse_bytes', 'Bytes of all-zero blocks in the newest valid backup (not stored).', 'gauge', perImage((v) => v.stats?.bytesSparse));
  family('backy2_last_backup_skipped_bytes', 'Bytes the newest valid backup took over unread (hints said unchanged).', 'gauge', perImage((v) => v.stats?.bytesSkipped));
  family(
    'backy2_versions',
    'Versions of the image by status (incomplete: running or killed backups).',
    'gauge',
    [...byImage].flatMap(([image, list]) => STATUSES.map((status) => ({ labels: { image, status }, value: list.filter((v) => v.status === status).length }))),
  );
  family(
    'backy2_image_check_level',
    'How the image stands (as backy2 check): 0 ok, 1 warning (late, invalid versions), 2 critical (SLA breached, no valid backup).',
    'gauge',
    [...byImage].map(([image, list]) => ({ labels: { image }, value: assessImage(image, list, scheduleOf(store.config.schedules, image), now).level })),
  );
  const held = new Map<string, number>();
  for (const l of locks) held.set(JSON.stringify([l.host, l.operation]), (held.get(JSON.stringify([l.host, l.operation])) ?? 0) + 1);
  family(
    'backy2_locks',
    'Locks held now in the catalog, by backup host and operation.',
    'gauge',
    [...held].sort().map(([key, value]) => {
      const [host, operation] = JSON.parse(key) as [string, string];
      return { labels: { host, operation }, value };
    }),
  );
  family('backy2_store_images', 'Images in the store.', 'gauge', [{ labels: {}, value: images.length }]);
  family('backy2_store_stored_bytes', 'Bytes of the blocks stored (payload).', 'gauge', [{ labels: {}, value: totals.bytes }]);
  family('backy2_store_blocks', 'Distinct blocks stored.', 'gauge', [{ labels: {}, value: totals.blocks }]);
  family('backy2_store_invalid_blocks', 'Blocks a scrub found bad that no backup has stored again yet.', 'gauge', [{ labels: {}, value: totals.invalid }]);
  family('backy2_store_logical_bytes', 'Sum of the sizes of all versions (without deduplication and sparseness).', 'gauge', [{ labels: {}, value: versions.reduce((n, v) => n + v.size, 0) }]);

  const run = (operation: string): RunRecord | undefined => runs.find((r) => r.operation === operation);
  const last = (operation: string, key: string, name: string, help: string) => {
    const r = run(operation);
    if (r) family(name, help, 'gauge', [{ labels: {}, value: key === 'finishedAt' ? r.finishedAt / 1000 : (r.last[key] ?? 0) }]);
  };
  const total = (operation: string, key: string, name: string, help: string) => family(name, help, 'counter', [{ labels: {}, value: run(operation)?.totals[key] ?? 0 }]);
  last('cleanup', 'finishedAt', 'backy2_cleanup_last_run_timestamp_seconds', 'When the last cleanup finished.');
  last('cleanup', 'bytesFreed', 'backy2_cleanup_last_freed_bytes', 'Bytes of blocks the last cleanup deleted.');
  total('cleanup', 'bytesFreed', 'backy2_cleanup_freed_bytes_total', 'Bytes of blocks deleted by cleanups.');
  total('cleanup', 'blocksDeleted', 'backy2_cleanup_deleted_blocks_total', 'Blocks deleted by cleanups.');
  total('cleanup', 'runs', 'backy2_cleanup_runs_total', 'Cleanups finished.');
  last('scrub', 'finishedAt', 'backy2_scrub_last_run_timestamp_seconds', 'When the last scrub finished.');
  last('scrub', 'blocksChecked', 'backy2_scrub_last_checked_blocks', 'Blocks the last scrub read and verified.');
  last('scrub', 'badBlocks', 'backy2_scrub_last_bad_blocks', 'Bad blocks the last scrub found.');
  total('scrub', 'blocksChecked', 'backy2_scrub_checked_blocks_total', 'Blocks read and verified by scrubs.');
  total('scrub', 'badBlocks', 'backy2_scrub_bad_blocks_total', 'Bad blocks found by scrubs.');
  total('scrub', 'runs', 'backy2_scrub_runs_total', 'Scrubs finished.');
  last('forget', 'finishedAt', 'backy2_forget_last_run_timestamp_seconds', 'When the last forget finished.');
  total('forget', 'versionsRemoved', 'backy2_forget_removed_versions_total', 'Versions removed by forget.');
  total('forget', 'runs', 'backy2_forget_runs_total', 'Forget runs finished (dry runs not counted).');
  return families;
}
