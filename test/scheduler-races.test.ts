// Queue-runner races on real parts (PostgreSQL, Nix, the coordinator's store): a build restarted while its cancelled
// step is still dying, builds that attach to a step while its success or failure is being written, and .drv files
// that cannot be read for a moment.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {runnerRig, mkPrelude, type RunnerRig} from './support/runner-rig.js';
import {cancelBuildsSql} from '../source/actions/cancel.js';
import {restartBuildsSql} from '../source/actions/restart.js';
import {readDrv} from '../source/nix/drv.js';
import {queryValidPaths} from '../source/nix/store.js';
import {failedPathsAmong} from '../source/db/runner-sql.js';
import type {StepExecutor} from '../source/fleet/step-api.js';
import type {Scheduler} from '../source/scheduler/scheduler.js';
import {waitFor} from './support/wait.js';

async function started(rig: RunnerRig, s: Scheduler): Promise<void> {
  await s.start();
  s.setMachines([rig.localhost(2)]);
  s.requestScan();
}

test('a build cancelled while its step runs and restarted before the step dies runs again', {timeout: 90_000}, async () => {
  const rig = await runnerRig({label: 'race_restart'});
  const hold = join(tmpdir(), `hydra-ops-${rig.nix.nonce}-restart-ok`);
  try {
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "restart-me" [] "test -e ${hold} && { echo again > $out; exit 0; }; sleep 60") ]`);
    let id = 0;
    let s: Scheduler;
    // The cancelled step's end is held until the restarted build is back in the graph (a kill can take that long).
    const executor: StepExecutor = {
      run: async (request) => {
        const r = await rig.executor.run(request);
        if (request.signal.aborted) await waitFor('the restarted build to be loaded', () => s.graph.builds.has(id), 20_000, 20);
        return r;
      },
      close: async () => {},
    };
    s = rig.scheduler({executor});
    await started(rig, s);
    [id] = await rig.queue([drv!]);
    await waitFor('the step to build', async () => (await rig.pool.query('SELECT 1 FROM BuildSteps WHERE build = $1 AND busy = 30', [id])).rowCount);
    await cancelBuildsSql(rig.pool, [id]);
    await waitFor('the build to leave the graph', () => !s.graph.builds.has(id));
    writeFileSync(hold, '');
    assert.deepEqual((await restartBuildsSql(rig.pool, [id])).changed, [id]);
    const b = (await rig.waitFinished([id], 30_000)).get(id)!;
    assert.equal(b.buildstatus, 0);
    const steps = await rig.pool.query('SELECT stepnr, status, busy FROM BuildSteps WHERE build = $1 ORDER BY stepnr', [id]);
    assert.deepEqual(steps.rows, [
      {stepnr: 1, status: 4, busy: 0},
      {stepnr: 2, status: 0, busy: 0},
    ]);
  } finally {
    rmSync(hold, {force: true});
    await rig.close();
  }
});

/**
 * Holds the Builds row of `id` (FOR NO KEY UPDATE: step rows can still be added, the row cannot be finished), lets
 * the step end, and once the runner waits on the row queues a second build of the same derivation and waits until
 * it is attached to the step. Returns the second build's id after releasing the row.
 */
async function attachDuringWrite(rig: RunnerRig, s: Scheduler, id: number, drv: string, hold: string): Promise<number> {
  const c = await rig.pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT 1 FROM Builds WHERE id = $1 FOR NO KEY UPDATE', [id]);
    writeFileSync(hold, '');
    await waitFor('the runner to wait on the build row', async () =>
      (await rig.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rowCount,
    );
    const [late] = await rig.queue([drv]);
    await waitFor('the late build to attach to the step', () => s.graph.builds.get(late!)?.toplevel?.drvPath === drv, 20_000, 20);
    await c.query('COMMIT');
    return late!;
  } finally {
    c.release();
  }
}

test('a build attached to a step while its success is written succeeds too', {timeout: 90_000}, async () => {
  const rig = await runnerRig({label: 'race_success'});
  const hold = join(tmpdir(), `hydra-ops-${rig.nix.nonce}-success-hold`);
  try {
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "late-success" [] "while ! test -e ${hold}; do sleep 0.1; done; echo ok > $out") ]`);
    const s = rig.scheduler();
    await started(rig, s);
    const [first] = await rig.queue([drv!]);
    await waitFor('the step to build', async () => (await rig.pool.query('SELECT 1 FROM BuildSteps WHERE build = $1 AND busy = 30', [first])).rowCount);
    const late = await attachDuringWrite(rig, s, first!, drv!, hold);
    const done = await rig.waitFinished([first!, late], 20_000);
    assert.equal(done.get(first!)!.buildstatus, 0);
    assert.equal(done.get(late)!.buildstatus, 0);
    assert.equal(done.get(late)!.iscachedbuild, 1, 'the late build did not build anything itself');
    assert.equal((await rig.pool.query('SELECT count(*)::int AS n FROM BuildSteps')).rows[0].n, 1, 'one step for both');
    assert.equal(s.graph.builds.size, 0);
  } finally {
    rmSync(hold, {force: true});
    await rig.close();
  }
});

