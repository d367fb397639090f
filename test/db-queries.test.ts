// The typed queries on a real PostgreSQL with Hydra's schema: keyset paging visits every row exactly
// once in every order (including ties), counts agree with listings, and the aggregate queries
// (running steps per machine, queue summary, jobset counts) match the rows inserted.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {initSchema} from '../source/db/schema.js';
import {insertBuild, insertBuildStep, insertJobset, storePath, type JobsetRow} from './support/fixtures.js';
import {buildMetrics, buildOutputs, buildProducts, countBuilds, getBuild, listBuilds, type BuildOrder, type BuildRow} from '../source/db/queries/builds.js';
import {buildSteps, countSteps, groupByMachine, listSteps, runningStepsByMachine, stepOutputs, type StepRow} from '../source/db/queries/steps.js';
import {getJobsetByName, listJobsets} from '../source/db/queries/jobsets.js';
import {evalBuildIds, listEvals} from '../source/db/queries/evals.js';
import {countFailedPaths, failedPathsAmong, isFailedPath} from '../source/db/queries/failed-paths.js';
import {nrQueued, nrRunningBuilds, queueSummary} from '../source/db/queries/queue.js';
import type {Page} from '../source/db/queries/sql.js';

const N = 1_700_000_000;
const SYSTEMS = ['x86_64-linux', 'aarch64-linux', 'aarch64-darwin'];
const MACHINES = ['ssh://root@builder1', 'ssh://root@builder2', 'builder3'];

let tdb: TestDatabase;
let pool: pg.Pool;
let jobsets: JobsetRow[];
interface Seeded {
  id: number;
  jobset: JobsetRow;
  system: string;
  finished: number;
  gp: number;
  ts: number;
}
const seeded: Seeded[] = [];

// Deterministic pseudo-random numbers (LCG) so every run inserts the same farm.
let seed = 12345;
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
}

before(async () => {
  tdb = await freshDatabase('queries');
  pool = new pg.Pool({connectionString: tdb.url, max: 4});
  await initSchema(pool);
  // One transaction for the whole seed: hundreds of single-row commits would each wait for a WAL flush.
  const db = await pool.connect();
  await db.query('BEGIN');
  try {
    await seedFarm(db);
    await db.query('COMMIT');
  } finally {
    db.release();
  }
});

async function seedFarm(pool: pg.PoolClient): Promise<void> {
  jobsets = [
    await insertJobset(pool, {name: 'trunk', schedulingShares: 100}),
    await insertJobset(pool, {name: 'staging', schedulingShares: 50}),
    await insertJobset(pool, {name: 'small', schedulingShares: 7}),
  ];
  for (let i = 0; i < 240; i++) {
    const jobset = jobsets[rand(3)]!;
    const system = SYSTEMS[rand(3)]!;
    const finished = rand(3) === 0 ? 0 : 1;
    // Few distinct bump values so the queue order has many ties on globalPriority.
    const gp = rand(5) === 0 ? N - 100 * rand(3) : 0;
    const ts = N - 60 * rand(1000);
    const id = await insertBuild(pool, {
      jobsetId: jobset.id,
      job: `job${i % 40}`,
      system,
      finished,
      buildStatus: finished ? rand(3) : null,
      startTime: finished ? ts + 10 : null,
      stopTime: finished ? ts + 20 : null,
      globalPriority: gp,
      timestamp: ts,
    });
    seeded.push({id, jobset, system, finished, gp, ts});
  }
  // Finished steps with many equal stop times, and running steps on three machines.
  for (const [k, b] of seeded.entries()) {
    if (b.finished) {
      await insertBuildStep(pool, {build: b.id, status: 0, machine: MACHINES[k % 3], startTime: N - 500, stopTime: N - 100 * (k % 4), outputs: {out: storePath(`o${k}`)}});
      if (k % 5 === 0) await insertBuildStep(pool, {build: b.id, status: 1, machine: MACHINES[k % 3], startTime: N - 500, stopTime: N - 100 * (k % 4)});
    }
  }
  const queued = seeded.filter((b) => !b.finished);
  for (let k = 0; k < 9; k++) {
    await insertBuildStep(pool, {build: queued[k]!.id, busy: [1, 10, 30][k % 3], machine: MACHINES[k % 3], startTime: N - 10 * (9 - k), stopTime: null});
  }
  // A second busy step under the same build: nrRunningBuilds counts builds, not steps.
  await insertBuildStep(pool, {build: queued[0]!.id, busy: 20, machine: MACHINES[1], startTime: N - 5, stopTime: null});
}

