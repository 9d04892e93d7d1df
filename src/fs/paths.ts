import type { VersionRecord } from '../engine/catalog/catalog.js';

/** What a path of the mount names. */
export type FsPath =
  | { readonly kind: 'root'; readonly path: string }
  | { readonly kind: 'image'; readonly path: string; readonly image: string; readonly versions: readonly VersionRecord[] }
  | { readonly kind: 'version'; readonly path: string; readonly version: VersionRecord }
  | { readonly kind: 'latest'; readonly path: string; readonly image: string; readonly target: string }
  | { readonly kind: 'listing'; readonly path: string; readonly image: string; readonly versions: readonly VersionRecord[] };

/** The file under each image directory that lists its versions. */
export const LISTING_FILE = 'versions.txt';
/** The symlink to the newest valid version. */
export const LATEST_LINK = 'latest.img';

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
  if (name === LATEST_LINK) {
    const valid = ofImage.filter((v) => v.status === 'valid');
    const latest = valid[valid.length - 1];
    return latest ? { kind: 'latest', path, image, target: latest.uid, mtime: new Date(latest.createdAt) } : undefined;
  }
  if (!name.endsWith('.img')) return undefined;
  const version = ofImage.find((v) => `${v.uid}.img` === name);
  return version ? { kind: 'version', path, version, mtime: new Date(version.createdAt) } : undefined;
}
