// The coordinator's local Nix store, through the nix-store command line (arguments as argv, never a shell),
// plus GC roots and the build-log layout under the Hydra data directory.

import {execa} from 'execa';
import {access, mkdir, open} from 'node:fs/promises';
import {join} from 'node:path';
import {isStoreBasename, isStorePath, sha256HexToNix, storeDir, storePathBasename} from './store-path.js';

export {storeDir} from './store-path.js';

export interface PathInfo {
  /** `sha256:<nix-base32>`, as `nix-store --query --hash` prints it. */
  narHash: string;
  narSize: number;
  /** Sorted store paths (may include the path itself). */
  references: string[];
  /** The deriver's store path, or null when unknown. */
  deriver: string | null;
}

/** A nix-store invocation that failed. */
export class NixStoreError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    const shown = args.length > 4 ? [...args.slice(0, 4), `… (${args.length - 4} more)`] : args;
    super(`nix-store ${shown.join(' ')} failed${exitCode !== undefined ? ` (exit ${exitCode})` : ''}: ${stderr.trim() || 'no message'}`);
    this.name = 'NixStoreError';
  }
}

/** Paths per invocation: keeps argv far below the kernel's limit. */
const CHUNK = 2000;

/** `xs` in pieces of at most `size` (default: the paths per store command line). */
export function chunks<T>(xs: readonly T[], size = CHUNK): T[][] {
  const res: T[][] = [];
  for (let i = 0; i < xs.length; i += size) res.push(xs.slice(i, i + size));
  return res;
}

async function nixStore(args: string[], bin = 'nix-store'): Promise<string> {
  const r = await execa(bin, args, {reject: false, stdin: 'ignore', stripFinalNewline: false});
  if (r.failed) throw new NixStoreError(args, r.exitCode, String(r.stderr ?? r.message));
  return String(r.stdout);
}

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0);
}

/** Paths that are syntactically store paths of this store (anything else cannot be valid). */
function storePathsOnly(paths: Iterable<string>): string[] {
  const dir = storeDir();
  return [...new Set(paths)].filter((p) => isStorePath(p, dir));
}

/** The subset of `paths` that is valid in the local store. Non-store paths count as invalid. */
export async function queryValidPaths(paths: Iterable<string>): Promise<Set<string>> {
  const candidates = storePathsOnly(paths);
  const valid = new Set<string>();
  for (const chunk of chunks(candidates)) {
    const invalid = new Set(lines(await nixStore(['--check-validity', '--print-invalid', ...chunk])));
    for (const p of chunk) if (!invalid.has(p)) valid.add(p);
  }
  return valid;
}

export async function isValidPath(path: string): Promise<boolean> {
  return (await queryValidPaths([path])).has(path);
}

/**
 * Path infos of the valid paths among `paths` (invalid ones are absent from the map). One `nix-store --dump-db`
 * call per chunk: it prints path, base-16 NAR hash, NAR size, deriver, reference count and references per path.
 */
export async function queryPathInfos(paths: Iterable<string>): Promise<Map<string, PathInfo>> {
  const res = new Map<string, PathInfo>();
  let wanted = [...(await queryValidPaths(paths))];
  for (let attempt = 0; attempt < 3 && wanted.length > 0; attempt++) {
    const retry: string[] = [];
    for (const chunk of chunks(wanted)) {
      let out: string;
      try {
        out = await nixStore(['--dump-db', ...chunk]);
      } catch (e) {
        // A path may have been collected since the validity check: re-check and retry with the rest.
        if (attempt === 2) throw e;
        retry.push(...(await queryValidPaths(chunk)));
        continue;
      }
      parseValidityRegistration(out, res);
    }
    wanted = retry;
  }
  return res;
}

