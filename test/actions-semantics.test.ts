// Operator actions on a real PostgreSQL with Hydra's schema: each action's row-by-row effect equals
// Hydra's web app (docs/hydra-compat.md, "Operator actions and roles"), the right trigger NOTIFY fires (and nothing on dry runs), dry
// runs report exactly the rows they would touch, --filter touches exactly the filtered rows, and
// every attempt lands in hydra_ops.audit_log.
//
// NOTIFY checks are exact: after the action a sentinel notification is sent and awaited; PostgreSQL
// delivers in commit order, so everything the action caused has arrived by then.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {randomBytes} from 'node:crypto';
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {insertBuild, insertBuildStep, insertJobset, insertUser, nowSeconds, storePath, type JobsetRow} from './support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {makeActor, type Actor} from '../source/actions/actor.js';
import {restartBuilds} from '../source/actions/restart.js';
import {cancelBuilds} from '../source/actions/cancel.js';
import {bumpBuilds} from '../source/actions/bump.js';
import {cancelEval, restartAborted, restartFailed} from '../source/actions/eval-actions.js';
import {clearFailedCache, clearQueueNonCurrent} from '../source/actions/admin.js';
import {drainedMachines, setMachineDrained} from '../source/actions/machine-drain.js';
import {unlockRunner} from '../source/actions/unlock.js';
import {ActionError} from '../source/actions/errors.js';
import type {ActionResult} from '../source/actions/perform.js';
import {listAudit} from '../source/actions/audit.js';
import {acquireRunnerLock} from '../source/scheduler/runner-lock.js';
import {parseMachinesText} from '../source/fleet/machines-file.js';

const SENTINEL = 'hydra_ops_actions_sentinel';
const CHANNELS = ['builds_restarted', 'builds_cancelled', 'builds_bumped', 'builds_deleted', 'builds_added', 'jobset_shares_changed'];

let tdb: TestDatabase;
let pool: pg.Pool;
let listener: pg.Client;
const received: string[] = [];
let waiter: {token: string; resolve: () => void} | undefined;
let admin: Actor;

before(async () => {
  tdb = await freshDatabase('actions');
  pool = new pg.Pool({connectionString: tdb.url, max: 4});
  await initSchema(pool);
  await insertUser(pool, {userName: 'root-admin', roles: ['admin']});
  admin = makeActor({hydraUser: 'root-admin', version: 'test'});
  listener = new pg.Client({connectionString: tdb.url});
  await listener.connect();
  listener.on('notification', (m) => {
    if (m.channel === SENTINEL) {
      if (waiter && m.payload === waiter.token) waiter.resolve();
    } else received.push(m.channel);
  });
  for (const c of [...CHANNELS, SENTINEL]) await listener.query(`LISTEN ${c}`);
});

after(async () => {
  await listener?.end().catch(() => {});
  await pool?.end().catch(() => {});
  await tdb?.drop();
});

async function flush(): Promise<void> {
  const token = randomBytes(6).toString('hex');
  let timer: NodeJS.Timeout | undefined;
  const arrived = new Promise<void>((resolve, reject) => {
    waiter = {token, resolve};
    timer = setTimeout(() => reject(new Error('sentinel did not arrive within 5 s')), 5000);
  });
  try {
    await pool.query('SELECT pg_notify($1, $2)', [SENTINEL, token]);
    await arrived;
  } finally {
    clearTimeout(timer);
    waiter = undefined;
  }
}

async function notified<T>(fn: () => Promise<T>): Promise<{result: T; channels: string[]}> {
  await flush();
  received.length = 0;
  const result = await fn();
  await flush();
  return {result, channels: [...received]};
}

async function row(id: number) {
  const {rows} = await pool.query(
    'SELECT id, finished, buildstatus, iscachedbuild, starttime, stoptime, globalpriority, notificationpendingsince FROM Builds WHERE id = $1',
    [id],
  );
  return rows[0];
}

async function snapshot(): Promise<string> {
  const b = await pool.query('SELECT * FROM Builds ORDER BY id');
  const f = await pool.query('SELECT * FROM FailedPaths ORDER BY path');
  const e = await pool.query('SELECT id, nrsucceeded FROM JobsetEvals ORDER BY id');
  const s = await pool.query('SELECT build, stepnr, busy, status, stoptime FROM BuildSteps ORDER BY build, stepnr');
  const m = await pool.query('SELECT * FROM hydra_ops.machine_state ORDER BY machine');
  const n = await pool.query('SELECT * FROM NrBuilds');
  return JSON.stringify([b.rows, f.rows, e.rows, s.rows, m.rows, n.rows]);
}

