/**
 * NBD protocol constants, named as in `doc/proto.md` of the NetworkBlockDevice/nbd project, and
 * pure encoders and decoders. All integers are big-endian. Decoders of the byte stream take a
 * ByteQueue and return a {@link Decoded}: the message (consumed), or how many more bytes it
 * needs, or why the input cannot be framed (then they consume nothing).
 */
import type { ByteQueue } from './byte-queue.js';

export const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const NBD_IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const HandshakeFlag = { NBD_FLAG_FIXED_NEWSTYLE: 1, NBD_FLAG_NO_ZEROES: 2 } as const;
export const ClientFlag = { NBD_FLAG_C_FIXED_NEWSTYLE: 1, NBD_FLAG_C_NO_ZEROES: 2 } as const;

export const Opt = {
  NBD_OPT_EXPORT_NAME: 1,
  NBD_OPT_ABORT: 2,
  NBD_OPT_LIST: 3,
  NBD_OPT_STARTTLS: 5,
  NBD_OPT_INFO: 6,
  NBD_OPT_GO: 7,
  NBD_OPT_STRUCTURED_REPLY: 8,
  NBD_OPT_LIST_META_CONTEXT: 9,
  NBD_OPT_SET_META_CONTEXT: 10,
} as const;

/** The name of an option as in the spec (`NBD_OPT_LIST`), or its number when unknown. */
export function optionName(option: number): string {
  return Object.entries(Opt).find(([, value]) => value === option)?.[0] ?? `option ${option}`;
}

export const Rep = {
  NBD_REP_ACK: 1,
  NBD_REP_SERVER: 2,
  NBD_REP_INFO: 3,
  NBD_REP_META_CONTEXT: 4,
  NBD_REP_ERR_UNSUP: 0x80000001,
  NBD_REP_ERR_POLICY: 0x80000002,
  NBD_REP_ERR_INVALID: 0x80000003,
  NBD_REP_ERR_PLATFORM: 0x80000004,
  NBD_REP_ERR_TLS_REQD: 0x80000005,
  NBD_REP_ERR_UNKNOWN: 0x80000006,
  NBD_REP_ERR_SHUTDOWN: 0x80000007,
  NBD_REP_ERR_BLOCK_SIZE_REQD: 0x80000008,
  NBD_REP_ERR_TOO_BIG: 0x80000009,
} as const;

export const Info = { NBD_INFO_EXPORT: 0, NBD_INFO_NAME: 1, NBD_INFO_DESCRIPTION: 2, NBD_INFO_BLOCK_SIZE: 3 } as const;

export const TxFlag = {
  NBD_FLAG_HAS_FLAGS: 1 << 0,
  NBD_FLAG_READ_ONLY: 1 << 1,
  NBD_FLAG_SEND_FLUSH: 1 << 2,
  NBD_FLAG_SEND_FUA: 1 << 3,
  NBD_FLAG_ROTATIONAL: 1 << 4,
  NBD_FLAG_SEND_TRIM: 1 << 5,
  NBD_FLAG_SEND_WRITE_ZEROES: 1 << 6,
  NBD_FLAG_SEND_DF: 1 << 7,
  NBD_FLAG_CAN_MULTI_CONN: 1 << 8,
  NBD_FLAG_SEND_CACHE: 1 << 10,
  NBD_FLAG_SEND_FAST_ZERO: 1 << 11,
} as const;

export const Cmd = {
  NBD_CMD_READ: 0,
  NBD_CMD_WRITE: 1,
  NBD_CMD_DISC: 2,
  NBD_CMD_FLUSH: 3,
  NBD_CMD_TRIM: 4,
  NBD_CMD_CACHE: 5,
  NBD_CMD_WRITE_ZEROES: 6,
  NBD_CMD_BLOCK_STATUS: 7,
} as const;

export const CmdFlag = {
  NBD_CMD_FLAG_FUA: 1 << 0,
  NBD_CMD_FLAG_NO_HOLE: 1 << 1,
  NBD_CMD_FLAG_DF: 1 << 2,
  NBD_CMD_FLAG_REQ_ONE: 1 << 3,
  NBD_CMD_FLAG_FAST_ZERO: 1 << 4,
} as const;

export const ReplyFlag = { NBD_REPLY_FLAG_DONE: 1 } as const;

export const ReplyType = {
  NBD_REPLY_TYPE_NONE: 0,
  NBD_REPLY_TYPE_OFFSET_DATA: 1,
  NBD_REPLY_TYPE_OFFSET_HOLE: 2,
  NBD_REPLY_TYPE_BLOCK_STATUS: 5,
  NBD_REPLY_TYPE_ERROR: 0x8001,
  NBD_REPLY_TYPE_ERROR_OFFSET: 0x8002,
} as const;

