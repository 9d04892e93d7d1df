/**
 * `due` and `check`: which images need a backup now, and how every image stands against its
 * schedule and SLA (freshness.ts decides), plus what scrubs found.
 */
import type { RunRecord } from '../catalog/catalog.js';
import type { Store } from '../store.js';
import type { ImageSchedule } from '../support/config.js';
import { isGlob, matchesAny, selectImages } from '../support/glob.js';
import { assessImage, type HealthLevel, type ImageHealth } from './freshness.js';

/** Options of {@link dueImages} and {@link checkImages}. */
export interface MonitorOptions {
  /** Image names or shell patterns. @default every image (and every image a schedule names) */
  readonly images?: readonly string[] | undefined;
  /** Current time (tests). @default Date.now() */
  readonly now?: number | undefined;
}

/** An image whose next backup is due. */
export interface DueImage {
  readonly image: string;
  /** The schedule's `source` with `{image}` filled in, or null. */
  readonly source: string | null;
  /** Since when it is due (ms since the epoch). */
  readonly dueSince: number;
  readonly newestValid: ImageHealth['newestValid'];
  /** A backup of it is running now (the wrapper should not start another). */
  readonly running: boolean;
}

/** What `check` found. */
export interface CheckResult {
  /** The worst level: 0 OK, 1 WARNING (late, invalid versions), 2 CRITICAL (breached). */
  readonly level: HealthLevel;
  readonly images: readonly ImageHealth[];
  /** Problems of the store as a whole (blocks found bad and not healed yet). */
  readonly storeProblems: readonly string[];
  readonly invalidBlocks: number;
  /** The last recorded scrub, cleanup and forget, if any. */
  readonly lastScrub: RunRecord | null;
  readonly lastCleanup: RunRecord | null;
  readonly lastForget: RunRecord | null;
  readonly counts: { readonly ok: number; readonly late: number; readonly breached: number };
}

/**
 * The images whose next backup is due now: those with a schedule whose newest valid backup is
 * older than the interval (minus its tolerance), or that have none. A schedule entry without
 * wildcards names an image that is expected even before its first backup.
 * @throws {NotFoundError} when a named image (or pattern) matches no image
 * @example
 * for (const d of await dueImages(store)) console.log(d.image, d.source);
 */
export async function dueImages(store: Store, options: MonitorOptions = {}): Promise<DueImage[]> {
  const now = options.now ?? Date.now();
  const health = await assessAll(store, options.images ?? [], now);
  const running = new Set((await store.catalog.listLocks()).filter((l) => l.resource.startsWith('image:')).map((l) => l.resource.slice('image:'.length)));
  return health
    .filter((h) => h.due && h.schedule)
    .map((h) => ({
      image: h.image,
      source: h.schedule?.source?.replaceAll('{image}', h.image) ?? null,
      dueSince: h.dueAt ?? now,
      newestValid: h.newestValid,
      running: running.has(h.image),
    }));
}

/**
 * Checks every image against its schedule and SLA, and the store for scrub findings.
 * @throws {NotFoundError} when a named image (or pattern) matches no image
 * @example
 * const { level } = await checkImages(store); // 0 ok, 1 warning, 2 critical
 */
export async function checkImages(store: Store, options: MonitorOptions = {}): Promise<CheckResult> {
  const now = options.now ?? Date.now();
  const health = await assessAll(store, options.images ?? [], now);
  const totals = await store.catalog.blockTotals();
  const runs = await store.catalog.listRuns();
  const storeProblems: string[] = [];
  if (totals.invalid > 0) storeProblems.push(`${totals.invalid} block(s) found bad by a scrub are not healed yet (the next backups of their images store them again)`);
  const level = Math.max(0, ...health.map((h) => h.level), storeProblems.length > 0 ? 1 : 0) as HealthLevel;
  const count = (f: string) => health.filter((h) => h.freshness === f).length;
  return {
    level,
    images: health,
    storeProblems,
    invalidBlocks: totals.invalid,
    lastScrub: runs.find((r) => r.operation === 'scrub') ?? null,
    lastCleanup: runs.find((r) => r.operation === 'cleanup') ?? null,
    lastForget: runs.find((r) => r.operation === 'forget') ?? null,
    counts: { ok: count('ok'), late: count('late'), breached: count('breached') },
  };
}

/** The schedule that applies to an image: the first whose patterns match. */
export function scheduleOf(schedules: readonly ImageSchedule[], image: string): ImageSchedule | undefined {
  return schedules.find((s) => matchesAny(image, s.images));
}

/** Every selected image (in the catalog, or named by a schedule) and how it stands. */
async function assessAll(store: Store, patterns: readonly string[], now: number): Promise<ImageHealth[]> {
  const versions = await store.catalog.listVersions();
  const known = new Set(versions.map((v) => v.image));
  for (const s of store.config.schedules) for (const name of s.images) if (!isGlob(name)) known.add(name);
  const images = selectImages([...known].sort(), patterns, 'name it in a schedule of the config, or back it up first');
  return images.map((image) =>
    assessImage(
      image,
      versions.filter((v) => v.image === image),
      scheduleOf(store.config.schedules, image),
      now,
    ),
  );
}
