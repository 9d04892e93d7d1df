/**
 * One NBD connection as an explicit state machine: fixed newstyle handshake, then options, then
 * transmission. Every request gets a reply (an NBD error when it fails); only malformed or
 * hostile input (bad magic, absurd lengths, option floods, a stalled handshake) closes the
 * connection. Reading pauses while too many requests or bytes are in flight or the client does
 * not read its replies (backpressure).
 */
import type { Duplex } from 'node:stream';
import { NbdError, type NbdBackend, type NbdExport, type NbdExtent } from './backend.js';
import { ByteQueue } from './byte-queue.js';
import {
  BASE_ALLOCATION,
  ClientFlag,
  Cmd,
  CmdFlag,
  Errno,
  Info,
  NBD_IHAVEOPT,
  NBD_REQUEST_MAGIC,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  Opt,
  REQUEST_HEADER_LENGTH,
  ReplyFlag,
  ReplyType,
  Rep,
  TxFlag,
  decodeOption,
  decodeRequest,
  encodeBlockStatusChunk,
  encodeChunkHeader,
  encodeDataChunkHeader,
  encodeErrorChunk,
  encodeExportNameReply,
  encodeGreeting,
  encodeHoleChunk,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeMetaContext,
  encodeOptionReply,
  encodeServerEntry,
  encodeSimpleReply,
  parseInfoRequest,
  parseMetaContextRequest,
  type Request,
} from './protocol.js';

/** Limits of one connection. */
export interface SessionLimits {
  /** Largest option data accepted; more closes the connection. @default 65536 */
  readonly maxOptionData?: number;
  /** Options before transmission; more closes the connection. @default 256 */
  readonly maxOptions?: number;
  /** Largest READ/WRITE/WRITE_ZEROES length (advertised as the maximum block size). @default 32 MiB */
  readonly maxRequest?: number;
  /** Requests processed at once. @default 16 */
  readonly maxInFlight?: number;
  /** Bytes of requests and replies held at once. @default 64 MiB */
  readonly maxInFlightBytes?: number;
  /** Time to complete the handshake. @default 30 s */
  readonly handshakeTimeoutMs?: number;
}

const MIN_BLOCK = 512;
const PREFERRED_BLOCK = 4096;
const CONTEXT_ID = 1;
const KNOWN_CLIENT_FLAGS = ClientFlag.NBD_FLAG_C_FIXED_NEWSTYLE | ClientFlag.NBD_FLAG_C_NO_ZEROES;
const KNOWN_CMD_FLAGS = Object.values(CmdFlag).reduce((a, b) => a | b, 0);

type State = 'client-flags' | 'options' | 'option-pending' | 'transmission' | 'closing' | 'closed';

/** Serves one connection. */
export class NbdSession {
  readonly #socket: Duplex;
  readonly #backend: NbdBackend;
  readonly #log: (line: string) => void;
  readonly #queue = new ByteQueue();
  readonly #limits: Required<SessionLimits>;
  readonly #closed: Promise<void>;
  #resolveClosed: () => void = () => undefined;
  #state: State = 'client-flags';
  #noZeroes = false;
  #structured = false;
  #metaExport: string | undefined;
  #options = 0;
  #export: NbdExport | undefined;
  #inFlight = 0;
  #inFlightBytes = 0;
  #processing = false;
  #timer: NodeJS.Timeout | undefined;
  #pausedForBackpressure = false;
  #released = false;
  #closeReason = '';

