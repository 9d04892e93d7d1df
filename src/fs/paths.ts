import type { VersionRecord } from '../engine/catalog/catalog.js';

/** What a path of the mount names. */
export type FsPath =
  | { readonly kind: 'root'; readonly path: string }
  | { readonly kind: 'image'; readonly path: string; readonly image: string; readonly versions: readonly VersionRecord[] }
  | { readonly kind: 'version'; readonly path: string; readonly version: VersionRecord }
  | { readonly kind: 'latest'; readonly path: string; readonly image: string; readonly target: string }
  | { readonly kind: 'listing'; readonly path: string; readonly image: string; readonly versions: readonly VersionRecord[] }
  /** `<uid>-part<N>.img`; whether the version has partition N is for its partition table to say. */
  | { readonly kind: 'partition'; readonly path: string; readonly version: VersionRecord; readonly number: number }
  /** `latest-part<N>.img`, a symlink to the partition file of the latest version. */
  | { readonly kind: 'latest-partition'; readonly path: string; readonly version: VersionRecord; readonly number: number };

/** The file under each image directory that lists its versions. */
export const LISTING_FILE = 'versions.txt';
/** The symlink to the newest valid version. */
export const LATEST_LINK = 'latest.img';

/** The file of a version's whole image. */
export const versionFile = (uid: string) => `${uid}.img`;
/** The file of partition `number` of a version (`-part<N>` as in /dev/disk/by-id). */
export const partitionFile = (uid: string, number: number) => `${uid}-part${number}.img`;
/** The symlink to partition `number` of the latest version. */
export const latestPartitionLink = (number: number) => `latest-part${number}.img`;

/** `<name>-part<N>.img`; N without leading zeros, as Linux names partitions. */
const PARTITION_NAME = /^(.+)-part([1-9][0-9]{0,5})\.img$/;

/**
 * The version `latest.img` and `latest-part<N>.img` point to: the newest valid backup (a
 * copy-on-write version is an experiment, never "latest"). The one place that decides it, so
 * that both always agree.
 * @param ofImage the versions of one image, oldest first
 */
export function latestVersion(ofImage: readonly VersionRecord[]): VersionRecord | undefined {
  return ofImage.findLast((v) => v.status === 'valid' && v.kind === 'backup');
}

/**
 * Resolves a mount path against the versions shown.
 * @returns the path's meaning and mtime, or undefined when nothing is there
 */
export function parsePath(path: string, versions: readonly VersionRecord[]): (FsPath & { readonly mtime: Date }) | undefined {
  const parts = path.split('/').filter(Boolean);
  const newest = (list: readonly VersionRecord[]) => new Date(Math.max(0, ...list.map((v) => v.createdAt)));
  if (parts.length === 0) return { kind: 'root', path, mtime: newest(versions) };
  const image = parts[0] ?? '';
  const ofImage = versions.filter((v) => v.image === image);
  if (ofImage.length === 0) return undefined;
  if (parts.length === 1) return { kind: 'image', path, image, versions: ofImage, mtime: newest(ofImage) };
  if (parts.length !== 2) return undefined;
  const name = parts[1] ?? '';
  if (name === LISTING_FILE) return { kind: 'listing', path, image, versions: ofImage, mtime: newest(ofImage) };
  const partition = PARTITION_NAME.exec(name);
  if (partition) {
    const [, of = '', digits = ''] = partition;
    const number = Number(digits);
    if (of === 'latest') {
      const latest = latestVersion(ofImage);
      return latest ? { kind: 'latest-partition', path, version: latest, number, mtime: new Date(latest.createdAt) } : undefined;
    }
    const version = ofImage.find((v) => v.uid === of);
    return version ? { kind: 'partition', path, version, number, mtime: new Date(version.createdAt) } : undefined;
  }
  if (name === LATEST_LINK) {
    const latest = latestVersion(ofImage);
    return latest ? { kind: 'latest', path, image, target: latest.uid, mtime: new Date(latest.createdAt) } : undefined;
  }
  if (!name.endsWith('.img')) return undefined;
  const version = ofImage.find((v) => versionFile(v.uid) === name);
  return version ? { kind: 'version', path, version, mtime: new Date(version.createdAt) } : undefined;
}
