// Advisory locks that interoperate with flock(2).
//
// Node has no flock binding, so each lock is held by a small child process running util-linux
// flock(1) on the file. The child keeps the lock until its stdin closes: when this process exits
// (even by SIGKILL) the pipe closes and the lock is released by the kernel. Hydra's runners use
// flock(2) on the same files, so these locks exclude them and they exclude us.
import {spawn, type ChildProcess} from 'node:child_process';
import {mkdirSync, openSync, closeSync, readFileSync, statSync} from 'node:fs';
import {dirname} from 'node:path';

export interface HeldLock {
  file: string;
  release(): Promise<void>;
}

export class LockBusyError extends Error {
  constructor(
    readonly file: string,
    readonly holderPid: number | null,
  ) {
    super(`${file} is locked${holderPid ? ` by process ${holderPid}` : ''}`);
    this.name = 'LockBusyError';
  }
}

const CONFLICT = 75;

/**
 * Takes an exclusive flock on `file` (created if missing, never truncated).
 * `waitSeconds` = 0 fails at once with LockBusyError when another process holds it.
 */
export async function acquireLock(file: string, waitSeconds = 0): Promise<HeldLock> {
  mkdirSync(dirname(file), {recursive: true});
  closeSync(openSync(file, 'a'));
  const waitArgs = waitSeconds > 0 ? ['--wait', String(waitSeconds)] : ['--nonblock'];
  const child = spawn(
    'flock',
    ['--exclusive', ...waitArgs, '--conflict-exit-code', String(CONFLICT), file, 'sh', '-c', 'echo locked; exec cat >/dev/null'],
    {stdio: ['pipe', 'pipe', 'pipe']},
  );
  child.stdin!.on('error', () => {});
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('locked\n')) {
        child.stdout!.off('data', onData);
        child.off('exit', onExit);
        child.off('error', onError);
        resolve();
      }
    };
    const onExit = (code: number | null) => {
      if (code === CONFLICT || code === 1) reject(new LockBusyError(file, lockHolderPid(file)));
      else reject(new Error(`could not lock ${file}: flock exited with ${code}${stderr ? `: ${stderr.trim()}` : ''}`));
    };
    const onError = (e: Error) => reject(new Error(`could not lock ${file}: ${e.message} (is util-linux flock installed?)`));
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });
  // The lock must not keep the event loop alive on its own.
  unrefChild(child);
  let released = false;
  return {
    file,
    async release() {
      if (released) return;
      released = true;
      child.ref();
      const exited = new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once('exit', () => resolve());
      });
      child.stdin!.end();
      await exited;
    },
  };
}

function unrefChild(child: ChildProcess): void {
  child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr]) {
    (s as unknown as {unref?: () => void} | null)?.unref?.();
  }
}

/**
 * The pid of the process holding a flock on `file`, from /proc/locks. When the holder is one of our
 * flock(1) helpers, its parent (the process that asked for the lock) is reported instead.
 */
export function lockHolderPid(file: string): number | null {
  let ino: number;
  try {
    ino = statSync(file).ino;
  } catch {
    return null;
  }
  let locks: string;
  try {
    locks = readFileSync('/proc/locks', 'utf8');
  } catch {
    return null;
  }
  for (const line of locks.split('\n')) {
    // 1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF
    const m = /^\d+:\s+FLOCK\s+\S+\s+\S+\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s/.exec(line);
    if (m && Number(m[2]) === ino) {
      const pid = Number(m[1]);
      return parentIfLockHelper(pid);
    }
  }
  return null;
}

function parentIfLockHelper(pid: number): number {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const isHelper = cmd.some((a) => a.includes('exec cat >/dev/null')) || cmd[0] === 'cat';
    if (!isHelper) return pid;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return ppid > 1 ? ppid : pid;
  } catch {
    return pid;
  }
}