async function insertEval(jobsetId: number, builds: number[], opts: {hasNewBuilds?: number; nrSucceeded?: number | null} = {}): Promise<number> {
  const {rows} = await pool.query<{id: number}>(
    `INSERT INTO JobsetEvals (jobset_id, timestamp, checkouttime, evaltime, hasnewbuilds, hash, nrbuilds, nrsucceeded)
     VALUES ($1, $2, 0, 0, $3, $4, $5, $6) RETURNING id`,
    [jobsetId, nowSeconds(), opts.hasNewBuilds ?? 1, randomBytes(8).toString('hex'), builds.length, opts.nrSucceeded === undefined ? builds.length : opts.nrSucceeded],
  );
  for (const b of builds) await pool.query('INSERT INTO JobsetEvalMembers (eval, build, isnew) VALUES ($1, $2, 1)', [rows[0]!.id, b]);
  return rows[0]!.id;
}

async function failedPaths(paths: string[]): Promise<string[]> {
  const {rows} = await pool.query<{path: string}>('SELECT path FROM FailedPaths WHERE path = ANY($1::text[]) ORDER BY path', [paths]);
  return rows.map((r) => r.path);
}

test('restart: finished 0, isCachedBuild 0, FailedPaths of outputs and step outputs cleared, nrSucceeded NULL; builds_restarted', async () => {
  const js = await insertJobset(pool);
  const out = storePath('pkg');
  const stepOut = storePath('dep');
  const unrelated = storePath('other');
  const t0 = nowSeconds() - 500;
  const id = await insertBuild(pool, {jobsetId: js.id, finished: 1, buildStatus: 2, isCachedBuild: 1, startTime: t0, stopTime: t0 + 10, outputs: {out}});
  await insertBuildStep(pool, {build: id, status: 1, outputs: {out: stepOut}});
  const queued = await insertBuild(pool, {jobsetId: js.id});
  const ev = await insertEval(js.id, [id, queued], {nrSucceeded: 5});
  const other = await insertEval(js.id, [queued], {nrSucceeded: 3});
  for (const p of [out, stepOut, unrelated]) await pool.query('INSERT INTO FailedPaths (path) VALUES ($1)', [p]);
  const nrBefore = (await pool.query("SELECT count FROM NrBuilds WHERE what = 'finished'")).rows[0].count;

  const {result, channels} = await notified(() => restartBuilds(pool, admin, {kind: 'ids', ids: [id, queued]}));
  assert.deepEqual(channels, ['builds_restarted']);
  assert.deepEqual(result.targets, [id, queued].sort((a, b) => a - b));
  assert.deepEqual(result.changed, [id]);
  assert.deepEqual(result.unchanged, [queued]);
  assert.equal(result.failedPathsDeleted, 2);
  assert.deepEqual(result.evalsReset, [ev]);
  const r = await row(id);
  assert.equal(r.finished, 0);
  assert.equal(r.iscachedbuild, 0);
  assert.equal(r.buildstatus, 2, 'buildStatus is not reset by restart');
  assert.equal(r.starttime, t0, 'times are not reset by restart');
  assert.equal(r.stoptime, t0 + 10);
  assert.deepEqual(await failedPaths([out, stepOut, unrelated]), [unrelated]);
  const evs = await pool.query('SELECT id, nrsucceeded FROM JobsetEvals WHERE id = ANY($1::int[]) ORDER BY id', [[ev, other]]);
  assert.deepEqual(evs.rows, [{id: ev, nrsucceeded: null}, {id: other, nrsucceeded: 3}]);
  assert.equal((await pool.query("SELECT count FROM NrBuilds WHERE what = 'finished'")).rows[0].count, nrBefore - 1);
  assert.equal((await row(queued)).finished, 0);
});

