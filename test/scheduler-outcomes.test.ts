// Queue-runner outcomes on real parts: cached successes and failures, propagation, restart,
// cancellation, bumps, fair shares, unsupported steps.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {runnerRig, mkPrelude, type RunnerRig} from './support/runner-rig.js';
import {restartBuildsSql} from '../source/actions/restart.js';
import {cancelBuildsSql} from '../source/actions/cancel.js';
import {bumpBuildsSql} from '../source/actions/bump.js';
import {drainedMachines} from '../source/db/runner-sql.js';
import type {Scheduler} from '../source/scheduler/scheduler.js';
import {waitFor, pgrep} from './support/wait.js';

async function started(rig: RunnerRig, s: Scheduler): Promise<void> {
  await s.start();
  s.setMachines([rig.localhost(1)]);
  s.requestScan();
}

test('cached success, dependency failure, cached failure and restart', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'sched_outcomes'});
  const marker = join(tmpdir(), `hydra-ops-${rig.nix.nonce}-fixed`);
  try {
    const [okDrv, appDrv, brokenDrv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      let broken = mk "flaky-lib" [] "echo compiling flaky-lib; test -e ${marker} || { echo 'error: flaky-lib is broken' >&2; exit 1; }; echo ok > $out";
      in [ (mk "fine" [] "echo fine > $out") (mk "app" [broken] "cat \${broken} > $out") broken ]`);
    const s = rig.scheduler();
    await started(rig, s);

    // A good build, then the same derivation queued again: cached success without building.
    const [first] = await rig.queue([okDrv!]);
    assert.equal((await rig.waitFinished([first!])).get(first!)!.buildstatus, 0);
    const [again] = await rig.queue([okDrv!]);
    const r = (await rig.waitFinished([again!])).get(again!)!;
    assert.equal(r.buildstatus, 0);
    assert.equal(r.iscachedbuild, 1);
    const againSteps = await rig.pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE build = $1', [again]);
    assert.equal(againSteps.rows[0].n, 0, 'nothing was built for the cached success');
    const outPath = await rig.pool.query('SELECT path FROM BuildOutputs WHERE build = $1', [again]);
    assert.ok(outPath.rows[0].path);

    // The app depends on a failing library: the library's build fails (1), the app gets DepFailed (2)
    // with a propagated step row pointing at the library's build.
    const [libBuild, appBuild] = await rig.queue([brokenDrv!, appDrv!]);
    const failed = await rig.waitFinished([libBuild!, appBuild!]);
    assert.equal(failed.get(libBuild!)!.buildstatus, 1);
    assert.equal(failed.get(appBuild!)!.buildstatus, 2);
    const propagated = await rig.pool.query('SELECT status, propagatedfrom, starttime, stoptime, busy FROM BuildSteps WHERE build = $1', [appBuild]);
    assert.equal(propagated.rowCount, 1);
    assert.deepEqual(propagated.rows[0], {status: 1, propagatedfrom: libBuild, starttime: null, stoptime: null, busy: 0});
    const fp = await rig.pool.query('SELECT count(*)::int AS n FROM FailedPaths');
    assert.equal(fp.rows[0].n, 1, 'the failed output is cached in FailedPaths');

    // Queued again: cached failure from FailedPaths, no build.
    const [appAgain] = await rig.queue([appDrv!]);
    const cached = (await rig.waitFinished([appAgain!])).get(appAgain!)!;
    assert.equal(cached.buildstatus, 2);
    assert.equal(cached.iscachedbuild, 1);
    const cachedRow = await rig.pool.query('SELECT status, propagatedfrom, busy, machine FROM BuildSteps WHERE build = $1', [appAgain]);
    assert.deepEqual(cachedRow.rows, [{status: 8, propagatedfrom: libBuild, busy: 0, machine: ''}]);

    // Fix the library and restart the library build: FailedPaths is cleared and it builds again.
    writeFileSync(marker, '');
    const restarted = await restartBuildsSql(rig.pool, [libBuild!]);
    assert.deepEqual(restarted.changed, [libBuild]);
    assert.equal((await rig.pool.query('SELECT count(*)::int AS n FROM FailedPaths')).rows[0].n, 0);
    const rebuilt = (await rig.waitFinished([libBuild!])).get(libBuild!)!;
    assert.equal(rebuilt.buildstatus, 0);
    assert.equal(rebuilt.iscachedbuild, 0);
    const libSteps = await rig.pool.query('SELECT stepnr, status FROM BuildSteps WHERE build = $1 ORDER BY stepnr', [libBuild]);
    assert.deepEqual(libSteps.rows, [{stepnr: 1, status: 1}, {stepnr: 2, status: 0}]);
  } finally {
    rmSync(marker, {force: true});
    await rig.close();
  }
});

test('cancelling a running build kills the remote build; step and build end as cancelled (4)', {timeout: 90_000}, async () => {
  const rig = await runnerRig({builders: 1, label: 'sched_cancel'});
  const mark = `sleeper-${rig.nix.nonce}`;
  try {
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "sleeper" [] "echo start; sleep 60 # ${mark}\necho done > $out") ]`);
    const s = rig.scheduler();
    await s.start();
    s.setMachines(rig.machines);
    const [id] = await rig.queue([drv!]);
    s.requestScan();
    await waitFor('the step to build', async () => (await rig.pool.query('SELECT 1 FROM BuildSteps WHERE build = $1 AND busy = 30', [id])).rowCount);
    await waitFor('the remote build process', async () => pgrep(mark).length > 0);
    await cancelBuildsSql(rig.pool, [id!]);
    const t0 = Date.now();
    await waitFor('the remote build to die', async () => pgrep(mark).length === 0, 5000);
    assert.ok(Date.now() - t0 < 2500, `remote build gone after ${Date.now() - t0} ms`);
    const step = await waitFor('the step row to be final', async () => {
      const {rows} = await rig.pool.query('SELECT busy, status FROM BuildSteps WHERE build = $1', [id]);
      return rows[0].busy === 0 ? rows[0] : null;
    });
    assert.equal(step.status, 4);
    const b = await rig.pool.query('SELECT finished, buildstatus FROM Builds WHERE id = $1', [id]);
    assert.deepEqual(b.rows[0], {finished: 1, buildstatus: 4});
    assert.equal((await rig.pool.query('SELECT count(*)::int AS n FROM FailedPaths')).rows[0].n, 0);
  } finally {
    await rig.close();
  }
});

