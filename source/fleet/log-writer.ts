// A step's build log file (docs/hydra-compat.md, "Logs"): created with its parent directories and truncated when opened,
// appended to chunk by chunk as the builder's stderr arrives (so `tail -f` follows it), truncated once more after
// the input copy, and removed when the outputs turn out to be substituted or already valid.

import {constants} from 'node:fs';
import {mkdir, open, unlink, type FileHandle} from 'node:fs/promises';
import {dirname} from 'node:path';

export class LogWriter {
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private closed = false;
  private written = 0;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** Create (or truncate) the log file, mode 0666 before the umask, creating its directory on demand. */
  static async open(path: string): Promise<LogWriter> {
    await mkdir(dirname(path), {recursive: true});
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND;
    return new LogWriter(path, await open(path, flags, 0o666));
  }

  /** Bytes appended since the last truncation. */
  get bytesWritten(): number {
    return this.written;
  }

  /** The first write error, if any (writing stops after it). */
  get error(): Error | undefined {
    return this.failure;
  }

  /** Append a chunk; writes are queued and issued in order without waiting for the caller. */
  write(chunk: Buffer): void {
    if (this.closed || this.failure || chunk.length === 0) return;
    this.chain = this.chain.then(async () => {
      if (this.failure || this.closed) return;
      try {
        let off = 0;
        while (off < chunk.length) {
          const {bytesWritten} = await this.fh.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
        this.written += chunk.length;
      } catch (error) {
        this.failure = error as Error;
      }
    });
  }

  /** Wait until every queued chunk is in the file. */
  flush(): Promise<void> {
    return this.chain;
  }

  /** Drop everything written so far (the file stays; later chunks start at offset 0). */
  async truncate(): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (this.closed) return;
      try {
        await this.fh.truncate(0);
        this.written = 0;
      } catch (error) {
        this.failure ??= error as Error;
      }
    });
    await this.chain;
  }

  /** Flush and close the file. Idempotent. */
  async close(): Promise<void> {
    await this.chain;
    if (this.closed) return;
    this.closed = true;
    await this.fh.close().catch(() => undefined);
  }

  /** Close and delete the file. */
  async remove(): Promise<void> {
    await this.close();
    await unlink(this.path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }
}
