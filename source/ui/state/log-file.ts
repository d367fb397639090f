// A log file opened for the console: an index of line start offsets (8 bytes a line; a 1M-line log
// costs 8 MB of index and is never held as text), random access to any window of lines, growth
// (and truncation) tracking for follow mode, and search that scans the file rather than a buffer.
// Compressed logs (.bz2, .zst) are decompressed once into a private temporary file. Lines that arrive
// after opening get the time they were first read (`t` in the log view), kept as runs: one (first line,
// time) pair per read that found new lines, at most ARRIVAL_RUNS_MAX of them.
import {spawn} from 'node:child_process';
import {createWriteStream} from 'node:fs';
import {mkdtemp, open, rm, stat, type FileHandle} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import type {LogHandle} from './types.js';

const CHUNK = 1 << 20;
/** Arrival runs kept; beyond it every other run is merged into the one before (its lines get the earlier time). */
export const ARRIVAL_RUNS_MAX = 50_000;

async function decompress(path: string, tool: 'bzip2' | 'zstd'): Promise<{file: string; dir: string}> {
  const dir = await mkdtemp(join(tmpdir(), 'hydra-ops-log-'));
  const file = join(dir, 'log');
  await new Promise<void>((resolve, reject) => {
    const out = createWriteStream(file);
    const child = spawn(tool, ['-dc', path], {stdio: ['ignore', 'pipe', 'pipe']});
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.pipe(out);
    child.on('error', (e) => reject(new Error(`cannot run ${tool} to read ${path}: ${e.message}`)));
    child.on('close', (code) => {
      out.end(() => (code === 0 ? resolve() : reject(new Error(`${tool} -dc ${path} failed (exit ${code}): ${err.trim()}`))));
    });
  }).catch(async (e) => {
    await rm(dir, {recursive: true, force: true});
    throw e;
  });
  return {file, dir};
}

export class LogFile implements LogHandle {
  private starts = new Float64Array(1024);
  /** Complete lines (each ends with \n). */
  private complete = 0;
  /** Bytes indexed so far. */
  private scanned = 0;
  private closed = false;
  private busy: Promise<boolean> = Promise.resolve(false);
  /** Arrival runs: line runFrom[i] and those after it (up to the next run) arrived at runAt[i]. */
  private runFrom: number[] = [];
  private runAt: number[] = [];
  /** ms since epoch of the first read; 0 until then (lines read by it have no arrival time). */
  openedAt = 0;

  private constructor(
    readonly path: string,
    readonly stepnr: number | null,
    private fh: FileHandle,
    private readonly file: string,
    private readonly tempDir: string | null,
  ) {
    this.starts[0] = 0;
  }

  static async open(path: string, stepnr: number | null = null): Promise<LogFile> {
    let file = path;
    let tempDir: string | null = null;
    if (path.endsWith('.bz2') || path.endsWith('.zst')) {
      const d = await decompress(path, path.endsWith('.bz2') ? 'bzip2' : 'zstd');
      file = d.file;
      tempDir = d.dir;
    }
    const fh = await open(file, 'r');
    const log = new LogFile(path, stepnr, fh, file, tempDir);
    await log.refresh();
    log.openedAt = Date.now();
    return log;
  }

  lineCount(): number {
    return this.complete + (this.scanned > this.starts[this.complete]! ? 1 : 0);
  }

  private push(start: number): void {
    const i = this.complete + 1;
    if (i >= this.starts.length) {
      const grown = new Float64Array(this.starts.length * 2);
      grown.set(this.starts);
      this.starts = grown;
    }
    this.starts[i] = start;
    this.complete = i;
  }

  refresh(): Promise<boolean> {
    // Serialised: follow polling and reads never interleave index updates.
    this.busy = this.busy.then(() => this.doRefresh());
    return this.busy;
  }

  private async doRefresh(): Promise<boolean> {
    if (this.closed) return false;
    const {size} = await stat(this.file);
    if (size < this.scanned) {
      // Truncated (a step log is truncated again after the input copy): index from scratch; what is read
      // again arrived after the truncation.
      this.complete = 0;
      this.scanned = 0;
      this.starts[0] = 0;
      this.runFrom = [];
      this.runAt = [];
      if (size === 0) return true;
    }
    if (size === this.scanned) return false;
    const before = this.lineCount();
    const buf = Buffer.allocUnsafe(CHUNK);
    while (this.scanned < size) {
      const want = Math.min(CHUNK, size - this.scanned);
      const {bytesRead} = await this.fh.read(buf, 0, want, this.scanned);
      if (bytesRead === 0) break;
      let at = buf.indexOf(10, 0);
      while (at >= 0 && at < bytesRead) {
        this.push(this.scanned + at + 1);
        at = buf.indexOf(10, at + 1);
      }
      this.scanned += bytesRead;
    }
    if (this.openedAt > 0) this.arrived(before, Date.now());
    return true;
  }

  /** Lines from `from` on (those not in a run yet) arrived at `at`. */
  private arrived(from: number, at: number): void {
    if (this.lineCount() <= from) return;
    // A partial last line that grew keeps its first time: the run starts at the first line not timed yet.
    const last = this.runFrom.length - 1;
    if (last >= 0 && this.runFrom[last]! >= from) return;
    this.runFrom.push(from);
    this.runAt.push(at);
    if (this.runFrom.length > ARRIVAL_RUNS_MAX) {
      this.runFrom = this.runFrom.filter((_, i) => i % 2 === 0);
      this.runAt = this.runAt.filter((_, i) => i % 2 === 0);
    }
  }

  times(from: number, count: number): (number | null)[] {
    const out: (number | null)[] = [];
    // The last run starting at or before `from` (binary search), then forwards.
    let lo = 0;
    let hi = this.runFrom.length - 1;
    let k = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.runFrom[mid]! <= from) {
        k = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    for (let i = from; i < Math.min(from + count, this.lineCount()); i++) {
      while (k + 1 < this.runFrom.length && this.runFrom[k + 1]! <= i) k++;
      out.push(k >= 0 ? this.runAt[k]! : null);
    }
    return out;
  }

  async lines(from: number, count: number): Promise<string[]> {
    await this.busy;
    const total = this.lineCount();
    const a = Math.max(0, Math.min(from, total));
    const b = Math.max(a, Math.min(total, from + count));
    if (a === b) return [];
    const start = this.starts[a]!;
    const end = b <= this.complete ? this.starts[b]! : this.scanned;
    const buf = Buffer.allocUnsafe(end - start);
    const {bytesRead} = await this.fh.read(buf, 0, end - start, start);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    const out = text.split('\n');
    if (text.endsWith('\n')) out.pop();
    return out.slice(0, b - a);
  }

  async search(needle: string, from: number, backwards: boolean): Promise<number> {
    const n = needle.toLowerCase();
    if (n === '') return -1;
    const total = this.lineCount();
    const block = 4096;
    if (!backwards) {
      for (let i = Math.max(0, from); i < total; i += block) {
        const lines = await this.lines(i, block);
        const k = lines.findIndex((l) => l.toLowerCase().includes(n));
        if (k >= 0) return i + k;
      }
      return -1;
    }
    for (let end = Math.min(from, total - 1); end >= 0; end -= block) {
      const start = Math.max(0, end - block + 1);
      const lines = await this.lines(start, end - start + 1);
      for (let k = lines.length - 1; k >= 0; k--) if (lines[k]!.toLowerCase().includes(n)) return start + k;
    }
    return -1;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.busy.catch(() => false);
    await this.fh.close().catch(() => {});
    if (this.tempDir) await rm(this.tempDir, {recursive: true, force: true});
  }
}