after(async () => {
  await pool?.end();
  await tdb?.drop();
});

async function drain<T>(fetch: (after: string | null) => Promise<Page<T>>): Promise<{rows: T[]; pages: number}> {
  const rows: T[] = [];
  let after: string | null = null;
  let pages = 0;
  do {
    const page: Page<T> = await fetch(after);
    pages++;
    assert.ok(pages < 1000, 'paging does not terminate');
    rows.push(...page.rows);
    after = page.nextCursor;
  } while (after !== null);
  return {rows, pages};
}

function queueOrder(a: Seeded | BuildRow, b: Seeded | BuildRow): number {
  const ga = 'gp' in a ? a.gp : a.globalpriority;
  const gb = 'gp' in b ? b.gp : b.globalpriority;
  return gb - ga || a.id - b.id;
}

test('listBuilds id-desc visits every build exactly once, newest first, across pages', async () => {
  const {rows, pages} = await drain((after) => listBuilds(pool, {order: 'id-desc', after, limit: 7}));
  assert.equal(pages, Math.ceil(240 / 7));
  assert.deepEqual(rows.map((r) => r.id), seeded.map((b) => b.id).sort((a, b) => b - a));
  assert.equal(await countBuilds(pool), 240);
  const first = rows[0]!;
  assert.equal(typeof first.project, 'string');
  assert.equal(first.jobset, seeded.find((b) => b.id === first.id)!.jobset.name);
});

test('listBuilds queue order (globalPriority DESC, id) pages through ties exactly once', async () => {
  const expected = seeded.filter((b) => !b.finished).sort(queueOrder).map((b) => b.id);
  assert.ok(new Set(seeded.filter((b) => !b.finished && b.gp > 0).map((b) => b.gp)).size < seeded.filter((b) => !b.finished && b.gp > 0).length, 'there are ties');
  for (const limit of [1, 4, 13, 500]) {
    const {rows} = await drain((after) => listBuilds(pool, {order: 'queue', after, limit}));
    assert.deepEqual(rows.map((r) => r.id), expected, `limit ${limit}`);
  }
  assert.equal(await countBuilds(pool, null, {order: 'queue'}), expected.length);
  assert.equal(await nrQueued(pool), expected.length);
});

test('paging with a filter returns exactly the filtered rows, and counts agree', async () => {
  for (const order of ['id-desc', 'queue'] as BuildOrder[]) {
    const filter = 'system:aarch64-* !jobset:small';
    const {rows} = await drain((after) => listBuilds(pool, {order, filter, after, limit: 5}));
    const expected = seeded
      .filter((b) => b.system.startsWith('aarch64-') && b.jobset.name !== 'small' && (order === 'id-desc' || !b.finished))
      .sort(order === 'queue' ? queueOrder : (a, b) => b.id - a.id)
      .map((b) => b.id);
    assert.ok(expected.length > 10);
    assert.deepEqual(rows.map((r) => r.id), expected, order);
    assert.equal(await countBuilds(pool, filter, {order}), expected.length);
  }
});

test('bad cursors and limits are clear errors', async () => {
  await assert.rejects(listBuilds(pool, {order: 'queue', after: 'id:5'}), /bad cursor "id:5"/);
  await assert.rejects(listBuilds(pool, {after: 'garbage'}), /bad cursor "garbage"/);
  await assert.rejects(listBuilds(pool, {limit: 0}), /limit must be an integer/);
  await assert.rejects(listSteps(pool, {after: 'stopped:1:2'}), /bad cursor/);
});

test('listSteps pages finished steps by stopTime DESC with ties, exactly once', async () => {
  const {rows} = await pool.query('SELECT build, stepnr, stoptime FROM BuildSteps WHERE starttime IS NOT NULL AND stoptime IS NOT NULL');
  const key = (r: {build: number; stepnr: number}) => `${r.build}/${r.stepnr}`;
  const expected = [...rows]
    .sort((a, b) => b.stoptime - a.stoptime || b.build - a.build || b.stepnr - a.stepnr)
    .map(key);
  const paged = await drain((after) => listSteps(pool, {after, limit: 11}));
  assert.deepEqual(paged.rows.map(key), expected);
  assert.equal(await countSteps(pool), expected.length);
  const failed = await drain((after) => listSteps(pool, {filter: 'status:failed', after, limit: 3}));
  assert.equal(failed.rows.length, seeded.filter((b, k) => b.finished && k % 5 === 0).length);
  assert.ok(failed.rows.every((r) => r.status === 1));
});

