// The connection under the serve protocol client (`nix-store --serve --write`) over any duplex byte stream: a
// local child process, or an ssh exec channel. NixOS/nix src/libstore/serve-protocol.hh, src/nix-store/nix-store.cc
// (opServe); the version this client offers is that of Hydra's queue runner.

import type {Readable, Writable} from 'node:stream';
import {WireReader, WireWriter} from './wire.js';

export const SERVE_MAGIC_1 = 0x390c9deb;
export const SERVE_MAGIC_2 = 0x5452eecb;
/** The version this client offers: 2.6, like Hydra's queue runner. */
export const CLIENT_VERSION = 0x206;
/** The oldest server version accepted. */
export const MIN_SERVER_VERSION = 0x205;

export interface ServeStreams {
  stdin: Writable;
  stdout: Readable;
  stderr?: Readable;
}

export interface ServeClientOptions {
  /** Store directory used to turn builtOutputs basenames into full paths (default $NIX_STORE_DIR or /nix/store). */
  storeDir?: string;
  /** Name of the peer for error messages (e.g. the machine). */
  label?: string;
  /** Each stderr chunk (remote messages and the build log) as it arrives. */
  onStderr?: (chunk: Buffer) => void;
  /** Bytes of stderr kept for error messages (default 64 KiB). */
  stderrTail?: number;
}

/** An error talking to the serve peer; the message includes what the peer printed on stderr, if anything. */
export class ServeError extends Error {
  /** What the peer printed on stderr (tail), '' if nothing. */
  readonly stderr: string;
  constructor(message: string, stderr = '', cause?: unknown) {
    super(stderr ? `${message}\n${stderr}` : message, cause === undefined ? undefined : {cause});
    this.name = 'ServeError';
    this.stderr = stderr;
  }
}

/**
 * A serve connection: the greeting and version negotiation, one request in flight at a time, the peer's stderr
 * kept for error messages, and the end of the stream. ServeClient adds the requests.
 */
export class ServeConnection {
  protected readonly reader: WireReader;
  protected readonly writer: WireWriter;
  protected readonly stdin: Writable;
  private readonly stderr: Readable | undefined;
  protected readonly storeDir: string;
  protected readonly label: string;
  private readonly tailLimit: number;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private stderrDone: Promise<void>;
  private queue: Promise<unknown> = Promise.resolve();
  protected broken: Error | undefined;
  private closed = false;
  /** Version the server announced (0 before the handshake). */
  serverVersion = 0;
  /** Effective version: min(client, server) (0 before the handshake). */
  version = 0;

  constructor(streams: ServeStreams, options: ServeClientOptions = {}) {
    this.label = options.label ?? 'serve peer';
    this.reader = new WireReader(streams.stdout, {label: `${this.label} (stdout)`});
    this.writer = new WireWriter(streams.stdin, {label: `${this.label} (stdin)`});
    this.stdin = streams.stdin;
    this.storeDir = (options.storeDir ?? (process.env.NIX_STORE_DIR || '/nix/store')).replace(/\/+$/, '');
    this.tailLimit = options.stderrTail ?? 64 * 1024;
    this.stderr = streams.stderr;
    const onStderr = options.onStderr;
    if (this.stderr) {
      const stream = this.stderr;
      this.stderrDone = new Promise((resolve) => {
        stream.once('end', resolve);
        stream.once('close', resolve);
        stream.once('error', () => resolve());
      });
      stream.on('data', (chunk: Buffer | string) => {
        const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        this.keepTail(b);
        onStderr?.(b);
      });
    } else {
      this.stderrDone = Promise.resolve();
    }
  }

  /** Bytes written to the peer. */
  get bytesSent(): number {
    return this.writer.bytesWritten;
  }

  /** Bytes read from the peer (protocol stream only, stderr not counted). */
  get bytesReceived(): number {
    return this.reader.bytesRead;
  }

  /** Neither broken by an error nor closed: the next request may be sent. */
  get usable(): boolean {
    return this.broken === undefined && !this.closed;
  }

  /** Forget the stderr kept for error messages (a reused connection starts a new job). */
  clearStderrTail(): void {
    this.tail = [];
    this.tailBytes = 0;
  }

  /** The last bytes the peer wrote to stderr, as text. */
  stderrText(): string {
    return Buffer.concat(this.tail, this.tailBytes).toString('utf8');
  }

