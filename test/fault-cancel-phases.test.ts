// Fault injection: a build cancelled through the database while its step is in each busy phase —
// connecting (10), sending inputs (20), building (30), receiving outputs (40) — on a real sshd builder.
// The connecting, sending and receiving phases are made to last by freezing the builder (SIGSTOP of its
// whole PID namespace) the moment the step enters the phase: the SSH handshake, the validity query of the
// input copy and the output path-info query then hang, as on a wedged machine. Building is a sleeping build.
// Every case: the step ends 4 within a few seconds, the build is 4, no row stays busy, the machine is not
// blamed, and once the builder is thawed no serve or build process of the step is left on it.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {runnerRig, mkPrelude, type RunnerRig} from './support/runner-rig.js';
import {cancelBuildsSql} from '../source/actions/cancel.js';
import type {StepExecutor, StepPhase, StepRequest} from '../source/fleet/step-api.js';
import {waitFor} from './support/wait.js';
import {builderCommandLines} from './support/fleet.js';

const BUSY: Record<string, number> = {connecting: 10, sending: 20, building: 30, receiving: 40};

test('cancel during connecting, sending, building and receiving: step 4 within seconds, nothing left behind', {timeout: 90_000}, async () => {
  const rig: RunnerRig = await runnerRig({builders: 1, label: 'fault_cancel'});
  const fleet = rig.fleet!;
  const builder = fleet.builders[0]!;
  let freezeOn: StepPhase | null = null;
  let frozen = false;
  // The real executor, with the builder frozen right after the scheduler has recorded the chosen phase.
  const executor: StepExecutor = {
    run: (req: StepRequest) =>
      rig.executor.run({
        ...req,
        onPhase: async (phase) => {
          await req.onPhase(phase);
          if (phase === freezeOn && !frozen) {
            fleet.freezeBuilder(0);
            frozen = true;
          }
        },
      }),
    close: () => rig.executor.close(),
  };
  const timings: Record<string, number> = {};
  try {
    const phases = ['connecting', 'sending', 'building', 'receiving'] as const;
    const marks = Object.fromEntries(phases.map((p) => [p, `${rig.nix.nonce}-${p}`]));
    // Each derivation has its own source file, so the input copy always has something to send.
    const drvs = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      map (p: mk "cancel-\${p}" [] "cat \${builtins.toFile "input-\${p}" "input of \${p}"} > /dev/null; echo start \${p}; \${if p == "building" then "sleep 60" else "true"} # ${rig.nix.nonce}-\${p}\necho \${p} > $out")
        [ ${phases.map((p) => `"${p}"`).join(' ')} ]`);
    const s = rig.scheduler({executor, machineBackoffMs: 60_000});
    await s.start();
    s.setMachines(rig.machines);
    const jobset = await rig.jobset();
    for (const [i, phase] of phases.entries()) {
      freezeOn = phase === 'building' ? null : phase;
      frozen = false;
      const [id] = await rig.queue([drvs[i]!], {jobsetId: jobset.id});
      s.requestScan();
      const busy = BUSY[phase]!;
      await waitFor(`the ${phase} phase`, async () => (await rig.pool.query('SELECT 1 FROM BuildSteps WHERE build = $1 AND busy = $2', [id, busy])).rowCount, 90_000);
      if (freezeOn) await waitFor('the builder to be frozen', () => frozen);
      else await waitFor('the remote build process', () => builderCommandLines(builder.pid).some((c) => c.includes(marks[phase]!)));
      // Stay in the phase a moment: the step really is stuck there, not passing through.
      await new Promise((r) => setTimeout(r, 300));
      const stuck = await rig.pool.query('SELECT busy FROM BuildSteps WHERE build = $1', [id]);
      assert.equal(stuck.rows[0].busy, busy, `still ${phase}`);

      const t0 = Date.now();
      assert.deepEqual((await cancelBuildsSql(rig.pool, [id!])).changed, [id]);
      const step = await waitFor(
        `the ${phase} step to end`,
        async () => {
          const {rows} = await rig.pool.query('SELECT busy, status, errormsg FROM BuildSteps WHERE build = $1', [id]);
          return rows[0].busy === 0 ? rows[0] : null;
        },
        10_000,
      );
      timings[phase] = Date.now() - t0;
      assert.ok(timings[phase]! < 5000, `${phase}: the step ended ${timings[phase]} ms after the cancel`);
      assert.equal(step.status, 4, `${phase}: step status`);
      const b = await rig.pool.query('SELECT finished, buildstatus FROM Builds WHERE id = $1', [id]);
      assert.deepEqual(b.rows[0], {finished: 1, buildstatus: 4});
      assert.equal((await rig.pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE busy != 0')).rows[0].n, 0, 'no busy rows');
      await waitFor('the scheduler to let go of the step', () => s.activeSteps().length === 0, 5000);
      const m = s.machines.get(builder.uri)!;
      assert.equal(m.rt.consecutiveFailures, 0, `${phase}: a cancel does not count against the machine`);
      assert.equal(m.rt.currentJobs, 0, `${phase}: the slot is free again`);

      if (frozen) fleet.thawBuilder(0);
      // Nothing of the step survives on the builder: no serve process, no build.
      const leftovers = () => builderCommandLines(builder.pid).filter((c) => c.includes('nix-store') || c.includes(marks[phase]!));
      await waitFor(`${phase}: the builder's processes of the step to be gone (${leftovers().join('; ')})`, () => leftovers().length === 0, 10_000);
    }
    assert.equal((await rig.pool.query('SELECT count(*)::int AS n FROM FailedPaths')).rows[0].n, 0);
    const steps = await rig.pool.query('SELECT status, count(*)::int AS n FROM BuildSteps GROUP BY status');
    assert.deepEqual(steps.rows, [{status: 4, n: 4}]);
    process.stderr.write(`# cancel → step final (ms): ${JSON.stringify(timings)}\n`);
  } finally {
    try {
      fleet.thawBuilder(0);
    } catch {
      // not running
    }
    await rig.close();
  }
});
