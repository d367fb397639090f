// Filter expressions compiled to SQL and run against Hydra's schema on a real PostgreSQL: each
// expression must select exactly the expected builds, steps or evals of a small, varied farm.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {initSchema} from '../source/db/schema.js';
import {insertBuild, insertBuildStep, insertJobset, insertProject, storePath} from './support/fixtures.js';
import {compileFilter, FILTER_FROM, FilterError, type FilterTarget} from '../source/db/filter.js';
import {countBuilds, listBuilds} from '../source/db/queries/builds.js';
import {listSteps} from '../source/db/queries/steps.js';
import {listEvals} from '../source/db/queries/evals.js';

const N = 1_700_000_000; // "now" for every age / duration in this file

let tdb: TestDatabase;
let pool: pg.Pool;
const B: Record<string, number> = {};
const E: Record<string, number> = {};

interface BuildSpec {
  jobset: number;
  job: string;
  system: string;
  drv: string;
  ts: number;
  finished?: number;
  status?: number | null;
  start?: number | null;
  stop?: number | null;
  gp?: number;
  cached?: number;
}

async function addBuild(label: string, s: BuildSpec): Promise<void> {
  B[label] = await insertBuild(pool, {
    jobsetId: s.jobset,
    job: s.job,
    system: s.system,
    drvPath: storePath(`${s.drv}.drv`),
    nixName: s.drv,
    timestamp: s.ts,
    finished: s.finished ?? 0,
    buildStatus: s.status ?? null,
    startTime: s.start ?? null,
    stopTime: s.stop ?? null,
    globalPriority: s.gp ?? 0,
    isCachedBuild: s.cached ?? (s.finished ? 0 : null),
  });
}

async function addEval(label: string, jobsetId: number, ts: number, members: string[]): Promise<void> {
  const {rows} = await pool.query(
    `INSERT INTO JobsetEvals (jobset_id, timestamp, checkouttime, evaltime, hasnewbuilds, hash, nrbuilds)
     VALUES ($1, $2, 1, 2, 1, $3, $4) RETURNING id`,
    [jobsetId, ts, `hash-${label}`, members.length],
  );
  E[label] = rows[0].id;
  for (const m of members) await pool.query('INSERT INTO JobsetEvalMembers (eval, build, isnew) VALUES ($1, $2, 1)', [E[label], B[m]]);
}

