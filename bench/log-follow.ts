// B4 log follow: a running step whose log grows to `lines` lines (default 1,000,000), read three ways —
// `hydra-ops log BUILD/STEP -f` (the real CLI in a child process), the console's log view (the real
// controller, LogFile index and Ink view rendered with ink-testing-library, following), and `cat` of the
// finished file as the peer.
//
//   node --import tsx bench/log-follow.ts [lines]
//
// Set-up: a fresh database with Hydra's schema, one queued build and its BuildSteps row with busy = 30
// (building), and a HYDRA_DATA directory whose bucketed log path (build-logs/<2>/<rest>) the bench writes.
//  - live follow: `log -f` is started on the empty log; once it has printed the first line, the remaining
//    lines are appended in 64 KiB writes as fast as the file system takes them; the time runs until the
//    follower has printed every line (its stdout is a pipe counted here). Then the step is finished
//    (busy = 0) and the follower must exit by itself.
//  - catch-up: the file is complete and the step still busy; a new `log -f` prints the whole file.
//  - console: the log view is opened with follow on while the log is written; the time runs until the
//    last line is on screen.
//  - cat: `cat` of the complete file into a pipe counted the same way.
// Memory: VmRSS of the follower / this process sampled every 50 ms, reported as peak and start values.
import {spawn} from 'node:child_process';
import {mkdtempSync, mkdirSync, rmSync, openSync, writeSync, closeSync, readFileSync, statSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import React from 'react';
import {render} from 'ink-testing-library';
import pg from 'pg';
import {freshDatabase} from '../test/support/pg.js';
import {insertJobset, insertBuild, insertBuildStep, storePath} from '../test/support/fixtures.js';
import {cliArgs} from '../test/support/cli.js';
import {FakeData} from '../test/support/ui-fake.js';
import {initSchema} from '../source/db/schema.js';
import {drvLogBucketPath} from '../source/nix/store.js';
import {ConsoleController} from '../source/ui/state/controller.js';
import {LogFile} from '../source/ui/state/log-file.js';
import {App} from '../source/ui/app.js';
import {themeFromEnv} from '../source/ui/theme.js';
import type {LogHandle} from '../source/ui/state/types.js';
import {printTable} from './table.js';

const nLines = Number(process.argv[2] ?? 1_000_000);
if (!Number.isInteger(nLines) || nLines < 10) throw new Error(`lines must be an integer ≥ 10, got '${process.argv[2]}'`);

const line = (n: number) => `[${String(n).padStart(7, '0')}] gcc -O2 -Wall -c src/module${n % 97}.c -o build/module${n % 97}.o\n`;

function rssMiB(pid: number | 'self'): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

class RssSampler {
  samples: number[] = [];
  private timer: NodeJS.Timeout;
  constructor(pid: number | 'self') {
    this.timer = setInterval(() => {
      const v = rssMiB(pid);
      if (Number.isFinite(v)) this.samples.push(v);
    }, 50);
  }
  stop(): {first: number; peak: number; last: number} {
    clearInterval(this.timer);
    return {first: this.samples[0] ?? NaN, peak: Math.max(...this.samples), last: this.samples[this.samples.length - 1] ?? NaN};
  }
}

/** Appends lines [from, to) to the file in ~64 KiB writes. */
function appendLines(path: string, from: number, to: number): void {
  const fd = openSync(path, 'a');
  try {
    let buf = '';
    for (let n = from; n < to; n++) {
      buf += line(n + 1);
      if (buf.length >= 65536) {
        writeSync(fd, buf);
        buf = '';
      }
    }
    if (buf) writeSync(fd, buf);
  } finally {
    closeSync(fd);
  }
}

interface Counted {
  lines: number;
  done: Promise<number>;
  /** Resolves when `n` lines have been seen (ms timestamp). */
  reach(n: number): Promise<number>;
}

/** Counts newline bytes on a stream. */
function countLines(stream: NodeJS.ReadableStream, exited: Promise<number>): Counted {
  const waits: Array<{n: number; resolve: (t: number) => void}> = [];
  const c: Counted = {
    lines: 0,
    done: exited,
    reach: (n) => (c.lines >= n ? Promise.resolve(performance.now()) : new Promise((resolve) => waits.push({n, resolve}))),
  };
  stream.on('data', (d: Buffer) => {
    let at = d.indexOf(10);
    while (at >= 0) {
      c.lines++;
      at = d.indexOf(10, at + 1);
    }
    for (let i = waits.length - 1; i >= 0; i--) {
      if (c.lines >= waits[i]!.n) {
        waits[i]!.resolve(performance.now());
        waits.splice(i, 1);
      }
    }
  });
  return c;
}

function startFollower(target: string, env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [...cliArgs(), 'log', target, '-f'], {env, stdio: ['ignore', 'pipe', 'pipe']});
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
  return {child, counted: countLines(child.stdout, exited), stderr: () => stderr};
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-bench-log-'));
  const db = await freshDatabase('bench_log');
  const pool = new pg.Pool({connectionString: db.url, max: 4});
  try {
    await initSchema(pool);
    const dataDir = join(dir, 'data');
    const drvPath = storePath('bench-log-step.drv');
    const jobset = await insertJobset(pool, {name: 'bench-log'});
    const build = await insertBuild(pool, {jobsetId: jobset.id, drvPath});
    const stepnr = await insertBuildStep(pool, {build, busy: 30, drvPath});
    const logPath = drvLogBucketPath(dataDir, drvPath);
    mkdirSync(dirname(logPath), {recursive: true});
    const env = {...process.env, HYDRA_DATABASE_URL: db.url, HYDRA_DATA: dataDir, NO_COLOR: '1'};
    const target = `${build}/${stepnr}`;
    const setBusy = (busy: number) => pool.query('UPDATE BuildSteps SET busy = $3, status = CASE WHEN $3 = 0 THEN 0 ELSE NULL END WHERE build = $1 AND stepnr = $2', [build, stepnr, busy]);

    // 1. live follow while the log is written.
    appendLines(logPath, 0, 1);
    const live = startFollower(target, env);
    const liveRss = new RssSampler(live.child.pid!);
    await withTimeout(live.counted.reach(1), 60_000, `log -f to print its first line (stderr: ${live.stderr()})`);
    const t0 = performance.now();
    appendLines(logPath, 1, nLines);
    const writtenMs = performance.now() - t0;
    const liveAll = await withTimeout(live.counted.reach(nLines), 600_000, 'log -f to print every line');
    const liveMs = liveAll - t0;
    const tEnd = performance.now();
    await setBusy(0);
    const code = await withTimeout(live.counted.done, 30_000, 'log -f to exit after the step ended');
    const exitMs = performance.now() - tEnd;
    const liveMem = liveRss.stop();
    if (code !== 0) throw new Error(`log -f exited with ${code}: ${live.stderr()}`);
    if (live.counted.lines !== nLines) throw new Error(`log -f printed ${live.counted.lines} lines, expected ${nLines}`);
    const bytes = statSync(logPath).size;
    console.log(`log: ${nLines} lines, ${(bytes / 2 ** 20).toFixed(1)} MiB at ${logPath}; writer took ${(writtenMs / 1000).toFixed(2)} s`);
    console.log(`live follow: every line out ${(liveMs / 1000).toFixed(2)} s after the first write; exited ${exitMs.toFixed(0)} ms after the step ended`);

    // 2. catch-up on the complete file (step busy again).
    await setBusy(30);
    const cu = startFollower(target, env);
    const cuRss = new RssSampler(cu.child.pid!);
    const c0 = performance.now();
    const cuFirst = await withTimeout(cu.counted.reach(1), 60_000, 'catch-up first line');
    const cuAll = await withTimeout(cu.counted.reach(nLines), 600_000, 'catch-up every line');
    await setBusy(0);
    await withTimeout(cu.counted.done, 30_000, 'catch-up exit');
    const cuMem = cuRss.stop();
    const cuMs = cuAll - cuFirst;
    console.log(`catch-up: first line after ${((cuFirst - c0) / 1000).toFixed(2)} s (process start), all ${nLines} lines ${(cuMs / 1000).toFixed(2)} s later`);

    // 3. cat of the complete file.
    const cat = spawn('cat', [logPath], {stdio: ['ignore', 'pipe', 'inherit']});
    const k0 = performance.now();
    const catCount = countLines(cat.stdout, new Promise((r) => cat.on('exit', (c) => r(c ?? -1))));
    const catAll = await catCount.reach(nLines);
    await catCount.done;
    const catMs = catAll - k0;

    // 4. the console's log view, following the log while it is written.
    rmSync(logPath);
    appendLines(logPath, 0, 1);
    const data = new FakeData({builds: 10});
    data.openLog = async (): Promise<LogHandle> => LogFile.open(logPath, stepnr);
    const size = {columns: 120, rows: 40};
    const controller = new ConsoleController(data, {size, view: 'overview'});
    const selfRss = new RssSampler('self');
    controller.start();
    const ui = render(React.createElement(App, {controller, theme: themeFromEnv({NO_COLOR: '1', LANG: 'C.UTF-8'}, {color: 'never'}), size, clockMs: 0}));
    for (const k of [':', 'l', 'o', 'g', ' ', String(build), 'enter']) controller.key(k);
    const lastText = line(nLines).trim().slice(0, 40);
    const firstText = line(1).trim().slice(0, 40);
    await withTimeout(
      (async () => {
        while (!(ui.lastFrame() ?? '').includes(firstText)) await new Promise((r) => setTimeout(r, 10));
      })(),
      30_000,
      'the console log view to show the first line',
    );
    const v0 = performance.now();
    appendLines(logPath, 1, nLines);
    let frames = 0;
    let prev = '';
    await withTimeout(
      (async () => {
        for (;;) {
          const f = ui.lastFrame() ?? '';
          if (f !== prev) frames++;
          prev = f;
          if (f.includes(lastText)) return;
          await new Promise((r) => setTimeout(r, 5));
        }
      })(),
      600_000,
      'the console log view to show the last line',
    );
    const viewMs = performance.now() - v0;
    const viewMem = selfRss.stop();
    ui.unmount();
    await controller.stop();

    const rate = (ms: number) => nLines / (ms / 1000);
    printTable(`B4 log follow: ${nLines} lines (${(bytes / 2 ** 20).toFixed(1)} MiB)`, 'cat', [
      {figure: 'log -f, live (lines/s)', ours: rate(liveMs), peer: rate(catMs), unit: '', digits: 0},
      {figure: 'log -f, catch-up on the full file (lines/s)', ours: rate(cuMs), peer: rate(catMs), unit: '', digits: 0},
      {figure: 'console log view, live, last line on screen (lines/s)', ours: rate(viewMs), peer: rate(catMs), unit: '', digits: 0},
      {figure: 'log -f RSS at start, live (MiB)', ours: liveMem.first, peer: null, unit: '', digits: 0},
      {figure: 'log -f peak RSS, live (MiB)', ours: liveMem.peak, peer: null, unit: '', digits: 0},
      {figure: 'log -f peak RSS, catch-up (MiB)', ours: cuMem.peak, peer: null, unit: '', digits: 0},
      {figure: 'console process RSS when the view opened (MiB)', ours: viewMem.first, peer: null, unit: '', digits: 0},
      {figure: 'console process peak RSS (MiB)', ours: viewMem.peak, peer: null, unit: '', digits: 0},
    ]);
    console.log(`console: RSS ${viewMem.first.toFixed(0)} MiB when the view opened, peak ${viewMem.peak.toFixed(0)} MiB, ${frames} distinct frames seen`);
    console.log(`log -f RSS samples (live, every 50 ms): start ${liveMem.first.toFixed(0)}, peak ${liveMem.peak.toFixed(0)}, end ${liveMem.last.toFixed(0)} MiB; catch-up start ${cuMem.first.toFixed(0)}, peak ${cuMem.peak.toFixed(0)} MiB`);
    console.log(`writer: ${rate(writtenMs).toFixed(0)} lines/s (the live figures cannot exceed it)`);
  } finally {
    await pool.end().catch(() => {});
    await db.drop().catch(() => {});
    rmSync(dir, {recursive: true, force: true});
  }
}

await main();
