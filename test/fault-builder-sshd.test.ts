// Fault injection: a builder's sshd is killed while it runs a step. The step is retried on the other
// builder; the dead machine backs off (2 s here) and gets nothing meanwhile; once its sshd is back and the
// back-off has expired, new steps go to it again and a successful handshake resets its failure counter.
// (The retry and the back-off alone are also covered by scheduler-outcomes' "a builder killed mid-step";
// this test is about the machine coming back.)
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {waitFor} from './support/wait.js';

test('a builder whose sshd was killed backs off, then comes back and takes steps again', {timeout: 90_000}, async () => {
  const rig = await runnerRig({builders: 2, label: 'fault_sshd'});
  const fleet = rig.fleet!;
  const backoffMs = 2000;
  try {
    const [first, ...more] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "victim" [] "echo working; sleep 3; echo > $out") ]
      ++ builtins.genList (i: mk "after-\${toString i}" [] "sleep 1; echo \${toString i} > $out") 2`);
    const s = rig.scheduler({retryIntervalMs: 300, machineBackoffMs: backoffMs});
    const starts: {build: number; machine: string; at: number}[] = [];
    s.on('step-started', (e: {build: number; machine: string}) => starts.push({build: e.build, machine: e.machine, at: Date.now()}));
    await s.start();
    s.setMachines(rig.machines);
    const [id] = await rig.queue([first!]);
    s.requestScan();
    const running = await waitFor('the step to build', async () => {
      const {rows} = await rig.pool.query('SELECT machine FROM BuildSteps WHERE build = $1 AND busy = 30', [id]);
      return rows[0]?.machine as string | undefined;
    });
    const victim = fleet.builders.findIndex((b) => b.uri === running);
    const other = fleet.builders[1 - victim]!.uri;
    assert.ok(victim >= 0);

    // Kill the sshd (its whole namespace: the session and the build die with it) and start it again at once:
    // the machine must still sit out its back-off.
    const killedAt = Date.now();
    await fleet.stopBuilder(victim);
    await fleet.startBuilder(victim);
    await waitFor('the retry on the other builder', async () => {
      const {rows} = await rig.pool.query('SELECT machine FROM BuildSteps WHERE build = $1 AND busy = 30', [id]);
      return rows[0]?.machine === other;
    });
    const m = s.machines.get(running)!;
    assert.equal(m.rt.consecutiveFailures, 1);
    assert.ok(m.rt.lastError);
    const until = m.rt.disabledUntil;
    assert.ok(until > killedAt && until <= killedAt + backoffMs + 1000, 'backing off for the configured 2 s');

    // New work while the revived machine backs off and the other one is busy: it waits for the back-off.
    const later = await rig.queue(more);
    s.requestScan();
    await waitFor('the new builds to be loaded', () => later.every((b) => s.graph.builds.has(b)), 5000);
    assert.ok(Date.now() < until, 'still inside the back-off window');
    assert.match(s.explain(more[0]!) ?? '', /1 backing off/);

    const done = await rig.waitFinished([id!, ...later], 30_000);
    for (const b of [id!, ...later]) assert.equal(done.get(b)!.buildstatus, 0, `build ${b}`);
    const steps = await rig.pool.query('SELECT status, machine, errormsg FROM BuildSteps WHERE build = $1 ORDER BY stepnr', [id]);
    assert.deepEqual(
      steps.rows.map((x) => [x.status, x.machine]),
      [
        [3, running],
        [0, other],
      ],
      'aborted on the killed builder, then built on the other one',
    );
    const onVictim = starts.filter((x) => x.machine === running && later.includes(x.build));
    assert.ok(onVictim.length >= 1, 'the revived builder took new steps');
    assert.ok(onVictim[0]!.at >= until, `nothing was dispatched to it while it backed off (${onVictim[0]!.at - until} ms after)`);
    const laterSteps = await rig.pool.query('SELECT status, machine FROM BuildSteps WHERE build = ANY($1::int[])', [later]);
    assert.equal(laterSteps.rowCount, 2);
    assert.ok(laterSteps.rows.every((x) => x.status === 0));
    assert.equal(m.rt.consecutiveFailures, 0, 'a successful handshake reset the failure counter');
    assert.equal(m.rt.disabledUntil, 0);
    assert.ok(m.rt.nrStepsDone >= 2);
  } finally {
    await rig.close();
  }
});
