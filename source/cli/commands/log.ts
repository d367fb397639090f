// `hydra-ops log BUILD[/STEP] [-f] [--tail N]`: a step's build log from $HYDRA_DATA/build-logs (the
// bucketed per-derivation path, plain, .bz2 or .zst — docs/hydra-compat.md, "Logs"). `-f` prints what is there,
// then follows the file as the runner writes it and ends by itself once the step is no longer busy.
import type {Command} from 'commander';
import {spawn} from 'node:child_process';
import {open, stat, type FileHandle} from 'node:fs/promises';
import {StringDecoder} from 'node:string_decoder';
import type {AppContext} from '../context.js';
import {notFound, usageError} from '../exit-codes.js';
import {printJson, printNdjson} from '../output.js';
import type {Queryable} from '../../db/queryable.js';
import {drvLogBucketPath, findDrvLog} from '../../nix/store.js';
import {parseLimit} from './audit.js';

interface StepRef {
  build: number;
  stepnr: number | null;
  drvpath: string;
  busy: number;
  status: number | null;
}

export function parseLogTarget(arg: string): {build: number; stepnr: number | null} {
  const m = /^([0-9]+)(?:\/([0-9]+))?$/.exec(arg);
  if (!m || Number(m[1]) <= 0) throw usageError(`bad log target "${arg}" (expected BUILD or BUILD/STEP, e.g. 123 or 123/2)`);
  return {build: Number(m[1]), stepnr: m[2] === undefined ? null : Number(m[2])};
}

/** The step whose log to show: the one named; else the build's running step, else its top-level step. */
async function resolveStep(db: Queryable, build: number, stepnr: number | null): Promise<StepRef> {
  const b = await db.query<{drvpath: string}>('SELECT drvpath FROM Builds WHERE id = $1', [build]);
  if (b.rows.length === 0) throw notFound(`no build ${build}`);
  if (stepnr !== null) {
    const s = await db.query<StepRef>('SELECT build, stepnr, drvpath, busy, status FROM BuildSteps WHERE build = $1 AND stepnr = $2', [build, stepnr]);
    if (s.rows.length === 0) throw notFound(`build ${build} has no step ${stepnr}`);
    if (!s.rows[0]!.drvpath) throw notFound(`step ${build}/${stepnr} has no derivation path`);
    return s.rows[0]!;
  }
  const s = await db.query<StepRef>(
    `SELECT build, stepnr, drvpath, busy, status FROM BuildSteps WHERE build = $1 AND drvpath IS NOT NULL
      ORDER BY (busy != 0) DESC, (drvpath = $2) DESC, stepnr DESC LIMIT 1`,
    [build, b.rows[0]!.drvpath],
  );
  return s.rows[0] ?? {build, stepnr: null, drvpath: b.rows[0]!.drvpath, busy: 0, status: null};
}

async function stepState(db: Queryable, ref: StepRef): Promise<{busy: number; status: number | null}> {
  if (ref.stepnr === null) return {busy: 0, status: null};
  const {rows} = await db.query<{busy: number; status: number | null}>('SELECT busy, status FROM BuildSteps WHERE build = $1 AND stepnr = $2', [ref.build, ref.stepnr]);
  return rows[0] ?? {busy: 0, status: null};
}

const CHUNK = 1 << 20;

/** Resolves once stdout has room again (backpressure), so a fast log never piles up in memory. */
function stdoutDrained(): Promise<void> {
  if (!process.stdout.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => process.stdout.once('drain', () => resolve()));
}

/** Byte offset where the last `lines` lines of the file start, found by reading backwards. */
async function tailOffset(fh: FileHandle, size: number, lines: number): Promise<number> {
  const block = Buffer.alloc(64 * 1024);
  let end = size;
  let newlines = 0;
  // A final newline ends the last line; it does not start another one.
  let skipFinal = true;
  while (end > 0) {
    const start = Math.max(0, end - block.length);
    const {bytesRead} = await fh.read(block, 0, end - start, start);
    for (let i = bytesRead - 1; i >= 0; i--) {
      if (block[i] !== 0x0a) {
        skipFinal = false;
        continue;
      }
      if (skipFinal) {
        skipFinal = false;
        continue;
      }
      if (++newlines === lines) return start + i + 1;
    }
    end = start;
  }
  return 0;
}

/** Whole content of a log, decompressing .bz2 / .zst with the system tools. */
async function readLog(path: string): Promise<Buffer> {
  const tool = path.endsWith('.bz2') ? 'bzip2' : path.endsWith('.zst') ? 'zstd' : null;
  if (!tool) {
    const fh = await open(path, 'r');
    try {
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }
  return new Promise((resolve, reject) => {
    const child = spawn(tool, ['-dc', path], {stdio: ['ignore', 'pipe', 'pipe']});
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new Error(`cannot decompress ${path}: ${e.message} (is ${tool} installed?)`)));
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`cannot decompress ${path}: ${tool} exited with ${code}: ${err.trim()}`))));
  });
}

