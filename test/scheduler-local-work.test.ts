// Local work throttling on real parts: steps on a real sshd builder whose outputs are imported into the coordinator's
// store through a nix-store that records each import, with max_local_worker_threads = 1; and the copies to a
// store_uri destination, through a nix that records each copy, under the same slots.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import {basename, join} from 'node:path';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {defaultRunnerSettings} from '../source/config/hydra-conf.js';
import {FleetExecutor} from '../source/fleet/step-runner.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';
import {waitFor} from './support/wait.js';

test('with max_local_worker_threads = 1, one output import runs at a time and waiting steps show busy 35', {timeout: 180_000}, async () => {
  const rig = await runnerRig({builders: 1, maxJobs: 4, label: 'local_work'});
  // A nix-store command per operation, so that the wrapper sees each import.
  const executor = new FleetExecutor({nixStoreBin: join(rig.dataDir, 'nix-store-imports'), localStore: 'commands'});
  try {
    const real = execFileSync('sh', ['-c', 'command -v nix-store'], {encoding: 'utf8'}).trim();
    const record = join(rig.dataDir, 'imports');
    const lock = join(rig.dataDir, 'import-running');
    // Each import: note overlapping ones (mkdir is atomic), then take a while so that other steps must wait.
    writeFileSync(
      join(rig.dataDir, 'nix-store-imports'),
      `#!/bin/sh
if [ "$1" = --import ]; then
  mkdir '${lock}' 2>/dev/null || echo overlap >> '${record}'
  echo start >> '${record}'
  sleep 1
  '${real}' "$@"; rc=$?
  rmdir '${lock}' 2>/dev/null
  exit $rc
fi
exec '${real}' "$@"
`,
      {mode: 0o755},
    );
    const drvs = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ ${[1, 2, 3, 4].map((i) => `(mk "local-work-${i}" [] "echo ${i} > $out")`).join(' ')} ]`);
    const runner = {...defaultRunnerSettings(), maxLocalWorkerThreads: 1, gcRootsDir: join(rig.dataDir, 'gcroots')};
    const s = rig.scheduler({executor, runner});
    await s.start();
    s.setMachines(rig.machines);
    const ids = await rig.queue(drvs);
    s.requestScan();
    const busySeen = new Set<number>();
    let done = false;
    const watcher = (async () => {
      while (!done) {
        const {rows} = await rig.pool.query('SELECT DISTINCT busy FROM BuildSteps WHERE busy <> 0');
        for (const r of rows) busySeen.add(r.busy as number);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const finished = await rig.waitFinished(ids, 120_000);
    done = true;
    await watcher;
    for (const id of ids) assert.equal(finished.get(id)!.buildstatus, 0);
    const lines = existsSync(record) ? readFileSync(record, 'utf8').trim().split('\n') : [];
    assert.equal(lines.filter((l) => l === 'start').length, 4, 'every output was imported');
    assert.deepEqual(lines.filter((l) => l === 'overlap'), [], 'no two imports ran at once');
    assert.ok(busySeen.has(35), `a step waited for the local worker slot in busy 35 (seen: ${[...busySeen].sort().join(', ')})`);
    await waitFor('no step waiting', () => s.activeSteps().length === 0);
  } finally {
    await executor.close();
    await rig.close();
  }
});

test('with max_local_worker_threads = 1 and a store_uri, destination copies take the local worker slot: never two at once', {timeout: 180_000}, async () => {
  const rig = await runnerRig({builders: 1, maxJobs: 4, label: 'local_work_dest'});
  try {
    const real = execFileSync('sh', ['-c', 'command -v nix'], {encoding: 'utf8'}).trim();
    const bin = join(rig.dataDir, 'bin');
    mkdirSync(bin);
    const record = join(rig.dataDir, 'copies');
    const lock = join(rig.dataDir, 'copy-running');
    // `nix copy` notes an overlapping copy (mkdir is atomic) and takes a while, so that other steps' copies would
    // overlap it if they did not wait for the slot.
    writeFileSync(
      join(bin, 'nix'),
      `#!/bin/sh
case " $* " in
  *" copy "*)
    mkdir '${lock}' 2>/dev/null || echo overlap >> '${record}'
    echo start >> '${record}'
    sleep 1
    '${real}' "$@"; rc=$?
    rmdir '${lock}' 2>/dev/null
    exit $rc;;
esac
exec '${real}' "$@"
`,
      {mode: 0o755},
    );
    const cache = join(rig.dataDir, 'cache');
    const drvs = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ ${[1, 2, 3, 4].map((i) => `(mk "dest-slot-${i}" [] "echo ${i} > $out")`).join(' ')} ]`);
    const runner = {...defaultRunnerSettings(), maxLocalWorkerThreads: 1, storeUri: `file://${cache}`, gcRootsDir: join(rig.dataDir, 'gcroots')};
    const s = rig.scheduler({runner, nix: {env: {PATH: `${bin}:${process.env.PATH ?? ''}`}}});
    await s.start();
    s.setMachines(rig.machines);
    const ids = await rig.queue(drvs);
    s.requestScan();
    const finished = await rig.waitFinished(ids, 120_000);
    for (const id of ids) assert.equal(finished.get(id)!.buildstatus, 0);
    const lines = existsSync(record) ? readFileSync(record, 'utf8').trim().split('\n') : [];
    assert.equal(lines.filter((l) => l === 'start').length, 4, `every step's outputs were copied to the destination: ${lines.join(' ')}`);
    assert.deepEqual(lines.filter((l) => l === 'overlap'), [], 'no two destination copies ran at once');
    for (const drv of drvs) {
      const out = outputPathMap(await readDrv(drv)).get('out')!;
      assert.ok(existsSync(join(cache, `${basename(out).slice(0, 32)}.narinfo`)), `${out} is in the cache`);
    }
  } finally {
    await rig.close();
  }
});
