import type { VersionRecord } from '../engine/catalog/catalog.js';

/** The versions of one image in a mount's view. */
export interface ImageVersions {
  readonly image: string;
  /** Oldest first. */
  readonly versions: readonly VersionRecord[];
  /** Creation time of its newest version (ms): the directory's mtime. */
  readonly newest: number;
  /** What `latest.img` points to (see {@link latestVersion}). */
  readonly latest: VersionRecord | undefined;
}

/**
 * The version `latest.img` and `latest-part<N>.img` point to: the newest valid backup (a
 * copy-on-write version is an experiment, never "latest"). The one place that decides it, so
 * that both always agree.
 * @param ofImage the versions of one image, oldest first
 */
export function latestVersion(ofImage: readonly VersionRecord[]): VersionRecord | undefined {
  return ofImage.findLast((v) => v.status === 'valid' && v.kind === 'backup');
}

interface Entry {
  readonly image: string;
  readonly versions: VersionRecord[];
  newest: number;
  latest: VersionRecord | undefined;
}

/**
 * The versions a mount shows, indexed by image and by uid, so that resolving a path costs the
 * same at 10 versions as at 100,000 (a scan of every version per lookup made `ls -laR` of
 * thousands of images quadratic). Built once per refresh of the listing.
 */
export class VersionIndex {
  /** Every version shown, oldest first. */
  readonly all: readonly VersionRecord[];
  /** Image names, sorted. */
  readonly images: readonly string[];
  /** Creation time of the newest version of all (ms), 0 when there is none: the root's mtime. */
  readonly newest: number;
  readonly #byImage = new Map<string, Entry>();
  readonly #byUid = new Map<string, VersionRecord>();

  /** @param versions the versions shown, oldest first */
  constructor(versions: readonly VersionRecord[]) {
    this.all = versions;
    let newest = 0;
    for (const v of versions) {
      this.#byUid.set(v.uid, v);
      let entry = this.#byImage.get(v.image);
      if (!entry) {
        entry = { image: v.image, versions: [], newest: 0, latest: undefined };
        this.#byImage.set(v.image, entry);
      }
      entry.versions.push(v);
      // A loop, not Math.max(...list): a spread of 150,000 arguments overflows the stack.
      if (v.createdAt > entry.newest) entry.newest = v.createdAt;
      if (v.createdAt > newest) newest = v.createdAt;
    }
    for (const entry of this.#byImage.values()) entry.latest = latestVersion(entry.versions);
    this.newest = newest;
    this.images = [...this.#byImage.keys()].sort();
  }

  /** The versions of `image`, or undefined when it has none shown. */
  image(image: string): ImageVersions | undefined {
    return this.#byImage.get(image);
  }

  /** The version `uid` when it belongs to `image`. */
  version(image: string, uid: string): VersionRecord | undefined {
    const v = this.#byUid.get(uid);
    return v?.image === image ? v : undefined;
  }
}
