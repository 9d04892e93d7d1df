import { UsageError } from '../errors.js';

/** Longest part of a user- or client-chosen name that goes into messages and logs. */
const MAX_PRINTED_NAME = 64;

/**
 * A name from outside (command line, NBD client), safe to print in one line: quoted, control and
 * format characters (newlines, escape sequences, bidirectional overrides) escaped, and cut to
 * {@link MAX_PRINTED_NAME} characters.
 */
export function printable(name: string): string {
  const chars = [...name];
  const shown = chars
    .slice(0, MAX_PRINTED_NAME)
    .map((c) => (/[\p{C}"\\]/u.test(c) ? `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}` : c))
    .join('');
  return `"${shown}"${chars.length > MAX_PRINTED_NAME ? ` (${chars.length} characters)` : ''}`;
}

const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}$/;
const TAG = /^[A-Za-z0-9][A-Za-z0-9._:+=-]{0,63}$/;

/**
 * Checks an image name: it becomes a directory name under a mount, so no slashes.
 * @throws {UsageError} when it is not 1–128 of letters, digits and `._@+=-`, starting alphanumeric
 */
export function checkImageName(name: string): string {
  if (!IMAGE_NAME.test(name) || name === 'latest.img') {
    throw new UsageError(`Invalid image name ${printable(name)}: use 1 to 128 letters, digits and . _ @ + = -, starting with a letter or digit`);
  }
  return name;
}

/**
 * Checks a tag.
 * @throws {UsageError} when it is not 1–64 of letters, digits and `._:+=-`, starting alphanumeric
 */
export function checkTag(tag: string): string {
  if (!TAG.test(tag)) {
    throw new UsageError(`Invalid tag ${printable(tag)}: use 1 to 64 letters, digits and . _ : + = -, starting with a letter or digit`);
  }
  return tag;
}

/**
 * A URL as it may be shown: without a password (PostgreSQL catalogs, S3 endpoints).
 * @example
 * redactUrl('postgresql://backup:secret@db/backy2') // 'postgresql://backup@db/backy2'
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    u.searchParams.delete('password');
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1@');
  }
}
