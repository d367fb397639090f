// The queue runner's single-instance lock (docs/hydra-compat.md, "Runner lock and clearBusy"). Hydra's C++ runner flocks
// `$HYDRA_DATA/queue-runner/lock.lock` (Nix PathLocks appends `.lock`), the Rust runner flocks
// `$HYDRA_DATA/queue-runner/lock`. We take both, so neither upstream runner can run beside us and
// we cannot run beside either. `lock.lock` stays empty (Nix treats a non-empty one as stale); our
// pid goes into `lock` for operators. Both are released by the kernel if we die.
import {writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {acquireLock, lockHolderPid, LockBusyError, type HeldLock} from '../config/flock.js';

export interface RunnerLock {
  files: string[];
  release(): Promise<void>;
}

export class RunnerLockBusyError extends Error {
  constructor(
    readonly file: string,
    readonly holderPid: number | null,
  ) {
    super(
      `another queue runner holds ${file}${holderPid ? ` (pid ${holderPid})` : ''}; ` +
        `stop it first, or run "hydra-ops unlock" if it crashed and the lock is stale`,
    );
    this.name = 'RunnerLockBusyError';
  }
}

export function runnerLockFiles(dataDir: string): {cpp: string; rust: string} {
  const dir = join(dataDir, 'queue-runner');
  return {cpp: join(dir, 'lock.lock'), rust: join(dir, 'lock')};
}

export async function acquireRunnerLock(dataDir: string): Promise<RunnerLock> {
  const {cpp, rust} = runnerLockFiles(dataDir);
  const held: HeldLock[] = [];
  try {
    for (const file of [cpp, rust]) {
      try {
        held.push(await acquireLock(file));
      } catch (e) {
        if (e instanceof LockBusyError) throw new RunnerLockBusyError(file, e.holderPid);
        throw e;
      }
    }
  } catch (e) {
    for (const h of held) await h.release();
    throw e;
  }
  writeFileSync(rust, `${process.pid}\n`);
  return {
    files: [cpp, rust],
    async release() {
      writeFileSync(rust, '');
      for (const h of held.reverse()) await h.release();
    },
  };
}

/** Who holds the runner lock, if anyone (null when free). */
export function runnerLockHolder(dataDir: string): {file: string; pid: number | null} | null {
  const {cpp, rust} = runnerLockFiles(dataDir);
  for (const file of [cpp, rust]) {
    const pid = lockHolderPid(file);
    if (pid !== null) return {file, pid};
  }
  return null;
}
