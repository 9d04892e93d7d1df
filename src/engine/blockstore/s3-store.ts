import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { CorruptBlockError, InterruptedError, NotFoundError, ObjectMissingError, StoreFullError, StoreUnavailableError, throwIfAborted } from '../errors.js';
import {
  assertValidKey,
  bodyLength,
  type BlockStore,
  type BlockStoreProperties,
  type GetOptions,
  type ObjectInfo,
  type PutOptions,
} from './block-store.js';

// The SDK prints a multi-line notice on Node < 22 about its own releases after January 2027.
// backy2 supports Node 20 (Debian's nodejs); the notice is not for our users and would break
// the one-line errors of a command that fails after a while. An admin can still set it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Options of {@link S3Store.open}. */
export interface S3StoreOptions {
  /** Endpoint URL (radosgw, MinIO); AWS when omitted. */
  readonly endpoint?: string | undefined;
  /** @default us-east-1 */
  readonly region?: string | undefined;
  readonly bucket: string;
  /** Key prefix inside the bucket (e.g. `backy2/`). @default '' */
  readonly prefix?: string | undefined;
  /** Credentials; when omitted the AWS SDK's chain applies (AWS_* variables, ~/.aws files). */
  readonly accessKeyId?: string | undefined;
  readonly secretAccessKey?: string | undefined;
  /** Path-style addressing (http://host/bucket/key), needed by radosgw and MinIO. @default true */
  readonly pathStyle?: boolean | undefined;
  /** Parallel requests. @default 16 */
  readonly concurrency?: number | undefined;
  /** Attempts per request (retries with exponential backoff). @default 5 */
  readonly attempts?: number | undefined;
  /** Timeout of one request, ms. @default 60 s */
  readonly timeoutMs?: number | undefined;
  /** Create the bucket when it does not exist (`backy2 init`). @default false */
  readonly createBucket?: boolean | undefined;
}

/**
 * A block store in an S3 bucket (AWS, Ceph radosgw, MinIO): one object per key under a prefix.
 * A put is durable once S3 acknowledges it; S3 replaces objects atomically. Requests are retried
 * with backoff by the SDK; checksums are computed only when required, which radosgw needs.
 *
 * @example
 * const store = await S3Store.open({ endpoint: 'http://127.0.0.1:7480', bucket: 'backy2' });
 */
export class S3Store implements BlockStore {
  readonly properties: BlockStoreProperties;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  #closed = false;

  private constructor(client: S3Client, options: S3StoreOptions) {
    this.#client = client;
    this.#bucket = options.bucket;
    this.#prefix = options.prefix ?? '';
    const where = options.endpoint ? ` at ${new URL(options.endpoint).origin}` : '';
    this.properties = { location: `s3://${options.bucket}/${this.#prefix}${where}`, maxConnections: options.concurrency ?? 16, atomicOverwrite: true, readOnly: false };
  }