function lastLines(text: string, n: number | null): string {
  if (n === null) return text;
  const lines = text.split('\n');
  const trailing = text.endsWith('\n');
  if (trailing) lines.pop();
  const kept = lines.slice(Math.max(0, lines.length - n));
  return kept.length ? kept.join('\n') + (trailing ? '\n' : '') : '';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function registerLogCommands(program: Command, ctx: AppContext): void {
  program
    .command('log <target>')
    .description("a build step's log (BUILD picks the running or top-level step; BUILD/STEP names one); finds .bz2 and .zst logs too")
    .option('-f, --follow', 'keep printing as the log grows; ends when the step is no longer running')
    .option('--tail <n>', 'start with only the last N lines')
    .option('--poll-ms <ms>', 'how often to look for new output while following (default 200)')
    .addHelpText(
      'after',
      '\nExamples:\n  hydra-ops log 123\n  hydra-ops log 123/2 --tail 50\n  hydra-ops log 123 -f\n  hydra-ops log 123 -f --json    # NDJSON: {"type":"line",…} … {"type":"end",…}\n\n' +
        'Exit codes: 0 ok · 2 bad target · 3 no such build/step, or no log (when not following).\n',
    )
    .action(async (target: string, opts: {follow?: boolean; tail?: string; pollMs?: string}) => {
      const {build, stepnr} = parseLogTarget(target);
      const tail = opts.tail === undefined ? null : parseLimit(opts.tail, 0, 10_000_000);
      const pollMs = opts.pollMs === undefined ? 200 : parseLimit(opts.pollMs, 200, 60_000);
      const dataDir = ctx.config().dataDir.dir;
      const {pool} = await ctx.database();
      const ref = await resolveStep(pool, build, stepnr);
      let path = await findDrvLog(dataDir, ref.drvpath);
      const head = {build: ref.build, stepnr: ref.stepnr, drvpath: ref.drvpath};

      if (!opts.follow) {
        if (!path) throw notFound(`no log for ${ref.drvpath} under ${drvLogBucketPath(dataDir, ref.drvpath)}[.bz2|.zst]`, head);
        const text = lastLines((await readLog(path)).toString('utf8'), tail);
        if (ctx.json) printJson({...head, path, compression: path.endsWith('.bz2') ? 'bzip2' : path.endsWith('.zst') ? 'zstd' : null, text});
        else process.stdout.write(text);
        return;
      }

      // Follow: stream new bytes of the plain file as it grows, until the step stops being busy.
      let carry = '';
      const emit = (chunk: string, final = false) => {
        if (!ctx.json) {
          process.stdout.write(chunk);
          return;
        }
        carry += chunk;
        const parts = carry.split('\n');
        carry = final ? '' : parts.pop()!;
        if (final && parts[parts.length - 1] === '') parts.pop();
        for (const line of parts) printNdjson({type: 'line', ...head, text: line});
      };
      let offset = 0;
      let first = true;
      const plain = drvLogBucketPath(dataDir, ref.drvpath);
      const decoder = new StringDecoder('utf8');
      // Memory stays flat however large the log: it is read in bounded chunks, and a chunk is
      // only read once stdout has taken the previous one.
      const drain = async (): Promise<void> => {
        path = await findDrvLog(dataDir, ref.drvpath);
        if (!path) return;
        if (path !== plain) {
          // Compressed: the step is over and the log complete.
          if (first) emit(lastLines((await readLog(path)).toString('utf8'), tail));
          first = false;
          offset = Infinity;
          return;
        }
        const size = (await stat(path)).size;
        if (size < offset) offset = 0; // truncated by the runner (after the input copy)
        if (size === offset) return;
        const fh = await open(path, 'r');
        try {
          if (first && tail !== null) offset = await tailOffset(fh, size, tail);
          first = false;
          const buf = Buffer.alloc(Math.min(CHUNK, size - offset));
          while (offset < size) {
            const {bytesRead} = await fh.read(buf, 0, Math.min(buf.length, size - offset), offset);
            if (bytesRead === 0) break;
            offset += bytesRead;
            emit(decoder.write(buf.subarray(0, bytesRead)));
            await stdoutDrained();
          }
        } finally {
          await fh.close();
        }
      };
      let state = await stepState(pool, ref);
      for (;;) {
        await drain();
        if (state.busy === 0) break;
        await sleep(pollMs);
        state = await stepState(pool, ref);
      }
      await drain(); // what was written between the last read and the end of the step
      emit(decoder.end(), true);
      if (ctx.json) printNdjson({type: 'end', ...head, status: state.status, logFound: path !== null});
    });
}
