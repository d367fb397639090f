// Console at scale: 100k builds in a fresh database (one INSERT … SELECT generate_series), the real
// SQL data source, the app rendered with ink-testing-library at 80×24. Measures the time to the first
// frame and to the first frame with data, and keypress-to-frame latency for j (within the loaded
// window), PgDn (crossing into pages fetched from SQL), G (jump to the oldest build) and g.
//
//   node --import tsx bench/console-scale.ts [builds]
import React from 'react';
import pg from 'pg';
import {render} from 'ink-testing-library';
import {freshDatabase} from '../test/support/pg.js';
import {insertJobset} from '../test/support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {makeActor} from '../source/actions/actor.js';
import {SqlConsoleData} from '../source/ui/state/sql-data.js';
import {ConsoleController} from '../source/ui/state/controller.js';
import {App} from '../source/ui/app.js';
import {execFileSync} from 'node:child_process';
import {printTable} from './table.js';

const N = Number(process.argv[2] ?? 100_000);
// eslint-disable-next-line no-control-regex
const strip = (s: string | undefined) => (s ?? '').replace(/\u001B\[[0-9;]*m/g, '');
const selected = (f: string) => f.split('\n').find((l) => l.startsWith('>')) ?? '';

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return `median ${q(0.5).toFixed(1)} ms, p95 ${q(0.95).toFixed(1)} ms, max ${s[s.length - 1]!.toFixed(1)} ms (n=${s.length})`;
}

/**
 * The real console (the compiled binary, as an operator runs it) in a tmux pane at 80×24 on the same database:
 * first rows on screen, then the same kind of use (j, PgDn, G, g, a filter), then its peak RSS from /proc.
 * This process's own RSS (above) also holds tsx, the bench's pool and ink-testing-library's frame history.
 */
