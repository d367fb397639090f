// Binary framing shared by the Nix serve protocol, the NAR format and the export format:
// little-endian u64 integers; strings as u64 length + bytes + zero padding to a multiple of 8.
//
// Longer than the other modules because it is the reader and the writer of one framing, which must stay symmetric.

import type {Readable, Writable} from 'node:stream';

/** A violation of the wire format: early EOF, bad padding, oversized or out-of-range values. */
export class ProtocolError extends Error {
  /** Byte offset in the stream at which the problem was detected (bytes consumed so far), if known. */
  readonly offset: number | undefined;
  constructor(message: string, offset?: number) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
    this.name = 'ProtocolError';
    this.offset = offset;
  }
}

/** Raised when the stream ends before the requested bytes arrived. */
export class UnexpectedEofError extends ProtocolError {
  constructor(what: string, offset: number) {
    super(`unexpected end of stream while reading ${what}`, offset);
    this.name = 'UnexpectedEofError';
  }
}

export const MAX_SAFE_U64 = BigInt(Number.MAX_SAFE_INTEGER);
/** Default upper bound for one string or byte field. */
export const DEFAULT_MAX_STRING = 64 * 1024 * 1024;
/** Default upper bound for the element count of a list, set or map. */
export const DEFAULT_MAX_COUNT = 10_000_000;

export function padLength(len: number): number {
  return (8 - (len % 8)) % 8;
}

const ZERO_PAD = Buffer.alloc(8);

/**
 * Buffered reader over a Readable. All reads are sequential: do not issue a new read before the previous one
 * settled. Every consumed byte is counted and may be observed through a tap (used to hash and tee NARs).
 */
export class WireReader {
  private readonly iterator: AsyncIterator<unknown>;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private consumed = 0;
  private tap: ((bytes: Buffer) => void) | undefined;
  /** Optional label used in error messages ("serve connection", "NAR stream", …). */
  readonly label: string;

  constructor(source: Readable | AsyncIterable<Buffer | Uint8Array | string>, options: {label?: string} = {}) {
    this.iterator = (source as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    this.label = options.label ?? 'stream';
  }

  /** Bytes consumed so far (not counting bytes merely buffered). */
  get bytesRead(): number {
    return this.consumed;
  }

  /** Route every byte consumed from now on through `fn` (synchronously), or stop with `undefined`. */
  setTap(fn: ((bytes: Buffer) => void) | undefined): void {
    this.tap = fn;
  }

  /** True once the source has ended and no buffered bytes remain. */
  async atEof(): Promise<boolean> {
    if (this.buffered > 0) return false;
    await this.fill(1);
    return this.buffered === 0;
  }

  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.ended) {
      let step: IteratorResult<unknown>;
      try {
        step = await this.iterator.next();
      } catch (error) {
        this.ended = true;
        throw new ProtocolError(`${this.label} failed: ${(error as Error).message ?? String(error)}`, this.consumed);
      }
      if (step.done) {
        this.ended = true;
        break;
      }
      const value = step.value;
      const chunk = Buffer.isBuffer(value)
        ? value
        : value instanceof Uint8Array
          ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
          : Buffer.from(String(value), 'utf8');
      if (chunk.length === 0) continue;
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
  }

