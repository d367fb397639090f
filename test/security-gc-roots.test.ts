// Outputs are rooted before anything can collect them: a garbage collection on the coordinator between the import
// of a step's outputs and the recorded success must not delete them. The collection is scoped to the step's own
// outputs (`nix-store --delete`, which refuses live paths): the tests' coordinator store is this machine's, and a
// full `nix-store --gc` would take other tests' fixtures.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync, readdirSync, rmSync} from 'node:fs';
import {join} from 'node:path';
import {execa} from 'execa';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import type {StepExecutor, StepRequest} from '../source/fleet/step-api.js';
import {defaultRunnerSettings} from '../source/config/hydra-conf.js';
import {outputPathMap, readDrv} from '../source/nix/drv.js';

test('a GC between importing a step\'s outputs and recording its success (was: they were unrooted then and deleted) keeps them; valid after success', {timeout: 120_000}, async () => {
  const rig = await runnerRig({builders: 1, label: 'gcroots'});
  // Nix finds roots only below its gcroots directory.
  const gcRootsDir = `/nix/var/nix/gcroots/hydra-ops-test-${rig.nix.nonce}`;
  try {
    const [drvPath] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} mk "gc-window" [] "mkdir $out; echo kept > $out/file"`);
    const outputs = [...outputPathMap(await readDrv(drvPath!)).values()] as string[];
    rig.nix.track(...outputs);
    const attempts: {phase: string; exitCode: number | undefined; stderr: string; validBefore: boolean}[] = [];
    const executor: StepExecutor = {
      run: (req: StepRequest) =>
        rig.executor.run({
          ...req,
          onPhase: async (phase) => {
            await req.onPhase(phase);
            if (phase !== 'postprocessing') return;
            // The outputs are in the coordinator's store now, the step is not recorded yet: collect them.
            const valid = await execa('nix-store', ['--check-validity', ...outputs], {reject: false});
            const r = await execa('nix-store', ['--delete', ...outputs], {reject: false, stdin: 'ignore'});
            attempts.push({phase, exitCode: r.exitCode, stderr: r.stderr, validBefore: valid.exitCode === 0});
          },
        }),
      close: () => rig.executor.close(),
    };
    const s = rig.scheduler({executor, runner: {...defaultRunnerSettings(), gcRootsDir}});
    await s.start();
    s.setMachines(rig.machines);
    const [id] = await rig.queue([drvPath!]);
    s.requestScan();
    const done = await rig.waitFinished([id!], 90_000);
    assert.equal(attempts.length, 1, 'the collection ran between import and success');
    assert.equal(attempts[0]!.validBefore, true, 'the outputs were imported before the collection');
    assert.notEqual(attempts[0]!.exitCode, 0, 'nix-store --delete refused: the outputs are alive');
    assert.match(attempts[0]!.stderr, /still alive|cannot delete/);
    assert.equal(done.get(id!)!.buildstatus, 0);
    const valid = await execa('nix-store', ['--check-validity', ...outputs], {reject: false});
    assert.equal(valid.exitCode, 0, `outputs valid after success: ${valid.stderr}`);
    for (const o of outputs) assert.ok(existsSync(join(o, 'file')));
    const {rows} = await rig.pool.query('SELECT path FROM BuildOutputs WHERE build = $1', [id]);
    assert.deepEqual(rows.map((r) => r.path), outputs);
    // The permanent roots are the Hydra-style files in gc_roots_dir.
    assert.deepEqual(readdirSync(gcRootsDir).sort(), outputs.map((o) => o.slice('/nix/store/'.length)).sort());
  } finally {
    await rig.close();
    rmSync(gcRootsDir, {recursive: true, force: true});
  }
});

test('a step that fails after its outputs were rooted leaves no root behind', {timeout: 120_000}, async () => {
  const rig = await runnerRig({builders: 1, label: 'gcroots_fail'});
  const gcRootsDir = `/nix/var/nix/gcroots/hydra-ops-test-${rig.nix.nonce}`;
  try {
    // Over max_output_size: the step fails with 11 after the build, before the import.
    const [drvPath] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} mk "gc-too-big" [] "mkdir $out; i=0; while [ $i -lt 2000 ]; do echo 0123456789; i=$((i+1)); done > $out/big"`);
    const runner = {...defaultRunnerSettings(), gcRootsDir, maxOutputSize: 1000};
    const s = rig.scheduler({runner});
    await s.start();
    s.setMachines(rig.machines);
    const [id] = await rig.queue([drvPath!]);
    s.requestScan();
    const done = await rig.waitFinished([id!], 90_000);
    assert.equal(done.get(id!)!.buildstatus, 11);
    assert.deepEqual(existsSync(gcRootsDir) ? readdirSync(gcRootsDir) : [], []);
  } finally {
    await rig.close();
    rmSync(gcRootsDir, {recursive: true, force: true});
  }
});
