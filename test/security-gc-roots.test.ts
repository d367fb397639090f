// Outputs are rooted before anything can collect them: a real `nix-store --gc` on the coordinator between the
// import of a step's outputs and the recorded success must not delete them.
//
// A full collection of this machine's store would take other tests' fixtures (and other test runs' paths), so
// each test runs again in a private mount namespace whose /nix is an empty tmpfs: the coordinator's store is
// the test's own, and the collection there is a real, unscoped `nix-store --gc`. The test builders have their
// own stores anyway (test/support/fleet.ts).
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {execa} from 'execa';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import type {StepExecutor, StepRequest} from '../source/fleet/step-api.js';
import {defaultRunnerSettings} from '../source/config/hydra-conf.js';
import {outputPathMap, readDrv} from '../source/nix/drv.js';

const PRIVATE_STORE = process.env.HYDRA_OPS_TEST_PRIVATE_STORE === '1';
const THIS_FILE = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

function withoutTestContext(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[0] !== 'NODE_TEST_CONTEXT' && e[1] !== undefined));
}

/**
 * A test whose body runs in a private coordinator store: outside it, the test runs this file again (only this
 * test) under `unshare --mount` with an empty tmpfs on /nix, and passes when that run passed exactly one test.
 */
function inPrivateStore(name: string, timeout: number, body: () => Promise<void>): void {
  if (PRIVATE_STORE) {
    test(name, {timeout}, body);
    return;
  }
  test(name, {timeout: timeout + 30_000}, async () => {
    const pattern = `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
    const r = await execa(
      'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs hydra-ops-coordinator-store /nix && nix-store --init && exec "$@"', 'sh',
        process.execPath, '--import', 'tsx', '--test', '--test-reporter=tap', `--test-name-pattern=${pattern}`, THIS_FILE],
      // Without NODE_TEST_CONTEXT (set for this file by the outer runner), the inner runner reports TAP on stdout.
      {reject: false, cwd: ROOT, stdin: 'ignore', extendEnv: false, env: {...withoutTestContext(process.env), HYDRA_OPS_TEST_PRIVATE_STORE: '1'}},
    );
    assert.equal(r.exitCode, 0, `in the private store:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^# pass 1$/m, `exactly this test ran in the private store:\n${r.stdout}`);
  });
}

inPrivateStore('a nix-store --gc between importing a step\'s outputs and recording its success (was: they were unrooted then and deleted) keeps them; valid after success', 120_000, async () => {
  const rig = await runnerRig({builders: 1, label: 'gcroots'});
  // Nix finds roots only below its gcroots directory.
  const gcRootsDir = `/nix/var/nix/gcroots/hydra-ops-test-${rig.nix.nonce}`;
  const scratch = mkdtempSync(join(tmpdir(), 'hydra-ops-gc-'));
  try {
    const [drvPath] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} mk "gc-window" [] "mkdir $out; echo kept > $out/file"`);
    const outputs = [...outputPathMap(await readDrv(drvPath!)).values()] as string[];
    rig.nix.track(...outputs);
    // The queued build's .drv is rooted, as an evaluator roots what it queues; and a dead path shows the
    // collection really collects.
    mkdirSync('/nix/var/nix/gcroots/hydra-ops-test-evaluator', {recursive: true});
    symlinkSync(drvPath!, `/nix/var/nix/gcroots/hydra-ops-test-evaluator/${drvPath!.slice('/nix/store/'.length)}`);
    writeFileSync(join(scratch, 'garbage'), `garbage ${rig.nix.nonce}\n`);
    const garbage = (await execa('nix-store', ['--add', join(scratch, 'garbage')])).stdout.trim();
    const collections: {exitCode: number | undefined; stderr: string; validBefore: boolean; validAfter: boolean; garbageLeft: boolean}[] = [];
    const executor: StepExecutor = {
      run: (req: StepRequest) =>
        rig.executor.run({
          ...req,
          onPhase: async (phase) => {
            await req.onPhase(phase);
            if (phase !== 'postprocessing') return;
            // The outputs are in the coordinator's store now, the step is not recorded yet: collect everything dead.
            const before = await execa('nix-store', ['--check-validity', ...outputs], {reject: false});
            const gc = await execa('nix-store', ['--gc'], {reject: false, stdin: 'ignore'});
            const after = await execa('nix-store', ['--check-validity', ...outputs], {reject: false});
            const left = await execa('nix-store', ['--check-validity', garbage], {reject: false});
            collections.push({exitCode: gc.exitCode, stderr: gc.stderr, validBefore: before.exitCode === 0, validAfter: after.exitCode === 0, garbageLeft: left.exitCode === 0});
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
    assert.equal(collections.length, 1, 'the collection ran between import and success');
    const gc = collections[0]!;
    assert.equal(gc.validBefore, true, 'the outputs were imported before the collection');
    assert.equal(gc.exitCode, 0, `nix-store --gc: ${gc.stderr}`);
    assert.equal(gc.garbageLeft, false, 'the collection deleted the dead path: it was a real collection');
    assert.equal(gc.validAfter, true, 'the outputs survived the collection');
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
    rmSync(scratch, {recursive: true, force: true});
  }
});

inPrivateStore('a step that fails after its outputs were rooted leaves no root behind', 120_000, async () => {
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