/** Parses `nix-store --dump-db` output (validity registration with hashes and derivers). */
export function parseValidityRegistration(text: string, into = new Map<string, PathInfo>()): Map<string, PathInfo> {
  const ls = text === '' ? [] : (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n');
  let i = 0;
  const next = (what: string, nonEmpty = true): string => {
    if (i >= ls.length || (nonEmpty && ls[i] === '')) {
      throw new Error(`nix-store --dump-db output ended early: expected ${what} on line ${i + 1}`);
    }
    return ls[i++]!;
  };
  while (i < ls.length) {
    const path = next('a store path');
    const hash = next('a NAR hash');
    const sizeS = next('a NAR size');
    const deriver = next('a deriver', false);
    const countS = next('a reference count');
    if (!/^\d+$/.test(sizeS) || !/^\d+$/.test(countS)) {
      throw new Error(`nix-store --dump-db output for ${path}: bad size '${sizeS}' or reference count '${countS}'`);
    }
    const count = Number(countS);
    const references: string[] = [];
    for (let k = 0; k < count; k++) references.push(next('a reference'));
    let narHash: string;
    if (hash.includes(':')) narHash = hash;
    else if (/^[0-9a-f]{64}$/.test(hash)) narHash = sha256HexToNix(hash);
    else throw new Error(`nix-store --dump-db output for ${path}: bad NAR hash '${hash}'`);
    into.set(path, {narHash, narSize: Number(sizeS), references: references.sort(), deriver: deriver === '' ? null : deriver});
  }
  return into;
}

/** The closure (requisites) of `paths`, including the paths themselves. Throws NixStoreError on invalid paths. */
export async function queryClosure(paths: Iterable<string>): Promise<string[]> {
  const all = [...new Set(paths)];
  if (all.length === 0) return [];
  const res = new Set<string>();
  for (const chunk of chunks(all)) for (const p of lines(await nixStore(['--query', '--requisites', ...chunk]))) res.add(p);
  return [...res];
}

/**
 * Σ NAR size over the closure of `paths` in the local store: `--query --requisites`, then `--query --size`, both
 * with at most `chunkSize` paths per command line (a large aggregate's closure does not fit in one argv).
 */
export async function closureNarSize(paths: Iterable<string>, opts: {nixStore?: string; chunkSize?: number; signal?: AbortSignal} = {}): Promise<number> {
  const bin = opts.nixStore ?? 'nix-store';
  const size = opts.chunkSize ?? CHUNK;
  const all = [...new Set(paths)];
  if (all.length === 0) return 0;
  const closure = new Set<string>();
  for (const chunk of chunks(all, size)) {
    opts.signal?.throwIfAborted();
    for (const p of lines(await nixStore(['--query', '--requisites', ...chunk], bin))) closure.add(p);
  }
  let total = 0;
  for (const chunk of chunks([...closure], size)) {
    opts.signal?.throwIfAborted();
    const sizes = lines(await nixStore(['--query', '--size', ...chunk], bin));
    if (sizes.length !== chunk.length || !sizes.every((x) => /^\d+$/.test(x))) {
      throw new Error(`nix-store --query --size printed ${sizes.length} sizes for ${chunk.length} paths`);
    }
    for (const x of sizes) total += Number(x);
  }
  return total;
}

/** A reference cycle among paths being sorted. */
export class ReferenceCycleError extends Error {
  constructor(readonly cycle: string[]) {
    super(`reference cycle between store paths: ${cycle.join(' -> ')}`);
    this.name = 'ReferenceCycleError';
  }
}

/**
 * Sorts `paths` so that every path comes after the paths it references (dependencies first). Only references
 * within `paths` matter; self-references are ignored; any other cycle is a ReferenceCycleError. Stable: among
 * independent paths the input order is kept.
 */
export function topoSortPaths(
  paths: Iterable<string>,
  referencesOf: (path: string) => Iterable<string> | undefined,
): string[] {
  const list = [...new Set(paths)];
  const inSet = new Set(list);
  const state = new Map<string, 1 | 2>(); // 1 = on the stack, 2 = done
  const out: string[] = [];
  for (const root of list) {
    if (state.has(root)) continue;
    // Iterative DFS: each frame holds a path and an iterator over its references.
    const stack: {path: string; refs: Iterator<string>}[] = [];
    const push = (p: string) => {
      state.set(p, 1);
      stack.push({path: p, refs: (referencesOf(p) ?? [])[Symbol.iterator]()});
    };
    push(root);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const n = top.refs.next();
      if (n.done) {
        stack.pop();
        state.set(top.path, 2);
        out.push(top.path);
        continue;
      }
      const ref = n.value;
      if (ref === top.path || !inSet.has(ref)) continue;
      const s = state.get(ref);
      if (s === 2) continue;
      if (s === 1) {
        const from = stack.findIndex((f) => f.path === ref);
        throw new ReferenceCycleError([...stack.slice(from).map((f) => f.path), ref]);
      }
      push(ref);
    }
  }
  return out;
}

/**
 * Registers a GC root the Hydra way: an empty file named after the store path's basename in `gcRootsDir`
 * (directory created on demand; an existing file is left alone). Returns the root file's path.
 */
export async function addGcRoot(gcRootsDir: string, storePath: string): Promise<string> {
  return (await createGcRoot(gcRootsDir, storePath)).root;
}

/**
 * addGcRoot, also saying whether the root file is new. Nix's collector treats such a file as a root once the path
 * it names is valid, so it may be made before the path exists (before an import): the path is then rooted from
 * the moment it becomes valid.
 */
export async function createGcRoot(gcRootsDir: string, storePath: string): Promise<{root: string; created: boolean}> {
  if (!isStorePath(storePath)) throw new Error(`cannot add a GC root for '${storePath}': not a store path`);
  await mkdir(gcRootsDir, {recursive: true});
  const root = join(gcRootsDir, storePathBasename(storePath));
  try {
    const fh = await open(root, 'wx', 0o644);
    await fh.close();
    return {root, created: true};
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return {root, created: false};
  }
}

/** `<dataDir>/build-logs/<first 2 chars of the drv basename>/<rest of it>`. */
export function drvLogBucketPath(dataDir: string, drvPath: string): string {
  const base = storePathBasename(drvPath);
  if (!isStoreBasename(base)) throw new Error(`not a derivation path: '${drvPath}'`);
  return join(dataDir, 'build-logs', base.slice(0, 2), base.slice(2));
}

/** The existing log of a derivation: the plain file, else `.bz2`, else `.zst`; null when none exists. */
export async function findDrvLog(dataDir: string, drvPath: string): Promise<string | null> {
  const base = drvLogBucketPath(dataDir, drvPath);
  for (const candidate of [base, `${base}.bz2`, `${base}.zst`]) {
    try {
      await access(candidate);
      return candidate;
    } catch {
      // try the next form
    }
  }
  return null;
}