  /** Take up to n buffered bytes (at least one if any is buffered) without copying when possible. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length <= n) {
      this.chunks.shift();
      out = first;
    } else {
      out = first.subarray(0, n);
      this.chunks[0] = first.subarray(n);
    }
    this.buffered -= out.length;
    this.consumed += out.length;
    if (this.tap) this.tap(out);
    return out;
  }

  /** Read exactly n bytes. */
  async readExact(n: number, what = `${n} bytes`): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    if (this.buffered < n) await this.fill(n);
    if (this.buffered < n) throw new UnexpectedEofError(`${what} from ${this.label}`, this.consumed + this.buffered);
    const first = this.chunks[0]!;
    if (first.length >= n) return this.take(n);
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const part = this.take(left);
      parts.push(part);
      left -= part.length;
    }
    return Buffer.concat(parts, n);
  }

  /**
   * Stream exactly n bytes to `onChunk` in pieces as they arrive (for large NAR contents); the callback may be
   * async (its promise is awaited before more data is read).
   */
  async readStreaming(n: number, onChunk: (piece: Buffer) => void | Promise<void>, what = `${n} bytes`): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0) await this.fill(1);
      if (this.buffered === 0) throw new UnexpectedEofError(`${what} from ${this.label}`, this.consumed);
      const piece = this.take(Math.min(left, this.chunks[0]!.length));
      left -= piece.length;
      const r = onChunk(piece);
      if (r) await r;
    }
  }

  /** Read and verify zero padding following a field of `len` bytes. */
  async readPadding(len: number, what = 'field'): Promise<void> {
    const pad = padLength(len);
    if (pad === 0) return;
    const at = this.consumed;
    const bytes = await this.readExact(pad, `padding of ${what}`);
    for (const b of bytes) {
      if (b !== 0) throw new ProtocolError(`non-zero padding after ${what} in ${this.label}`, at);
    }
  }

  /** Read a u64 as a bigint (full range). */
  async readU64Big(what = 'integer'): Promise<bigint> {
    const b = await this.readExact(8, what);
    return b.readBigUInt64LE(0);
  }

  /** Read a u64 as a JS number; values ≥ 2^53 are rejected. */
  async readU64(what = 'integer'): Promise<number> {
    const at = this.consumed;
    const b = await this.readExact(8, what);
    const lo = b.readUInt32LE(0);
    const hi = b.readUInt32LE(4);
    if (hi > 0x1fffff) {
      throw new ProtocolError(`${what} ${b.readBigUInt64LE(0)} does not fit in 53 bits in ${this.label}`, at);
    }
    return hi * 0x1_0000_0000 + lo;
  }

  /** Alias of readU64 (Nix's readInt). */
  readInt(what = 'integer'): Promise<number> {
    return this.readU64(what);
  }

  /** Read a u64 that must be 0 or 1. */
  async readBool(what = 'boolean'): Promise<boolean> {
    const at = this.consumed;
    const v = await this.readU64Big(what);
    if (v === 0n) return false;
    if (v === 1n) return true;
    throw new ProtocolError(`${what} has value ${v}, expected 0 or 1, in ${this.label}`, at);
  }

  /** Read a length-prefixed, zero-padded byte string. */
  async readBytes(options: {max?: number; what?: string} = {}): Promise<Buffer> {
    const what = options.what ?? 'string';
    const max = options.max ?? DEFAULT_MAX_STRING;
    const at = this.consumed;
    const len = await this.readU64(`length of ${what}`);
    if (len > max) throw new ProtocolError(`${what} of ${len} bytes exceeds the limit of ${max} in ${this.label}`, at);
    const bytes = await this.readExact(len, what);
    await this.readPadding(len, what);
    return bytes;
  }

  /** Read a string (decoded as UTF-8). */
  async readString(options: {max?: number; what?: string} = {}): Promise<string> {
    return (await this.readBytes(options)).toString('utf8');
  }

  private async readCount(what: string, max: number): Promise<number> {
    const at = this.consumed;
    const n = await this.readU64(`element count of ${what}`);
    if (n > max) throw new ProtocolError(`${what} has ${n} elements, more than the limit of ${max}, in ${this.label}`, at);
    return n;
  }

  /** Read a list or set of strings. */
  async readStrings(options: {maxCount?: number; max?: number; what?: string} = {}): Promise<string[]> {
    const what = options.what ?? 'string list';
    const n = await this.readCount(what, options.maxCount ?? DEFAULT_MAX_COUNT);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(await this.readString({max: options.max, what: `${what}[${i}]`}));
    return out;
  }

  /** Read a map of strings to strings (count, then key, value, …). */
  async readStringMap(options: {maxCount?: number; max?: number; what?: string} = {}): Promise<Map<string, string>> {
    const what = options.what ?? 'string map';
    const n = await this.readCount(what, options.maxCount ?? DEFAULT_MAX_COUNT);
    const out = new Map<string, string>();
    for (let i = 0; i < n; i++) {
      const key = await this.readString({max: options.max, what: `${what} key ${i}`});
      const value = await this.readString({max: options.max, what: `${what} value for ${JSON.stringify(key)}`});
      out.set(key, value);
    }
    return out;
  }
}

/** Encode one u64 (number or bigint) into 8 bytes. Negative numbers are encoded modulo 2^64. */
export function encodeU64(n: number | bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  if (typeof n === 'bigint') {
    b.writeBigUInt64LE(BigInt.asUintN(64, n), 0);
    return b;
  }
  if (!Number.isInteger(n)) throw new RangeError(`cannot encode ${n} as a u64: not an integer`);
  if (n < 0) {
    if (n < -Number.MAX_SAFE_INTEGER) throw new RangeError(`cannot encode ${n} as a u64: out of range`);
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(n)), 0);
    return b;
  }
  if (n > Number.MAX_SAFE_INTEGER) throw new RangeError(`cannot encode ${n} as a u64: above 2^53`);
  b.writeUInt32LE(n % 0x1_0000_0000, 0);
  b.writeUInt32LE(Math.floor(n / 0x1_0000_0000), 4);
  return b;
}