  constructor(socket: Duplex, backend: NbdBackend, options: { log: (line: string) => void; limits?: SessionLimits }) {
    this.#socket = socket;
    this.#backend = backend;
    this.#log = options.log;
    this.#limits = {
      maxOptionData: 65536,
      maxOptions: 256,
      maxRequest: 32 << 20,
      maxInFlight: 16,
      maxInFlightBytes: 64 << 20,
      handshakeTimeoutMs: 30_000,
      ...options.limits,
    };
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    socket.on('data', (chunk: Buffer) => {
      this.#queue.push(chunk);
      this.#process();
    });
    // A half-close is a disconnect: finish what is in flight, then close.
    socket.on('end', () => this.shutdown('client closed the connection'));
    socket.on('close', () => this.#close('connection closed'));
    socket.on('error', (err) => this.#close(`socket error: ${err.message}`));
    socket.on('drain', () => this.#maybeResume());
    this.#timer = setTimeout(() => this.#abort('handshake timed out'), this.#limits.handshakeTimeoutMs);
    this.#timer.unref?.();
    socket.write(encodeGreeting());
  }

  /** Resolves once the connection is closed and its export released. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** Closes the connection after in-flight requests (server shutdown, client half-close). */
  shutdown(why = 'server shutting down'): void {
    if (this.#state === 'transmission') this.#state = 'closing';
    else this.#end(why);
    this.#maybeFinish();
  }

  #process(): void {
    if (this.#processing) return;
    this.#processing = true;
    try {
      while (this.#state === 'client-flags' || this.#state === 'options' || this.#state === 'transmission') {
        if (this.#state === 'client-flags') {
          if (this.#queue.length < 4) break;
          const flags = this.#queue.consume(4).readUInt32BE(0);
          if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) return this.#abort(`unknown client flags 0x${flags.toString(16)}`);
          this.#noZeroes = (flags & ClientFlag.NBD_FLAG_C_NO_ZEROES) !== 0;
          this.#state = 'options';
        } else if (this.#state === 'options') {
          if (!this.#nextOption()) break;
        } else if (!this.#nextRequest()) break;
      }
    } finally {
      this.#processing = false;
    }
  }

  /** @returns false when more bytes are needed or an option is being handled */
  #nextOption(): boolean {
    const option = decodeOption(this.#queue, this.#limits.maxOptionData);
    if (!option) return false;
    if ('tooBig' in option) {
      this.#abort(`option data of ${option.tooBig} bytes`);
      return false;
    }
    if (option.magic !== NBD_IHAVEOPT) {
      this.#abort('bad option magic');
      return false;
    }
    if (++this.#options > this.#limits.maxOptions) {
      this.#abort('too many options');
      return false;
    }
    // Options are answered one at a time: stop reading and parsing until this one is done.
    this.#state = 'option-pending';
    this.#socket.pause();
    this.#handleOption(option.option, option.data)
      .then((next) => {
        if (this.#state !== 'option-pending') return;
        if (next === 'closed') return this.#end('the client ended the negotiation');
        this.#state = next;
        this.#socket.resume();
        this.#process();
      })
      .catch((err: unknown) => this.#abort(`option failed: ${err instanceof Error ? err.message : String(err)}`));
    return false;
  }

  async #handleOption(option: number, data: Buffer): Promise<State> {
    const reply = (type: number, payload?: Buffer) => this.#write(encodeOptionReply(option, type, payload));
    const error = (type: number, message: string) => reply(type, Buffer.from(message, 'utf8'));
    switch (option) {
      case Opt.NBD_OPT_EXPORT_NAME: {
        const exp = await this.#adopt(await this.#backend.open(data.toString('utf8')));
        if (!exp) return 'closed';
        this.#export = exp;
        this.#write(encodeExportNameReply(exp.size, this.#flags(exp), this.#noZeroes));
        return this.#startTransmission();
      }
      case Opt.NBD_OPT_ABORT:
        reply(Rep.NBD_REP_ACK);
        return 'closed';
      case Opt.NBD_OPT_LIST:
        if (data.length > 0) return (error(Rep.NBD_REP_ERR_INVALID, 'LIST takes no data'), 'options');
        for (const e of await this.#backend.list()) reply(Rep.NBD_REP_SERVER, encodeServerEntry(e.name, e.description));
        reply(Rep.NBD_REP_ACK);
        return 'options';
      case Opt.NBD_OPT_STRUCTURED_REPLY:
        if (data.length > 0) return (error(Rep.NBD_REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data'), 'options');
        this.#structured = true;
        reply(Rep.NBD_REP_ACK);
        return 'options';
      case Opt.NBD_OPT_INFO:
      case Opt.NBD_OPT_GO: {
        const request = parseInfoRequest(data);
        if (!request) return (error(Rep.NBD_REP_ERR_INVALID, 'malformed INFO/GO request'), 'options');
        const exp = await this.#adopt(await this.#backend.open(request.name));
        if (this.#state !== 'option-pending') return 'closed';
        if (!exp) return (error(Rep.NBD_REP_ERR_UNKNOWN, `no export named "${request.name}"`), 'options');
        reply(Rep.NBD_REP_INFO, encodeInfoExport(exp.size, this.#flags(exp)));
        if (request.infos.includes(Info.NBD_INFO_NAME)) reply(Rep.NBD_REP_INFO, encodeInfoText(Info.NBD_INFO_NAME, exp.name));
        if (request.infos.includes(Info.NBD_INFO_DESCRIPTION)) reply(Rep.NBD_REP_INFO, encodeInfoText(Info.NBD_INFO_DESCRIPTION, exp.description));
        reply(Rep.NBD_REP_INFO, encodeInfoBlockSize(MIN_BLOCK, PREFERRED_BLOCK, this.#limits.maxRequest));
        reply(Rep.NBD_REP_ACK);
        if (option === Opt.NBD_OPT_INFO) {
          await exp.close();
          return 'options';
        }
        this.#export = exp;
        return this.#startTransmission();
      }
      case Opt.NBD_OPT_LIST_META_CONTEXT:
      case Opt.NBD_OPT_SET_META_CONTEXT: {
        const set = option === Opt.NBD_OPT_SET_META_CONTEXT;
        if (set && !this.#structured) return (error(Rep.NBD_REP_ERR_INVALID, 'negotiate structured replies first'), 'options');
        const request = parseMetaContextRequest(data);
        if (!request) return (error(Rep.NBD_REP_ERR_INVALID, 'malformed meta context request'), 'options');
        const exports = await this.#backend.list();
        if (request.name !== '' && !exports.some((e) => e.name === request.name)) {
          return (error(Rep.NBD_REP_ERR_UNKNOWN, `no export named "${request.name}"`), 'options');
        }
        const wanted = set
          ? request.queries.includes(BASE_ALLOCATION)
          : request.queries.length === 0 || request.queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
        if (set) this.#metaExport = wanted ? request.name : undefined;
        if (wanted) reply(Rep.NBD_REP_META_CONTEXT, encodeMetaContext(set ? CONTEXT_ID : 0, BASE_ALLOCATION));
        reply(Rep.NBD_REP_ACK);
        return 'options';
      }
      case Opt.NBD_OPT_STARTTLS:
        error(Rep.NBD_REP_ERR_UNSUP, 'TLS is not supported; use an SSH tunnel or a trusted network');
        return 'options';
      default:
        error(Rep.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
        return 'options';
    }
  }

  /** An export opened while the connection closed is released at once. */
  async #adopt(exp: NbdExport | undefined): Promise<NbdExport | undefined> {
    if (exp && this.#state !== 'option-pending') {
      await exp.close();
      return undefined;
    }
    return exp;
  }

  #startTransmission(): State {
    if (this.#timer) clearTimeout(this.#timer);
    this.#log(`client opened export "${this.#export?.name ?? ''}"`);
    return 'transmission';
  }

  #flags(exp: NbdExport): number {
    let flags =
      TxFlag.NBD_FLAG_HAS_FLAGS |
      TxFlag.NBD_FLAG_SEND_FLUSH |
      TxFlag.NBD_FLAG_SEND_FUA |
      TxFlag.NBD_FLAG_SEND_TRIM |
      TxFlag.NBD_FLAG_SEND_WRITE_ZEROES |
      TxFlag.NBD_FLAG_SEND_FAST_ZERO |
      // All connections to an export share one cache and one copy-on-write session.
      TxFlag.NBD_FLAG_CAN_MULTI_CONN;
    if (this.#structured) flags |= TxFlag.NBD_FLAG_SEND_DF;
    if (exp.readOnly) flags |= TxFlag.NBD_FLAG_READ_ONLY;
    return flags;
  }

  /** @returns false when more bytes are needed or reading is paused */
  #nextRequest(): boolean {
    if (this.#inFlight >= this.#limits.maxInFlight || this.#inFlightBytes >= this.#limits.maxInFlightBytes) {
      this.#pause();
      return false;
    }
    if (this.#queue.length < REQUEST_HEADER_LENGTH) return false;
    const head = this.#queue.peek(REQUEST_HEADER_LENGTH);
    if (head.readUInt32BE(0) !== NBD_REQUEST_MAGIC) {
      this.#abort('bad request magic');
      return false;
    }
    const type = head.readUInt16BE(6);
    const length = head.readUInt32BE(24);
    let payload = 0;
    if (type === Cmd.NBD_CMD_WRITE) {
      // A payload we will not hold is not worth reading: close (the spec allows it).
      if (length > this.#limits.maxRequest) {
        this.#abort(`write of ${length} bytes`);
        return false;
      }
      payload = length;
      if (this.#queue.length < REQUEST_HEADER_LENGTH + payload) return false;
    }
    const request = decodeRequest(this.#queue) as Request;
    const data = payload > 0 ? this.#queue.consume(payload) : undefined;
    if (type === Cmd.NBD_CMD_DISC) {
      this.#state = 'closing';
      this.#maybeFinish();
      return false;
    }
    const bytes = type === Cmd.NBD_CMD_READ || type === Cmd.NBD_CMD_WRITE ? Math.min(length, this.#limits.maxRequest) : 0;
    this.#inFlight++;
    this.#inFlightBytes += bytes;
    this.#handleRequest(request, data)
      .catch((err: unknown) => this.#abort(`request failed: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => {
        this.#inFlight--;
        this.#inFlightBytes -= bytes;
        if (this.#state === 'closed') this.#releaseExport();
        else {
          this.#maybeResume();
          this.#maybeFinish();
        }
      });
    return true;
  }

  async #handleRequest(r: Request, data: Buffer | undefined): Promise<void> {
    const exp = this.#export as NbdExport;
    const fail = (errno: number, message: string) => this.#replyError(r, errno, message);
    if ((r.flags & ~KNOWN_CMD_FLAGS) !== 0) return fail(Errno.NBD_EINVAL, 'unknown command flags');
    const end = r.offset + r.length;
    try {
      switch (r.type) {
        case Cmd.NBD_CMD_READ:
          if (end > exp.size) return fail(Errno.NBD_EINVAL, 'read past the end of the export');
          if (r.length > this.#limits.maxRequest) return fail(Errno.NBD_EINVAL, 'read longer than the maximum block size');
          if ((r.flags & CmdFlag.NBD_CMD_FLAG_DF) !== 0 && !this.#structured) return fail(Errno.NBD_EINVAL, 'DF without structured replies');
          return await this.#read(r, exp);
        case Cmd.NBD_CMD_WRITE:
          if (exp.readOnly) return fail(Errno.NBD_EPERM, 'the export is read-only');
          if (end > exp.size) return fail(Errno.NBD_ENOSPC, 'write past the end of the export');
          await exp.write(r.offset, data ?? Buffer.alloc(0));
          if ((r.flags & CmdFlag.NBD_CMD_FLAG_FUA) !== 0) await exp.flush();
          return this.#replyOk(r);
        case Cmd.NBD_CMD_FLUSH:
          await exp.flush();
          return this.#replyOk(r);
        case Cmd.NBD_CMD_TRIM:
          if (exp.readOnly) return fail(Errno.NBD_EPERM, 'the export is read-only');
          if (end > exp.size) return fail(Errno.NBD_EINVAL, 'trim past the end of the export');
          await exp.trim(r.offset, r.length);
          if ((r.flags & CmdFlag.NBD_CMD_FLAG_FUA) !== 0) await exp.flush();
          return this.#replyOk(r);
        case Cmd.NBD_CMD_WRITE_ZEROES:
          if (exp.readOnly) return fail(Errno.NBD_EPERM, 'the export is read-only');
          if (end > exp.size) return fail(Errno.NBD_ENOSPC, 'write past the end of the export');
          await exp.zero(r.offset, r.length, {
            noHole: (r.flags & CmdFlag.NBD_CMD_FLAG_NO_HOLE) !== 0,
            fast: (r.flags & CmdFlag.NBD_CMD_FLAG_FAST_ZERO) !== 0,
          });
          if ((r.flags & CmdFlag.NBD_CMD_FLAG_FUA) !== 0) await exp.flush();
          return this.#replyOk(r);
        case Cmd.NBD_CMD_BLOCK_STATUS:
          if (!this.#structured || this.#metaExport === undefined) return fail(Errno.NBD_EINVAL, 'no meta context selected');
          if (end > exp.size || r.length === 0) return fail(Errno.NBD_EINVAL, 'block status past the end of the export');
          return await this.#blockStatus(r, exp);
        default:
          return fail(Errno.NBD_EINVAL, `command ${r.type} is not supported`);
      }
    } catch (err) {
      const errno = err instanceof NbdError ? err.errno : Errno.NBD_EIO;
      const message = err instanceof Error ? err.message : String(err);
      if (!(err instanceof NbdError)) this.#log(`export "${exp.name}": ${message}`);
      return fail(errno, message);
    }
  }

  async #read(r: Request, exp: NbdExport): Promise<void> {
    if (!this.#structured) {
      const data = Buffer.allocUnsafe(r.length);
      await exp.read(r.offset, data);
      this.#write(encodeSimpleReply(r.handle, 0), data);
      return;
    }
    const df = (r.flags & CmdFlag.NBD_CMD_FLAG_DF) !== 0;
    const pieces = df ? [{ length: r.length, hole: false }] : await this.#clampedExtents(exp, r.offset, r.length, true);
    // Read everything first, so that an error becomes one error reply with nothing before it.
    const parts: { offset: number; length: number; data?: Buffer }[] = [];
    let at = r.offset;
    for (const piece of pieces) {
      if (piece.hole) parts.push({ offset: at, length: piece.length });
      else {
        const data = Buffer.allocUnsafe(piece.length);
        await exp.read(at, data);
        parts.push({ offset: at, length: piece.length, data });
      }
      at += piece.length;
    }
    parts.forEach((p, i) => {
      const done = i === parts.length - 1;
      if (p.data) this.#write(encodeDataChunkHeader(r.handle, done, p.offset, p.length), p.data);
      else this.#write(encodeHoleChunk(r.handle, done, p.offset, p.length));
    });
    if (parts.length === 0) this.#write(encodeChunkHeader(r.handle, ReplyFlag.NBD_REPLY_FLAG_DONE, ReplyType.NBD_REPLY_TYPE_NONE, 0));
  }

  async #blockStatus(r: Request, exp: NbdExport): Promise<void> {
    let extents = await this.#clampedExtents(exp, r.offset, r.length, false);
    if ((r.flags & CmdFlag.NBD_CMD_FLAG_REQ_ONE) !== 0) extents = extents.slice(0, 1);
    this.#write(
      encodeBlockStatusChunk(
        r.handle,
        true,
        CONTEXT_ID,
        extents.map((e) => ({ length: e.length, flags: e.hole ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0 })),
      ),
    );
  }

  /**
   * Extents cut to the request, merged, each under 4 GiB. With `fill`, a range the export did
   * not describe counts as data (reads must cover the request; block status may cover less).
   */
  async #clampedExtents(exp: NbdExport, offset: number, length: number, fill: boolean): Promise<NbdExtent[]> {
    const out: NbdExtent[] = [];
    let left = length;
    for (const e of await exp.extents(offset, length)) {
      if (left <= 0) break;
      const take = Math.min(e.length, left);
      const last = out[out.length - 1];
      if (last && last.hole === e.hole && last.length + take < 2 ** 32 - MIN_BLOCK) out[out.length - 1] = { length: last.length + take, hole: e.hole };
      else out.push({ length: take, hole: e.hole });
      left -= take;
    }
    if (left > 0 && (fill || out.length === 0)) out.push({ length: left, hole: false });
    return out;
  }

  #replyOk(r: Request): void {
    this.#write(encodeSimpleReply(r.handle, 0));
  }

  #replyError(r: Request, errno: number, message: string): void {
    if (this.#structured) this.#write(encodeErrorChunk(r.handle, errno, message));
    else this.#write(encodeSimpleReply(r.handle, errno));
  }

  #write(...buffers: Buffer[]): void {
    if (this.#state === 'closed') return;
    for (const b of buffers) this.#socket.write(b);
  }

  #pause(): void {
    if (!this.#pausedForBackpressure) {
      this.#pausedForBackpressure = true;
      this.#socket.pause();
    }
  }

  #maybeResume(): void {
    const writable = this.#socket as Duplex & { writableLength?: number; writableHighWaterMark?: number };
    const congested = (writable.writableLength ?? 0) > this.#limits.maxInFlightBytes;
    if (congested) {
      this.#pause();
      return;
    }
    if (this.#pausedForBackpressure && this.#inFlight < this.#limits.maxInFlight && this.#inFlightBytes < this.#limits.maxInFlightBytes) {
      this.#pausedForBackpressure = false;
      this.#socket.resume();
      this.#process();
    }
  }

  #maybeFinish(): void {
    if (this.#state === 'closing' && this.#inFlight === 0) {
      this.#socket.end();
      this.#close('client disconnected');
    }
  }

  /** A normal end before transmission (ABORT, unknown EXPORT_NAME, half-close). */
  #end(why: string): void {
    if (this.#state === 'closed') return;
    this.#socket.end();
    this.#close(why);
  }

  /** Hostile or broken input: drop this connection only. */
  #abort(why: string): void {
    if (this.#state === 'closed') return;
    this.#log(`closing connection: ${why}`);
    this.#socket.destroy();
    this.#close(why);
  }

  #close(why: string): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closeReason = why;
    if (this.#timer) clearTimeout(this.#timer);
    this.#releaseExport();
  }

  /** Releases the export once no request of this connection is in flight any more. */
  #releaseExport(): void {
    if (this.#inFlight > 0 || this.#released) return;
    this.#released = true;
    const exp = this.#export;
    this.#export = undefined;
    if (exp) this.#log(`export "${exp.name}" released: ${this.#closeReason}`);
    (exp ? exp.close() : Promise.resolve()).catch((err: unknown) => this.#log(`releasing export: ${String(err)}`)).finally(() => this.#resolveClosed());
  }
}
