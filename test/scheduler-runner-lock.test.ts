import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {spawn} from 'node:child_process';
import {acquireRunnerLock, runnerLockFiles, runnerLockHolder, RunnerLockBusyError} from '../source/scheduler/runner-lock.js';

test('the runner lock excludes a second holder, names the holder pid, and interoperates with flock(1)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-lock-'));
  try {
    const lock = await acquireRunnerLock(dir);
    const files = runnerLockFiles(dir);
    assert.equal(readFileSync(files.rust, 'utf8').trim(), String(process.pid));
    assert.equal(statSync(files.cpp).size, 0, 'lock.lock stays empty for Nix PathLocks');
    assert.equal(runnerLockHolder(dir)?.pid, process.pid);
    await assert.rejects(acquireRunnerLock(dir), (e: unknown) => {
      assert.ok(e instanceof RunnerLockBusyError);
      assert.equal(e.holderPid, process.pid);
      assert.match(e.message, new RegExp(`pid ${process.pid}`));
      return true;
    });
    await lock.release();
    assert.equal(runnerLockHolder(dir), null);

    // A foreign runner holding lock.lock with flock(2), like Hydra's C++ runner, blocks us.
    const foreign = spawn('flock', ['--exclusive', '--close', files.cpp, 'sleep', '30'], {stdio: 'ignore'});
    await new Promise((r) => setTimeout(r, 300));
    await assert.rejects(acquireRunnerLock(dir), RunnerLockBusyError);
    foreign.kill('SIGKILL');
    await new Promise((r) => foreign.once('exit', r));
    await new Promise((r) => setTimeout(r, 100));
    const again = await acquireRunnerLock(dir);
    await again.release();
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});