test('cancel: finished 1, buildStatus 4, isCachedBuild 0, start = stop = now, no notificationPendingSince; builds_cancelled once', async () => {
  const js = await insertJobset(pool);
  const a = await insertBuild(pool, {jobsetId: js.id});
  const b = await insertBuild(pool, {jobsetId: js.id});
  const done = await insertBuild(pool, {jobsetId: js.id, finished: 1, buildStatus: 0});
  const before = nowSeconds();
  const {result, channels} = await notified(() => cancelBuilds(pool, admin, {kind: 'ids', ids: [a, b, done]}));
  const afterT = nowSeconds();
  assert.deepEqual(channels, ['builds_cancelled'], 'one coalesced notification for the statement');
  assert.deepEqual(result.changed, [a, b]);
  assert.deepEqual(result.unchanged, [done]);
  for (const id of [a, b]) {
    const r = await row(id);
    assert.equal(r.finished, 1);
    assert.equal(r.buildstatus, 4);
    assert.equal(r.iscachedbuild, 0);
    assert.ok(r.starttime >= before && r.starttime <= afterT);
    assert.equal(r.stoptime, r.starttime);
    assert.equal(r.notificationpendingsince, null);
  }
  assert.equal((await row(done)).buildstatus, 0);
});

test('bump: globalPriority = now (Hydra), --to-front above every bump; builds_bumped; explicit ids have no finished guard', async () => {
  const js = await insertJobset(pool);
  const a = await insertBuild(pool, {jobsetId: js.id});
  const high = nowSeconds() + 10_000;
  const b = await insertBuild(pool, {jobsetId: js.id, globalPriority: high});
  const done = await insertBuild(pool, {jobsetId: js.id, finished: 1});
  const t = nowSeconds();
  const plain = await notified(() => bumpBuilds(pool, admin, {kind: 'ids', ids: [a, done]}));
  assert.deepEqual(plain.channels, ['builds_bumped']);
  assert.ok(plain.result.globalPriority >= t && plain.result.globalPriority <= nowSeconds());
  assert.deepEqual(plain.result.changed, [a, done]);
  assert.equal((await row(a)).globalpriority, plain.result.globalPriority);
  assert.equal((await row(done)).globalpriority, plain.result.globalPriority);

  const front = await notified(() => bumpBuilds(pool, admin, {kind: 'ids', ids: [a]}, {toFront: true}));
  assert.deepEqual(front.channels, ['builds_bumped']);
  assert.ok(front.result.globalPriority > high, 'above the highest existing bump');
  assert.equal((await row(a)).globalpriority, front.result.globalPriority);
  assert.equal((await row(b)).globalpriority, high);
  assert.equal(front.result.action, 'bump-to-front');
});

test('--filter touches exactly the filtered rows (bump and cancel by filter only change queued matches)', async () => {
  const js = await insertJobset(pool);
  const other = await insertJobset(pool);
  const arm = [await insertBuild(pool, {jobsetId: js.id, system: 'aarch64-linux'}), await insertBuild(pool, {jobsetId: js.id, system: 'aarch64-linux'})];
  const armDone = await insertBuild(pool, {jobsetId: js.id, system: 'aarch64-linux', finished: 1});
  const x86 = await insertBuild(pool, {jobsetId: js.id, system: 'x86_64-linux'});
  const elsewhere = await insertBuild(pool, {jobsetId: other.id, system: 'aarch64-linux'});
  const filter = `jobset:${js.project}:${js.name} system:aarch64-linux`;

  const bump = await bumpBuilds(pool, admin, {kind: 'filter', filter});
  assert.deepEqual(bump.targets, arm, 'a filter bump selects queued matches only');
  assert.deepEqual(bump.changed, arm);
  for (const id of [armDone, x86, elsewhere]) assert.equal((await row(id)).globalpriority, 0, `build ${id} untouched`);

  const cancel = await cancelBuilds(pool, admin, {kind: 'filter', filter: `${filter} status:queued`});
  assert.deepEqual(cancel.changed, arm);
  assert.equal((await row(x86)).finished, 0);
  assert.equal((await row(elsewhere)).finished, 0);

  await assert.rejects(cancelBuilds(pool, admin, {kind: 'filter', filter: 'status:bogus'}), (e: ActionError) => e.kind === 'usage' && /status/.test(e.message));
});