before(async () => {
  tdb = await freshDatabase('filter_sql');
  pool = new pg.Pool({connectionString: tdb.url, max: 4});
  await initSchema(pool);
  await insertProject(pool, {name: 'nixpkgs'});
  await insertProject(pool, {name: 'nixos'});
  const trunk = (await insertJobset(pool, {project: 'nixpkgs', name: 'trunk'})).id;
  const staging = (await insertJobset(pool, {project: 'nixpkgs', name: 'staging'})).id;
  const nixosTrunk = (await insertJobset(pool, {project: 'nixos', name: 'trunk'})).id;
  await pool.query(`SELECT setval(pg_get_serial_sequence('builds', 'id'), 1199)`);
  // ids 1200 … 1209
  await addBuild('b1', {jobset: trunk, job: 'python311', system: 'x86_64-linux', drv: 'python3-3.11.6', ts: N - 7200, finished: 1, status: 0, start: N - 3600, stop: N - 3000});
  await addBuild('b2', {jobset: trunk, job: 'python3Packages.numpy', system: 'aarch64-linux', drv: 'python3.11-numpy-1.26.0', ts: N - 10800, finished: 1, status: 1, start: N - 5000, stop: N - 1400});
  await addBuild('b3', {jobset: staging, job: 'python3Packages.scipy', system: 'aarch64-linux', drv: 'python3.11-scipy-1.11.0', ts: N - 600, finished: 1, status: 1, cached: 1, start: N - 500, stop: N - 500});
  await addBuild('b4', {jobset: nixosTrunk, job: 'hello', system: 'x86_64-linux', drv: 'hello-2.12.1', ts: N - 300});
  await addBuild('b5', {jobset: trunk, job: 'gcc13', system: 'aarch64-linux', drv: 'gcc-13.2.0', ts: N - 2 * 86400, gp: N - 100});
  await addBuild('b6', {jobset: staging, job: 'gcc14', system: 'x86_64-darwin', drv: 'gcc-14.1.0', ts: N - 4000, finished: 1, status: 2, start: N - 3900, stop: N - 3800});
  await addBuild('b7', {jobset: trunk, job: 'firefox', system: 'x86_64-linux', drv: 'firefox-120.0', ts: N - 50, finished: 1, status: 4, start: N - 40, stop: N - 40});
  // Restarted: queued again but still carrying its old "failed" status and times.
  await addBuild('b8', {jobset: nixosTrunk, job: 'python3', system: 'aarch64-linux', drv: 'python3-3.12.0', ts: N - 7200, status: 1, start: N - 9000, stop: N - 8000});
  await addBuild('b9', {jobset: trunk, job: 'foo_bar', system: 'x86_64-linux', drv: 'foo-1.0', ts: N - 1000, finished: 1, status: 0, start: N - 900, stop: N - 870});
  await addBuild('b10', {jobset: trunk, job: 'fooXbar', system: 'x86_64-linux', drv: 'foo-x-1.0', ts: N - 1000, finished: 1, status: 0, start: N - 900, stop: N - 880});
  await pool.query(`SELECT setval(pg_get_serial_sequence('builds', 'id'), 1399)`);
  // ids 1400, 1401
  await addBuild('b11', {jobset: staging, job: 'python3Packages.numpy', system: 'x86_64-linux', drv: 'python3.11-numpy-1.26.0', ts: N - 100, finished: 1, status: 0, start: N - 200, stop: N - 150});
  await addBuild('b12', {jobset: trunk, job: 'timeout-job', system: 'x86_64-linux', drv: 'slow-1', ts: N - 50000, finished: 1, status: 7, start: N - 40000, stop: N - 4000});

  const step = (build: string, f: Omit<Parameters<typeof insertBuildStep>[1], 'build'>) => insertBuildStep(pool, {build: B[build]!, ...f});
  await step('b1', {status: 0, machine: 'ssh://root@builder1', system: 'x86_64-linux', startTime: N - 3600, stopTime: N - 3000, drvPath: storePath('python3-3.11.6.drv')});
  await step('b2', {status: 1, machine: 'ssh://root@builder1', system: 'aarch64-linux', startTime: N - 5000, stopTime: N - 1400, drvPath: storePath('python3.11-numpy-1.26.0.drv')});
  await step('b2', {status: 3, machine: 'builder3', system: 'aarch64-linux', startTime: N - 1400, stopTime: N - 1300, drvPath: storePath('python3.11-numpy-1.26.0.drv')});
  await step('b3', {status: 8, machine: '', system: 'aarch64-linux', startTime: N - 500, stopTime: N - 500, drvPath: storePath('python3.11-scipy-1.11.0.drv')});
  await step('b4', {busy: 30, machine: 'ssh://root@builder1', system: 'x86_64-linux', startTime: N - 1200, drvPath: storePath('hello-2.12.1.drv')});
  await step('b4', {busy: 10, machine: 'ssh://builder2:2222', system: 'x86_64-linux', startTime: N - 60, drvPath: storePath('glibc-2.38.drv')});
  await step('b8', {busy: 20, machine: 'ssh://root@builder2', system: 'aarch64-linux', startTime: N - 7300, drvPath: storePath('python3-3.12.0.drv')});
  // Propagated failure row: no times, no machine.
  await step('b6', {status: 2, machine: '', system: 'x86_64-darwin', startTime: null, stopTime: null, propagatedFrom: B.b2!, drvPath: storePath('gcc-14.1.0.drv')});
  await step('b11', {status: 0, machine: 'builder3', system: 'x86_64-linux', startTime: N - 200, stopTime: N - 150, drvPath: storePath('python3.11-numpy-1.26.0.drv')});
  await step('b12', {status: 7, machine: 'ssh://root@builder1', system: 'x86_64-linux', startTime: N - 40000, stopTime: N - 4000, drvPath: storePath('slow-1.drv')});

  await addEval('e1', trunk, N - 20000, ['b1', 'b2', 'b5', 'b7']);
  await addEval('e2', staging, N - 10000, ['b3', 'b6', 'b11']);
  await addEval('e3', trunk, N - 1000, ['b1', 'b9', 'b10', 'b12']);
  await addEval('e4', nixosTrunk, N - 100, ['b4', 'b8']);
});

