import { randomInt } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lowercase, no i l o u

function base32(value: number, width: number): string {
  let out = '';
  let rest = value;
  for (let i = 0; i < width; i++) {
    out = (ALPHABET[rest % 32] ?? '0') + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

/** Version uids: "v", 7 base32 digits of the creation second, 4 random base32 digits. */
export const VERSION_UID_PATTERN = /^v[0-9a-hjkmnp-tv-z]{11}$/;

/**
 * A new version uid: short, unique, and sorting by creation time (e.g. `v1kx3f9qm7wz`).
 * @param now creation time in ms since the epoch
 */
export function newVersionUid(now: number = Date.now()): string {
  return `v${base32(Math.floor(now / 1000), 7)}${base32(randomInt(32 ** 4), 4)}`;
}