test('--dry-run changes nothing, sends no NOTIFY, reports the exact rows, and is audited as dry-run', async () => {
  const js = await insertJobset(pool);
  const out = storePath('dry');
  const f = await insertBuild(pool, {jobsetId: js.id, finished: 1, buildStatus: 1, outputs: {out}});
  const q = await insertBuild(pool, {jobsetId: js.id});
  const ev = await insertEval(js.id, [f, q]);
  await pool.query('INSERT INTO FailedPaths (path) VALUES ($1)', [out]);
  const before = await snapshot();
  const runs: Array<() => Promise<ActionResult>> = [
    () => restartBuilds(pool, admin, {kind: 'ids', ids: [f, q]}, {dryRun: true}),
    () => cancelBuilds(pool, admin, {kind: 'ids', ids: [f, q]}, {dryRun: true}),
    () => bumpBuilds(pool, admin, {kind: 'ids', ids: [q]}, {dryRun: true}),
    () => restartFailed(pool, admin, ev, {dryRun: true}),
    () => cancelEval(pool, admin, ev, {dryRun: true}),
    () => clearFailedCache(pool, admin, {dryRun: true}),
    () => clearQueueNonCurrent(pool, admin, {dryRun: true}),
  ];
  const results: ActionResult[] = [];
  for (const run of runs) {
    const {result, channels} = await notified(run);
    assert.deepEqual(channels, [], `${result.action} --dry-run sent no NOTIFY`);
    assert.equal(result.dryRun, true);
    results.push(result);
  }
  assert.equal(await snapshot(), before, 'nothing changed');
  assert.deepEqual(results[0]!.changed, [f]);
  assert.equal((results[0] as unknown as {failedPathsDeleted: number}).failedPathsDeleted, 1);
  assert.deepEqual(results[1]!.changed, [q]);
  assert.deepEqual(results[2]!.changed, [q]);
  assert.deepEqual(results[3]!.changed, [f]);
  assert.deepEqual(results[4]!.changed, [q]);
  assert.ok((results[5] as unknown as {deleted: number}).deleted >= 1);
  const audit = await listAudit(pool, {limit: runs.length});
  assert.deepEqual(audit.entries.map((e) => e.outcome), Array(runs.length).fill('dry-run'));
  assert.equal(audit.entries.at(-1)!.action, 'restart');
  assert.deepEqual(audit.entries.at(-1)!.target_ids, [f, q].sort((a, b) => a - b));
  assert.equal(audit.entries.at(-1)!.result_count, 1);
});

test('eval actions: restart-failed (every non-success), restart-aborted (3, 4, 9), cancel-eval; unknown eval is not-found', async () => {
  const js = await insertJobset(pool);
  const status = [0, 1, 2, 3, 4, 6, 7, 9];
  const byStatus = new Map<number, number>();
  for (const s of status) byStatus.set(s, await insertBuild(pool, {jobsetId: js.id, finished: 1, buildStatus: s}));
  const queued = await insertBuild(pool, {jobsetId: js.id});
  const ev = await insertEval(js.id, [...byStatus.values(), queued]);

  const aborted = await notified(() => restartAborted(pool, admin, ev, {dryRun: true}));
  assert.deepEqual(aborted.result.changed, [3, 4, 9].map((s) => byStatus.get(s)!));
  const failed = await notified(() => restartFailed(pool, admin, ev));
  assert.deepEqual(failed.channels, ['builds_restarted']);
  assert.deepEqual(failed.result.changed, status.filter((s) => s !== 0).map((s) => byStatus.get(s)!));
  assert.equal((await row(byStatus.get(0)!)).finished, 1, 'the successful build stays finished');

  const cancel = await notified(() => cancelEval(pool, admin, ev));
  assert.deepEqual(cancel.channels, ['builds_cancelled']);
  assert.deepEqual(cancel.result.changed, [...status.filter((s) => s !== 0).map((s) => byStatus.get(s)!), queued].sort((a, b) => a - b));
  await assert.rejects(restartFailed(pool, admin, 99_999_999), (e: ActionError) => e.kind === 'not-found');
});

test("clear-queue-non-current cancels queued builds outside their jobset's latest eval with new builds; clear-failed-cache empties FailedPaths", async () => {
  const js = await insertJobset(pool);
  const old = await insertBuild(pool, {jobsetId: js.id});
  const current = await insertBuild(pool, {jobsetId: js.id});
  const orphan = await insertBuild(pool, {jobsetId: js.id});
  await insertEval(js.id, [old]);
  await insertEval(js.id, [current]);
  await insertEval(js.id, [], {hasNewBuilds: 0});
  const res = await notified(() => clearQueueNonCurrent(pool, admin));
  assert.deepEqual(res.channels, ['builds_cancelled']);
  assert.ok(res.result.changed.includes(old) && res.result.changed.includes(orphan));
  assert.ok(!res.result.changed.includes(current));
  assert.equal((await row(current)).finished, 0);
  assert.equal((await row(old)).buildstatus, 4);

  await pool.query('INSERT INTO FailedPaths (path) VALUES ($1), ($2)', [storePath('a'), storePath('b')]);
  const n = Number((await pool.query('SELECT count(*) FROM FailedPaths')).rows[0].count);
  const clear = await notified(() => clearFailedCache(pool, admin));
  assert.deepEqual(clear.channels, []);
  assert.equal(clear.result.deleted, n);
  assert.equal(Number((await pool.query('SELECT count(*) FROM FailedPaths')).rows[0].count), 0);
});

