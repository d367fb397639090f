// B2 scheduler scale: the queue runner's in-memory scheduler on a Hydra-sized queue, next to the figures
// published for Hydra's Rust queue runner (1.0 GB RSS at 273k steps; ~100 ms dispatch rounds at 35k runnable).
//
//   node --import tsx bench/scheduler-scale.ts [builds] [machines] [--rounds N] [--load-concurrency N] [--machines-after-ingest] [--keep]
//
// Set-up (not timed): a scratch directory laid out like a store gets real ATerm .drv files for `builds`
// (default 150,000) top-level derivations. Build i needs a private derivation and one of 1,000 shared ones; two
// private derivations in three also need that shared one, so the graph has 2·builds + 1,000 distinct steps
// (~301k) and, once loaded, builds/3 + 1,000 (~51k) of them are runnable. A fresh PostgreSQL database gets
// Hydra's schema, 4 jobsets and one queued Builds row (plus BuildOutputs row) per top-level derivation.
// 120 machines (speed factors 1–4, 4–48 jobs each) are served by SimulatedExecutor — named as such: it builds
// nothing and reports success after 20–200 ms. The scheduler is the real one, with the real database: every
// dispatched step gets its BuildSteps row, busy phases, and the success bookkeeping of its builds.
//
// Measured:
//  - ingestion: scheduler.start() + first scan until stats.ingestDone == ingestTotal, with the executor paused
//    (dispatched steps wait, none finishes);
//  - full rounds, timed directly on the loaded graph (~48k runnable at the default size): the dispatcher's
//    ordering and assignment over every runnable step with one free slot on each machine, 20 times;
//  - dispatch rounds: the executor is resumed; the time of every dispatch round (stats.lastDispatchMs) is
//    recorded with the number of runnable steps at that round; p50/p99 over the rounds at 45k–55k runnable
//    (or the first --rounds rounds, default 300). A round that finds every machine full skips the ordering, so
//    these rounds are cheaper than the full ones above;
//  - peak RSS of this process (VmHWM), which holds the whole graph, plus the RSS right after ingestion.
import {mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync} from 'node:fs';
import {createHash} from 'node:crypto';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase} from '../test/support/pg.js';
import {insertJobset} from '../test/support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {defaultRunnerSettings} from '../source/config/hydra-conf.js';
import {Scheduler} from '../source/scheduler/scheduler.js';
import {LookupBatcher} from '../source/scheduler/batcher.js';
import {assignSteps, orderRunnable, sortRunnable} from '../source/scheduler/dispatcher.js';
import {failedPathsAmong} from '../source/db/runner-sql.js';
import {readDrv} from '../source/nix/drv.js';
import {NIX_BASE32_ALPHABET} from '../source/nix/store-path.js';
import type {MachineSpec} from '../source/fleet/machines-file.js';
import type {GraphStore} from '../source/scheduler/graph.js';
import {SimulatedExecutor} from './simulated-executor.js';
import {peakRssMiB, percentile, printTable} from './table.js';

