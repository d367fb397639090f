// `hydra-ops reproduce BUILD`: the exact steps to rebuild a build on another machine. The coordinator's store
// holds the derivation closure and the outputs of every input already built; exported together
// (`nix-store --export` format) they let any Nix store rebuild the top-level derivation without fetching or
// building anything else. The build runs with --keep-failed, so a failing build directory is kept.
import {constants, createWriteStream} from 'node:fs';
import {lstat, mkdir, open, readdir, rename, rm, unlink} from 'node:fs/promises';
import {dirname, join, resolve} from 'node:path';
import {pipeline} from 'node:stream/promises';
import {execa} from 'execa';
import type {Queryable} from '../db/queryable.js';
import {shellQuote} from '../fleet/ssh-common.js';
import {queryClosure, topoSortPaths, queryPathInfos} from '../nix/store.js';
import {ActionError} from './errors.js';
import {escapeControl} from '../config/escape.js';
import {isStorePath} from '../nix/store-path.js';
import {exportTarget, validOutputsOf} from './export.js';

export const EXPORT_FILE = 'closure.nixexport';
export const SCRIPT_FILE = 'reproduce.sh';
/** Marks a directory `reproduce --to` created; only such a directory is written into again. */
export const MARKER_FILE = '.hydra-ops-reproduce';

export interface ReproducePlan {
  build: number;
  drvPath: string;
  /** Everything to export, dependencies first: the .drv closure and the already-built inputs' closures. */
  paths: string[];
  /** Outputs of input derivations that were already built (and are exported rather than rebuilt). */
  builtInputs: string[];
  /** Input derivations whose outputs are not in the coordinator's store: they get built too. */
  unbuiltInputs: string[];
}

export async function planReproduce(db: Queryable, build: number): Promise<ReproducePlan> {
  const target = await exportTarget(db, {build});
  const b = target.builds[0]!;
  const valid = await queryPathInfos([b.drvPath]);
  if (!valid.has(b.drvPath)) throw new ActionError('refused', `derivation ${b.drvPath} of build ${build} is not in the local store (garbage-collected?)`);
  const drvClosure = await queryClosure([b.drvPath]);
  const inputDrvs = drvClosure.filter((p) => p.endsWith('.drv') && p !== b.drvPath);
  const builtInputs = await validOutputsOf(inputDrvs);
  const all = [...new Set([...drvClosure, ...(await queryClosure(builtInputs))])];
  // The top-level outputs, if present, must not travel: the point is to build them.
  const own = new Set(b.outputs);
  const paths = all.filter((p) => !own.has(p));
  const infos = await queryPathInfos(paths);
  const sorted = topoSortPaths(paths, (p) => infos.get(p)?.references);
  const builtSet = new Set(builtInputs);
  const unbuiltInputs: string[] = [];
  for (const d of inputDrvs) {
    const outs = await execa('nix-store', ['--query', '--outputs', d], {stdin: 'ignore'});
    if (String(outs.stdout).split('\n').some((o) => o !== '' && !builtSet.has(o))) unbuiltInputs.push(d);
  }
  return {build, drvPath: b.drvPath, paths: sorted, builtInputs, unbuiltInputs};
}

/** The commands, for printing: export here, import and build there. */
export function reproduceCommands(plan: ReproducePlan): {coordinator: string[]; elsewhere: string[]} {
  return {
    coordinator: [`nix-store --export ${plan.paths.map(shellQuote).join(' ')} > ${EXPORT_FILE}`],
    elsewhere: [`nix-store --import < ${EXPORT_FILE}`, `nix-store --realise ${shellQuote(plan.drvPath)} --keep-failed`],
  };
}

/**
 * The script. Everything interpolated comes from the database: names are shown with control characters escaped
 * (a newline in a job name cannot end a comment) and the derivation path, checked to be a store path, is quoted.
 */
