import { UsageError } from '../errors.js';

const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}$/;
const TAG = /^[A-Za-z0-9][A-Za-z0-9._:+=-]{0,63}$/;

/**
 * Checks an image name: it becomes a directory name under a mount, so no slashes.
 * @throws {UsageError} when it is not 1–128 of letters, digits and `._@+=-`, starting alphanumeric
 */
export function checkImageName(name: string): string {
  if (!IMAGE_NAME.test(name) || name === 'latest.img') {
    throw new UsageError(`Invalid image name "${name}": use 1 to 128 letters, digits and . _ @ + = -, starting with a letter or digit`);
  }
  return name;
}

/**
 * Checks a tag.
 * @throws {UsageError} when it is not 1–64 of letters, digits and `._:+=-`, starting alphanumeric
 */
export function checkTag(tag: string): string {
  if (!TAG.test(tag)) {
    throw new UsageError(`Invalid tag "${tag}": use 1 to 64 letters, digits and . _ : + = -, starting with a letter or digit`);
  }
  return tag;
}