  /**
   * Connects and checks the bucket (creating it when missing with `createBucket`).
   * @throws {NotFoundError} when the bucket does not exist (and is not to be created)
   * @throws {StoreUnavailableError} when the endpoint cannot be reached or access is denied
   */
  static async open(options: S3StoreOptions): Promise<S3Store> {
    const client = new S3Client({
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.pathStyle ?? true,
      maxAttempts: options.attempts ?? 5,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: 10_000, requestTimeout: options.timeoutMs ?? 60_000, httpAgent: { maxSockets: options.concurrency ?? 16, keepAlive: true } },
      ...(options.accessKeyId && options.secretAccessKey
        ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } }
        : {}),
    });
    const store = new S3Store(client, options);
    try {
      await client.send(new HeadBucketCommand({ Bucket: options.bucket }));
    } catch (err) {
      const missing = err instanceof S3ServiceException && (err.name === 'NotFound' || err.name === 'NoSuchBucket' || err.$metadata.httpStatusCode === 404);
      if (!missing || options.createBucket !== true) {
        client.destroy();
        if (missing) throw new NotFoundError(`No store at ${store.properties.location}: the bucket does not exist`, { hint: 'create one with `backy2 init`' });
        throw mapS3Error(err, `Cannot open block store ${store.properties.location}`);
      }
      try {
        await client.send(new CreateBucketCommand({ Bucket: options.bucket }));
      } catch (createErr) {
        client.destroy();
        throw mapS3Error(createErr, `Cannot create bucket "${options.bucket}" for ${store.properties.location}`);
      }
    }
    return store;
  }

  async put(key: string, body: readonly Uint8Array[], options: PutOptions = {}): Promise<void> {
    this.#check(key);
    throwIfAborted(options.signal);
    // One contiguous body, so the SDK can resend it on a retry (a view when it is one part).
    const first = body[0] ?? new Uint8Array(0);
    const data = body.length === 1 ? Buffer.from(first.buffer, first.byteOffset, first.byteLength) : Buffer.concat(body);
    try {
      await this.#client.send(
        new PutObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key, Body: data, ContentLength: bodyLength(body) }),
        options.signal ? { abortSignal: options.signal } : {},
      );
    } catch (err) {
      throw mapS3Error(err, `Cannot write object "${key}" to ${this.properties.location}`);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Uint8Array> {
    this.#check(key);
    const offset = options.offset ?? 0;
    const range = options.length !== undefined ? `bytes=${offset}-${offset + options.length - 1}` : offset > 0 ? `bytes=${offset}-` : undefined;
    if (options.length === 0) return (options.into ?? Buffer.alloc(0)).subarray(0, 0);
    let response;
    try {
      response = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key, ...(range ? { Range: range } : {}) }),
        options.signal ? { abortSignal: options.signal } : {},
      );
    } catch (err) {
      if (err instanceof S3ServiceException && (err.name === 'InvalidRange' || err.$metadata.httpStatusCode === 416)) {
        throw new CorruptBlockError(`Object "${key}" in ${this.properties.location} is too short: wanted bytes ${offset}..${offset + (options.length ?? 0)}`);
      }
      throw mapS3Error(err, `Cannot read object "${key}" from ${this.properties.location}`);
    }
    const expected = options.length ?? (response.ContentLength ?? 0);
    const into = options.into ?? Buffer.allocUnsafe(expected);
    if (into.length < expected) {
      (response.Body as { destroy?: () => void } | undefined)?.destroy?.();
      // A whole object larger than the room for the largest one of its kind was tampered with.
      if (options.length === undefined) throw new CorruptBlockError(`Object "${key}" in ${this.properties.location} is ${expected} bytes, more than such an object can be (${into.length})`);
      throw new RangeError(`Buffer of ${into.length} bytes is too small for ${expected} bytes`);
    }
    let done = 0;
    try {
      for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
        const n = Math.min(chunk.length, into.length - done);
        into.set(chunk.subarray(0, n), done);
        done += n;
      }
    } catch (err) {
      throw mapS3Error(err, `Cannot read object "${key}" from ${this.properties.location}`);
    }
    if (done < expected) {
      throw new CorruptBlockError(`Object "${key}" in ${this.properties.location} is too short: wanted bytes ${offset}..${offset + expected}, got ${done}`);
    }
    return into.subarray(0, expected);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.#check(key);
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key }));
      return { key, size: head.ContentLength ?? 0, mtimeMs: head.LastModified?.getTime() ?? 0 };
    } catch (err) {
      if (err instanceof S3ServiceException && (err.name === 'NotFound' || err.$metadata.httpStatusCode === 404)) return undefined;
      throw mapS3Error(err, `Cannot stat object "${key}" in ${this.properties.location}`);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (this.#closed) throw new TypeError(`Block store ${this.properties.location} is closed`);
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.#client.send(
          new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#prefix + prefix, ...(token ? { ContinuationToken: token } : {}) }),
        );
      } catch (err) {
        throw mapS3Error(err, `Cannot list ${this.properties.location}`);
      }
      for (const object of page.Contents ?? []) {
        if (!object.Key) continue;
        yield { key: object.Key.slice(this.#prefix.length), size: object.Size ?? 0, mtimeMs: object.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    this.#check(key);
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key }));
    } catch (err) {
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) return;
      throw mapS3Error(err, `Cannot delete object "${key}" from ${this.properties.location}`);
    }
  }

  async probe(): Promise<void> {
    if (this.#closed) throw new TypeError(`Block store ${this.properties.location} is closed`);
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.#bucket }));
    } catch (err) {
      throw mapS3Error(err, `Cannot reach block store ${this.properties.location}`);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.destroy();
  }

  #check(key: string): void {
    if (this.#closed) throw new TypeError(`Block store ${this.properties.location} is closed`);
    assertValidKey(key);
  }
}

/** The one place where S3 errors become BackyErrors. */
function mapS3Error(err: unknown, what: string): Error {
  if (err instanceof RangeError || err instanceof TypeError) return err;
  // Our signal stopped the request (Ctrl-C, or another task of the operation failed first).
  if (err instanceof Error && err.name === 'AbortError') return new InterruptedError(`${what}: interrupted`, { cause: err });
  if (err instanceof S3ServiceException) {
    const status = err.$metadata.httpStatusCode;
    if (err.name === 'NoSuchKey' || (status === 404 && err.name === 'NotFound')) return new ObjectMissingError(`${what}: no such object`, { cause: err });
    if (err.name === 'NoSuchBucket') return new StoreUnavailableError(`${what}: the bucket does not exist`, { cause: err });
    if (status === 403 || err.name === 'AccessDenied' || err.name === 'InvalidAccessKeyId' || err.name === 'SignatureDoesNotMatch') {
      return new StoreUnavailableError(`${what}: access denied (${err.name})`, { cause: err, hint: 'check the S3 credentials' });
    }
    if (err.name === 'QuotaExceeded' || err.name === 'EntityTooLarge' || status === 507) {
      return new StoreFullError(`${what}: the store is full (${err.name})`, { cause: err });
    }
    return new StoreUnavailableError(`${what}: ${err.name}${status ? ` (HTTP ${status})` : ''}`, { cause: err });
  }
  if (err instanceof Error && err.name === 'CredentialsProviderError') {
    return new StoreUnavailableError(`${what}: no S3 credentials`, {
      cause: err,
      hint: 'set blockStore.accessKeyId and secretAccessKey, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials',
    });
  }
  const code = (err as { code?: string }).code;
  const detail = code ?? (err instanceof Error ? err.message : String(err));
  return new StoreUnavailableError(`${what}: cannot reach the S3 endpoint (${detail})`, { cause: err, hint: 'check that the endpoint runs and is reachable' });
}
