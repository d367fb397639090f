// The build detail's SQL against a real PostgreSQL: a job's History (the last 30 finished builds of the same
// project, jobset and job, newest first, with the machine of the build's own step), read off Hydra's
// (jobset_id, job, finished, id desc) index with a LIMIT even among thousands of builds; the latest successful
// build (Hydra's `latest` / `latest-for` rules, and eval-scoped); and the detail's Deps rows from BuildSteps.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {insertBuild, insertBuildStep, insertJobset, storePath} from './support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {makeActor} from '../source/actions/actor.js';
import {HISTORY_LIMIT, historySql, jobHistory, latestSuccessful} from '../source/db/queries/job-history.js';
import {SqlConsoleData} from '../source/ui/state/sql-data.js';
import {mergeDeps} from '../source/ui/state/detail-data.js';

let db: TestDatabase;
let pool: pg.Pool;
let js: {id: number; project: string; name: string};
let other: {id: number; project: string; name: string};
const ids: number[] = [];
const T0 = 1_700_000_000;

before(async () => {
  db = await freshDatabase('ui_history');
  pool = new pg.Pool({connectionString: db.url, max: 3});
  await initSchema(pool);
  js = await insertJobset(pool, {name: 'main'});
  other = await insertJobset(pool, {project: js.project, name: 'staging'});
  // 40 builds of `hello` in main: every 5th failed, the aarch64 ones every 4th, durations growing; one queued last.
  for (let i = 1; i <= 40; i++) {
    const drvPath = storePath(`hello-${i}.drv`);
    const id = await insertBuild(pool, {
      jobsetId: js.id,
      job: 'hello',
      finished: 1,
      buildStatus: i % 5 === 0 ? 1 : 0,
      system: i % 4 === 0 ? 'aarch64-linux' : 'x86_64-linux',
      drvPath,
      startTime: T0 + i * 1000,
      stopTime: T0 + i * 1000 + 10 * i,
    });
    ids.push(id);
    // A dependency step on one machine, the build's own step on another.
    await insertBuildStep(pool, {build: id, drvPath: storePath(`dep-${i}.drv`), machine: 'ssh://dep-builder'});
    await insertBuildStep(pool, {build: id, drvPath, machine: i % 2 ? 'ssh://odd' : 'ssh://even', status: i % 5 === 0 ? 1 : 0});
  }
  ids.push(await insertBuild(pool, {jobsetId: js.id, job: 'hello', finished: 0}));
  // Noise as on a farm: thousands of builds of a thousand other jobs in both jobsets, and the same job name in the
  // other jobset — so the planner's choice is the one a real database gets.
  await pool.query(
    `INSERT INTO Builds (finished, timestamp, jobset_id, job, drvPath, system, priority, globalPriority, startTime, stopTime, isCachedBuild, buildStatus, keep)
     SELECT 1, ${T0} + i, CASE WHEN i % 2 = 0 THEN $1::int ELSE $2::int END, CASE WHEN i % 100 = 0 THEN 'hello' ELSE 'job' || (i % 1000) END,
            '/nix/store/' || lpad(i::text, 32, 'b') || '-x.drv', 'x86_64-linux', 100, 0, ${T0}, ${T0} + 1, 0, 0, 0
       FROM generate_series(1, 20000) AS i`,
    [other.id, js.id],
  );
  await pool.query('ANALYZE Builds');
});

after(async () => {
  await pool?.end();
  await db?.drop();
});

const hello = () => ({project: js.project, jobset: 'main', job: 'hello'});

test('History: the last 30 finished builds of the job, newest first, with status, duration and the machine of its own step', async () => {
  const rows = await jobHistory(pool, hello());
  assert.equal(rows.length, HISTORY_LIMIT);
  const finished = ids.slice(0, 40);
  assert.deepEqual(
    rows.map((r) => r.id),
    finished.slice(-30).reverse(),
    'newest first, the queued build and the other jobset/job left out',
  );
  const newest = rows[0]!;
  assert.equal(newest.buildstatus, 1, 'build 40 failed (every 5th)');
  assert.equal(newest.stoptime! - newest.starttime!, 400);
  assert.equal(newest.machine, 'ssh://even', 'the machine of the step that built the build itself, not of its dependency');
  assert.equal(rows[1]!.machine, 'ssh://odd');
  assert.equal(newest.system, 'aarch64-linux');
  // Keyset: the next page continues below the last id.
  const more = await jobHistory(pool, hello(), {before: rows[29]!.id});
  assert.deepEqual(
    more.map((r) => r.id),
    finished.slice(0, 10).reverse(),
  );
  assert.deepEqual(await jobHistory(pool, {project: js.project, jobset: 'nope', job: 'hello'}), []);
});