const SYSTEM = 'x86_64-linux';
const SHARED = 1000;
const RUST = {rssMiB: 1000 * 1000 ** 2 / 2 ** 20, rssSteps: 273_000, dispatchMs: 100, dispatchRunnable: 35_000};

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !['--rounds', '--load-concurrency'].includes(all[i - 1] ?? ''));
const nBuilds = Number(positional[0] ?? 150_000);
const nMachines = Number(positional[1] ?? 120);
const maxRounds = Number(argValue('--rounds') ?? 300);
for (const [k, v] of Object.entries({builds: nBuilds, machines: nMachines, rounds: maxRounds})) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer, got '${v}'`);
}

function vmRssMiB(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function hashPart(label: string): string {
  const d = createHash('sha256').update(label).digest();
  let s = '';
  for (let i = 0; i < 32; i++) s += NIX_BASE32_ALPHABET[d[i]! & 31];
  return s;
}

const q = (s: string) => JSON.stringify(s); // the strings here need no ATerm escapes beyond JSON's

/** ATerm text of a small input-addressed derivation, as Nix writes it. */
function drvText(name: string, out: string, inputs: string[]): string {
  const inputDrvs = [...inputs].sort().map((p) => `(${q(p)},["out"])`).join(',');
  const env: Array<[string, string]> = [
    ['PATH', '/usr/bin:/bin'],
    ['builder', '/bin/sh'],
    ['name', name],
    ['out', out],
    ['system', SYSTEM],
  ];
  return (
    `Derive([("out",${q(out)},"","")],[${inputDrvs}],[],${q(SYSTEM)},"/bin/sh",["-c","echo ${name} > $out"],` +
    `[${env.map(([k, v]) => `(${q(k)},${q(v)})`).join(',')}])`
  );
}

interface Generated {
  store: string;
  topDrvs: string[];
  topOuts: string[];
  steps: number;
}

function generate(dir: string, n: number): Generated {
  const store = join(dir, 'store');
  mkdirSync(store);
  const write = (label: string, name: string, inputs: string[]) => {
    const drv = `${store}/${hashPart(`drv:${label}`)}-${name}.drv`;
    const out = `${store}/${hashPart(`out:${label}`)}-${name}`;
    writeFileSync(drv, drvText(name, out, inputs));
    return {drv, out};
  };
  const shared = Array.from({length: SHARED}, (_, k) => write(`shared-${k}`, `shared-lib-${k}`, []).drv);
  const topDrvs: string[] = [];
  const topOuts: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = shared[i % SHARED]!;
    const priv = write(`private-${i}`, `private-dep-${i}`, i % 3 === 0 ? [] : [s]).drv;
    const top = write(`top-${i}`, `package-${i}`, [priv, s]);
    topDrvs.push(top.drv);
    topOuts.push(top.out);
  }
  return {store, topDrvs, topOuts, steps: 2 * n + SHARED};
}

async function insertQueue(pool: pg.Pool, g: Generated): Promise<void> {
  const jobsets: number[] = [];
  for (let j = 0; j < 4; j++) jobsets.push((await insertJobset(pool, {name: `scale-${j}`, schedulingShares: 100 * (j + 1)})).id);
  const now = Math.floor(Date.now() / 1000);
  const chunk = 10_000;
  for (let i = 0; i < g.topDrvs.length; i += chunk) {
    const drvs = g.topDrvs.slice(i, i + chunk);
    const outs = g.topOuts.slice(i, i + chunk);
    const js = drvs.map((_, k) => jobsets[(i + k) % jobsets.length]!);
    const jobs = drvs.map((_, k) => `package-${i + k}`);
    await pool.query(
      `WITH ins AS (
         INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority)
         SELECT 0, $1, t.js, t.job, t.job, t.drv, $2, 7200, 36000, 1, 100, 0
           FROM unnest($3::int[], $4::text[], $5::text[]) AS t(js, job, drv)
         RETURNING id, drvPath)
       INSERT INTO BuildOutputs (build, name, path)
       SELECT ins.id, 'out', o.out FROM ins JOIN unnest($5::text[], $6::text[]) AS o(drv, out) ON o.drv = ins.drvPath`,
      [now, SYSTEM, js, jobs, drvs, outs],
    );
  }
  await pool.query('ANALYZE Builds; ANALYZE BuildOutputs');
}

function machines(n: number): MachineSpec[] {
  // Deterministic spread: speed factors 1–4, 4–48 jobs (mean ≈ 26).
  return Array.from({length: n}, (_, i) => ({
    uri: `ssh://sim-builder-${String(i).padStart(3, '0')}`,
    kind: 'ssh' as const,
    host: `sim-builder-${String(i).padStart(3, '0')}`,
    port: undefined,
    user: undefined,
    systems: [SYSTEM],
    maxJobs: 4 + ((i * 7) % 45),
    speedFactor: 1 + (i % 4),
    supportedFeatures: i % 10 === 0 ? ['big-parallel', 'kvm'] : ['kvm'],
    mandatoryFeatures: [],
    file: '(simulated)',
    line: i + 1,
  }));
}

