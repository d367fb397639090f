// Runs the real hydra-ops command line in a child process.
// The compiled dist/cli.js starts about twice as fast as the TypeScript sources under tsx; it is
// used when it is at least as new as every source file (npm test builds it first), otherwise the
// sources run through tsx so a stale build is never tested.
import {execFile, spawn, type ChildProcess} from 'node:child_process';
import {existsSync, readdirSync, statSync} from 'node:fs';
import {join} from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const entry = join(root, 'cli.tsx');
const compiled = join(root, 'dist', 'cli.js');

function newestSource(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    const st = statSync(full);
    newest = Math.max(newest, st.isDirectory() ? newestSource(full) : st.mtimeMs);
  }
  return newest;
}

let cached: string[] | undefined;

/** argv (after the node executable) that starts the CLI. */
export function cliArgs(): string[] {
  if (!cached) {
    const fresh = existsSync(compiled) && statSync(compiled).mtimeMs >= Math.max(newestSource(join(root, 'source')), statSync(entry).mtimeMs);
    cached = fresh ? [compiled] : ['--import', 'tsx', entry];
  }
  return [...cached];
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: Record<string, string | undefined> = {}, opts: {input?: string; timeoutMs?: number} = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [...cliArgs(), ...args],
      {env: {...process.env, NO_COLOR: '1', ...env}, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20},
      (error, stdout, stderr) => {
        const code = error ? (typeof (error as {code?: unknown}).code === 'number' ? (error as {code: number}).code : 1) : 0;
        resolve({code, stdout, stderr});
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

export interface DaemonProcess {
  child: ChildProcess;
  /** Everything the daemon wrote to stderr so far. */
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `hydra-ops --daemon` (status on a free loopback port, 2 s grace) with `env` over this environment. */
export function startDaemonProcess(env: Record<string, string>, args: string[] = []): DaemonProcess {
  const child = spawn(process.execPath, [...cliArgs(), '--daemon', '--status-address', '127.0.0.1:0', '--grace', '2', ...args], {
    env: {...process.env, ...env},
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {child, stderr: () => err, exited};
}