test('History reads its 30 rows off IndexBuildsOnJobsetIdFinishedId under a Limit, not a scan of the job', async () => {
  const plan = await pool.query(`EXPLAIN (FORMAT JSON) ${historySql()}`, [js.id, 'hello', HISTORY_LIMIT]);
  const top = (plan.rows[0] as {'QUERY PLAN': {Plan: Record<string, unknown>}[]})['QUERY PLAN'][0]!.Plan;
  assert.equal(top['Node Type'], 'Limit', JSON.stringify(top));
  const scan = (top.Plans as Record<string, unknown>[]).find((p) => p['Parent Relationship'] === 'Outer')!;
  assert.equal(String(scan['Index Name']).toLowerCase(), 'indexbuildsonjobsetidfinishedid', JSON.stringify(scan));
  assert.match(String(scan['Index Cond']), /jobset_id = .*job = .*finished = 1/);
  assert.doesNotMatch(JSON.stringify(top), /"Node Type":"Sort","Parent Relationship":"Outer","Parallel Aware":false,"Async Capable":false,"Startup Cost":[0-9.]+,"Total Cost":[0-9.]+,"Plan Rows":\d+,"Plan Width":\d+,"Sort Key":\["b\.id DESC"\]/, 'the index gives the order');
});

test('latest: the highest-id successful build, optionally for a platform or within an evaluation', async () => {
  const finished = ids.slice(0, 40);
  // Build 40 failed: the latest success is 39.
  assert.equal(await latestSuccessful(pool, hello()), finished[38]);
  // aarch64: 4, 8, … 36 succeeded (40 failed).
  assert.equal(await latestSuccessful(pool, hello(), {system: 'aarch64-linux'}), finished[35]);
  assert.equal(await latestSuccessful(pool, hello(), {system: 'riscv64-linux'}), null);
  const {rows} = await pool.query<{id: number}>(
    `INSERT INTO JobsetEvals (jobset_id, timestamp, checkoutTime, evalTime, hasNewBuilds, hash, nrBuilds, nrSucceeded)
     VALUES ($1, ${T0}, 0, 0, 1, 'abc', 2, 1) RETURNING id`,
    [js.id],
  );
  const evalId = rows[0]!.id;
  await pool.query('INSERT INTO JobsetEvalMembers (eval, build, isNew) VALUES ($1, $2, 1), ($1, $3, 1)', [evalId, finished[10], finished[14]]);
  // 11 succeeded, 15 failed: the eval's latest success is 11.
  assert.equal(await latestSuccessful(pool, hello(), {eval: evalId}), finished[10]);
  assert.equal(await latestSuccessful(pool, hello(), {eval: evalId, system: 'aarch64-linux'}), null);
  assert.equal(await latestSuccessful(pool, {...hello(), job: 'nope'}), null);
});

test('the SQL data source gives the detail its history, latest and deps; without a runner the deps say so', async () => {
  const data = new SqlConsoleData({
    pool,
    connection: null,
    describe: 'test',
    dataDir: '/nonexistent',
    actor: makeActor({hydraUser: 'nobody', localAdmin: false, readonly: true, readonlySource: '--readonly', version: 'test'}),
    runner: null,
    mode: 'none',
    modeNote: '--no-scheduler',
    machineSpecs: async () => [],
  });
  try {
    const queued = ids[40]!;
    const running = storePath('libfoo.drv');
    await insertBuildStep(pool, {build: queued, drvPath: running, busy: 30, machine: 'ssh://builder9'});
    const d = await data.buildDetail(queued);
    assert.ok(d);
    assert.equal(d.history.length, 30);
    assert.equal(d.history[0]!.id, ids[39]);
    assert.equal(d.latest, ids[38]);
    assert.deepEqual(
      d.deps.map((x) => [x.state, x.machine]),
      [['running', 'ssh://builder9']],
    );
    assert.match(d.depsNote ?? '', /no queue runner: only the steps recorded in BuildSteps/);
    const done = await data.buildDetail(ids[39]!);
    assert.equal(done!.depsNote, null);
    assert.deepEqual(
      done!.deps.map((x) => [x.state, x.toplevel]),
      [
        ['failed', true],
        ['done', false],
      ],
    );
  } finally {
    await data.close();
  }
});

test('mergeDeps: the runner knows steps without rows and why they wait; its running machine wins', () => {
  const top = storePath('top.drv');
  const a = storePath('a.drv');
  const b = storePath('b.drv');
  const merged = mergeDeps(
    top,
    [
      {stepnr: 1, drvpath: a, busy: 20, status: null, machine: 'ssh://m1', errormsg: null},
      {stepnr: 2, drvpath: storePath('old.drv'), busy: 0, status: 0, machine: 'ssh://m2', errormsg: null},
    ],
    [
      {drvPath: top, finished: false, running: false, runnable: false, machine: null, waitingReason: 'waiting for 2 dependencies', toplevel: true},
      {drvPath: a, finished: false, running: true, runnable: false, machine: 'ssh://m1', waitingReason: null, toplevel: false},
      {drvPath: b, finished: false, running: false, runnable: true, machine: null, waitingReason: 'no machine for aarch64-linux', toplevel: false},
    ],
  );
  assert.deepEqual(
    merged.map((x) => [x.drvpath === top ? 'top' : x.drvpath === a ? 'a' : x.drvpath === b ? 'b' : 'old', x.state, x.stepnr, x.machine, x.note]),
    [
      ['a', 'running', 1, 'ssh://m1', null],
      ['b', 'runnable', null, null, 'no machine for aarch64-linux'],
      ['top', 'waiting', null, null, 'waiting for 2 dependencies'],
      ['old', 'done', 2, 'ssh://m2', null],
    ],
  );
});
