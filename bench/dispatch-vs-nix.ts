// B1 real dispatch vs Nix: a generated DAG of trivial derivations built on 2 SSH builders with separate,
// initially empty stores — once by the `hydra-ops --daemon` queue runner, once by
// `nix-build --builders 'ssh://…; ssh://…' --max-jobs 0` — each on its own fresh set-up (new builders, freshly
// salted derivations, so nothing is cached anywhere). Prints both wall times and their ratio.
//
//   node --import tsx bench/dispatch-vs-nix.ts [--width W] [--depth D] [--jobs J] [--builders B] [--fleets BxJ,…]
//
// The DAG has D layers of W derivations (default 20 × 10 = 200); derivation j of layer k needs derivations j and
// j+1 (mod W) of layer k−1, so every derivation is needed by the last layer. Each builder takes J jobs at a time
// (default 2) on both sides; there are B builders (default 2).
// The daemon writes every step's instants (HYDRA_OPS_STEP_TIMINGS): the script prints where a step's time goes
// (median and total per phase). --fleets 1x2,2x2,4x2,8x4 also runs both sides on each fleet (builders × jobs) and
// prints how wall time scales with the number of slots.
//  - hydra-ops: a fresh database with Hydra's schema; the daemon is started with NIX_REMOTE_SYSTEMS = the two
//    builders only (the coordinator builds nothing) and waited for until its status endpoint answers; then the W
//    top-level derivations are queued as W builds (Builds + BuildOutputs rows, NOTIFY builds_added). The time runs
//    from the queueing to the last build being finished in the database.
//  - Nix: the same DAG shape with another salt; nix-build is given the W top-level .drv paths, no substituters,
//    builders reached through an ssh_config (NIX_SSHOPTS='-F …') that maps two host aliases to the builders'
//    ports, key and host keys. The time runs from spawning nix-build to its exit.
// Both sides start from instantiated .drv files (evaluation is not timed) and copy every output back to the
// coordinator's store.
import {spawn, execFile} from 'node:child_process';
import {mkdtempSync, chmodSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {promisify} from 'node:util';
import pg from 'pg';
import {freshDatabase} from '../test/support/pg.js';
import {startFleet, type Fleet} from '../test/support/fleet.js';
import {nixFixture, type NixFixture} from '../test/support/nix-fixtures.js';
import {mkPrelude} from '../test/support/runner-rig.js';
import {insertJobset} from '../test/support/fixtures.js';
import {cliArgs} from '../test/support/cli.js';
import {initSchema} from '../source/db/schema.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';
import {intArg, printTable} from './table.js';

const execFileAsync = promisify(execFile);

const width = intArg('--width', 20);
const depth = intArg('--depth', 10);
const jobs = intArg('--jobs', 2);
const builderCount = intArg('--builders', 2);
const total = width * depth;

function fleetsArg(): {builders: number; jobs: number}[] {
  const i = process.argv.indexOf('--fleets');
  if (i < 0) return [];
  return (process.argv[i + 1] ?? '').split(',').map((item) => {
    const m = /^(\d+)x(\d+)$/.exec(item.trim());
    if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new Error(`--fleets: '${item}' is not BUILDERSxJOBS (e.g. 4x2)`);
    return {builders: Number(m[1]), jobs: Number(m[2])};
  });
}

/** Consecutive instants of a step's way through the runner, and what the time between them is. */
const SEGMENTS: [string, string, string][] = [
  ['runnable', 'dispatched', 'queue → dispatch'],
  ['dispatched', 'row-inserted', 'step row + NOTIFY (start)'],
  ['row-inserted', 'session-open', 'connect (channel + serve process)'],
  ['session-open', 'handshake', 'serve handshake'],
  ['handshake', 'inputs-queried', 'input closure + validity query'],
  ['inputs-queried', 'inputs-copied', 'input copy'],
  ['inputs-copied', 'built', 'build (incl. sandbox set-up)'],
  ['built', 'outputs-queried', 'output path-info query'],
  ['outputs-queried', 'outputs-imported', 'output copy + local import'],
  ['outputs-imported', 'postprocessed', 'nix-support + closure size'],
  ['postprocessed', 'executed', 'session close'],
  ['executed', 'recorded', 'database writes + NOTIFY (end)'],
];

interface Timing {
  drvPath: string;
  status: number;
  marks: [string, number][];
}

function printBreakdown(timings: Timing[], wallMs: number, slots: number): void {
  const ok = timings.filter((t) => t.status === 0);
  console.log(`\nWhere a step's time goes (${ok.length} successful steps; ${slots} slots; wall × slots / steps = ${((wallMs * slots) / Math.max(1, ok.length)).toFixed(0)} ms per step per slot)`);
  const rows: string[][] = [['phase', 'median ms', 'mean ms', 'total s', 'share']];
  const totals: number[] = [];
  const per: number[][] = SEGMENTS.map(() => []);
  for (const t of ok) {
    const at = new Map(t.marks);
    SEGMENTS.forEach(([from, to], k) => {
      const a = at.get(from);
      const b = at.get(to);
      if (a !== undefined && b !== undefined) per[k]!.push(b - a);
    });
  }
  SEGMENTS.forEach((_, k) => totals.push(per[k]!.reduce((x, y) => x + y, 0)));
  const sum = totals.slice(1).reduce((x, y) => x + y, 0);
  SEGMENTS.forEach(([, , label], k) => {
    const xs = [...per[k]!].sort((a, b) => a - b);
    const med = xs.length ? xs[Math.floor(xs.length / 2)]! : NaN;
    const mean = xs.length ? totals[k]! / xs.length : NaN;
    rows.push([label, med.toFixed(1), mean.toFixed(1), (totals[k]! / 1000).toFixed(1), k === 0 ? '(waiting)' : `${((100 * totals[k]!) / sum).toFixed(0)} %`]);
  });
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  '));
}

/** The DAG as a Nix expression evaluating to the list of the last layer's derivations. */
function dagExpr(nonce: string): string {
  return `${mkPrelude(nonce)}
  let
    layer = k: builtins.genList (j:
      mk "dag-\${toString k}-\${toString j}"
        (if k == 0 then [] else [ (builtins.elemAt (layer (k - 1)) j) (builtins.elemAt (layer (k - 1)) (if j + 1 == ${width} then 0 else j + 1)) ])
        "echo \${toString k}/\${toString j} > $out") ${width};
    layers = builtins.genList layer ${depth};
  in builtins.elemAt layers ${depth - 1}`;
}

/** Instantiates the DAG; returns the top-level .drv paths and every derivation's outputs (for clean-up). */
async function instantiate(fx: NixFixture): Promise<{top: string[]; all: string[]}> {
  const top = await fx.instantiate(dagExpr(fx.nonce));
  const {stdout} = await execFileAsync('nix-store', ['--query', '--requisites', ...top], {maxBuffer: 64 << 20});
  const drvs = stdout.split('\n').filter((p) => p.endsWith('.drv'));
  const dag = drvs.filter((p) => /-dag-\d+-\d+\.drv$/.test(p));
  if (dag.length !== total) throw new Error(`expected ${total} derivations in the DAG, found ${dag.length}`);
  const outs = (await execFileAsync('nix-store', ['--query', '--outputs', ...dag], {maxBuffer: 64 << 20})).stdout.split('\n').filter(Boolean);
  fx.track(...outs);
  return {top, all: dag};
}

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function assertBuilt(outputsOf: string[]): Promise<void> {
  const outs = (await execFileAsync('nix-store', ['--query', '--outputs', ...outputsOf], {maxBuffer: 64 << 20})).stdout.split('\n').filter(Boolean);
  const r = await execFileAsync('nix-store', ['--check-validity', '--print-invalid', ...outs], {maxBuffer: 64 << 20});
  const invalid = r.stdout.split('\n').filter(Boolean);
  if (invalid.length > 0) throw new Error(`${invalid.length} outputs are missing from the coordinator's store, e.g. ${invalid[0]}`);
}

async function runHydraOps(builders: number, jobs: number): Promise<{ms: number; startMs: number; steps: number; timings: Timing[]}> {
  const fleet = await startFleet(builders, {maxJobs: jobs});
  const fx = await nixFixture('bench-b1-hydra');
  const db = await freshDatabase('bench_b1');
  const pool = new pg.Pool({connectionString: db.url, max: 4});
  pool.on('error', () => {});
  const data = mkdtempSync(join(tmpdir(), 'hydra-ops-bench-b1-'));
  chmodSync(data, 0o755);
  const timingsFile = join(data, 'step-timings.jsonl');
  let child: ReturnType<typeof spawn> | null = null;
  try {
    const {top, all} = await instantiate(fx);
    await initSchema(pool);
    const jobset = await insertJobset(pool, {name: 'dag'});
    const s0 = performance.now();
    child = spawn(process.execPath, [...cliArgs(), '--daemon', '--status-address', '127.0.0.1:0', '--grace', '2', '--log-level', 'warn'], {
      env: {...process.env, HYDRA_DATABASE_URL: db.url, HYDRA_DATA: data, HYDRA_OPS_CONFIG_DIR: join(data, 'settings'), NIX_REMOTE_SYSTEMS: fleet.machinesFile, HYDRA_CONFIG: '', HYDRA_OPS_STEP_TIMINGS: timingsFile},
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    // Ready: the queue runner has registered itself (SystemStatus row written after start-up).
    await waitFor('the daemon to start', async () => {
      if (child!.exitCode !== null) throw new Error(`the daemon exited: ${stderr}`);
      return (await pool.query("SELECT 1 FROM SystemStatus WHERE what = 'queue-runner'")).rows.length > 0;
    }, 60_000);
    const startMs = performance.now() - s0;

    const t0 = performance.now();
    const ids: number[] = [];
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      for (const drvPath of top) {
        const drv = await readDrv(drvPath);
        const {rows} = await client.query(
          `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority)
           VALUES (0, extract(epoch from now())::int, $1, $2, $2, $3, $4, 7200, 36000, 1, 100, 0) RETURNING id`,
          [jobset.id, drv.env.get('name'), drvPath, drv.platform],
        );
        for (const [name, path] of outputPathMap(drv)) await client.query('INSERT INTO BuildOutputs (build, name, path) VALUES ($1, $2, $3)', [rows[0].id, name, path]);
        ids.push(rows[0].id);
      }
      await client.query("SELECT pg_notify('builds_added', $1)", [String(Math.min(...ids))]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await waitFor('every build to finish', async () => {
      if (child!.exitCode !== null) throw new Error(`the daemon exited: ${stderr}`);
      const {rows} = await pool.query('SELECT count(*)::int AS n FROM Builds WHERE id = ANY($1::int[]) AND finished = 1', [ids]);
      return rows[0].n === ids.length;
    }, 30 * 60_000);
    const ms = performance.now() - t0;

    const bad = await pool.query('SELECT id, buildStatus FROM Builds WHERE id = ANY($1::int[]) AND buildStatus <> 0', [ids]);
    if (bad.rows.length > 0) throw new Error(`builds failed: ${JSON.stringify(bad.rows)}\n${stderr}`);
    const steps = await pool.query("SELECT count(*)::int AS n FROM BuildSteps WHERE status = 0 AND machine LIKE 'ssh://%'");
    if (steps.rows[0].n !== total) throw new Error(`expected ${total} steps built on the builders, found ${steps.rows[0].n}`);
    await assertBuilt(all);
    child.kill('SIGTERM');
    await exited;
    const timings = readFileSync(timingsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Timing);
    return {ms, startMs, steps: steps.rows[0].n, timings};
  } finally {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await pool.end().catch(() => {});
    await db.drop().catch(() => {});
    await fleet.stop();
    await fx.cleanup().catch(() => {});
    rmSync(data, {recursive: true, force: true});
  }
}

/** ssh_config with two host aliases for the fleet's builders (port, client key, pinned host keys). */
function sshConfig(fleet: Fleet, dir: string): {file: string; aliases: string[]} {
  const known = join(dir, 'known_hosts');
  writeFileSync(known, fleet.builders.map((b) => `[127.0.0.1]:${b.port} ${b.hostKeyLine}`).join('\n') + '\n');
  const aliases = fleet.builders.map((_, i) => `bench-builder-${i}`);
  const text = fleet.builders
    .map((b, i) =>
      [
        `Host ${aliases[i]}`,
        '  HostName 127.0.0.1',
        `  Port ${b.port}`,
        '  User root',
        `  IdentityFile ${fleet.clientKey}`,
        '  IdentitiesOnly yes',
        `  UserKnownHostsFile ${known}`,
        '  StrictHostKeyChecking yes',
        '  BatchMode yes',
      ].join('\n'),
    )
    .join('\n');
  const file = join(dir, 'ssh_config');
  writeFileSync(file, text + '\n', {mode: 0o600});
  return {file, aliases};
}

async function runNix(builders: number, jobs: number): Promise<{ms: number}> {
  const fleet = await startFleet(builders, {maxJobs: jobs});
  const fx = await nixFixture('bench-b1-nix');
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-bench-b1-nix-'));
  try {
    const {top, all} = await instantiate(fx);
    const {file, aliases} = sshConfig(fleet, dir);
    const system = (await execFileAsync('nix-instantiate', ['--eval', '--expr', 'builtins.currentSystem'])).stdout.trim().replace(/"/g, '');
    const builders = aliases.map((a) => `ssh://${a} ${system} - ${jobs} 1 - - -`).join('; ');
    const args = ['--no-out-link', '--max-jobs', '0', '--builders', builders, '--option', 'substituters', '', '--option', 'build-users-group', '', ...top];
    const t0 = performance.now();
    const child = spawn('nix-build', args, {env: {...process.env, NIX_SSHOPTS: `-F ${file}`}, stdio: ['ignore', 'ignore', 'pipe']});
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    const ms = performance.now() - t0;
    if (code !== 0) throw new Error(`nix-build exited with ${code}:\n${stderr.slice(-3000)}`);
    // Every derivation really went to a builder: each builder's store holds some outputs, together all of them.
    const built = await Promise.all(
      fleet.builders.map(async (b) => {
        const r = await execFileAsync('ls', [join(b.storeDir, 'store')]).catch(() => ({stdout: ''}));
        return r.stdout.split('\n').filter((n) => /-dag-\d+-\d+$/.test(n)).length;
      }),
    );
    const remote = built.reduce((a, b) => a + b, 0);
    if (remote < total) throw new Error(`only ${remote} of ${total} outputs are in the builders' stores (per builder: ${built.join(', ')})`);
    await assertBuilt(all);
    return {ms};
  } finally {
    await fleet.stop();
    await fx.cleanup().catch(() => {});
    rmSync(dir, {recursive: true, force: true});
  }
}

async function main(): Promise<void> {
  console.log(`DAG: ${depth} layers × ${width} = ${total} trivial derivations; ${builderCount} builders × ${jobs} jobs; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const h = await runHydraOps(builderCount, jobs);
  console.log(`hydra-ops: ${(h.ms / 1000).toFixed(1)} s for ${h.steps} steps (daemon start-up ${(h.startMs / 1000).toFixed(1)} s, not counted)`);
  const n = await runNix(builderCount, jobs);
  console.log(`nix-build: ${(n.ms / 1000).toFixed(1)} s`);
  printBreakdown(h.timings, h.ms, builderCount * jobs);
  printTable(`B1 real dispatch: ${total} derivations on ${builderCount} SSH builders × ${jobs} jobs`, 'nix-build', [
    {figure: 'wall time', ours: h.ms / 1000, peer: n.ms / 1000, unit: 's'},
    {figure: 'derivations per second', ours: total / (h.ms / 1000), peer: total / (n.ms / 1000), unit: '/s'},
  ]);
  const fleets = fleetsArg();
  if (fleets.length > 0) {
    const rows = [];
    for (const f of fleets) {
      const hf = await runHydraOps(f.builders, f.jobs);
      const nf = await runNix(f.builders, f.jobs);
      console.log(`${f.builders} × ${f.jobs}: hydra-ops ${(hf.ms / 1000).toFixed(1)} s, nix-build ${(nf.ms / 1000).toFixed(1)} s`);
      rows.push({figure: `wall time, ${f.builders} builders × ${f.jobs} jobs = ${f.builders * f.jobs} slots`, ours: hf.ms / 1000, peer: nf.ms / 1000, unit: 's'});
    }
    printTable(`B1 scaling with slots: ${total} derivations`, 'nix-build', rows);
  }
}

await main();