export const Errno = {
  NBD_EPERM: 1,
  NBD_EIO: 5,
  NBD_ENOMEM: 12,
  NBD_EINVAL: 22,
  NBD_ENOSPC: 28,
  NBD_EOVERFLOW: 75,
  NBD_ENOTSUP: 95,
  NBD_ESHUTDOWN: 108,
} as const;

export const NBD_STATE_HOLE = 1;
export const NBD_STATE_ZERO = 2;
export const BASE_ALLOCATION = 'base:allocation';

/** Sizes of fixed parts. */
export const OPTION_HEADER_LENGTH = 16;
export const REQUEST_HEADER_LENGTH = 28;

// ---- decoders ---------------------------------------------------------------------------------

/**
 * What a decoder found at the head of the queue: a whole message (consumed), a shortfall (nothing
 * consumed; at least `bytes` more are needed), or input that cannot be framed (nothing consumed;
 * the connection has to go, since where the next message starts is unknown).
 */
export type Decoded<T> =
  | { readonly kind: 'message'; readonly message: T }
  | { readonly kind: 'need'; readonly bytes: number }
  | { readonly kind: 'invalid'; readonly reason: string };

function need(bytes: number): { readonly kind: 'need'; readonly bytes: number } {
  return { kind: 'need', bytes };
}

/** Decodes the client flags that follow the greeting (32 bits). */
export function decodeClientFlags(q: ByteQueue): Decoded<number> {
  if (q.length < 4) return need(4 - q.length);
  return { kind: 'message', message: q.consume(4).readUInt32BE(0) };
}

/** An option request of the negotiation. */
export interface OptionRequest {
  readonly option: number;
  readonly data: Buffer;
}

/**
 * Decodes an option request once header and data are complete.
 * @param maxData larger data is invalid (decided from the header, before any data is buffered)
 */
export function decodeOption(q: ByteQueue, maxData: number): Decoded<OptionRequest> {
  if (q.length < OPTION_HEADER_LENGTH) return need(OPTION_HEADER_LENGTH - q.length);
  const head = q.peek(OPTION_HEADER_LENGTH);
  if (head.readBigUInt64BE(0) !== NBD_IHAVEOPT) return { kind: 'invalid', reason: 'bad option magic' };
  const length = head.readUInt32BE(12);
  if (length > maxData) return { kind: 'invalid', reason: `option data of ${length} bytes` };
  if (q.length < OPTION_HEADER_LENGTH + length) return need(OPTION_HEADER_LENGTH + length - q.length);
  q.skip(OPTION_HEADER_LENGTH);
  return { kind: 'message', message: { option: head.readUInt32BE(8), data: q.consume(length) } };
}

/** A transmission request; a WRITE carries its payload. */
export interface Request {
  readonly flags: number;
  readonly type: number;
  readonly handle: Buffer;
  readonly offset: number;
  readonly length: number;
  /** The payload of NBD_CMD_WRITE (`length` bytes); undefined for other commands. */
  readonly data?: Buffer | undefined;
}

/**
 * Decodes a request header (28 bytes) and, for NBD_CMD_WRITE, its payload.
 * @param maxPayload a longer WRITE is invalid: its payload is not worth buffering (the spec
 *   allows closing the connection), and it is refused from the header alone
 */
export function decodeRequest(q: ByteQueue, maxPayload: number): Decoded<Request> {
  if (q.length < REQUEST_HEADER_LENGTH) return need(REQUEST_HEADER_LENGTH - q.length);
  const b = q.peek(REQUEST_HEADER_LENGTH);
  if (b.readUInt32BE(0) !== NBD_REQUEST_MAGIC) return { kind: 'invalid', reason: 'bad request magic' };
  const type = b.readUInt16BE(6);
  const length = b.readUInt32BE(24);
  const payload = type === Cmd.NBD_CMD_WRITE ? length : 0;
  if (payload > maxPayload) return { kind: 'invalid', reason: `write of ${length} bytes` };
  if (q.length < REQUEST_HEADER_LENGTH + payload) return need(REQUEST_HEADER_LENGTH + payload - q.length);
  const offset = b.readBigUInt64BE(16);
  const request = {
    flags: b.readUInt16BE(4),
    type,
    handle: Buffer.from(b.subarray(8, 16)),
    // Offsets past 2^53 cannot be valid for any export; keep them out of range.
    offset: offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(offset),
    length,
  };
  q.skip(REQUEST_HEADER_LENGTH);
  return { kind: 'message', message: { ...request, data: payload > 0 ? q.consume(payload) : undefined } };
}

/** The data of NBD_OPT_INFO / NBD_OPT_GO: export name and requested info types. */
export function parseInfoRequest(data: Buffer): { name: string; infos: number[] } | undefined {
  if (data.length < 6) return undefined;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) return undefined;
  const name = data.subarray(4, 4 + nameLength).toString('utf8');
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 6 + nameLength + 2 * count) return undefined;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(6 + nameLength + 2 * i));
  return { name, infos };
}