test('a bump changes the dispatch order', {timeout: 90_000}, async () => {
  const rig = await runnerRig({label: 'sched_bump'});
  try {
    const drvs = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "blocker" [] "sleep 2; echo > $out") (mk "b1" [] "echo > $out") (mk "b2" [] "echo > $out") (mk "b3" [] "echo > $out") ]`);
    const s = rig.scheduler();
    const order: number[] = [];
    s.on('step-started', (e: {build: number}) => order.push(e.build));
    await s.start();
    s.setMachines([rig.localhost(1)]);
    const [blocker] = await rig.queue([drvs[0]!]);
    s.requestScan();
    await waitFor('the blocker to run', async () => order.length === 1);
    const [b1, b2, b3] = await rig.queue(drvs.slice(1));
    await waitFor('the queue to be loaded', async () => s.graph.builds.size === 4);
    await bumpBuildsSql(rig.pool, [b3!], Math.floor(Date.now() / 1000), true);
    await waitFor('the bump to reach the scheduler', async () => s.graph.builds.get(b3!)!.globalPriority > 0);
    await rig.waitFinished([blocker!, b1!, b2!, b3!]);
    assert.deepEqual(order, [blocker, b3, b1, b2], 'the bumped build runs right after the blocker');
  } finally {
    await rig.close();
  }
});

test('two jobsets with shares 100 and 300 competing for one slot get about 1:3 of the step time', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'sched_shares'});
  try {
    const expr = (tag: string) => `${mkPrelude(rig.nix.nonce)}
      builtins.genList (i: mk "${tag}-\${toString i}" [] "sleep 1; echo > $out") 8`;
    const small = await rig.jobset('small', 100);
    const big = await rig.jobset('big', 300);
    const smallDrvs = await rig.nix.instantiate(expr('small'));
    const bigDrvs = await rig.nix.instantiate(expr('big'));
    const smallIds = await rig.queue(smallDrvs, {jobsetId: small.id});
    const bigIds = await rig.queue(bigDrvs, {jobsetId: big.id});
    const s = rig.scheduler();
    const order: number[] = [];
    s.on('step-started', (e: {build: number}) => order.push(e.build));
    await started(rig, s);
    await waitFor('8 steps', async () => order.length >= 8, 60_000);
    const first8 = order.slice(0, 8);
    const fromSmall = first8.filter((id) => smallIds.includes(id)).length;
    const fromBig = first8.filter((id) => bigIds.includes(id)).length;
    assert.ok(fromSmall >= 1 && fromSmall <= 3, `small jobset got ${fromSmall} of the first 8 slots (expected about 2)`);
    assert.ok(fromBig >= 5, `big jobset got ${fromBig} of the first 8 slots (expected about 6)`);
    const js = s.graph.jobsets;
    const smallUsed = js.get(small.id)!;
    const bigUsed = js.get(big.id)!;
    assert.ok(bigUsed.seconds > smallUsed.seconds, 'the bigger share was charged more step time');
  } finally {
    await rig.close();
  }
});

test('a step no machine supports fails with status 9 after max_unsupported_time, with the reason', {timeout: 60_000}, async () => {
  const rig = await runnerRig({label: 'sched_unsupported'});
  try {
    const drvs = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (derivation { name = "riscv-only"; system = "riscv64-linux"; builder = "/bin/sh"; args = ["-c" "echo > $out"]; nonce = "${rig.nix.nonce}"; })
        (derivation { name = "needs-gpu"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo > $out"];
                      requiredSystemFeatures = [ "gpu-a100" ]; nonce = "${rig.nix.nonce}"; }) ]`);
    const s = rig.scheduler();
    s.options.runner.maxUnsupportedTime = 2;
    const t0 = Date.now();
    await started(rig, s);
    const ids = await rig.queue(drvs);
    const rows = await rig.waitFinished(ids, 30_000);
    assert.ok(Date.now() - t0 >= 2000, 'not before the configured time');
    for (const id of ids) assert.equal(rows.get(id)!.buildstatus, 9);
    const steps = await rig.pool.query('SELECT build, status, errormsg, propagatedfrom FROM BuildSteps WHERE build = ANY($1::int[]) ORDER BY build', [ids]);
    assert.equal(steps.rowCount, 2);
    assert.match(steps.rows[0].errormsg, /no machine supports system riscv64-linux/);
    assert.match(steps.rows[1].errormsg, /required features gpu-a100/);
    for (const r of steps.rows) assert.equal(r.propagatedfrom, null);
  } finally {
    await rig.close();
  }
});