async function waitFor(cond: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-bench-scale-'));
  const db = await freshDatabase('bench_scale');
  const pool = new pg.Pool({connectionString: db.url, max: 20});
  pool.on('error', () => {});
  let scheduler: Scheduler | null = null;
  const executor = new SimulatedExecutor(20, 200);
  try {
    let t = performance.now();
    const g = generate(dir, nBuilds);
    console.log(`generated ${g.steps} .drv files (${nBuilds} top-level builds) in ${((performance.now() - t) / 1000).toFixed(1)} s under ${g.store}`);
    await initSchema(pool);
    t = performance.now();
    await insertQueue(pool, g);
    console.log(`inserted ${nBuilds} Builds rows in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const failed = new LookupBatcher(async (paths) => new Set(await failedPathsAmong(pool, paths)));
    const graphStore: GraphStore = {
      readDrv: (p) => readDrv(p),
      validPaths: async () => new Set(), // nothing is built yet: no output is valid
      failedPathsAmong: async (paths) => [...(await failed.filter(paths))],
    };
    const runner = defaultRunnerSettings();
    runner.gcRootsDir = '';
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir);
    scheduler = new Scheduler({
      pool,
      connection: {connectionString: db.url},
      dataDir,
      runner,
      executor,
      localSystem: SYSTEM,
      graphStore,
      pollMs: 5000,
      loadConcurrency: Number(argValue('--load-concurrency') ?? 32),
    });
    const s = scheduler;
    const specs = machines(nMachines);
    const slots = specs.reduce((a, m) => a + m.maxJobs, 0);
    const rounds: Array<{ms: number; runnable: number}> = [];
    let recording = false;
    s.on('dispatch', () => {
      if (!recording) return;
      const runnable = s.graph.runnable.size;
      process.nextTick(() => rounds.push({ms: s.stats.lastDispatchMs, runnable}));
    });

    // Ingestion: every queued build loaded; dispatched steps wait in the paused executor.
    executor.pause();
    const machinesLate = process.argv.includes('--machines-after-ingest');
    if (!machinesLate) s.setMachines(specs);
    const rssBefore = vmRssMiB();
    t = performance.now();
    const ingestStart = t;
    let firstDispatchMs: number | null = null;
    s.once('step-started', () => (firstDispatchMs = performance.now() - ingestStart));
    await s.start();
    s.requestScan();
    await waitFor(() => s.stats.ingestTotal > 0 && s.stats.ingestDone >= s.stats.ingestTotal, 'ingestion', 30 * 60_000);
    const ingestMs = performance.now() - t;
    if (machinesLate) s.setMachines(specs);
    global.gc?.();
    const rssIngested = vmRssMiB();
    const stepsInGraph = s.graph.steps.size;
    console.log(
      `ingested ${s.stats.ingestTotal} builds in ${(ingestMs / 1000).toFixed(1)} s: ${stepsInGraph} steps in memory, ` +
        `${s.graph.runnable.size} runnable (+${s.active.size} dispatched), RSS ${rssIngested.toFixed(0)} MiB (was ${rssBefore.toFixed(0)})`,
    );

    // Full rounds, timed directly on the loaded graph: the dispatcher's ordering and assignment over every runnable
    // step, with one free slot on each machine (as after a burst of finished steps). Assignments are undone.
    const full: number[] = [];
    const fullRunnable = [...s.graph.runnable].filter((x) => !x.running).length;
    for (let i = 0; i < 21; i++) {
      const r0 = performance.now();
      const now = Date.now();
      const candidates = [...s.graph.runnable].filter((x) => !x.running && x.after <= now);
      const clones = [...s.machines.values()].map((m) => ({spec: m.spec, rt: {...m.rt, currentJobs: m.spec.maxJobs - 1}}));
      const assigned = assignSteps(orderRunnable(candidates), clones, SYSTEM, now);
      const took = performance.now() - r0;
      for (const a of assigned) a.step.running = false;
      if (i > 0) full.push(took); // the first is a warm-up
    }
    full.sort((a, b) => a - b);
    console.log(`full rounds timed directly: ${fullRunnable} runnable, p50 ${percentile(full, 50).toFixed(1)} ms, max ${full[full.length - 1]!.toFixed(1)} ms`);
    // The same rounds with every runnable step sorted first (how rounds were ordered before orderRunnable).
    const sortedFull: number[] = [];
    for (let i = 0; i < 11; i++) {
      const r0 = performance.now();
      const now = Date.now();
      const candidates = [...s.graph.runnable].filter((x) => !x.running && x.after <= now);
      const clones = [...s.machines.values()].map((m) => ({spec: m.spec, rt: {...m.rt, currentJobs: m.spec.maxJobs - 1}}));
      const assigned = assignSteps(sortRunnable(candidates), clones, SYSTEM, now);
      const took = performance.now() - r0;
      for (const a of assigned) a.step.running = false;
      if (i > 0) sortedFull.push(took);
    }
    sortedFull.sort((a, b) => a - b);
    console.log(`full rounds with a full sort instead: p50 ${percentile(sortedFull, 50).toFixed(1)} ms`);
    const firstLine = `first step dispatched ${firstDispatchMs === null ? 'never' : `${((firstDispatchMs as number) / 1000).toFixed(2)} s`} after start`;
    console.log(firstLine);

    // Dispatch rounds while steps finish and free slots.
    recording = true;
    t = performance.now();
    executor.resume();
    await waitFor(() => rounds.length >= maxRounds || performance.now() - t > 120_000, 'dispatch rounds', 130_000);
    recording = false;
    const elapsed = (performance.now() - t) / 1000;
    const near = rounds.filter((r) => r.runnable >= 45_000 && r.runnable <= 55_000);
    const used = near.length >= 20 ? near : rounds;
    const ms = used.map((r) => r.ms).sort((a, b) => a - b);
    const runnables = used.map((r) => r.runnable);
    console.log(
      `${rounds.length} dispatch rounds in ${elapsed.toFixed(1)} s, ${executor.finished} simulated steps finished ` +
        `(${(executor.finished / elapsed).toFixed(0)}/s over ${slots} slots on ${nMachines} machines); ` +
        `${used.length} rounds at ${Math.min(...runnables)}–${Math.max(...runnables)} runnable`,
    );
    const peak = peakRssMiB();

    printTable(`B2 scheduler scale: ${nBuilds} builds, ${stepsInGraph} steps, ${nMachines} machines (simulated builders)`, 'Rust runner', [
      {figure: 'first step dispatched after start', ours: firstDispatchMs === null ? null : firstDispatchMs / 1000, peer: null, unit: 's', digits: 2},
      {figure: 'ingestion, whole queue', ours: ingestMs / 1000, peer: null, unit: 's'},
      {figure: 'ingestion rate', ours: nBuilds / (ingestMs / 1000), peer: null, unit: 'builds/s', digits: 0},
      {figure: `dispatch round p50 (~${Math.round(percentile([...runnables].sort((a, b) => a - b), 50) / 1000)}k runnable; Rust: 35k)`, ours: percentile(ms, 50), peer: RUST.dispatchMs, unit: 'ms'},
      {figure: 'dispatch round p99', ours: percentile(ms, 99), peer: null, unit: 'ms'},
      {figure: `full round, 1 free slot per machine, p50 (${Math.round(fullRunnable / 1000)}k runnable)`, ours: percentile(full, 50), peer: RUST.dispatchMs, unit: 'ms'},
      {figure: 'full round p99 (20 rounds: the maximum)', ours: percentile(full, 99), peer: null, unit: 'ms'},
      {figure: 'dispatch round per 1k runnable (p50)', ours: percentile(ms, 50) / (percentile([...runnables].sort((a, b) => a - b), 50) / 1000), peer: RUST.dispatchMs / 35, unit: 'ms', digits: 2},
      {figure: `peak RSS (${Math.round(stepsInGraph / 1000)}k steps; Rust: 273k)`, ours: peak, peer: RUST.rssMiB, unit: 'MiB', digits: 0},
      {figure: 'RSS per 1k steps (after ingestion)', ours: rssIngested / (stepsInGraph / 1000), peer: RUST.rssMiB / (RUST.rssSteps / 1000), unit: 'MiB', digits: 2},
    ]);
    console.log('Rust figures: as published for Hydra\'s Rust queue runner (1.0 GB RSS at 273k steps; ~100 ms rounds at 35k runnable).');
    // One line for bench/scheduler-scale-curve.ts, which runs this script at several sizes.
    const summary = {builds: nBuilds, steps: stepsInGraph, firstDispatchS: firstDispatchMs === null ? null : firstDispatchMs / 1000, ingestS: ingestMs / 1000, fullRoundMs: percentile(full, 50), fullRunnable, roundMs: percentile(ms, 50), peakRssMiB: peak, rssIngestedMiB: rssIngested};
    console.log(`B2-SUMMARY ${JSON.stringify(summary)}`);
  } finally {
    await scheduler?.stop(1000).catch(() => {});
    await executor.close();
    await pool.end().catch(() => {});
    if (!process.argv.includes('--keep')) {
      await db.drop().catch(() => {});
      rmSync(dir, {recursive: true, force: true});
    } else {
      console.log(`kept ${dir} and database ${db.name}`);
    }
  }
}

await main();
