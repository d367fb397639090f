// `hydra-ops reproduce BUILD`: the exact steps to rebuild a build on another machine. The coordinator's store
// holds the derivation closure and the outputs of every input already built; exported together
// (`nix-store --export` format) they let any Nix store rebuild the top-level derivation without fetching or
// building anything else. The build runs with --keep-failed, so a failing build directory is kept.
import {createWriteStream} from 'node:fs';
import {chmod, mkdir, rename, rm, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {pipeline} from 'node:stream/promises';
import {execa} from 'execa';
import type {Queryable} from '../db/queryable.js';
import {shellQuote} from '../fleet/ssh-transport.js';
import {queryClosure, topoSortPaths, queryPathInfos} from '../nix/store.js';
import {ActionError} from './errors.js';
import {exportTarget, validOutputsOf} from './export.js';

export const EXPORT_FILE = 'closure.nixexport';
export const SCRIPT_FILE = 'reproduce.sh';

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

export function reproduceScript(plan: ReproducePlan, info: {project?: string; jobset?: string; job?: string} = {}): string {
  const what = info.project ? ` (${info.project}:${info.jobset}:${info.job})` : '';
  return `#!/bin/sh
# Rebuild of Hydra build ${plan.build}${what}:
#   ${plan.drvPath}
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

/** Writes `closure.nixexport` (from `nix-store --export`) and `reproduce.sh` into `dir`. */
export async function writeReproduction(plan: ReproducePlan, dir: string, info: {project?: string; jobset?: string; job?: string} = {}): Promise<ReproduceWriteResult> {
  await mkdir(dir, {recursive: true});
  const exportFile = join(dir, EXPORT_FILE);
  const tmp = `${exportFile}.tmp`;
  try {
    const child = execa('nix-store', ['--export', ...plan.paths], {stdin: 'ignore', encoding: 'buffer', buffer: {stdout: false, stderr: true}, reject: false});
    await pipeline(child.stdout!, createWriteStream(tmp));
    const r = await child;
    if (r.exitCode !== 0) throw new ActionError('refused', `nix-store --export failed: ${Buffer.from(r.stderr as Uint8Array).toString().trim()}`);
    await rename(tmp, exportFile);
  } finally {
    await rm(tmp, {force: true});
  }
  const script = join(dir, SCRIPT_FILE);
  await writeFile(script, reproduceScript(plan, info));
  await chmod(script, 0o755);
  return {dir, script, exportFile, paths: plan.paths.length};
}