async function realConsole(url: string): Promise<{firstRowsMs: number; peakMiB: number; rssMiB: number}> {
  const {mkdtempSync, rmSync, readFileSync, writeFileSync, chmodSync} = await import('node:fs');
  const {tmpdir} = await import('node:os');
  const {join} = await import('node:path');
  const {cliArgs} = await import('../test/support/cli.js');
  let cli = cliArgs();
  if (cli[0] === '--import') {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], {cwd: new URL('../', import.meta.url).pathname, stdio: 'inherit'});
    cli = [new URL('../dist/cli.js', import.meta.url).pathname];
  }
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-bench-console-'));
  const session = `hydra-ops-bench-${process.pid}`;
  const tmux = (...a: string[]) => execFileSync('tmux', a, {encoding: 'utf8'});
  try {
    const script = join(dir, 'console.sh');
    const env = {HYDRA_DATA: join(dir, 'data'), HYDRA_OPS_CONFIG_DIR: join(dir, 'config'), HYDRA_OPS_USER: 'bench', LANG: 'C.UTF-8', PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir};
    writeFileSync(script, ['#!/bin/sh', ...Object.entries(env).map(([k, v]) => `export ${k}='${v}'`), `exec '${process.execPath}' ${cli.map((a) => `'${a}'`).join(' ')} --database-url '${url}' --no-scheduler 2>'${dir}/stderr'`].join('\n') + '\n');
    chmodSync(script, 0o755);
    const t0 = performance.now();
    tmux('new-session', '-d', '-s', session, '-x', '80', '-y', '24', script);

    const pid = Number(tmux('display-message', '-p', '-t', session, '#{pane_pid}').trim());
    const screen = () => tmux('capture-pane', '-p', '-t', session);
    const waitScreen = async (pred: (s: string) => boolean, what: string) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const s = screen();
        if (pred(s)) return;
        if (Date.now() > deadline) throw new Error(`real console: timed out waiting for ${what}:\n${s}\n${readFileSync(join(dir, 'stderr'), 'utf8')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    // The console opens on the Overview: first data = the queue's size on screen. Then 2, the Builds view.
    await waitScreen((s) => /^queue .*\d/m.test(s), 'the Overview with the queue size');
    const firstRowsMs = performance.now() - t0;
    const keys = (...k: string[]) => tmux('send-keys', '-t', session, ...k);
    keys('2');
    await waitScreen((s) => new RegExp(`^>\\s+${N} `, 'm').test(s), 'the newest build');
    for (let i = 0; i < 40; i++) keys('j');
    for (let i = 0; i < 30; i++) keys('PageDown');
    keys('G');
    await waitScreen((s) => /^>\s+1 /m.test(s), 'the oldest build');
    keys('g');
    await waitScreen((s) => new RegExp(`^>\\s+${N} `, 'm').test(s), 'the newest build again');
    keys('/', 'system:x86_64-linux', 'Enter');
    await waitScreen((s) => new RegExp(`^>\\s+${N - 1} `, 'm').test(s), 'the filtered rows');
    await new Promise((r) => setTimeout(r, 500));
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
    return {firstRowsMs, peakMiB: kb('VmHWM'), rssMiB: kb('VmRSS')};
  } finally {
    try {
      tmux('kill-session', '-t', session);
    } catch {
      // already gone
    }
    rmSync(dir, {recursive: true, force: true});
  }
}

async function main(): Promise<void> {
  const db = await freshDatabase('console_scale');
  const pool = new pg.Pool({connectionString: db.url, max: 10});
  try {
    await initSchema(pool);
    const js = await insertJobset(pool, {name: 'big'});
    const t0 = performance.now();
    // Hydra's per-row triggers (NOTIFY, NrBuilds bookkeeping) would make this a minute: skip them.
    const c = await pool.connect();
    await c.query('SET session_replication_role = replica');
    await c.query(
      `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority,
                           startTime, stopTime, isCachedBuild, buildStatus, keep)
       SELECT i % 2, 1700000000 + i, $1, 'job' || i, 'job' || i, '/nix/store/' || lpad(i::text, 32, '0') || '-job' || i || '.drv',
              CASE WHEN i % 4 = 0 THEN 'aarch64-linux' ELSE 'x86_64-linux' END, 7200, 36000, 1, 100, 0,
              CASE WHEN i % 2 = 1 THEN 1700001000 + i END, CASE WHEN i % 2 = 1 THEN 1700001060 + i END,
              CASE WHEN i % 2 = 1 THEN 0 END, CASE WHEN i % 2 = 1 THEN 0 END, 0
         FROM generate_series(1, $2::int) AS i`,
      [js.id, N],
    );
    await c.query('SET session_replication_role = DEFAULT');
    c.release();
    await pool.query('ANALYZE Builds');
    console.log(`inserted ${N} builds in ${(performance.now() - t0).toFixed(0)} ms`);

    const data = new SqlConsoleData({
      pool,
      connection: {connectionString: db.url},
      describe: 'bench',
      dataDir: '/nonexistent',
      actor: makeActor({hydraUser: 'bench', version: 'bench'}),
      runner: null,
      mode: 'none',
      modeNote: 'bench',
      machineSpecs: async () => [],
    });
    const size = {columns: 80, rows: 24};
    const controller = new ConsoleController(data, {size, view: 'builds'});
    const tr = performance.now();
    const r = render(React.createElement(App, {controller, theme: {color: true, unicode: true}, size, clockMs: 0}));
    const firstFrame = performance.now() - tr;
    controller.start();
    const frame = () => strip(r.lastFrame());
    // Frames are observed as Ink writes them (no polling, so the measurement costs no CPU).
    let waiter: {pred: (f: string) => boolean; resolve: (t: number) => void} | null = null;
    const out = r.stdout as unknown as {write: (f: string) => void};
    const write = out.write;
    out.write = (f: string) => {
      write(f);
      if (waiter && waiter.pred(strip(f))) {
        const w = waiter;
        waiter = null;
        w.resolve(performance.now());
      }
    };
    const until = async (pred: (f: string) => boolean, what: string): Promise<number> => {
      if (pred(frame())) return performance.now();
      return new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out: ${what}\n${frame()}`)), 10_000);
        waiter = {pred, resolve: (t) => (clearTimeout(timer), resolve(t))};
      });
    };
    const withData = (await until((f) => new RegExp(`^>\\s+${N} `, 'm').test(f), 'first data frame')) - tr;
    const withCount = (await until((f) => /— 1 of \d/.test(f), 'count')) - tr;
    await new Promise((res) => setTimeout(res, 50));

    let cpuUs = 0;
    let presses = 0;
    const press = async (key: string, changed: (before: string, after: string) => boolean) => {
      // Keys a few frames apart, as typed: each is measured from the write to the frame that shows it.
      await new Promise((res) => setTimeout(res, 40));
      const before = frame();
      const cpu0 = process.cpuUsage();
      presses++;
      const t = performance.now();
      r.stdin.write(key);
      const shown = await until((f) => changed(before, f), `frame after ${JSON.stringify(key)}`);
      const elapsed = shown - t;
      const d = process.cpuUsage(cpu0);
      cpuUs += d.user + d.system;
      return elapsed;
    };
    const moved = (a: string, b: string) => selected(a) !== selected(b);
    const j: number[] = [];
    for (let i = 0; i < 60; i++) j.push(await press('j', moved));
    const pg_: number[] = [];
    for (let i = 0; i < 30; i++) pg_.push(await press('\u001B[6~', moved));
    const G = await press('G', (_a, b) => /^>\s+1 /m.test(b));
    const g = await press('g', (_a, b) => new RegExp(`^>\\s+${N} `, 'm').test(b));
    const k: number[] = [];
    for (let i = 0; i < 20; i++) k.push(await press('/', (a, b) => a !== b), await press('\u001B', (a, b) => a !== b));
    // Applying a filter: type it (not timed), then time enter → the first frame with the filtered rows.
    const applyFilter = async (text: string, shows: (f: string) => boolean): Promise<number> => {
      await press('/', (a, b) => a !== b);
      for (const ch of text) {
        r.stdin.write(ch);
        await new Promise((res) => setTimeout(res, 5));
      }
      await new Promise((res) => setTimeout(res, 40));
      const t = performance.now();
      r.stdin.write('\r');
      const shown = await until((f) => f.includes(`filter: ${text}`) && shows(f), `frame filtered by ${text}`);
      const ms = shown - t;
      await press('\u001B', (a, b) => a !== b); // clear it again
      return ms;
    };
    const filters: Array<[string, number]> = [];
    // Each condition looks at the selected row (the table starts at the newest build, ${N}), not at the
    // header, which echoes the filter text before the rows arrive.
    const top = (f: string) => /^>\s+(\d+) /m.exec(f)?.[1] ?? null;
    for (const [text, shows] of [
      ['system:x86_64-linux', (f: string) => top(f) === String(N - 1)],
      [`job:job${N - 7}`, (f: string) => top(f) === String(N - 7)],
      ['id:1000..1100', (f: string) => top(f) === '1100'],
      ['status:failed', (f: string) => f.includes('no builds match the filter')],
    ] as Array<[string, (f: string) => boolean]>) {
      filters.push([text, await applyFilter(text, shows)]);
    }

    console.log(`first frame (skeleton, synchronous render): ${firstFrame.toFixed(1)} ms`);
    console.log(`first frame with the newest builds: ${withData.toFixed(1)} ms; with the total count: ${withCount.toFixed(1)} ms`);
    console.log(`j (within the loaded window): ${stats(j)}`);
    console.log(`PgDn (window refilled from SQL as it goes): ${stats(pg_)}`);
    console.log(`G (jump to the oldest build, reverse keyset query): ${G.toFixed(1)} ms`);
    console.log(`g (back to the newest): ${g.toFixed(1)} ms`);
    console.log(`/ and esc (input mode on/off): ${stats(k)}`);
    for (const [text, ms] of filters) console.log(`apply filter ${text} (enter → filtered rows on screen): ${ms.toFixed(1)} ms`);
    console.log(`CPU per keypress (all of the above, this process): ${(cpuUs / presses / 1000).toFixed(1)} ms`);
    const la = (await import('node:os')).loadavg()[0]!;
    console.log(`machine load average (1 min) during the run: ${la.toFixed(1)} on ${(await import('node:os')).cpus().length} CPUs`);
    console.log(`rows held by the builds window: ${controller.getState().builds.rows.length} of ${N}`);
    const mem = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(mem)?.[1] ?? NaN) / 1024;
    console.log(`RSS of this process (console, data source and renderer): ${kb('VmRSS').toFixed(0)} MiB now, peak ${kb('VmHWM').toFixed(0)} MiB`);
    // Peer: what an operator does without a console — psql printing the same page (process start,
    // connect, query, print), median of 5 runs; null when psql is not installed.
    const psql = (sql: string): number | null => {
      const runs: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        try {
          execFileSync('psql', [db.url, '-X', '-q', '-c', sql], {stdio: ['ignore', 'ignore', 'ignore']});
        } catch {
          return null;
        }
        runs.push(performance.now() - t);
      }
      return runs.sort((a, b) => a - b)[2]!;
    };
    const page = (where: string) =>
      `SELECT b.id, j.project || ':' || j.name, b.job, b.system, b.buildstatus, b.priority, b.timestamp FROM Builds b JOIN Jobsets j ON j.id = b.jobset_id ${where} ORDER BY b.id DESC LIMIT 20`;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const f = new Map(filters);
    const real = await realConsole(db.url);
    console.log(`real console process (compiled binary in tmux, 80x24): first data (the Overview's queue size) on screen ${real.firstRowsMs.toFixed(0)} ms after start; RSS ${real.rssMiB.toFixed(0)} MiB now, peak ${real.peakMiB.toFixed(0)} MiB`);
    printTable(`B3 console at scale: ${N} builds, 80x24`, 'psql', [
      {figure: 'first page with data (console: first frame; psql: page + count)', ours: withCount, peer: psql(`${page('')}; SELECT count(*) FROM Builds`), unit: 'ms'},
      {figure: 'next page (console: PgDn median; psql: keyset page)', ours: median(pg_), peer: psql(page(`WHERE b.id < ${N - 500}`)), unit: 'ms'},
      {figure: 'filter system:x86_64-linux', ours: f.get('system:x86_64-linux') ?? null, peer: psql(page(`WHERE b.system = 'x86_64-linux'`)), unit: 'ms'},
      {figure: `filter job:job${N - 7}`, ours: f.get(`job:job${N - 7}`) ?? null, peer: psql(page(`WHERE b.job = 'job${N - 7}'`)), unit: 'ms'},
      {figure: 'filter status:failed (no match: full scan)', ours: f.get('status:failed') ?? null, peer: psql(page('WHERE b.finished = 1 AND b.buildstatus = 1')), unit: 'ms'},
      {figure: 'j keypress to frame (median)', ours: median(j), peer: null, unit: 'ms'},
      {figure: 'RSS of this bench process (tsx, test renderer, pool)', ours: kb('VmHWM'), peer: null, unit: 'MiB', digits: 0},
      {figure: 'real console process: peak RSS after paging and a filter', ours: real.peakMiB, peer: null, unit: 'MiB', digits: 0},
      {figure: 'real console process: start → first data on screen (psql: process, page + count)', ours: real.firstRowsMs, peer: psql(`${page('')}; SELECT count(*) FROM Builds`), unit: 'ms', digits: 0},
    ]);
    r.unmount();
    await controller.stop();
    await data.close();
  } finally {
    await pool.end();
    await db.drop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
