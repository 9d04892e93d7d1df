/**
 * The one place that knows how objects are named inside a block store: key builders, the
 * prefixes that group them, and parsers that turn a listed key back into what it names.
 *
 * | key | object |
 * | --- | --- |
 * | `settings` | the store's settings (object kind 4): written by `init`, read by every command |
 * | `owner` | the catalog that uses this block store (object kind 5) |
 * | `blocks/<hex[0:2]>/<hex>` | a block (kind 1), keyed by the digest of its plaintext |
 * | `segments/<hex[0:2]>/<hex>` | a block map segment (kind 2), keyed by the digest of its payload |
 * | `versions/<uid>` | a version manifest (kind 3) |
 * | `invalid/<hex>` | marker of a block that a scrub found bad (why: plain text, or sealed, kind 7) |
 * | `keys/<id>` | a key file of an encrypted store (kind 6): the master key wrapped under a passphrase |
 *
 * NEVER CHANGE a released key layout: stores written by older versions must stay readable.
 */
import { VERSION_UID_PATTERN } from '../support/uid.js';
import { DIGEST_LENGTH } from './formats.js';

/** Prefixes of the groups of objects, each ending in `/`. */
export const KeyPrefix = {
  blocks: 'blocks/',
  segments: 'segments/',
  manifests: 'versions/',
  invalidMarkers: 'invalid/',
  keyFiles: 'keys/',
} as const;

/** Keys of the objects of a block store. */
export const StoreKeys = {
  settings: 'settings',
  owner: 'owner',
  block: (digest: Uint8Array) => sharded(KeyPrefix.blocks, hexOf(digest)),
  segment: (digest: Uint8Array) => sharded(KeyPrefix.segments, hexOf(digest)),
  manifest: (uid: string) => `${KeyPrefix.manifests}${uid}`,
  /** Marks a block that a scrub found bad, so that a catalog rebuild knows it too. */
  invalidMarker: (digest: Uint8Array) => `${KeyPrefix.invalidMarkers}${hexOf(digest)}`,
  /** A key file, by its id (16 hex digits). */
  keyFile: (id: string) => `${KeyPrefix.keyFiles}${id}`,
} as const;

const HEX_DIGEST = new RegExp(`^[0-9a-f]{${DIGEST_LENGTH * 2}}$`);

/** The digest a block key names, or undefined for anything else (temp files, stray objects). */
export function parseBlockKey(key: string): Buffer | undefined {
  return parseSharded(KeyPrefix.blocks, key);
}

/** The digest a segment key names, or undefined. */
export function parseSegmentKey(key: string): Buffer | undefined {
  return parseSharded(KeyPrefix.segments, key);
}

/** The version uid a manifest key names, or undefined. */
export function parseManifestKey(key: string): string | undefined {
  if (!key.startsWith(KeyPrefix.manifests)) return undefined;
  const uid = key.slice(KeyPrefix.manifests.length);
  return VERSION_UID_PATTERN.test(uid) ? uid : undefined;
}

/** The block digest an invalid marker names, or undefined. */
export function parseInvalidMarkerKey(key: string): Buffer | undefined {
  if (!key.startsWith(KeyPrefix.invalidMarkers)) return undefined;
  const hex = key.slice(KeyPrefix.invalidMarkers.length);
  return HEX_DIGEST.test(hex) ? Buffer.from(hex, 'hex') : undefined;
}

/** The id a key file's key names, or undefined. */
export function parseKeyFileKey(key: string): string | undefined {
  if (!key.startsWith(KeyPrefix.keyFiles)) return undefined;
  const id = key.slice(KeyPrefix.keyFiles.length);
  return /^[0-9a-f]{16}$/.test(id) ? id : undefined;
}

function hexOf(digest: Uint8Array): string {
  if (digest.length !== DIGEST_LENGTH) throw new TypeError(`A digest has ${DIGEST_LENGTH} bytes, not ${digest.length}`);
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex');
}

function sharded(prefix: string, hex: string): string {
  return `${prefix}${hex.slice(0, 2)}/${hex}`;
}

function parseSharded(prefix: string, key: string): Buffer | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  const hex = rest.slice(slash + 1);
  if (slash !== 2 || !HEX_DIGEST.test(hex) || rest.slice(0, 2) !== hex.slice(0, 2)) return undefined;
  return Buffer.from(hex, 'hex');
}