test('a build attached to a step while its failure is written fails too', {timeout: 90_000}, async () => {
  const rig = await runnerRig({label: 'race_failure'});
  const hold = join(tmpdir(), `hydra-ops-${rig.nix.nonce}-failure-hold`);
  try {
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "late-failure" [] "while ! test -e ${hold}; do sleep 0.1; done; echo broken >&2; exit 1") ]`);
    const s = rig.scheduler();
    await started(rig, s);
    const [first] = await rig.queue([drv!]);
    await waitFor('the step to build', async () => (await rig.pool.query('SELECT 1 FROM BuildSteps WHERE build = $1 AND busy = 30', [first])).rowCount);
    const late = await attachDuringWrite(rig, s, first!, drv!, hold);
    const done = await rig.waitFinished([first!, late], 20_000);
    assert.equal(done.get(first!)!.buildstatus, 1);
    assert.equal(done.get(late)!.buildstatus, 1);
    const lateSteps = await rig.pool.query('SELECT status, propagatedfrom FROM BuildSteps WHERE build = $1', [late]);
    assert.deepEqual(lateSteps.rows, [{status: 1, propagatedfrom: first}]);
    const outputs = [...(await readDrv(drv!)).outputs.values()].map((o) => o.path);
    assert.deepEqual(await failedPathsAmong(rig.pool, outputs), outputs, 'FailedPaths written once, as usual');
    assert.equal(s.graph.steps.size, 0, 'no step is left behind');
  } finally {
    rmSync(hold, {force: true});
    await rig.close();
  }
});

test('a .drv that cannot be read for a moment retries the load; a missing top-level .drv aborts the build', {timeout: 90_000}, async () => {
  const rig = await runnerRig({label: 'race_drv_read'});
  try {
    const [top, gone] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      let dep = mk "flaky-read-dep" [] "echo dep > $out"; in [ (mk "flaky-read-top" [dep] "cat \${dep} > $out") (mk "gone-top" [] "echo > $out") ]`);
    const depDrv = [...(await readDrv(top!)).inputDrvs.keys()][0]!;
    let failures = 0;
    const logs: string[] = [];
    const s = rig.scheduler({
      loadRetryMs: 300,
      log: (level, message) => logs.push(`${level}: ${message}`),
      graphStore: {
        readDrv: async (p) => {
          if (p === depDrv && failures < 2) {
            failures++;
            throw Object.assign(new Error(`EMFILE: too many open files, open '${p}'`), {code: 'EMFILE'});
          }
          if (p === gone) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), {code: 'ENOENT'});
          return readDrv(p);
        },
        validPaths: (paths) => queryValidPaths(paths),
        failedPathsAmong: (paths) => failedPathsAmong(rig.pool, paths),
      },
    });
    await started(rig, s);
    const [id, goneId] = await rig.queue([top!, gone!]);
    const done = await rig.waitFinished([id!, goneId!], 30_000);
    assert.equal(failures, 2);
    assert.equal(done.get(id!)!.buildstatus, 0, logs.join('\n'));
    assert.ok(logs.some((l) => /cannot load build .*trying again later.*EMFILE/.test(l)), logs.join('\n'));
    assert.equal(done.get(goneId!)!.buildstatus, 3, 'a missing top-level derivation aborts its build');
  } finally {
    await rig.close();
  }
});