test('running steps: paging, running-steps-by-machine query, counts', async () => {
  const running = await drain((after) => listSteps(pool, {running: true, after, limit: 4}));
  assert.equal(running.rows.length, 10);
  assert.ok(running.rows.every((r: StepRow) => r.busy !== 0));
  const starts = running.rows.map((r) => r.starttime!);
  assert.deepEqual(starts, [...starts].sort((a, b) => a - b));
  assert.equal(await countSteps(pool, 'phase:building', {running: true}), 3);

  const byMachine = await runningStepsByMachine(pool);
  assert.equal(byMachine.length, 10);
  assert.deepEqual(byMachine.map((r) => r.machine), [...byMachine.map((r) => r.machine)].sort());
  const groups = groupByMachine(byMachine);
  assert.deepEqual(groups.map((g) => g.machine), [...MACHINES].sort());
  assert.deepEqual(groups.map((g) => g.steps.length), [3, 4, 3].map((_, i) => byMachine.filter((r) => r.machine === [...MACHINES].sort()[i]).length));
  for (const g of groups) {
    const s = g.steps.map((r) => r.starttime!);
    assert.deepEqual(s, [...s].sort((a, b) => a - b), `${g.machine} oldest first`);
  }
  const row = byMachine[0]!;
  for (const k of ['build', 'stepnr', 'system', 'drvpath', 'machine', 'starttime', 'project', 'jobset', 'job', 'busy']) assert.ok(k in row, k);
  assert.equal(await nrRunningBuilds(pool), 9, 'the build with two busy steps counts once');
});

test('queue summary per jobset and per system', async () => {
  const summary = await queueSummary(pool);
  const queued = seeded.filter((b) => !b.finished);
  const expectJobsets = jobsets
    .map((j) => {
      const qs = queued.filter((b) => b.jobset.id === j.id);
      return {jobset_id: j.id, project: j.project, jobset: j.name, queued: qs.length, oldest: Math.min(...qs.map((b) => b.ts)), newest: Math.max(...qs.map((b) => b.ts))};
    })
    .filter((r) => r.queued > 0)
    .sort((a, b) => b.queued - a.queued || a.project.localeCompare(b.project) || a.jobset.localeCompare(b.jobset));
  assert.deepEqual(summary.jobsets, expectJobsets);
  const expectSystems = SYSTEMS.map((s) => ({system: s, queued: queued.filter((b) => b.system === s).length}))
    .filter((r) => r.queued > 0)
    .sort((a, b) => b.queued - a.queued || (a.system < b.system ? -1 : 1));
  assert.deepEqual(summary.systems, expectSystems);
});

test('jobsets with shares and queued / running counts; look-up by name', async () => {
  const list = await listJobsets(pool);
  assert.equal(list.length, 3);
  for (const j of jobsets) {
    const row = list.find((r) => r.id === j.id)!;
    assert.equal(row.schedulingshares, j.name === 'trunk' ? 100 : j.name === 'staging' ? 50 : 7);
    assert.equal(row.nrqueued, seeded.filter((b) => !b.finished && b.jobset.id === j.id).length);
  }
  const {rows} = await pool.query('SELECT count(DISTINCT s.build)::int AS n FROM BuildSteps s WHERE s.busy != 0');
  assert.equal(list.reduce((n, r) => n + r.nrrunning, 0), rows[0].n);
  const one = await getJobsetByName(pool, jobsets[1]!.project, 'staging');
  assert.equal(one?.id, jobsets[1]!.id);
  assert.equal(one?.schedulingshares, 50);
  assert.equal(await getJobsetByName(pool, jobsets[1]!.project, 'nope'), null);
});