test('a builder killed mid-step: the step is retried on the other builder, the first backs off, the build succeeds', {timeout: 120_000}, async () => {
  const rig = await runnerRig({builders: 2, label: 'sched_retry'});
  try {
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "slowish" [] "echo working; sleep 4; echo > $out") ]`);
    const s = rig.scheduler({retryIntervalMs: 300});
    await s.start();
    s.setMachines(rig.machines);
    const [id] = await rig.queue([drv!]);
    s.requestScan();
    const running = await waitFor('the step to build', async () => {
      const {rows} = await rig.pool.query('SELECT machine FROM BuildSteps WHERE build = $1 AND busy = 30', [id]);
      return rows[0]?.machine as string | undefined;
    });
    const victim = rig.fleet!.builders.findIndex((b) => b.uri === running);
    assert.ok(victim >= 0);
    await rig.fleet!.stopBuilder(victim);
    const r = (await rig.waitFinished([id!], 60_000)).get(id!)!;
    assert.equal(r.buildstatus, 0);
    const steps = await rig.pool.query('SELECT stepnr, status, machine, errormsg FROM BuildSteps WHERE build = $1 ORDER BY stepnr', [id]);
    assert.equal(steps.rowCount, 2);
    assert.equal(steps.rows[0].status, 3);
    assert.equal(steps.rows[0].machine, running);
    assert.ok(steps.rows[0].errormsg, 'the aborted attempt keeps its error message');
    assert.equal(steps.rows[1].status, 0);
    assert.notEqual(steps.rows[1].machine, running, 'retried on the other builder');
    const m = s.machines.get(running)!;
    assert.equal(m.rt.consecutiveFailures, 1);
    assert.ok(m.rt.disabledUntil > Date.now(), 'the killed builder is backing off');
    assert.ok(m.rt.lastError);
  } finally {
    await rig.close();
  }
});

test('a drained machine gets no new steps until it is enabled again', {timeout: 60_000}, async () => {
  const rig = await runnerRig({label: 'sched_drain'});
  try {
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "after-drain" [] "echo > $out") ]`);
    await rig.pool.query("INSERT INTO hydra_ops.machine_state (machine, drained, drained_by) VALUES ('localhost', true, 'test')");
    const s = rig.scheduler({pollMs: 200});
    const started: number[] = [];
    s.on('step-started', (e: {build: number}) => started.push(e.build));
    await started_(rig, s);
    const [id] = await rig.queue([drv!]);
    await waitFor('the build to be loaded', async () => s.graph.builds.has(id!));
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(started, [], 'nothing starts on a drained machine');
    assert.match(s.explain(drv!) ?? '', /drained/);
    await rig.pool.query("UPDATE hydra_ops.machine_state SET drained = false WHERE machine = 'localhost'");
    assert.equal((await rig.waitFinished([id!])).get(id!)!.buildstatus, 0);
    assert.deepEqual(started, [id]);
  } finally {
    await rig.close();
  }
});

