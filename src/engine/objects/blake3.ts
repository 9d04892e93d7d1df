/**
 * BLAKE3 in plain JavaScript (hash and keyed hash, 32-byte output), written from the BLAKE3
 * specification. It is the fallback of naming-digest.ts where the native binding has no build
 * for the platform: a BLAKE3 store must stay readable, and restorable, wherever Node runs. About
 * 0.5 GB/s per core here, 20 times slower than the binding (which uses SIMD): never the fast path.
 */

const IV = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);

const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const KEYED_HASH = 16;
const BLOCK_LENGTH = 64;
const CHUNK_LENGTH = 1024;

const words = new Uint32Array(16);

/**
 * The compression function; leaves the new chaining value in `cv` (the first 8 output words).
 * @param cv input chaining value, 8 words, overwritten
 * @param m message block, 16 words
 * @param counter chunk counter (below 2^53)
 * @param length bytes of the block that are input (the rest is zero padding)
 */
function compress(cv: Uint32Array, m: Uint32Array, counter: number, length: number, flags: number): void {
  let s0 = cv[0]!, s1 = cv[1]!, s2 = cv[2]!, s3 = cv[3]!, s4 = cv[4]!, s5 = cv[5]!, s6 = cv[6]!, s7 = cv[7]!;
  let s8 = IV[0]!, s9 = IV[1]!, s10 = IV[2]!, s11 = IV[3]!;
  let s12 = counter | 0, s13 = Math.floor(counter / 0x1_0000_0000) | 0, s14 = length, s15 = flags;
  let m0 = m[0]!, m1 = m[1]!, m2 = m[2]!, m3 = m[3]!, m4 = m[4]!, m5 = m[5]!, m6 = m[6]!, m7 = m[7]!;
  let m8 = m[8]!, m9 = m[9]!, m10 = m[10]!, m11 = m[11]!, m12 = m[12]!, m13 = m[13]!, m14 = m[14]!, m15 = m[15]!;
  let t: number;
  for (let r = 0; ; r++) {
    s0 = (s0 + s4 + m0) | 0; t = s12 ^ s0; s12 = (t >>> 16) | (t << 16); s8 = (s8 + s12) | 0; t = s4 ^ s8; s4 = (t >>> 12) | (t << 20);
    s0 = (s0 + s4 + m1) | 0; t = s12 ^ s0; s12 = (t >>> 8) | (t << 24); s8 = (s8 + s12) | 0; t = s4 ^ s8; s4 = (t >>> 7) | (t << 25);
    s1 = (s1 + s5 + m2) | 0; t = s13 ^ s1; s13 = (t >>> 16) | (t << 16); s9 = (s9 + s13) | 0; t = s5 ^ s9; s5 = (t >>> 12) | (t << 20);
    s1 = (s1 + s5 + m3) | 0; t = s13 ^ s1; s13 = (t >>> 8) | (t << 24); s9 = (s9 + s13) | 0; t = s5 ^ s9; s5 = (t >>> 7) | (t << 25);
    s2 = (s2 + s6 + m4) | 0; t = s14 ^ s2; s14 = (t >>> 16) | (t << 16); s10 = (s10 + s14) | 0; t = s6 ^ s10; s6 = (t >>> 12) | (t << 20);
    s2 = (s2 + s6 + m5) | 0; t = s14 ^ s2; s14 = (t >>> 8) | (t << 24); s10 = (s10 + s14) | 0; t = s6 ^ s10; s6 = (t >>> 7) | (t << 25);
    s3 = (s3 + s7 + m6) | 0; t = s15 ^ s3; s15 = (t >>> 16) | (t << 16); s11 = (s11 + s15) | 0; t = s7 ^ s11; s7 = (t >>> 12) | (t << 20);
    s3 = (s3 + s7 + m7) | 0; t = s15 ^ s3; s15 = (t >>> 8) | (t << 24); s11 = (s11 + s15) | 0; t = s7 ^ s11; s7 = (t >>> 7) | (t << 25);
    s0 = (s0 + s5 + m8) | 0; t = s15 ^ s0; s15 = (t >>> 16) | (t << 16); s10 = (s10 + s15) | 0; t = s5 ^ s10; s5 = (t >>> 12) | (t << 20);
    s0 = (s0 + s5 + m9) | 0; t = s15 ^ s0; s15 = (t >>> 8) | (t << 24); s10 = (s10 + s15) | 0; t = s5 ^ s10; s5 = (t >>> 7) | (t << 25);
    s1 = (s1 + s6 + m10) | 0; t = s12 ^ s1; s12 = (t >>> 16) | (t << 16); s11 = (s11 + s12) | 0; t = s6 ^ s11; s6 = (t >>> 12) | (t << 20);
    s1 = (s1 + s6 + m11) | 0; t = s12 ^ s1; s12 = (t >>> 8) | (t << 24); s11 = (s11 + s12) | 0; t = s6 ^ s11; s6 = (t >>> 7) | (t << 25);
    s2 = (s2 + s7 + m12) | 0; t = s13 ^ s2; s13 = (t >>> 16) | (t << 16); s8 = (s8 + s13) | 0; t = s7 ^ s8; s7 = (t >>> 12) | (t << 20);
    s2 = (s2 + s7 + m13) | 0; t = s13 ^ s2; s13 = (t >>> 8) | (t << 24); s8 = (s8 + s13) | 0; t = s7 ^ s8; s7 = (t >>> 7) | (t << 25);
    s3 = (s3 + s4 + m14) | 0; t = s14 ^ s3; s14 = (t >>> 16) | (t << 16); s9 = (s9 + s14) | 0; t = s4 ^ s9; s4 = (t >>> 12) | (t << 20);
    s3 = (s3 + s4 + m15) | 0; t = s14 ^ s3; s14 = (t >>> 8) | (t << 24); s9 = (s9 + s14) | 0; t = s4 ^ s9; s4 = (t >>> 7) | (t << 25);
    if (r === 6) break;
    const p0 = m2, p1 = m6, p2 = m3, p3 = m10, p4 = m7, p5 = m0, p6 = m4, p7 = m13, p8 = m1, p9 = m11, p10 = m12, p11 = m5, p12 = m9, p13 = m14, p14 = m15, p15 = m8;
    m0 = p0; m1 = p1; m2 = p2; m3 = p3; m4 = p4; m5 = p5; m6 = p6; m7 = p7; m8 = p8; m9 = p9; m10 = p10; m11 = p11; m12 = p12; m13 = p13; m14 = p14; m15 = p15;
  }
  cv[0] = s0 ^ s8;
  cv[1] = s1 ^ s9;
  cv[2] = s2 ^ s10;
  cv[3] = s3 ^ s11;
  cv[4] = s4 ^ s12;
  cv[5] = s5 ^ s13;
  cv[6] = s6 ^ s14;
  cv[7] = s7 ^ s15;
}

