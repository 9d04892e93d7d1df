/**
 * What an NBD connection needs from the outside: exports to list and open. The session knows
 * nothing of versions or stores; `VersionExports` (exports.ts) implements this contract on the
 * engine, and the unit tests on memory.
 */

/** An NBD error a backend throws to choose the reply's error code. */
export class NbdError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

/** A run of an export with one allocation state. */
export interface NbdExtent {
  readonly length: number;
  /** Reads as zeros without being stored. */
  readonly hole: boolean;
}

/** One opened export, as a connection sees it. */
export interface NbdExport {
  readonly name: string;
  readonly description: string;
  readonly size: number;
  readonly readOnly: boolean;
  read(offset: number, into: Buffer): Promise<void>;
  write(offset: number, data: Buffer): Promise<void>;
  /** WRITE_ZEROES; throws NbdError(NBD_ENOTSUP) when `fast` is set and it would not be fast. */
  zero(offset: number, length: number, options: { noHole: boolean; fast: boolean }): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  /** Allocation runs covering [offset, offset + length) (the last may reach further). */
  extents(offset: number, length: number): Promise<NbdExtent[]>;
  /** This connection is done with the export. */
  close(): Promise<void>;
}

/** Where exports come from. */
export interface NbdBackend {
  /** Exports for NBD_OPT_LIST. */
  list(): Promise<{ name: string; description: string }[]>;
  /** Opens an export by name ('' is the default export); undefined when there is none. */
  open(name: string): Promise<NbdExport | undefined>;
}
