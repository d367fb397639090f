// Evaluating a jobset expression with the installed Nix command line: one `nix-instantiate --eval --strict --json
// --read-write-mode` process evaluates every job (writing the .drv files to the store) and reports drvPath, outputs
// and meta fields per job (the expression is in eval-jobs.nix.ts).
//
// Per-job errors, as Hydra records them:
// - a job that throws (throw, assert, failed dependency that throws) is caught with builtins.tryEval; its message is
//   then obtained by evaluating that job alone without tryEval (one extra process per failing job, up to a cap);
// - errors tryEval cannot catch (abort, missing attribute, type error) fail the whole process; the top-level
//   attributes are then listed and evaluated in halves (and a failing attribute set by its attributes) until each
//   failing job is isolated with its own message;
// - an expression that cannot even be listed (syntax error, missing file, not an attribute set) is a
//   whole-expression error: NixEvalError carrying Nix's error text.
import {isAbsolute, relative} from 'node:path';
import {escapeControl, hasControl} from '../config/escape.js';
import {childEnv} from '../config/child-env.js';
import {execa} from 'execa';
import {EVAL_JOBS_EXPR} from './eval-jobs.nix.js';

export type InputType = 'string' | 'boolean' | 'path';

export interface EvalInput {
  name: string;
  type: InputType;
  /** string: the text; boolean: `true` or `false`; path: an absolute path. */
  value: string;
}

export interface EvaluatedJob {
  /** Dotted attribute path, Hydra's job name (`tests.unit`). */
  name: string;
  path: string[];
  drvPath: string;
  nixName: string;
  system: string;
  /** Output name → path (null when not statically known). */
  outputs: Record<string, string | null>;
  description: string;
  /** Licence short names, `, `-joined. */
  license: string;
  homepage: string;
  /** Maintainer e-mails, `, `-joined. */
  maintainers: string;
  schedulingPriority: number;
  timeout: number;
  maxSilent: number;
  isChannel: boolean;
}

export interface JobEvalError {
  name: string;
  path: string[];
  message: string;
}

export interface EvalJobsResult {
  /** Sorted by name. */
  jobs: EvaluatedJob[];
  /** Sorted by name. */
  errors: JobEvalError[];
  /** Wall-clock seconds spent in Nix. */
  seconds: number;
  /** nix-instantiate processes run. */
  processes: number;
}

export interface EvalJobsOptions {
  /** Absolute path of the jobset expression file. */
  file: string;
  inputs: readonly EvalInput[];
  /** `-I NAME=PATH` entries (Hydra puts every path input on the search path). Default: the path inputs. */
  searchPath?: ReadonlyArray<readonly [string, string]>;
  /** Per nix-instantiate process; default one hour. */
  timeoutMs?: number;
  /** Cap on the extra processes that fetch per-job messages and isolate uncatchable errors (default 64). */
  maxExtraProcesses?: number;
  /** The nix-instantiate program (default from PATH). */
  nixInstantiate?: string;
}

/** The expression as a whole could not be evaluated; `nixMessage` is Nix's own error text, or why Nix was not run. */
export class NixEvalError extends Error {
  constructor(
    readonly nixMessage: string,
    readonly exitCode?: number,
  ) {
    super(nixMessage);
    this.name = 'NixEvalError';
  }
}

/** nix-instantiate is not installed (or not on PATH). */
export class NixNotInstalledError extends Error {
  constructor(readonly program: string) {
    super(`${program} was not found on PATH: evaluating jobsets needs Nix installed`);
    this.name = 'NixNotInstalledError';
  }
}

/** Whether nix-instantiate runs, and its version line. */
export async function nixInstantiateVersion(program = 'nix-instantiate'): Promise<string | null> {
  try {
    const r = await execa(program, ['--version'], {reject: false, stdin: 'ignore', timeout: 20_000});
    if (r.failed) return null;
    return String(r.stdout).trim();
  } catch {
    return null;
  }
}

interface RawEntry {
  path: string[];
  error?: true | string;
  drvPath?: string;
  nixName?: string;
  system?: string;
  outputs?: Record<string, string | null>;
  description?: string;
  license?: string;
  homepage?: string;
  maintainers?: string;
  schedulingPriority?: number;
  timeout?: number;
  maxSilent?: number;
  isChannel?: boolean;
}

type RunOutcome = {ok: true; value: unknown} | {ok: false; message: string; exitCode?: number};

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

/** Nix's stderr as an error message: no colours, no `--show-trace` hint, no trailing blank lines. */
export function cleanNixMessage(stderr: string): string {
  return stderr
    .replace(ANSI, '')
    .split('\n')
    .filter((l) => !/^\(use '--show-trace' to show detailed location information\)$/.test(l.trim()))
    .join('\n')
    .trim();
}

