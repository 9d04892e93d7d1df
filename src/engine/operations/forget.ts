/**
 * `forget`: applies retention policies (retention.ts decides, this module acts) and optionally
 * runs a cleanup (`--prune`).
 *
 * Removal is safe against everything running at the same time. A version is removed only when a
 * plan computed from a listing taken after its exclusive lock was granted still says so: a
 * version protected, given an expiry date, restored, mounted or used as a base meanwhile stays.
 * Versions whose lock cannot be taken (in use) are skipped and reported, and the plan is computed
 * again without them: a copy-on-write version whose base stays, stays too. A new backup committed
 * meanwhile can only make the rules keep fewer older versions, never more, so a plan that was
 * right before it stays safe. Each removal deletes the manifest first, then the catalog row (as
 * rm does), so a kill at any moment leaves every kept version whole.
 *
 * `retention.minAge` does not apply: the policy is the guard. `rm` keeps honouring it.
 */
import type { VersionRecord } from '../catalog/catalog.js';
import { acquireLocks, versionResource, type HeldLocks } from '../catalog/locking.js';
import { isBackyError, LockedError, throwIfAborted, UsageError } from '../errors.js';
import { removeVersion } from '../objects/publish.js';
import { assertWritable, type Store } from '../store.js';
import { debug } from '../support/debug.js';
import { matchesAny, selectImages } from '../support/glob.js';
import type { Progress } from '../support/progress.js';
import { describeRules, keepsNothing, type RetentionRules } from '../support/retention-rules.js';
import { cleanup, type CleanupResult } from './cleanup.js';
import { planRetention, type RetentionDecision } from './retention.js';
import { recordRun } from './run-records.js';

/** Options of {@link forget}. */
export interface ForgetOptions {
  /** Image names or shell patterns (`vm-*`) to apply policies to. @default every image */
  readonly images?: readonly string[] | undefined;
  /** Rules for every selected image, instead of the config's `retention.policies`. */
  readonly rules?: RetentionRules | undefined;
  /** Decide and report, remove nothing. @default false */
  readonly dryRun?: boolean | undefined;
  /** Decide as if run at this time (ms since the epoch): a simulator; implies dryRun. */
  readonly at?: number | undefined;
  /** Run a cleanup after removing versions (not with dryRun). @default false */
  readonly prune?: boolean | undefined;
  /** Progress of the cleanup. */
  readonly progress?: Progress | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Current time (tests). @default Date.now() */
  readonly now?: number | undefined;
}

/** An image forget looked at, and the rules it applied to it. */
export interface ForgetImage {
  readonly image: string;
  /** The rules in words, or null when no policy matches the image (its versions are all kept). */
  readonly policy: string | null;
  /** Where the rules came from: `command line`, or `config: <patterns>`; null without a policy. */
  readonly from: string | null;
}

/** A version and what forget did (or, in a dry run, would do) with it. */
export interface ForgetVersion extends RetentionDecision {
  readonly image: string;
  readonly createdAt: number;
  readonly kind: VersionRecord['kind'];
  readonly status: VersionRecord['status'];
  readonly protected: boolean;
  readonly tags: readonly string[];
  readonly expiresAt: number | null;
  readonly baseUid: string | null;
}

/** What forget did. */
export interface ForgetResult {
  readonly dryRun: boolean;
  /** The time the policies were applied at (ms since the epoch). */
  readonly at: number;
  readonly images: readonly ForgetImage[];
  /** Every version of the images that have a policy, by image, oldest first. */
  readonly versions: readonly ForgetVersion[];
  /** Versions removed (or, in a dry run, to be removed). */
  readonly removed: number;
  readonly kept: number;
  /** Versions that would have been removed but were in use. */
  readonly skipped: number;
  /** The cleanup's figures with `prune`, else null. */
  readonly cleanup: CleanupResult | null;
  readonly durationSeconds: number;
}

/** How many times the plan is recomputed while versions keep changing before giving up. */
const MAX_ROUNDS = 10;

/**
 * Removes the versions that retention policies do not keep (see retention.ts for the rules), or
 * with `dryRun` or `at` only says which. Rules come from `options.rules`, else from the first
 * `retention.policies` entry matching each image; images without a policy are left alone.
 * @returns every decision with its reasons, and the counts
 * @throws {UsageError} when there is no policy at all, or the given rules keep nothing
 * @throws {NotFoundError} when a named image (or pattern) matches no image
 * @throws {StoreUnavailableError} when the store is read-only (unless dry run)
 * @throws {LockedError} when versions keep changing under it, or (with prune) another cleanup runs
 * @example
 * const result = await forget(store, { rules: { keepDaily: 7, keepWeekly: 4 }, dryRun: true });
 */