test('a drained machine stays drained while the drain state cannot be read', {timeout: 60_000}, async () => {
  const rig = await runnerRig({label: 'sched_drain_err'});
  try {
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "drain-unreadable" [] "echo > $out") ]`);
    await rig.pool.query("INSERT INTO hydra_ops.machine_state (machine, drained, drained_by) VALUES ('localhost', true, 'test')");
    const logs: string[] = [];
    const s = rig.scheduler({pollMs: 200, log: (level, message) => logs.push(`${level}: ${message}`)});
    const startedBuilds: number[] = [];
    s.on('step-started', (e: {build: number}) => startedBuilds.push(e.build));
    await started_(rig, s);
    const [id] = await rig.queue([drv!]);
    await waitFor('the build to be loaded', async () => s.graph.builds.has(id!));
    // The table becomes unreadable (a database error on every read of the drain state).
    await rig.pool.query('ALTER TABLE hydra_ops.machine_state RENAME TO machine_state_moved');
    await assert.rejects(drainedMachines(rig.pool), /machine_state/);
    await waitFor('a failed drain-state read', async () => logs.some((l) => /cannot read which machines are drained/.test(l)));
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(startedBuilds, [], 'the drained machine took no step while its state was unreadable');
    assert.ok(!logs.some((l) => /machine localhost enabled/.test(l)), logs.join('\n'));
    assert.match(s.explain(drv!) ?? '', /drained/);
    await rig.pool.query('ALTER TABLE hydra_ops.machine_state_moved RENAME TO machine_state');
    await rig.pool.query("UPDATE hydra_ops.machine_state SET drained = false WHERE machine = 'localhost'");
    assert.equal((await rig.waitFinished([id!])).get(id!)!.buildstatus, 0);
    assert.deepEqual(startedBuilds, [id]);
  } finally {
    await rig.close();
  }
});

async function started_(rig: RunnerRig, s: Scheduler): Promise<void> {
  await s.start();
  s.setMachines([rig.localhost(1)]);
  s.requestScan();
}