/** Encode a length-prefixed, zero-padded string frame. */
export function encodeString(s: string | Buffer | Uint8Array): Buffer {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s.buffer, s.byteOffset, s.byteLength);
  return Buffer.concat([encodeU64(bytes.length), bytes, ZERO_PAD.subarray(0, padLength(bytes.length))]);
}

/**
 * Batches frames in memory and writes them to a Writable on flush(), honouring backpressure. Frame methods are
 * synchronous and chainable; flush() (and raw streaming via pipeFrom) is asynchronous.
 */
export class WireWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written = 0;
  private failure: Error | undefined;
  readonly label: string;

  constructor(private readonly sink: Writable, options: {label?: string} = {}) {
    this.label = options.label ?? 'stream';
    // Record write errors (EPIPE when the peer died) instead of letting them crash the process.
    sink.on('error', (error: Error) => {
      this.failure ??= error;
    });
  }

  /** Bytes handed to the sink so far. */
  get bytesWritten(): number {
    return this.written;
  }

  /** Bytes queued but not yet flushed. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  private push(b: Buffer): this {
    if (b.length === 0) return this;
    this.pending.push(b);
    this.pendingBytes += b.length;
    return this;
  }

  u64(n: number | bigint): this {
    return this.push(encodeU64(n));
  }

  int(n: number | bigint): this {
    return this.u64(n);
  }

  bool(b: boolean): this {
    return this.u64(b ? 1 : 0);
  }

  string(s: string | Buffer | Uint8Array): this {
    return this.push(encodeString(s));
  }

  /** A list or set: count, then each string. Sets must be given sorted by the caller (see sortedSet). */
  strings(list: Iterable<string>): this {
    const arr = [...list];
    this.u64(arr.length);
    for (const s of arr) this.string(s);
    return this;
  }

  /** A map: count, then key, value pairs in the order given. */
  stringMap(entries: Iterable<readonly [string, string]>): this {
    const arr = [...entries];
    this.u64(arr.length);
    for (const [k, v] of arr) this.string(k).string(v);
    return this;
  }

  /** Raw bytes with no framing (NAR content streamed by the caller). */
  raw(bytes: Buffer | Uint8Array): this {
    return this.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  private async writeChunk(chunk: Buffer): Promise<void> {
    if (this.failure) throw new ProtocolError(`writing to ${this.label} failed: ${this.failure.message}`);
    if (this.sink.destroyed || this.sink.writableEnded) {
      throw new ProtocolError(`cannot write to ${this.label}: it is closed`);
    }
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (error?: Error | null) => {
        if (done) return;
        done = true;
        this.sink.off('close', onClose);
        if (error) reject(new ProtocolError(`writing to ${this.label} failed: ${error.message}`));
        else resolve();
      };
      const onClose = () => finish(this.failure ?? new Error('stream closed'));
      this.sink.once('close', onClose);
      this.sink.write(chunk, (error) => finish(error));
    });
    this.written += chunk.length;
  }

  /** Write everything queued to the sink and wait until it was accepted. */
  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.writeChunk(data);
  }

  /** Flush when more than `threshold` bytes are queued. */
  async maybeFlush(threshold = 256 * 1024): Promise<void> {
    if (this.pendingBytes >= threshold) await this.flush();
  }

  /** Flush, then copy a whole readable stream unframed; returns the number of bytes copied. */
  async pipeFrom(source: AsyncIterable<Buffer | Uint8Array | string>, onChunk?: (chunk: Buffer) => void): Promise<number> {
    await this.flush();
    let n = 0;
    for await (const value of source) {
      const chunk = Buffer.isBuffer(value)
        ? value
        : typeof value === 'string'
          ? Buffer.from(value, 'utf8')
          : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      if (chunk.length === 0) continue;
      onChunk?.(chunk);
      n += chunk.length;
      await this.writeChunk(chunk);
    }
    return n;
  }

  /** End the sink now, dropping anything queued (EOF for the peer). */
  endNow(): void {
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.sink.writableEnded && !this.sink.destroyed) this.sink.end();
  }

  /** Flush and end the sink (EOF for the peer). */
  async end(): Promise<void> {
    await this.flush();
    if (this.sink.writableEnded || this.sink.destroyed) return;
    await new Promise<void>((resolve) => this.sink.end(() => resolve()));
  }
}

/** Sort strings byte-wise (as Nix's std::set<std::string> orders them), removing duplicates. */
export function sortedSet(items: Iterable<string>): string[] {
  const unique = [...new Set(items)];
  return unique
    .map((s) => ({s, b: Buffer.from(s, 'utf8')}))
    .sort((x, y) => Buffer.compare(x.b, y.b))
    .map((x) => x.s);
}
