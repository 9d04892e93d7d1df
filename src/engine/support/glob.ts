/**
 * Shell-style patterns for image names in the config and on the command line: `*` (any run of
 * characters), `?` (one character), `[abc]`, `[a-z]` and `[!abc]`. A pattern without any of these
 * names one image exactly.
 */

import { NotFoundError } from '../errors.js';
import { printable } from './names.js';
import { closeMatches } from './suggest.js';

const GLOB_CHARS = /[*?[]/;

/** True when `pattern` has a wildcard (else it names one image). */
export function isGlob(pattern: string): boolean {
  return GLOB_CHARS.test(pattern);
}

const cache = new Map<string, RegExp>();

/**
 * The regular expression that matches what `pattern` matches, whole names only. An unclosed `[`
 * stands for itself.
 */
export function globToRegExp(pattern: string): RegExp {
  const cached = cache.get(pattern);
  if (cached) return cached;
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) {
        out += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, end);
      const negated = body.startsWith('!') || body.startsWith('^');
      if (negated) body = body.slice(1);
      out += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, (x) => `\\${x}`)}]`;
      i = end;
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, (x) => `\\${x}`);
  }
  const re = new RegExp(`^${out}$`, 's');
  cache.set(pattern, re);
  return re;
}

/** True when `name` matches the shell-style `pattern`. */
export function matchesGlob(name: string, pattern: string): boolean {
  return globToRegExp(pattern).test(name);
}

/** True when `name` matches any of `patterns`. */
export function matchesAny(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => matchesGlob(name, p));
}

/**
 * The images that names and patterns select, in the order of `images` (all of them when no
 * pattern is given).
 * @param unknownHint the hint for a name that matches nothing and has no near miss
 * @throws {NotFoundError} when a name or pattern matches no image (with "did you mean")
 */
export function selectImages(images: readonly string[], patterns: readonly string[], unknownHint = 'run `backy2 ls` to see images'): string[] {
  if (patterns.length === 0) return [...images];
  for (const pattern of patterns) {
    if (images.some((image) => matchesGlob(image, pattern))) continue;
    if (isGlob(pattern)) throw new NotFoundError(`No image matches ${printable(pattern)}`, { hint: 'run `backy2 ls` to see images' });
    const near = closeMatches(pattern, images);
    throw new NotFoundError(`Image ${printable(pattern)} not found`, { hint: near.length ? `did you mean ${near.map((n) => `"${n}"`).join(' or ')}?` : unknownHint });
  }
  return images.filter((image) => matchesAny(image, patterns));
}