/** The data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
export function parseMetaContextRequest(data: Buffer): { name: string; queries: string[] } | undefined {
  if (data.length < 8) return undefined;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 8) return undefined;
  const name = data.subarray(4, 4 + nameLength).toString('utf8');
  let at = 4 + nameLength;
  const count = data.readUInt32BE(at);
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return undefined;
    const length = data.readUInt32BE(at);
    at += 4;
    if (at + length > data.length) return undefined;
    queries.push(data.subarray(at, at + length).toString('utf8'));
    at += length;
  }
  return at === data.length ? { name, queries } : undefined;
}

// ---- encoders ---------------------------------------------------------------------------------

/** The server greeting of the fixed newstyle handshake. */
export function encodeGreeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(NBD_IHAVEOPT, 8);
  b.writeUInt16BE(HandshakeFlag.NBD_FLAG_FIXED_NEWSTYLE | HandshakeFlag.NBD_FLAG_NO_ZEROES, 16);
  return b;
}

/** An option reply. */
export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and zeroes unless NO_ZEROES. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

/** NBD_REP_SERVER data: one export of a LIST. */
export function encodeServerEntry(name: string, description: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description, 'utf8');
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

/** NBD_REP_INFO data for NBD_INFO_EXPORT. */
export function encodeInfoExport(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(Info.NBD_INFO_EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

/** NBD_REP_INFO data for NBD_INFO_NAME or NBD_INFO_DESCRIPTION. */
export function encodeInfoText(type: typeof Info.NBD_INFO_NAME | typeof Info.NBD_INFO_DESCRIPTION, text: string): Buffer {
  const t = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(2 + t.length);
  b.writeUInt16BE(type, 0);
  t.copy(b, 2);
  return b;
}

/** NBD_REP_INFO data for NBD_INFO_BLOCK_SIZE. */
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(Info.NBD_INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

/** NBD_REP_META_CONTEXT data. */
export function encodeMetaContext(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

/** A simple reply header (READ data follows it on success). */
export function encodeSimpleReply(handle: Buffer, error: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  handle.copy(b, 8);
  return b;
}

/** A structured reply chunk header for a payload of `length` bytes. */
export function encodeChunkHeader(handle: Buffer, flags: number, type: number, length: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  handle.copy(b, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

/** An OFFSET_DATA chunk header including the offset (the data follows). */
export function encodeDataChunkHeader(handle: Buffer, done: boolean, offset: number, dataLength: number): Buffer {
  const b = Buffer.alloc(28);
  encodeChunkHeader(handle, done ? ReplyFlag.NBD_REPLY_FLAG_DONE : 0, ReplyType.NBD_REPLY_TYPE_OFFSET_DATA, 8 + dataLength).copy(b);
  b.writeBigUInt64BE(BigInt(offset), 20);
  return b;
}

/** A whole OFFSET_HOLE chunk. */
export function encodeHoleChunk(handle: Buffer, done: boolean, offset: number, length: number): Buffer {
  const b = Buffer.alloc(32);
  encodeChunkHeader(handle, done ? ReplyFlag.NBD_REPLY_FLAG_DONE : 0, ReplyType.NBD_REPLY_TYPE_OFFSET_HOLE, 12).copy(b);
  b.writeBigUInt64BE(BigInt(offset), 20);
  b.writeUInt32BE(length, 28);
  return b;
}

/** A whole ERROR chunk (always the last). */
export function encodeErrorChunk(handle: Buffer, error: number, message: string): Buffer {
  const m = Buffer.from(message.slice(0, 1024), 'utf8');
  const b = Buffer.alloc(26 + m.length);
  encodeChunkHeader(handle, ReplyFlag.NBD_REPLY_FLAG_DONE, ReplyType.NBD_REPLY_TYPE_ERROR, 6 + m.length).copy(b);
  b.writeUInt32BE(error, 20);
  b.writeUInt16BE(m.length, 24);
  m.copy(b, 26);
  return b;
}

/** A whole BLOCK_STATUS chunk for one context. */
export function encodeBlockStatusChunk(handle: Buffer, done: boolean, contextId: number, extents: readonly { length: number; flags: number }[]): Buffer {
  const b = Buffer.alloc(24 + 8 * extents.length);
  encodeChunkHeader(handle, done ? ReplyFlag.NBD_REPLY_FLAG_DONE : 0, ReplyType.NBD_REPLY_TYPE_BLOCK_STATUS, 4 + 8 * extents.length).copy(b);
  b.writeUInt32BE(contextId, 20);
  extents.forEach((e, i) => {
    b.writeUInt32BE(e.length, 24 + 8 * i);
    b.writeUInt32BE(e.flags, 28 + 8 * i);
  });
  return b;
}