after(async () => {
  await pool?.end();
  await tdb?.drop();
});

/** Runs a compiled filter directly and returns the selected keys, sorted. */
async function select(filter: string, target: FilterTarget): Promise<string[]> {
  const {where, params} = compileFilter(filter, target, {now: N});
  const key = target === 'builds' ? 'b.id' : target === 'steps' ? "s.build || '/' || s.stepnr" : 'e.id';
  const {rows} = await pool.query(`SELECT ${key} AS k FROM ${FILTER_FROM[target]} ${where ? `WHERE ${where}` : ''}`, params);
  return rows.map((r: {k: number | string}) => String(r.k)).sort();
}

const builds = (...labels: string[]) => labels.map((l) => String(B[l])).sort();
const steps = (...keys: string[]) => keys.map((k) => { const [l, nr] = k.split('/'); return `${B[l!]}/${nr}`; }).sort();
const evals = (...labels: string[]) => labels.map((l) => String(E[l])).sort();
const ALL_BUILDS = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8', 'b9', 'b10', 'b11', 'b12'];

test('the issue example, term by term, on builds', async () => {
  assert.deepEqual(await select('status:failed', 'builds'), builds('b2', 'b3'), 'restarted b8 is not failed');
  assert.deepEqual(await select('system:aarch64-linux', 'builds'), builds('b2', 'b3', 'b5', 'b8'));
  assert.deepEqual(await select('jobset:nixpkgs/trunk', 'builds'), builds('b1', 'b2', 'b5', 'b7', 'b9', 'b10', 'b12'));
  assert.deepEqual(await select('job~^python3', 'builds'), builds('b1', 'b2', 'b3', 'b8', 'b11'));
  assert.deepEqual(await select('machine:builder1', 'builds'), builds('b1', 'b2', 'b4', 'b12'));
  assert.deepEqual(await select('age>1h', 'builds'), builds('b1', 'b2', 'b5', 'b6', 'b8', 'b12'));
  assert.deepEqual(await select('id:1200..1300', 'builds'), builds('b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8', 'b9', 'b10'));
  assert.deepEqual(await select('!status:succeeded', 'builds'), builds('b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8', 'b12'));
});

test('the whole issue example on steps selects the one failed aarch64 python step on builder1', async () => {
  const example = 'status:failed system:aarch64-linux jobset:nixpkgs/trunk job~^python3 machine:builder1 age>1h id:1200..1300 !status:succeeded';
  assert.deepEqual(await select(example, 'steps'), steps('b2/1'));
  assert.deepEqual(await select('system:aarch64-linux', 'steps'), steps('b2/1', 'b2/2', 'b3/1', 'b8/1'));
  assert.deepEqual(await select('machine:builder1', 'steps'), steps('b1/1', 'b2/1', 'b4/1', 'b12/1'));
  assert.deepEqual(await select('machine:builder2', 'steps'), steps('b4/2', 'b8/1'), 'host part of ssh://host:port and ssh://user@host');
  assert.deepEqual(await select('machine:builder*', 'steps'), steps('b1/1', 'b2/1', 'b2/2', 'b4/1', 'b4/2', 'b8/1', 'b11/1', 'b12/1'));
  assert.deepEqual(await select('age>1h', 'steps'), steps('b2/1', 'b8/1', 'b12/1'));
  assert.deepEqual(await select('age>=1h', 'steps'), steps('b1/1', 'b2/1', 'b8/1', 'b12/1'), 'b1/1 started exactly 1h ago');
  assert.deepEqual(await select('id:1200..1300', 'steps'), steps('b1/1', 'b2/1', 'b2/2', 'b3/1', 'b4/1', 'b4/2', 'b6/1', 'b8/1'));
  assert.deepEqual(
    await select('!status:succeeded', 'steps'),
    steps('b2/1', 'b2/2', 'b3/1', 'b4/1', 'b4/2', 'b6/1', 'b8/1', 'b12/1'),
    'running steps (status NULL) are not "succeeded"',
  );
});