function within(file: string, dir: string): boolean {
  const rel = relative(dir, file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

export const jobName = (path: readonly string[]): string => path.join('.');

export async function evalJobs(opts: EvalJobsOptions): Promise<EvalJobsResult> {
  const program = opts.nixInstantiate ?? 'nix-instantiate';
  const searchPath = opts.searchPath ?? opts.inputs.filter((i) => i.type === 'path').map((i) => [i.name, i.value] as const);
  const started = performance.now();
  let processes = 0;
  let extraBudget = opts.maxExtraProcesses ?? 64;

  // Restricted to the declared inputs: an expression outside every path input (a nixExprPath with `..` or an
  // absolute one) is refused, not given its own directory, which would make that directory readable.
  if (!searchPath.some(([, p]) => within(opts.file, p))) {
    const inputs = searchPath.map(([name, p]) => `${name} = ${p}`).join(', ') || 'none';
    throw new NixEvalError(
      `the expression ${opts.file} is outside the jobset's path inputs (${inputs}): restricted evaluation reads only the inputs, so the expression must be inside one of them`,
    );
  }

  const run = async (mode: 'full' | 'children', only: string[][] | null, strict: boolean): Promise<RunOutcome> => {
    const spec = JSON.stringify({file: opts.file, inputs: opts.inputs, mode, only, strict});
    // Restricted like Hydra's evaluator: only the jobset's inputs (the search path) may be read; no URIs, and
    // builtins.getEnv sees nothing (restricted mode returns "" — and the environment is minimal anyway).
    const args = ['--eval', '--strict', '--json', '--read-write-mode', '--option', 'restrict-eval', 'true', '--option', 'allowed-uris', ''];
    for (const [name, path] of searchPath) args.push('-I', `${name}=${path}`);
    args.push('-E', EVAL_JOBS_EXPR, '--argstr', 'spec', spec);
    processes += 1;
    let r;
    try {
      r = await execa(program, args, {
        reject: false,
        stdin: 'ignore',
        timeout: opts.timeoutMs ?? 3_600_000,
        maxBuffer: 1 << 30,
        env: childEnv(process.env, [], {NO_COLOR: '1'}),
        extendEnv: false,
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NixNotInstalledError(program);
      throw e;
    }
    if ((r as {code?: string}).code === 'ENOENT') throw new NixNotInstalledError(program);
    if (r.timedOut) return {ok: false, message: `evaluation timed out after ${Math.round((opts.timeoutMs ?? 3_600_000) / 1000)} s`};
    if (r.failed) {
      const message = cleanNixMessage(String(r.stderr ?? '')) || String(r.shortMessage ?? r.message);
      return {ok: false, message, exitCode: r.exitCode};
    }
    try {
      return {ok: true, value: JSON.parse(String(r.stdout)) as unknown};
    } catch (e) {
      return {ok: false, message: `could not read the evaluation result: ${(e as Error).message}`};
    }
  };

  let entries: RawEntry[];
  const full = await run('full', null, false);
  if (full.ok) {
    entries = full.value as RawEntry[];
  } else {
    // Either the whole expression is broken, or some job fails in a way tryEval cannot catch: list the top-level
    // attributes (a failure here is the expression's), then narrow the failure down by evaluating halves, and
    // the attributes of a failing attribute set, until each failing job is isolated with its own message.
    const top = await run('children', [[]], false);
    if (!top.ok) throw new NixEvalError(full.message, full.exitCode);
    entries = [];
    const children = (v: unknown): string[] | null => (v as {attrs: string[] | null}).attrs;
    const isolate = async (paths: string[][], failure: string): Promise<void> => {
      if (paths.length > 1 && extraBudget > 0) {
        const half = Math.ceil(paths.length / 2);
        for (const part of [paths.slice(0, half), paths.slice(half)]) {
          extraBudget -= 1;
          const r = await run('full', part, false);
          if (r.ok) entries.push(...(r.value as RawEntry[]));
          else await isolate(part, r.message);
        }
        return;
      }
      if (paths.length === 1 && extraBudget > 0) {
        const path = paths[0]!;
        extraBudget -= 1;
        const r = await run('children', [path], false);
        if (!r.ok) {
          entries.push({path, error: r.message});
          return;
        }
        const names = children(r.value);
        if (names !== null && names.length > 0 && path.length > 0) {
          await isolate(names.map((n) => [...path, n]), failure);
          return;
        }
      }
      for (const path of paths) entries.push({path, error: failure});
    };
    const names = children(top.value) ?? [];
    await isolate(names.map((n) => [n]), full.message);
  }

  // Messages for the jobs tryEval caught: evaluate each alone, strictly.
  const jobs: EvaluatedJob[] = [];
  const errors: JobEvalError[] = [];
  const silent: RawEntry[] = [];
  for (const e of entries) {
    if (e.path.some((part) => part === '' || hasControl(part))) {
      // Job names end up in tables, logs and scripts (`reproduce`): names with control characters are refused.
      errors.push({name: escapeControl(jobName(e.path)), path: e.path.map(escapeControl), message: 'invalid job name: it contains control characters or an empty attribute'});
      continue;
    }
    if (e.error === true) silent.push(e);
    else if (typeof e.error === 'string') errors.push({name: jobName(e.path), path: e.path, message: e.error});
    else jobs.push(toJob(e));
  }
  const queue = [...silent];
  const worker = async () => {
    for (let e = queue.shift(); e; e = queue.shift()) {
      let message = 'evaluation failed (the job throws an error; message not collected: too many failing jobs)';
      if (extraBudget > 0) {
        extraBudget -= 1;
        const r = await run('full', [e.path], true);
        if (!r.ok) message = r.message;
        else message = 'evaluation failed (the job threw an error that did not recur when evaluated alone)';
      }
      errors.push({name: jobName(e.path), path: e.path, message});
    }
  };
  await Promise.all(Array.from({length: Math.min(4, queue.length)}, worker));

  const byName = (a: {name: string}, b: {name: string}) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return {jobs: jobs.sort(byName), errors: errors.sort(byName), seconds: (performance.now() - started) / 1000, processes};
}

function toJob(e: RawEntry): EvaluatedJob {
  return {
    name: jobName(e.path),
    path: e.path,
    drvPath: e.drvPath!,
    nixName: e.nixName ?? '',
    system: e.system ?? '',
    outputs: e.outputs ?? {},
    description: e.description ?? '',
    license: e.license ?? '',
    homepage: e.homepage ?? '',
    maintainers: e.maintainers ?? '',
    schedulingPriority: e.schedulingPriority ?? 100,
    timeout: e.timeout ?? 36000,
    maxSilent: e.maxSilent ?? 7200,
    isChannel: e.isChannel === true,
  };
}
