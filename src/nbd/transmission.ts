/**
 * The transmission phase of one NBD connection: validates each request (validate-request.ts), then
 * runs it on the negotiated export. Every request gets a reply; failures become NBD error
 * replies. With structured replies, READ replies are assembled from data and hole chunks.
 */
import { NbdError, type NbdExport, type NbdExtent } from './backend.js';
import { CONTEXT_ID, MIN_BLOCK, type Negotiated } from './negotiation.js';
import { nbdErrno } from './nbd-errno.js';
import { validateRequest, type RequestLimits } from './validate-request.js';
import {
  Cmd,
  CmdFlag,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  ReplyFlag,
  ReplyType,
  encodeBlockStatusChunk,
  encodeChunkHeader,
  encodeDataChunkHeader,
  encodeErrorChunk,
  encodeHoleChunk,
  encodeSimpleReply,
  type Request,
} from './protocol.js';
import { ReplyBuffers } from './reply-buffers.js';

/** What a transmission may use of its connection. */
export interface TransmissionContext {
  /** Sends bytes to the client, in order (dropped once the connection closed). */
  readonly write: (...data: Buffer[]) => void;
  /**
   * Sends a header and data like `write`, then calls `sent` once the data is no longer needed
   * (sent, or dropped with the connection): its buffer may then be reused.
   */
  readonly writeData: (header: Buffer, data: Buffer, sent: () => void) => void;
  readonly log: (line: string) => void;
  /** Largest READ/WRITE length. */
  readonly maxRequest: number;
}

/** Serves the requests of one connection on its negotiated export. */
export class Transmission {
  readonly #ctx: TransmissionContext;
  readonly #export: NbdExport;
  readonly #structured: boolean;
  readonly #limits: RequestLimits;
  /** A few replies' worth (nbdcopy keeps 64 requests of 256 KiB in flight per connection). */
  readonly #buffers = new ReplyBuffers(16 << 20);

  constructor(negotiated: Negotiated, ctx: TransmissionContext) {
    this.#ctx = ctx;
    this.#export = negotiated.export;
    this.#structured = negotiated.structured;
    this.#limits = {
      size: negotiated.export.size,
      readOnly: negotiated.export.readOnly,
      flags: negotiated.flags,
      blockStatus: negotiated.blockStatus,
      maxRequest: ctx.maxRequest,
    };
  }

  /** The export this connection uses. */
  get export(): NbdExport {
    return this.#export;
  }

  /** Answers one request; rejects only when replying itself is impossible. */
  async handle(r: Request): Promise<void> {
    const exp = this.#export;
    const refusal = validateRequest(r, this.#limits);
    if (refusal) return this.#replyError(r, refusal.errno, refusal.message);
    const fua = (r.flags & CmdFlag.NBD_CMD_FLAG_FUA) !== 0;
    try {
      switch (r.type) {
        case Cmd.NBD_CMD_READ:
          return await this.#read(r, exp);
        case Cmd.NBD_CMD_WRITE:
          await exp.write(r.offset, r.data ?? Buffer.alloc(0));
          break;
        case Cmd.NBD_CMD_FLUSH:
          await exp.flush();
          return this.#replyOk(r);
        case Cmd.NBD_CMD_TRIM:
          await exp.trim(r.offset, r.length);
          break;
        case Cmd.NBD_CMD_WRITE_ZEROES:
          await exp.zero(r.offset, r.length, {
            noHole: (r.flags & CmdFlag.NBD_CMD_FLAG_NO_HOLE) !== 0,
            fast: (r.flags & CmdFlag.NBD_CMD_FLAG_FAST_ZERO) !== 0,
          });
          break;
        case Cmd.NBD_CMD_BLOCK_STATUS:
          return await this.#blockStatusReply(r, exp);
        default:
          // validateRequest() lets only the commands above through.
          throw new RangeError(`Command ${r.type} passed validation but has no handler`);
      }
      // The writing commands: FUA makes them durable before the reply.
      if (fua) await exp.flush();
      return this.#replyOk(r);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // A backend's NbdError is an answer it chose; anything else is worth a line in the log.
      if (!(err instanceof NbdError)) this.#ctx.log(`export "${exp.name}": ${message}`);
      return this.#replyError(r, nbdErrno(err), message);
    }
  }

  async #read(r: Request, exp: NbdExport): Promise<void> {
    const give = (data: Buffer) => () => this.#buffers.give(data);
    if (!this.#structured) {
      const data = this.#buffers.take(r.length);
      try {
        await exp.read(r.offset, data);
      } catch (err) {
        this.#buffers.give(data);
        throw err;
      }
      this.#ctx.writeData(encodeSimpleReply(r.handle, 0), data, give(data));
      return;
    }
    const df = (r.flags & CmdFlag.NBD_CMD_FLAG_DF) !== 0;
    const pieces = df ? [{ length: r.length, hole: false }] : await this.#clampedExtents(exp, r.offset, r.length, true);
    // Read everything first, so that an error becomes one error reply with nothing before it.
    const parts: { offset: number; length: number; data?: Buffer }[] = [];
    try {
      let at = r.offset;
      for (const piece of pieces) {
        if (piece.hole) parts.push({ offset: at, length: piece.length });
        else {
          const data = this.#buffers.take(piece.length);
          parts.push({ offset: at, length: piece.length, data });
          await exp.read(at, data);
        }
        at += piece.length;
      }
    } catch (err) {
      for (const p of parts) if (p.data) this.#buffers.give(p.data);
      throw err;
    }
    parts.forEach((p, i) => {
      const done = i === parts.length - 1;
      if (p.data) this.#ctx.writeData(encodeDataChunkHeader(r.handle, done, p.offset, p.length), p.data, give(p.data));
      else this.#ctx.write(encodeHoleChunk(r.handle, done, p.offset, p.length));
    });
    if (parts.length === 0) this.#ctx.write(encodeChunkHeader(r.handle, ReplyFlag.NBD_REPLY_FLAG_DONE, ReplyType.NBD_REPLY_TYPE_NONE, 0));
  }

  async #blockStatusReply(r: Request, exp: NbdExport): Promise<void> {
    let extents = await this.#clampedExtents(exp, r.offset, r.length, false);
    if ((r.flags & CmdFlag.NBD_CMD_FLAG_REQ_ONE) !== 0) extents = extents.slice(0, 1);
    this.#ctx.write(
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
    this.#ctx.write(encodeSimpleReply(r.handle, 0));
  }

  #replyError(r: Request, errno: number, message: string): void {
    if (this.#structured) this.#ctx.write(encodeErrorChunk(r.handle, errno, message));
    else this.#ctx.write(encodeSimpleReply(r.handle, errno));
  }
}