test('status states and names', async () => {
  assert.deepEqual(await select('status:queued', 'builds'), builds('b4', 'b5', 'b8'));
  assert.deepEqual(await select('status:running', 'builds'), builds('b4', 'b8'));
  assert.deepEqual(await select('status:queued !status:running', 'builds'), builds('b5'));
  assert.deepEqual(await select('status:finished', 'builds'), builds('b1', 'b2', 'b3', 'b6', 'b7', 'b9', 'b10', 'b11', 'b12'));
  assert.deepEqual(await select('status:depfailed,cancelled', 'builds'), builds('b6', 'b7'));
  assert.deepEqual(await select('status:1', 'builds'), builds('b2', 'b3'));
  assert.deepEqual(await select('status:timedout', 'builds'), builds('b12'));
  assert.deepEqual(await select('status:cachedfailure', 'builds'), builds('b3'));
  assert.deepEqual(await select('status!=success,failed status:finished', 'builds'), builds('b6', 'b7', 'b12'));
  assert.deepEqual(await select('status:running', 'steps'), steps('b4/1', 'b4/2', 'b8/1'));
  assert.deepEqual(await select('status:cachedfailure', 'steps'), steps('b3/1'));
  assert.deepEqual(await select('status:aborted,timedout', 'steps'), steps('b2/2', 'b12/1'));
});

test('phases, durations and ages of steps', async () => {
  assert.deepEqual(await select('phase:building,connecting', 'steps'), steps('b4/1', 'b4/2'));
  assert.deepEqual(await select('phase:sending age>2h', 'steps'), steps('b8/1'));
  assert.deepEqual(await select('!phase:building status:running', 'steps'), steps('b4/2', 'b8/1'));
  assert.deepEqual(await select('duration>1h', 'steps'), steps('b8/1', 'b12/1'), 'a running step counts until now');
  assert.deepEqual(await select('duration:1h..2h', 'steps'), steps('b2/1'));
  assert.deepEqual(await select('duration<1m', 'steps'), steps('b3/1', 'b11/1'));
  assert.deepEqual(await select('duration<=1m', 'steps'), steps('b3/1', 'b4/2', 'b11/1'));
  assert.deepEqual(await select('age:10m..30m', 'steps'), steps('b2/2', 'b4/1'));
});

test('globs with escaped LIKE metacharacters, jobset forms, projects', async () => {
  assert.deepEqual(await select('job:foo_bar', 'builds'), builds('b9'), '"_" is literal');
  assert.deepEqual(await select('job:foo?bar', 'builds'), builds('b9', 'b10'));
  assert.deepEqual(await select('job:foo*', 'builds'), builds('b9', 'b10'));
  assert.deepEqual(await select('job:gcc*,firefox', 'builds'), builds('b5', 'b6', 'b7'));
  assert.deepEqual(await select('job:"foo*"', 'builds'), [], 'quoted value is literal');
  assert.deepEqual(await select('jobset:trunk', 'builds'), builds('b1', 'b2', 'b4', 'b5', 'b7', 'b8', 'b9', 'b10', 'b12'));
  assert.deepEqual(await select('jobset:nixpkgs:staging', 'builds'), builds('b3', 'b6', 'b11'));
  assert.deepEqual(await select('jobset:nix*:trunk', 'builds'), await select('jobset:trunk', 'builds'));
  assert.deepEqual(await select('jobset~^nixos:', 'builds'), builds('b4', 'b8'));
  assert.deepEqual(await select('project:nixos', 'builds'), builds('b4', 'b8'));
  assert.deepEqual(await select('system!=x86_64-linux', 'builds'), builds('b2', 'b3', 'b5', 'b6', 'b8'));
  assert.deepEqual(await select('drv:numpy', 'builds'), builds('b2', 'b11'));
});