export async function forget(store: Store, options: ForgetOptions = {}): Promise<ForgetResult> {
  const t0 = Date.now();
  const now = options.at ?? options.now ?? t0;
  const dryRun = options.dryRun === true || options.at !== undefined;
  if (options.rules && keepsNothing(options.rules)) throw new UsageError('The rules keep nothing', { hint: 'give at least one --keep-* option' });
  if (!options.rules && store.config.retentionPolicies.length === 0) {
    throw new UsageError('No retention policy: give --keep-* options, or retention.policies in the config', { hint: 'see backy2 forget --help' });
  }
  if (!dryRun) assertWritable(store, 'forget versions');
  const { catalog } = store;

  const all = await catalog.listVersions();
  const selected = selectImages([...new Set(all.map((v) => v.image))].sort(), options.images ?? []);
  const rulesOf = new Map<string, RetentionRules>();
  const images: ForgetImage[] = selected.map((image) => {
    if (options.rules) {
      rulesOf.set(image, options.rules);
      return { image, policy: describeRules(options.rules), from: 'command line' };
    }
    const policy = store.config.retentionPolicies.find((p) => matchesAny(image, p.images));
    if (!policy) return { image, policy: null, from: null };
    rulesOf.set(image, policy.rules);
    return { image, policy: describeRules(policy.rules), from: `config: ${policy.images.join(', ')}` };
  });

  const plan = async (inUse: ReadonlyMap<string, string>) => {
    const versions = (await catalog.listVersions()).filter((v) => rulesOf.has(v.image));
    const out: ForgetVersion[] = [];
    for (const [image, rules] of rulesOf) {
      const own = versions.filter((v) => v.image === image);
      const decisions = planRetention(own, rules, { now, locked: inUse });
      own.forEach((v, i) => out.push({ ...describe(v), ...(decisions[i] as RetentionDecision) }));
    }
    return out;
  };

  const inUse = await versionsInUse(store);
  let decided = await plan(inUse);
  const held = new Map<string, HeldLocks>();
  let cleanupResult: CleanupResult | null = null;
  try {
    if (!dryRun) {
      // Lock what the plan removes, then plan again from what the catalog says now: remove only
      // what a plan made after its lock was granted still removes.
      for (let round = 1; ; round++) {
        let changed = false;
        const wanted = new Set(decided.filter((d) => d.action === 'remove').map((d) => d.uid));
        for (const uid of wanted) {
          if (held.has(uid)) continue;
          try {
            held.set(uid, await acquireLocks(catalog, [{ resource: versionResource(uid), mode: 'exclusive', operation: 'forget' }]));
          } catch (err) {
            if (!isBackyError(err) || err.code !== 'E_LOCKED') throw err;
            inUse.set(uid, await holderOf(store, uid));
          }
          changed = true;
        }
        for (const [uid, lock] of held) {
          if (wanted.has(uid)) continue;
          await lock.release();
          held.delete(uid);
        }
        if (!changed) break;
        if (round === MAX_ROUNDS) throw new LockedError('Versions kept changing while forget ran: nothing was removed', { hint: 'run it again' });
        decided = await plan(inUse);
      }
      for (const v of decided.filter((d) => d.action === 'remove').sort((a, b) => a.createdAt - b.createdAt)) {
        throwIfAborted(options.signal);
        await removeVersion(store, v.uid);
        debug(`forget: removed ${v.uid} (${v.image})`);
        await held.get(v.uid)?.release();
        held.delete(v.uid);
      }
    }
  } finally {
    for (const lock of held.values()) await lock.release();
  }
  const count = (action: string) => decided.filter((d) => d.action === action).length;
  if (!dryRun) await recordRun(store, 'forget', { versionsRemoved: count('remove'), versionsSkipped: count('skip'), durationSeconds: (Date.now() - t0) / 1000 });
  if (!dryRun && options.prune) cleanupResult = await cleanup(store, { progress: options.progress, signal: options.signal });
  return {
    dryRun,
    at: now,
    images,
    versions: decided.sort((a, b) => (a.image < b.image ? -1 : a.image > b.image ? 1 : a.createdAt - b.createdAt)),
    removed: count('remove'),
    kept: count('keep'),
    skipped: count('skip'),
    cleanup: cleanupResult,
    durationSeconds: (Date.now() - t0) / 1000,
  };
}

function describe(v: VersionRecord): Omit<ForgetVersion, keyof RetentionDecision> {
  return {
    image: v.image,
    createdAt: v.createdAt,
    kind: v.kind,
    status: v.status,
    protected: v.protected,
    tags: v.tags,
    expiresAt: v.expiresAt,
    baseUid: v.baseUid,
  };
}

/** Versions that someone holds a lock on, with who: `restore by process 4711 on host`. */
async function versionsInUse(store: Store): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const lock of await store.catalog.listLocks()) {
    if (!lock.resource.startsWith('version:')) continue;
    const uid = lock.resource.slice('version:'.length);
    if (!out.has(uid)) out.set(uid, `${lock.operation} by process ${lock.pid} on ${lock.host}`);
  }
  return out;
}

async function holderOf(store: Store, uid: string): Promise<string> {
  const [lock] = await store.catalog.listLocks(versionResource(uid));
  return lock ? `${lock.operation} by process ${lock.pid} on ${lock.host}` : 'locked';
}