  private keepTail(b: Buffer): void {
    this.tail.push(b);
    this.tailBytes += b.length;
    while (this.tailBytes - this.tail[0]!.length >= this.tailLimit && this.tail.length > 1) {
      this.tailBytes -= this.tail.shift()!.length;
    }
    if (this.tailBytes > this.tailLimit * 2) {
      const joined = Buffer.concat(this.tail, this.tailBytes).subarray(this.tailBytes - this.tailLimit);
      this.tail = [joined];
      this.tailBytes = joined.length;
    }
  }

  /** Wait (briefly) for the peer's stderr to end so that its last words can be reported. */
  protected async settledStderr(ms = 1000): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.stderrDone, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    if (timer) clearTimeout(timer);
    const text = this.stderrText().trim();
    return text.length > 4000 ? `…${text.slice(-4000)}` : text;
  }

  protected run<T>(what: string, body: () => Promise<T>, needsHandshake = true): Promise<T> {
    const task = async (): Promise<T> => {
      if (this.broken) throw new ServeError(`${what}: connection to ${this.label} is unusable after an earlier error: ${this.broken.message}`);
      if (this.closed) throw new ServeError(`${what}: connection to ${this.label} is closed`);
      if (needsHandshake && this.version === 0) throw new ServeError(`${what}: handshake with ${this.label} has not been done`);
      try {
        return await body();
      } catch (error) {
        // ServeErrors are complete already (bodies mark the connection broken themselves when needed).
        if (error instanceof ServeError) throw error;
        this.broken = error as Error;
        const stderr = await this.settledStderr();
        const message = error instanceof Error ? error.message : String(error);
        throw new ServeError(`${what} with ${this.label} failed: ${message}`, stderr, error);
      }
    };
    const result = this.queue.then(task, task);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Exchange greetings; returns the effective version. */
  handshake(): Promise<number> {
    return this.run(
      'handshake',
      async () => {
        if (this.version !== 0) return this.version;
        this.writer.u64(SERVE_MAGIC_1).u64(CLIENT_VERSION);
        try {
          await this.writer.flush();
        } catch (error) {
          const stderr = await this.settledStderr();
          this.broken = error as Error;
          throw new ServeError(`cannot connect to ${this.label}: ${(error as Error).message}`, stderr, error);
        }
        let magic: bigint;
        let server: bigint;
        try {
          magic = await this.reader.readU64Big('server magic');
          if (magic !== BigInt(SERVE_MAGIC_2)) {
            throw new ServeError(
              `protocol mismatch with ${this.label}: expected magic 0x${SERVE_MAGIC_2.toString(16)}, got 0x${magic.toString(16)}`,
            );
          }
          server = await this.reader.readU64Big('server version');
        } catch (error) {
          this.broken = error as Error;
          if (error instanceof ServeError) throw new ServeError(error.message, await this.settledStderr());
          const stderr = await this.settledStderr();
          throw new ServeError(
            `cannot connect to ${this.label}: connection closed during the handshake${stderr ? '' : ' (no message)'}`,
            stderr,
            error,
          );
        }
        const v = Number(BigInt.asUintN(32, server));
        if (server > 0xffffffffn || (v & 0xff00) !== 0x200 || v < MIN_SERVER_VERSION) {
          this.broken = new Error('unsupported version');
          throw new ServeError(
            `unsupported serve protocol version ${formatVersion(server)} of ${this.label} (need 2.x with x >= ${MIN_SERVER_VERSION & 0xff})`,
          );
        }
        this.serverVersion = v;
        this.version = Math.min(v, CLIENT_VERSION);
        return this.version;
      },
      false,
    );
  }

  protected minor(): number {
    return this.version & 0xff;
  }

  /**
   * End the request stream at once, even with a request in flight: the peer sees EOF and aborts a running build
   * (how a cancelled step reaches the builder). The pending request then fails with a ServeError.
   */
  abort(): void {
    this.closed = true;
    this.writer.endNow();
  }

  /** Close the request stream after the request in flight (EOF makes the peer exit). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.queue;
      await this.writer.end();
    } catch {
      // the peer is gone already
    }
  }
}

function formatVersion(v: bigint): string {
  if (v > 0xffffffffn) return `0x${v.toString(16)}`;
  const n = Number(v);
  return `${n >> 8}.${n & 0xff}`;
}
