import type { VersionRecord } from '../engine/catalog/catalog.js';
import type { VersionIndex } from './version-index.js';

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
 * Resolves a mount path against the versions shown (by index: no scan of every version).
 * @returns the path's meaning and mtime, or undefined when nothing is there
 */
export function parsePath(path: string, index: VersionIndex): (FsPath & { readonly mtime: Date }) | undefined {
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return { kind: 'root', path, mtime: new Date(index.newest) };
  const image = parts[0] ?? '';
  const of = index.image(image);
  if (!of) return undefined;
  if (parts.length === 1) return { kind: 'image', path, image, versions: of.versions, mtime: new Date(of.newest) };
  if (parts.length !== 2) return undefined;
  const name = parts[1] ?? '';
  if (name === LISTING_FILE) return { kind: 'listing', path, image, versions: of.versions, mtime: new Date(of.newest) };
  const latest = of.latest;
  const partition = PARTITION_NAME.exec(name);
  if (partition) {
    const [, owner = '', digits = ''] = partition;
    const number = Number(digits);
    if (owner === 'latest') return latest ? { kind: 'latest-partition', path, version: latest, number, mtime: new Date(latest.createdAt) } : undefined;
    const version = index.version(image, owner);
    return version ? { kind: 'partition', path, version, number, mtime: new Date(version.createdAt) } : undefined;
  }
  if (name === LATEST_LINK) return latest ? { kind: 'latest', path, image, target: latest.uid, mtime: new Date(latest.createdAt) } : undefined;
  if (!name.endsWith('.img')) return undefined;
  const version = index.version(image, name.slice(0, -'.img'.length));
  return version ? { kind: 'version', path, version, mtime: new Date(version.createdAt) } : undefined;
}
