// The diff hook of a reproducibility check, with Nix's calling convention (the `diff-hook` setting): the
// program gets the old output path, the new (rebuilt) path, the derivation path and a build directory as its
// four arguments; what it prints becomes the diff log. Without a configured hook, `diffoscope OLD NEW` runs
// when diffoscope is on PATH, else the built-in summary of fleet/tree-diff.ts.

import {constants} from 'node:fs';
import {access, appendFile, mkdir, writeFile} from 'node:fs/promises';
import {delimiter, dirname, join} from 'node:path';
import {execa} from 'execa';
import {diffTrees} from './tree-diff.js';
import {childEnv} from '../config/child-env.js';

export type DiffTool = 'hook' | 'diffoscope' | 'builtin';

export interface DiffHookRequest {
  /** The recorded output (a store path in the coordinator's store). */
  oldPath: string;
  /** The rebuilt copy (a plain directory or file). */
  newPath: string;
  drvPath: string;
  /** Passed as the fourth argument (Nix passes the build directory; hydra-ops the check's directory). */
  buildDir: string;
  /** The log the diff is appended to. */
  logPath: string;
  /** A program (absolute path or name on PATH); '' or undefined: diffoscope if installed, else built-in. */
  hook?: string;
  /** Killed after this long (default 10 min). */
  timeoutMs?: number;
  /** The hook's whole environment; default: the minimal one of config/child-env.ts plus `passEnv`. */
  env?: NodeJS.ProcessEnv;
  /** Further variables from process.env (the commandEnv setting). */
  passEnv?: readonly string[];
}

export interface DiffHookResult {
  tool: DiffTool;
  /** The program run, or 'built-in'. */
  program: string;
  exitCode: number | null;
  /** Set when the program could not run or was killed; the log says so too. */
  error: string | null;
}

/** The program's path when `name` is an executable on PATH (or an executable path), else null. */
export async function findProgram(name: string, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const candidates = name.includes('/') ? [name] : (env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return c;
    } catch {
      // not there
    }
  }
  return null;
}

/** Runs the diff for one output and appends everything it prints to `logPath`. */
export async function runDiffHook(req: DiffHookRequest): Promise<DiffHookResult> {
  await mkdir(dirname(req.logPath), {recursive: true});
  const env = req.env ?? childEnv(process.env, req.passEnv ?? []);
  const timeout = req.timeoutMs ?? 600_000;
  const section = `=== ${req.oldPath} vs ${req.newPath}\n`;
  const hook = req.hook?.trim();
  let tool: DiffTool;
  let program: string | null;
  let args: string[];
  if (hook) {
    tool = 'hook';
    program = await findProgram(hook, env);
    args = [req.oldPath, req.newPath, req.drvPath, req.buildDir];
    if (!program) {
      const error = `diff hook ${JSON.stringify(hook)} is not an executable program (set diffHook to a path or a program on PATH)`;
      await appendFile(req.logPath, `${section}${error}\n`);
      return {tool, program: hook, exitCode: null, error};
    }
  } else {
    program = await findProgram('diffoscope', env);
    tool = program ? 'diffoscope' : 'builtin';
    args = [req.oldPath, req.newPath];
  }
  if (tool === 'builtin' || !program) {
    const r = await diffTrees(req.oldPath, req.newPath);
    await appendFile(req.logPath, section + r.text);
    return {tool: 'builtin', program: 'built-in', exitCode: r.differing.length > 0 ? 1 : 0, error: null};
  }
  await appendFile(req.logPath, `${section}$ ${[program, ...args].join(' ')}\n`);
  const r = await execa(program, args, {
    reject: false,
    all: true,
    stdin: 'ignore',
    timeout,
    cwd: req.buildDir,
    env,
    extendEnv: false,
    encoding: 'utf8',
  });
  const out = typeof r.all === 'string' ? r.all : '';
  let error: string | null = null;
  if (r.timedOut) error = `${program} was killed after ${Math.round(timeout / 1000)} s`;
  else if (r.exitCode === undefined || r.exitCode === null) error = `${program} died (${r.signal ?? r.message})`;
  else if (r.failed && r.exitCode !== 1 && out === '') error = `${program} failed: ${r.shortMessage}`;
  await appendFile(req.logPath, out + (out.endsWith('\n') || out === '' ? '' : '\n') + (error ? `${error}\n` : ''));
  return {tool, program, exitCode: r.exitCode ?? null, error};
}

/** Writes a fresh diff log with a header (before the per-output sections are appended). */
export async function startDiffLog(logPath: string, header: string[]): Promise<void> {
  await mkdir(dirname(logPath), {recursive: true});
  await writeFile(logPath, header.join('\n') + '\n\n');
}
