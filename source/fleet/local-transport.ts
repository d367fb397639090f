// Local transport for the serve protocol: runs `nix-store --serve --write` as a child process in its own
// process group, so that killing the transport also ends the build it runs.

import {PassThrough, type Readable, type Writable} from 'node:stream';
import {execa} from 'execa';

export interface ServeTransport {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** Process id of the serve process (leader of its own process group). */
  pid: number;
  /**
   * Terminate the serve process and everything in its process group: closes stdin, sends SIGTERM to the group
   * (Nix then aborts the running build and kills the builder), and SIGKILL after `graceMs` if still running.
   * Resolves once the process has exited.
   */
  kill(graceMs?: number): Promise<{code: number | null; signal: string | null}>;
  /** Settles when the process exits (never rejects). */
  exited: Promise<{code: number | null; signal: string | null}>;
}

export interface LocalTransportOptions {
  /** Argument vector prefix the command runs under (e.g. a mount-namespace wrapper for tests). */
  wrapper?: readonly string[];
  /** Value of the machine's `remote-store` parameter: appended as `--store <value>`. */
  store?: string;
  /** The nix-store program (default 'nix-store' from PATH). */
  nixStore?: string;
  /** Extra arguments appended after the defaults. */
  extraArgs?: readonly string[];
  /** Environment additions. */
  env?: Record<string, string>;
  /** Default grace period for kill(), in ms (default 1000). */
  graceMs?: number;
}

/** The argument vector used to start the local serve process (exported for display and tests). */
export function localServeCommand(options: LocalTransportOptions = {}): string[] {
  const argv = [options.nixStore ?? 'nix-store', '--serve', '--write'];
  if (options.store !== undefined && options.store !== '') argv.push('--store', options.store);
  // Keep the local Nix from handing the build to remote builders again.
  argv.push('--builders', '');
  if (options.extraArgs) argv.push(...options.extraArgs);
  return [...(options.wrapper ?? []), ...argv];
}

/** Spawn `nix-store --serve --write` locally, with raw binary stdio. */
export function startLocalServe(options: LocalTransportOptions = {}): ServeTransport {
  const [file, ...args] = localServeCommand(options);
  const child = execa(file!, args, {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    encoding: 'buffer',
    buffer: false,
    reject: false,
    detached: true,
    cleanup: true,
    env: options.env,
    extendEnv: true,
  });
  const pid = child.pid;
  if (pid === undefined || !child.stdin || !child.stdout || !child.stderr) {
    // execa reports the spawn failure through the promise; surface it synchronously with a clear message.
    child.catch(() => undefined);
    throw new Error(`cannot start ${[file, ...args].join(' ')}: spawn failed`);
  }
  let exitedFlag = false;
  const exited = child.then(
    (result) => {
      exitedFlag = true;
      return {code: result.exitCode ?? null, signal: result.signal ?? null};
    },
    (error: {exitCode?: number; signal?: string}) => {
      exitedFlag = true;
      return {code: error.exitCode ?? null, signal: error.signal ?? null};
    },
  );
  // Swallow EPIPE and similar on our ends; the protocol client reports broken streams itself.
  child.stdin.on('error', () => undefined);
  child.stdout.on('error', () => undefined);
  child.stderr.on('error', () => undefined);
  // execa (buffer: false) lets unconsumed output flow away; hand out buffering pass-throughs instead, so nothing
  // the peer writes before the caller starts reading is lost (pipe() keeps backpressure).
  const stdout = child.stdout.pipe(new PassThrough({highWaterMark: 1 << 20}));
  const stderr = child.stderr.pipe(new PassThrough({highWaterMark: 1 << 20}));

  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // group already gone
    }
  };

  const kill = async (graceMs = options.graceMs ?? 1000) => {
    if (!child.stdin.destroyed) child.stdin.destroy();
    if (!exitedFlag) signalGroup('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    if (timer) clearTimeout(timer);
    // Stragglers in the group (or the leader itself after the grace period) get SIGKILL.
    signalGroup('SIGKILL');
    return exited;
  };

  return {stdin: child.stdin, stdout, stderr, pid, kill, exited};
}
