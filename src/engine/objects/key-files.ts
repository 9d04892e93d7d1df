/**
 * The keys of an encrypted store. A random 32-byte master key encrypts nothing itself: the keys
 * objects are made with are derived from it (HKDF-SHA-256, bound to the store id). It is kept in
 * the store only wrapped, in one or more key files `keys/<id>`, each protected by a passphrase
 * through scrypt (memory-hard; its parameters are in the file). Adding or changing a passphrase
 * rewraps the master key and rewrites no data. Unattended hosts may hold the master key itself in
 * a raw key file of their own, private to its owner.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scrypt } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { BlockStore } from '../blockstore/block-store.js';
import { CorruptBlockError, KeyError, errnoCode, isBackyError } from '../errors.js';
import { ObjectKind } from './formats.js';
import { decodeJsonObject, encodeJsonObject } from './object-codec.js';
import type { SealKeys } from './object-seal.js';
import { KeyPrefix, StoreKeys, parseKeyFileKey } from './store-keys.js';

/** Bytes of the master key. */
export const MASTER_KEY_LENGTH = 32;

/** scrypt parameters: N = 2^16, r = 8 (64 MiB, about a quarter of a second here): memory-hard, and a backup still fits in 200 MiB. */
export const DEFAULT_KDF = { name: 'scrypt', N: 2 ** 16, r: 8, p: 1 } as const;

/** A key file as stored (object kind 6, UTF-8 JSON, plaintext: it is what unlocks the rest). */
export interface KeyFile {
  readonly format: 1;
  /** 16 hex digits; the object is `keys/<id>`. */
  readonly id: string;
  readonly createdAt: number;
  readonly host: string;
  readonly kdf: { readonly name: 'scrypt'; readonly N: number; readonly r: number; readonly p: number; readonly salt: string };
  /** The master key, AES-256-GCM-encrypted with the scrypt key (base64 of nonce, ciphertext, tag). */
  readonly nonce: string;
  readonly wrapped: string;
  readonly tag: string;
}

/** Where the master key comes from. */
export type KeySource =
  | { readonly kind: 'passphrase'; readonly passphrase: string }
  | { readonly kind: 'raw'; readonly key: Buffer; readonly file: string; readonly storeId: string };

/** A new random master key. */
export function newMasterKey(): Buffer {
  return randomBytes(MASTER_KEY_LENGTH);
}

/**
 * The keys objects are made with, derived from the master key and bound to the store.
 * @param master the master key
 * @param storeId the store's id (settings)
 */
export function deriveSealKeys(master: Buffer, storeId: string): SealKeys {
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', master, Buffer.from(storeId, 'hex'), info, 32));
  return { idKey: derive('backy2 object ids'), dataKey: derive('backy2 object data') };
}

/**
 * A MAC over the store's settings under the master key: settings changed by someone without the
 * key (encryption switched off, say) are refused instead of obeyed.
 */
export function settingsCheck(master: Buffer, storeId: string, canonical: string): string {
  const key = Buffer.from(hkdfSync('sha256', master, Buffer.from(storeId, 'hex'), 'backy2 settings', 32));
  return createHmac('sha256', key).update(canonical).digest('hex');
}

/**
 * Wraps the master key under a passphrase.
 * @param kdf scrypt cost @default DEFAULT_KDF
 */
export async function wrapMasterKey(master: Buffer, passphrase: string, kdf: { N: number; r: number; p: number } = DEFAULT_KDF): Promise<KeyFile> {
  const salt = randomBytes(32);
  const kek = await scryptKey(passphrase, salt, kdf);
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce);
  const wrapped = Buffer.concat([cipher.update(master), cipher.final()]);
  return {
    format: 1,
    id: randomBytes(8).toString('hex'),
    createdAt: Date.now(),
    host: hostname(),
    kdf: { name: 'scrypt', N: kdf.N, r: kdf.r, p: kdf.p, salt: salt.toString('base64') },
    nonce: nonce.toString('base64'),
    wrapped: wrapped.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
  };
}

/**
 * Unwraps the master key with a passphrase.
 * @returns the master key, or undefined when the passphrase is not this file's
 */