test('ids, eval membership, bumped, cached, age and duration of builds', async () => {
  assert.deepEqual(await select('id>1300', 'builds'), builds('b11', 'b12'));
  assert.deepEqual(await select(`id:${B.b1},${B.b6}`, 'builds'), builds('b1', 'b6'));
  assert.deepEqual(await select('id:1400..', 'builds'), builds('b11', 'b12'));
  assert.deepEqual(await select(`eval:${E.e1}`, 'builds'), builds('b1', 'b2', 'b5', 'b7'));
  assert.deepEqual(await select(`eval:${E.e1},${E.e2}`, 'builds'), builds('b1', 'b2', 'b3', 'b5', 'b6', 'b7', 'b11'));
  assert.deepEqual(await select(`!eval:${E.e1} jobset:nixpkgs/trunk`, 'builds'), builds('b9', 'b10', 'b12'));
  assert.deepEqual(await select(`!eval:${E.e1},${E.e3} jobset:nixpkgs/trunk`, 'builds'), []);
  assert.deepEqual(await select(`eval:${E.e3} !status:success`, 'builds'), builds('b12'));
  assert.deepEqual(await select('bumped:yes', 'builds'), builds('b5'));
  assert.deepEqual(await select('cached:yes', 'builds'), builds('b3'));
  assert.deepEqual(await select('age<10m', 'builds'), builds('b4', 'b7', 'b11'));
  assert.deepEqual(await select('age:1d..3d', 'builds'), builds('b5'));
  assert.deepEqual(await select('duration>=1h', 'builds'), builds('b2', 'b12'));
  assert.deepEqual(await select('duration<1m', 'builds'), builds('b3', 'b7', 'b9', 'b10', 'b11'), 'restarted b8 has no duration');
});

test('free text: words, quoted text, regexes over job and drv name', async () => {
  assert.deepEqual(await select('numpy', 'builds'), builds('b2', 'b11'));
  assert.deepEqual(await select('HELLO', 'builds'), builds('b4'), 'case-insensitive');
  assert.deepEqual(await select('"Packages.sci"', 'builds'), builds('b3'));
  assert.deepEqual(await select('/^gcc-1[34]/', 'builds'), builds('b5', 'b6'), 'anchored at the drv name, not the store path');
  assert.deepEqual(await select('/^GCC/i', 'builds'), builds('b5', 'b6'));
  assert.deepEqual(await select('/^python3\\.11-/', 'steps'), steps('b2/1', 'b2/2', 'b3/1', 'b11/1'));
  assert.deepEqual(await select('glibc', 'steps'), steps('b4/2'), "the step's own drv");
  assert.deepEqual(await select('!python', 'builds'), builds('b4', 'b5', 'b6', 'b7', 'b9', 'b10', 'b12'));
  assert.deepEqual(await select('/\\bnumpy\\b/', 'builds'), builds('b2', 'b11'), '\\b is a word boundary');
});

test('eval filters', async () => {
  assert.deepEqual(await select('jobset:nixpkgs:trunk', 'evals'), evals('e1', 'e3'));
  assert.deepEqual(await select('project:nixpkgs', 'evals'), evals('e1', 'e2', 'e3'));
  assert.deepEqual(await select('age>2h', 'evals'), evals('e1', 'e2'));
  assert.deepEqual(await select(`id:${E.e2}..${E.e3}`, 'evals'), evals('e2', 'e3'));
  const page = await listEvals(pool, {filter: 'project:nixpkgs', jobset: 'nixpkgs:trunk', limit: 10, now: N});
  assert.deepEqual(page.rows.map((r) => r.id), [E.e3, E.e1]);
});

test('the empty filter selects everything; the query functions apply the same filters', async () => {
  assert.deepEqual(await select('', 'builds'), builds(...ALL_BUILDS));
  const page = await listBuilds(pool, {filter: 'status:failed system:aarch64-linux', limit: 10, now: N});
  assert.deepEqual(page.rows.map((r) => r.id), [B.b3, B.b2]);
  assert.equal(await countBuilds(pool, 'job~^python3', {now: N}), 5);
  assert.equal(await countBuilds(pool, 'job~^python3', {order: 'queue', now: N}), 1);
  const running = await listSteps(pool, {running: true, filter: 'machine:builder2', limit: 10, now: N});
  assert.deepEqual(running.rows.map((r) => `${r.build}/${r.stepnr}`), [`${B.b8}/1`, `${B.b4}/2`], 'oldest start first');
});

test('a regex JavaScript accepts but PostgreSQL rejects becomes a positioned FilterError', async () => {
  for (const [filter, column] of [['system:x job~a{1000}', 14], ['status:failed /x\\8/', 15]] as const) {
    await assert.rejects(listBuilds(pool, {filter, limit: 5}), (e: unknown) => {
      assert.ok(e instanceof FilterError, String(e));
      assert.equal(e.column, column, e.message);
      assert.match(e.message, /is not valid in PostgreSQL/);
      return true;
    });
  }
});