/** Loads up to 64 bytes of `data` at `at` into the message words, zero-padded. */
function loadBlock(data: Uint8Array, at: number, length: number): void {
  if (length === BLOCK_LENGTH) {
    for (let i = 0, j = at; i < 16; i++, j += 4) words[i] = data[j]! | (data[j + 1]! << 8) | (data[j + 2]! << 16) | (data[j + 3]! << 24);
    return;
  }
  words.fill(0);
  for (let i = 0; i < length; i++) words[i >>> 2] = words[i >>> 2]! | (data[at + i]! << ((i & 3) * 8));
}

/**
 * The chaining value of one chunk (up to 1024 bytes); `root` when it is the whole input.
 * @param key the key words (or the IV)
 */
function chunkValue(data: Uint8Array, at: number, length: number, index: number, key: Uint32Array, mode: number, root: boolean): Uint32Array {
  const cv = Uint32Array.from(key);
  const blocks = Math.max(1, Math.ceil(length / BLOCK_LENGTH));
  for (let b = 0; b < blocks; b++) {
    const n = Math.min(BLOCK_LENGTH, length - b * BLOCK_LENGTH);
    loadBlock(data, at + b * BLOCK_LENGTH, n);
    const last = b === blocks - 1;
    compress(cv, words, index, n, mode | (b === 0 ? CHUNK_START : 0) | (last ? CHUNK_END : 0) | (last && root ? ROOT : 0));
  }
  return cv;
}

/** The chaining value of a parent node over two children; `root` for the top of the tree. */
function parentValue(left: Uint32Array, right: Uint32Array, key: Uint32Array, mode: number, root: boolean): Uint32Array {
  words.set(left, 0);
  words.set(right, 8);
  const cv = Uint32Array.from(key);
  compress(cv, words, 0, BLOCK_LENGTH, mode | PARENT | (root ? ROOT : 0));
  return cv;
}

/**
 * The BLAKE3 digest (32 bytes) of `data`; with a 32-byte `key`, its keyed hash.
 * @throws {RangeError} for a key that is not 32 bytes
 */
export function blake3Portable(data: Uint8Array, key?: Uint8Array): Buffer {
  let keyWords = IV;
  let mode = 0;
  if (key) {
    if (key.length !== 32) throw new RangeError('A BLAKE3 key is 32 bytes');
    keyWords = new Uint32Array(8);
    for (let i = 0; i < 8; i++) keyWords[i] = (key[4 * i]! | (key[4 * i + 1]! << 8) | (key[4 * i + 2]! << 16) | (key[4 * i + 3]! << 24)) >>> 0;
    mode = KEYED_HASH;
  }
  const chunks = Math.max(1, Math.ceil(data.length / CHUNK_LENGTH));
  // Complete subtrees on a stack: after chunk i, one entry per set bit of i + 1 (the spec's merge rule).
  const stack: Uint32Array[] = [];
  for (let i = 0; i < chunks - 1; i++) {
    let cv = chunkValue(data, i * CHUNK_LENGTH, CHUNK_LENGTH, i, keyWords, mode, false);
    for (let total = i + 1; (total & 1) === 0; total >>>= 1) cv = parentValue(stack.pop()!, cv, keyWords, mode, false);
    stack.push(cv);
  }
  const lastAt = (chunks - 1) * CHUNK_LENGTH;
  let out = chunkValue(data, lastAt, data.length - lastAt, chunks - 1, keyWords, mode, stack.length === 0);
  while (stack.length > 0) out = parentValue(stack.pop()!, out, keyWords, mode, stack.length === 0);
  const digest = Buffer.alloc(32);
  for (let i = 0; i < 8; i++) digest.writeUInt32LE(out[i]!, 4 * i);
  return digest;
}