export async function unwrapMasterKey(file: KeyFile, passphrase: string): Promise<Buffer | undefined> {
  const kek = await scryptKey(passphrase, Buffer.from(file.kdf.salt, 'base64'), file.kdf);
  const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(file.nonce, 'base64'));
  decipher.setAuthTag(Buffer.from(file.tag, 'base64'));
  try {
    return Buffer.concat([decipher.update(Buffer.from(file.wrapped, 'base64')), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** Every key file of a store (damaged ones are skipped: another may still open the store). */
export async function listKeyFiles(blocks: BlockStore): Promise<KeyFile[]> {
  const out: KeyFile[] = [];
  for await (const info of blocks.list(KeyPrefix.keyFiles)) {
    const id = parseKeyFileKey(info.key);
    if (id === undefined) continue;
    try {
      out.push(checkKeyFile(decodeJsonObject(await blocks.get(info.key), ObjectKind.key, `key file ${id}`), id));
    } catch (err) {
      if (!isBackyError(err) || (err.code !== 'E_CORRUPT' && err.code !== 'E_OBJECT_MISSING')) throw err;
    }
  }
  return out.sort((a, b) => a.createdAt - b.createdAt);
}

/** Removes a key file. */
export async function deleteKeyFile(blocks: BlockStore, id: string): Promise<void> {
  await blocks.delete(StoreKeys.keyFile(id));
}

/** Writes a key file, durably. */
export async function saveKeyFile(blocks: BlockStore, file: KeyFile): Promise<void> {
  await blocks.put(StoreKeys.keyFile(file.id), encodeJsonObject(ObjectKind.key, file));
}

/**
 * Finds the master key of a store.
 * @param storeId the store's id, which a raw key file names
 * @throws {KeyError} when the passphrase opens no key file, or the raw key is another store's
 */
export async function unlockMasterKey(blocks: BlockStore, storeId: string, source: KeySource): Promise<{ master: Buffer; keyFile: string | undefined }> {
  if (source.kind === 'raw') return { master: source.key, keyFile: undefined };
  const files = await listKeyFiles(blocks);
  if (files.length === 0) throw new KeyError(`Store ${blocks.properties.location} has no key file that can be read`, { hint: 'restore keys/ from a copy of the store, or use a raw key file (--key-file)' });
  for (const file of files) {
    const master = await unwrapMasterKey(file, source.passphrase);
    if (master) return { master, keyFile: file.id };
  }
  throw new KeyError(`Wrong passphrase for store ${blocks.properties.location} (${storeId.slice(0, 8)}…): it opens none of its ${files.length} key file(s)`, {
    hint: 'check --password-file, BACKY2_PASSWORD_FILE or BACKY2_PASSWORD',
  });
}

/** The raw key file format: one line `backy2-key <store id> <base64 master key>`. */
export function formatRawKey(storeId: string, master: Buffer): string {
  return `backy2-key ${storeId} ${master.toString('base64')}\n`;
}

/**
 * Reads a raw key file, refusing one that others may read (like ssh does).
 * @param storeId the store it must belong to, when known
 * @throws {KeyError} when it is unreadable, malformed, another store's, or not private
 */
export async function readRawKeyFile(file: string, storeId?: string): Promise<KeySource> {
  let text: string;
  try {
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0) {
      throw new KeyError(`Key file "${file}" is readable by others (mode ${(st.mode & 0o777).toString(8)}): refused`, { hint: `chmod 600 ${file}` });
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (isBackyError(err)) throw err;
    throw new KeyError(`Cannot read key file "${file}": ${errnoCode(err) === 'ENOENT' ? 'no such file' : (errnoCode(err) ?? String(err))}`, { cause: err });
  }
  const m = /^backy2-key ([0-9a-f]{32}) ([A-Za-z0-9+/=]+)\s*$/.exec(text);
  const key = m ? Buffer.from(m[2] ?? '', 'base64') : undefined;
  if (!m || key?.length !== MASTER_KEY_LENGTH) throw new KeyError(`Key file "${file}" is not a backy2 key file`);
  if (storeId !== undefined && m[1] !== storeId) throw new KeyError(`Key file "${file}" belongs to store ${m[1]?.slice(0, 8)}…, not ${storeId.slice(0, 8)}…`);
  return { kind: 'raw', key, file, storeId: m[1] ?? '' };
}

function scryptKey(passphrase: string, salt: Buffer, kdf: { N: number; r: number; p: number }): Promise<Buffer> {
  if (!Number.isInteger(Math.log2(kdf.N)) || kdf.N < 2 ** 10 || kdf.N > 2 ** 22 || kdf.r < 1 || kdf.r > 32 || kdf.p < 1 || kdf.p > 16) {
    return Promise.reject(new KeyError(`Key file asks for scrypt N=${kdf.N} r=${kdf.r} p=${kdf.p}, outside what backy2 accepts`));
  }
  return new Promise((resolve, reject) => {
    scrypt(passphrase, salt, 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r + (32 << 20) }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function checkKeyFile(value: unknown, id: string): KeyFile {
  const f = value as Partial<KeyFile>;
  const ok =
    f.format === 1 &&
    f.id === id &&
    typeof f.createdAt === 'number' &&
    typeof f.nonce === 'string' &&
    typeof f.wrapped === 'string' &&
    typeof f.tag === 'string' &&
    f.kdf?.name === 'scrypt' &&
    typeof f.kdf.salt === 'string' &&
    typeof f.kdf.N === 'number';
  if (!ok) throw new CorruptBlockError(`Key file ${id} is malformed`);
  return f as KeyFile;
}