export function reproduceScript(plan: ReproducePlan, info: {project?: string; jobset?: string; job?: string} = {}): string {
  if (!isStorePath(plan.drvPath) || !plan.drvPath.endsWith('.drv')) {
    throw new ActionError('refused', `build ${plan.build}: ${JSON.stringify(plan.drvPath)} is not a derivation's store path`);
  }
  const what = info.project ? ` (${escapeControl(`${info.project}:${info.jobset}:${info.job}`)})` : '';
  return `#!/bin/sh
# Rebuild of Hydra build ${Math.trunc(plan.build)}${what}:
#   ${escapeControl(plan.drvPath)}
# ${EXPORT_FILE} next to this script holds its derivation closure and the outputs of the ${plan.builtInputs.length}
# input(s) already built (${plan.paths.length} store paths${plan.unbuiltInputs.length ? `; ${plan.unbuiltInputs.length} input derivation(s) are built too` : ''}).
# Importing unsigned paths needs root or a trusted user of the target store. Extra arguments go to
# nix-store --realise (e.g. --option sandbox true). A failing build's directory is kept (--keep-failed).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
nix-store --import < "$here/${EXPORT_FILE}" > /dev/null
exec nix-store --realise ${shellQuote(plan.drvPath)} --keep-failed "$@"
`;
}

export interface ReproduceWriteResult {
  dir: string;
  script: string;
  exportFile: string;
  paths: number;
}

const EXCL_NOFOLLOW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Makes `dir` for writing: a new directory, or one an earlier `reproduce --to` made (it
 * holds MARKER_FILE and nothing but what reproduce writes). Anything else — an operator's directory, a symlink
 * — is refused.
 */
async function prepareDir(dir: string): Promise<void> {
  await mkdir(dirname(dir), {recursive: true});
  try {
    await mkdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const st = await lstat(dir);
    if (st.isSymbolicLink() || !st.isDirectory()) throw new ActionError('refused', `--to ${dir}: exists and is not a directory (symlinks are not followed)`);
    const names = await readdir(dir);
    const ours = new Set([MARKER_FILE, EXPORT_FILE, SCRIPT_FILE, `${EXPORT_FILE}.tmp`]);
    if (!names.includes(MARKER_FILE) || names.some((n) => !ours.has(n))) {
      throw new ActionError('refused', `--to ${dir}: the directory exists and was not made by hydra-ops reproduce; name a new directory`);
    }
    for (const n of names) if (n !== MARKER_FILE) await unlink(join(dir, n));
    return;
  }
  const marker = await open(join(dir, MARKER_FILE), EXCL_NOFOLLOW, 0o644);
  await marker.close();
}

/** Writes `closure.nixexport` (from `nix-store --export`) and `reproduce.sh` into `dir` (see prepareDir). */
export async function writeReproduction(plan: ReproducePlan, dir: string, info: {project?: string; jobset?: string; job?: string} = {}): Promise<ReproduceWriteResult> {
  dir = resolve(dir);
  const text = reproduceScript(plan, info);
  await prepareDir(dir);
  const exportFile = join(dir, EXPORT_FILE);
  const tmp = `${exportFile}.tmp`;
  try {
    const child = execa('nix-store', ['--export', ...plan.paths], {stdin: 'ignore', encoding: 'buffer', buffer: {stdout: false, stderr: true}, reject: false});
    const fh = await open(tmp, EXCL_NOFOLLOW, 0o644);
    try {
      await pipeline(child.stdout!, createWriteStream('', {fd: fh.fd, autoClose: false}));
    } finally {
      await fh.close();
    }
    const r = await child;
    if (r.exitCode !== 0) throw new ActionError('refused', `nix-store --export failed: ${Buffer.from(r.stderr as Uint8Array).toString().trim()}`);
    await rename(tmp, exportFile);
  } finally {
    await rm(tmp, {force: true});
  }
  const script = join(dir, SCRIPT_FILE);
  const sh = await open(script, EXCL_NOFOLLOW, 0o755);
  try {
    await sh.writeFile(text);
  } finally {
    await sh.close();
  }
  return {dir, script, exportFile, paths: plan.paths.length};
}