test('audit: ok and refused attempts are recorded with who, scope, targets and rows changed', async () => {
  const js = await insertJobset(pool);
  const id = await insertBuild(pool, {jobsetId: js.id});
  await cancelBuilds(pool, admin, {kind: 'ids', ids: [id]});
  const stranger = makeActor({hydraUser: 'nobody-here', version: 'test'});
  await assert.rejects(bumpBuilds(pool, stranger, {kind: 'ids', ids: [id]}), (e: ActionError) => e.kind === 'permission');
  const {entries} = await listAudit(pool, {limit: 2});
  const [refused, ok] = entries;
  assert.equal(refused!.outcome, 'refused');
  assert.equal(refused!.hydra_user, 'nobody-here');
  assert.equal(refused!.action, 'bump');
  assert.match(refused!.message!, /does not exist/);
  assert.equal(ok!.outcome, 'ok');
  assert.equal(ok!.action, 'cancel');
  assert.equal(ok!.scope, `build ${id}`);
  assert.deepEqual(ok!.target_ids, [id]);
  assert.equal(ok!.result_count, 1);
  assert.equal(ok!.hydra_user, 'root-admin');
  assert.equal(ok!.version, 'test');
  assert.ok(ok!.unix_user && ok!.host);
});

test('machine drain/enable: stored in hydra_ops.machine_state by machines-file URI; unknown machine is not-found', async () => {
  const {machines} = parseMachinesText('ssh://hydra@builder1 x86_64-linux - 2 1\nssh://builder2 aarch64-linux\n', 'machines');
  const r = await setMachineDrained(pool, admin, machines, 'builder1', true, {note: 'disk'});
  assert.equal(r.machine, 'ssh://hydra@builder1');
  assert.equal(r.wasDrained, false);
  assert.deepEqual([...(await drainedMachines(pool))], ['ssh://hydra@builder1']);
  const again = await setMachineDrained(pool, admin, machines, 'ssh://hydra@builder1', true);
  assert.equal(again.wasDrained, true);
  await setMachineDrained(pool, admin, machines, 'builder1', false);
  assert.deepEqual([...(await drainedMachines(pool))], []);
  await assert.rejects(setMachineDrained(pool, admin, machines, 'builder9', true), (e: ActionError) => e.kind === 'not-found');
});

test('unlock: refused while a runner holds the lock; otherwise clearBusy and the SystemStatus row is deleted', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hydra-ops-unlock-'));
  try {
    const js = await insertJobset(pool);
    const b = await insertBuild(pool, {jobsetId: js.id});
    const s = await insertBuildStep(pool, {build: b, busy: 30});
    await pool.query("INSERT INTO SystemStatus (what, status) VALUES ('queue-runner', '{\"status\":\"up\"}') ON CONFLICT (what) DO NOTHING");
    const lock = await acquireRunnerLock(dataDir);
    try {
      await assert.rejects(unlockRunner(pool, admin, dataDir), (e: ActionError) => e.kind === 'refused' && new RegExp(`pid ${process.pid}`).test(e.message));
    } finally {
      await lock.release();
    }
    const res = await unlockRunner(pool, admin, dataDir);
    assert.ok(res.steps.some((x) => x.build === b && x.stepnr === s));
    assert.equal(res.systemStatusDeleted, true);
    const st = (await pool.query('SELECT busy, status, stoptime FROM BuildSteps WHERE build = $1 AND stepnr = $2', [b, s])).rows[0];
    assert.deepEqual(st, {busy: 0, status: 3, stoptime: null});
    assert.equal((await pool.query("SELECT 1 FROM SystemStatus WHERE what = 'queue-runner'")).rowCount, 0);
    // The lock was released again: it can be taken.
    const again = await acquireRunnerLock(dataDir);
    await again.release();
  } finally {
    rmSync(dataDir, {recursive: true, force: true});
  }
});
