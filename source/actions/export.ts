// `hydra-ops export`: a build's (or an evaluation's) closure into a `file://` binary cache directory, the
// backup approach operators use for releases. Closures:
//   runtime — the outputs and everything they reference;
//   build   — the derivations and everything they need (sources, fixed-output inputs' .drv …);
//   cached  — both, plus every output of the derivation closure present in the store (what a rebuild
//             elsewhere could substitute instead of building).
import {execa} from 'execa';
import type {Queryable} from '../db/queryable.js';
import {buildOutputs, getBuild} from '../db/queries/builds.js';
import {evalBuildIds} from '../db/queries/evals.js';
import {
  exportToBinaryCache,
  recordSet,
  withCacheLock,
  type CacheCompression,
  type CacheExportResult,
} from '../nix/binary-cache.js';
import {NixStoreError, queryClosure, queryPathInfos, queryValidPaths, topoSortPaths, type PathInfo} from '../nix/store.js';
import {ActionError} from './errors.js';

export type ClosureKind = 'runtime' | 'build' | 'cached';
export const CLOSURE_KINDS: readonly ClosureKind[] = ['runtime', 'build', 'cached'];

export interface ExportTarget {
  builds: {id: number; drvPath: string; outputs: string[]; finished: boolean; buildStatus: number | null}[];
  /** Default set name: `build-<id>` or `eval-<id>`. */
  name: string;
}

/** The builds to export: one build, or every member of an evaluation. */
export async function exportTarget(db: Queryable, what: {build?: number; eval?: number}): Promise<ExportTarget> {
  let ids: number[];
  let name: string;
  if (what.eval !== undefined) {
    ids = await evalBuildIds(db, what.eval);
    if (ids.length === 0) throw new ActionError('not-found', `evaluation ${what.eval} does not exist or has no builds`);
    name = `eval-${what.eval}`;
  } else if (what.build !== undefined) {
    ids = [what.build];
    name = `build-${what.build}`;
  } else throw new ActionError('usage', 'give a build or an evaluation');
  const builds: ExportTarget['builds'] = [];
  for (const id of ids) {
    const b = await getBuild(db, id);
    if (!b) throw new ActionError('not-found', `build ${id} does not exist`);
    const outs = (await buildOutputs(db, id)).map((o) => o.path).filter((p): p is string => p !== null);
    builds.push({id, drvPath: b.drvpath, outputs: outs, finished: b.finished === 1, buildStatus: b.buildstatus});
  }
  return {builds, name};
}

async function nixStoreLines(args: string[]): Promise<string[]> {
  const r = await execa('nix-store', args, {reject: false, stdin: 'ignore'});
  if (r.failed) throw new NixStoreError(args, r.exitCode, String(r.stderr ?? r.message));
  return String(r.stdout).split('\n').filter((l) => l !== '');
}

/** The outputs of derivations that are valid in the local store. */
export async function validOutputsOf(drvs: readonly string[]): Promise<string[]> {
  if (drvs.length === 0) return [];
  const outs: string[] = [];
  for (let i = 0; i < drvs.length; i += 1000) outs.push(...(await nixStoreLines(['--query', '--outputs', ...drvs.slice(i, i + 1000)])));
  return [...(await queryValidPaths(outs))];
}

async function requireValid(paths: readonly string[], what: string): Promise<void> {
  const valid = await queryValidPaths(paths);
  const missing = paths.filter((p) => !valid.has(p));
  if (missing.length > 0) {
    throw new ActionError('refused', `${what} not in the local store: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` (+${missing.length - 5} more)` : ''}`, {missing});
  }
}

/** The store paths of a closure kind for the target's builds. */
export async function closureOf(target: ExportTarget, kind: ClosureKind): Promise<string[]> {
  const drvs = [...new Set(target.builds.map((b) => b.drvPath))];
  const outputs = [...new Set(target.builds.flatMap((b) => b.outputs))];
  switch (kind) {
    case 'runtime': {
      if (outputs.length === 0) throw new ActionError('refused', 'the selected builds have no recorded outputs');
      await requireValid(outputs, 'outputs (did the build succeed, or were they garbage-collected?)');
      return queryClosure(outputs);
    }
    case 'build': {
      await requireValid(drvs, 'derivations (garbage-collected?)');
      return queryClosure(drvs);
    }
    case 'cached': {
      await requireValid(drvs, 'derivations (garbage-collected?)');
      const drvClosure = await queryClosure(drvs);
      const outs = await validOutputsOf(drvClosure.filter((p) => p.endsWith('.drv')));
      return [...new Set([...drvClosure, ...(await queryClosure(outs))])];
    }
  }
}

/** Path infos of `paths` and the paths sorted dependencies first. */
export async function sortedWithInfos(paths: readonly string[]): Promise<{sorted: string[]; infos: Map<string, PathInfo>}> {
  const infos = await queryPathInfos(paths);
  const missing = paths.filter((p) => !infos.has(p));
  if (missing.length > 0) throw new ActionError('refused', `no longer valid in the local store: ${missing.slice(0, 5).join(', ')}`, {missing});
  return {sorted: topoSortPaths(paths, (p) => infos.get(p)?.references), infos};
}

export interface ExportResult extends CacheExportResult {
  dir: string;
  set: string;
  closure: ClosureKind;
  paths: number;
  setChanged: boolean;
}

export async function exportClosure(
  db: Queryable,
  what: {build?: number; eval?: number},
  options: {dir: string; closure: ClosureKind; compression?: CacheCompression; setName?: string; onPath?: (p: string, written: boolean) => void},
): Promise<ExportResult> {
  const target = await exportTarget(db, what);
  const paths = await closureOf(target, options.closure);
  const {sorted, infos} = await sortedWithInfos(paths);
  const set = options.setName ?? `${target.name}-${options.closure}`;
  // Under the cache's lock, which `export --gc` also takes: a GC cannot run between writing the paths and
  // recording the set that keeps them.
  const {r, setChanged} = await withCacheLock(options.dir, async () => {
    const r = await exportToBinaryCache(options.dir, sorted, infos, {compression: options.compression, onPath: options.onPath});
    // The set is recorded only once everything it lists is in the cache.
    return {r, setChanged: await recordSet(options.dir, set, sorted)};
  });
  return {...r, dir: options.dir, set, closure: options.closure, paths: sorted.length, setChanged};
}