test('evals page newest first; evalBuildIds lists members', async () => {
  const ids: number[] = [];
  for (let k = 0; k < 12; k++) {
    const j = jobsets[k % 2]!;
    const {rows} = await pool.query(
      `INSERT INTO JobsetEvals (jobset_id, timestamp, checkouttime, evaltime, hasnewbuilds, hash) VALUES ($1, $2, 1, 1, 1, 'h') RETURNING id`,
      [j.id, N - k],
    );
    ids.push(rows[0].id);
    for (const b of seeded.filter((s) => s.jobset.id === j.id).slice(k, k + 3)) {
      await pool.query('INSERT INTO JobsetEvalMembers (eval, build, isnew) VALUES ($1, $2, 1)', [rows[0].id, b.id]);
    }
  }
  const all = await drain((after) => listEvals(pool, {after, limit: 5}));
  assert.deepEqual(all.rows.map((r) => r.id), [...ids].sort((a, b) => b - a));
  const trunk = await drain((after) => listEvals(pool, {jobset: {project: jobsets[0]!.project, name: 'trunk'}, after, limit: 2}));
  assert.deepEqual(trunk.rows.map((r) => r.id), ids.filter((_, k) => k % 2 === 0).sort((a, b) => b - a));
  assert.ok(trunk.rows.every((r) => r.jobset === 'trunk' && r.haserror === false));
  const byId = await listEvals(pool, {jobset: jobsets[1]!.id, limit: 100});
  assert.equal(byId.rows.length, 6);
  const expectedMembers = seeded.filter((s) => s.jobset.id === jobsets[0]!.id).slice(0, 3).map((b) => b.id).sort((a, b) => a - b);
  assert.deepEqual(await evalBuildIds(pool, ids[0]!), expectedMembers);
  assert.deepEqual(await listBuilds(pool, {filter: `eval:${ids[0]}`, limit: 10}).then((p) => p.rows.map((r) => r.id).sort((a, b) => a - b)), expectedMembers);
});

test('one build: details, outputs, products, metrics, steps and step outputs', async () => {
  const b = seeded.find((s) => s.finished)!;
  const row = await getBuild(pool, b.id);
  assert.ok(row);
  assert.equal(row.id, b.id);
  assert.equal(row.project, b.jobset.project);
  assert.equal(row.jobset, b.jobset.name);
  assert.equal(row.system, b.system);
  assert.equal(row.size, null);
  assert.equal(await getBuild(pool, 99999999), null);
  await pool.query(`UPDATE Builds SET size = 5000000000, closuresize = 7 WHERE id = $1`, [b.id]);
  assert.equal((await getBuild(pool, b.id))!.size, 5000000000, 'bigint comes back as a number');

  const outs = await buildOutputs(pool, b.id);
  assert.equal(outs.length, 1);
  assert.equal(outs[0]!.name, 'out');
  await pool.query(
    `INSERT INTO BuildProducts (build, productnr, type, subtype, filesize, sha256hash, path, name) VALUES
     ($1, 2, 'file', 'doc', 10, 'ab', '/nix/store/x-doc', 'manual.html'), ($1, 1, 'nix-build', '', NULL, NULL, '/nix/store/x', 'x')`,
    [b.id],
  );
  assert.deepEqual((await buildProducts(pool, b.id)).map((p) => [p.productnr, p.name, p.filesize]), [[1, 'x', null], [2, 'manual.html', 10]]);
  await pool.query(
    `INSERT INTO BuildMetrics (build, name, unit, value, project, jobset, job, timestamp) VALUES ($1, 'time', 's', 1.5, $2, $3, 'j', $4)`,
    [b.id, b.jobset.project, b.jobset.name, b.ts],
  );
  assert.deepEqual((await buildMetrics(pool, b.id)).map((m) => [m.name, m.unit, m.value]), [['time', 's', 1.5]]);

  const steps = await buildSteps(pool, b.id);
  assert.ok(steps.length >= 1);
  assert.deepEqual(steps.map((s) => s.stepnr), [...steps.map((s) => s.stepnr)].sort((x, y) => x - y));
  assert.equal(steps[0]!.job, row.job);
  assert.ok('resolveddrvpath' in steps[0]!, 'schema 87 column present');
  const so = await stepOutputs(pool, b.id, 1);
  assert.equal(so.length, 1);
  assert.match(so[0]!.path!, /^\/nix\/store\/[0-9a-z]{32}-o\d+$/);
});

test('failed paths: membership, subsets, count', async () => {
  const a = storePath('failed-a');
  const b = storePath('failed-b');
  const c = storePath('fine-c');
  assert.equal(await countFailedPaths(pool), 0);
  await pool.query('INSERT INTO FailedPaths (path) VALUES ($1), ($2)', [a, b]);
  await pool.query('INSERT INTO FailedPaths (path) VALUES ($1)', [a]); // idempotent rule
  assert.equal(await isFailedPath(pool, a), true);
  assert.equal(await isFailedPath(pool, c), false);
  assert.deepEqual(await failedPathsAmong(pool, [c, b, a, b]), [b, a]);
  assert.deepEqual(await failedPathsAmong(pool, []), []);
  assert.equal(await countFailedPaths(pool), 2);
});
