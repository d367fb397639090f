// A `file://` binary cache directory written from the local store: `nix-cache-info`, one `<hash>.narinfo` per
// store path and its compressed NAR under `nar/`. Incremental: a path whose narinfo exists is skipped (a NAR is
// always complete before its narinfo appears). Named sets (`sets/<name>`: the store paths of one export) say
// what is still wanted; `gcBinaryCache` deletes narinfos and NARs no set refers to.
//
// Compression: xz (the usual for Nix binary caches; read by every Nix since 1.x), bzip2, or none. Compressors
// run as the system's `xz` / `bzip2` programs.
import {spawn} from 'node:child_process';
import {createHash, randomBytes} from 'node:crypto';
import {createWriteStream} from 'node:fs';
import {mkdir, open, readdir, readFile, rename, rm, stat, writeFile} from 'node:fs/promises';
import {acquireLock, LockBusyError} from '../config/flock.js';
import {join} from 'node:path';
import {pipeline} from 'node:stream/promises';
import {Readable, Transform} from 'node:stream';
import {dumpLocalPath} from './nar.js';
import type {PathInfo} from './store.js';
import {isStorePath, storeDir as defaultStoreDir, storePathBasename, storePathHashPart, toNixBase32} from './store-path.js';

export type CacheCompression = 'xz' | 'bzip2' | 'none';

/** How long an export or a cache GC waits for the other to finish (seconds). */
const CACHE_LOCK_WAIT_SECONDS = 600;

/**
 * Runs `fn` holding the cache's lock (`<dir>/.hydra-ops.lock`, flock): exports and `--gc` exclude each other, so a
 * GC never deletes the NARs and narinfos of an export whose set is not recorded yet.
 */
export async function withCacheLock<T>(dir: string, fn: () => Promise<T>, waitSeconds = CACHE_LOCK_WAIT_SECONDS): Promise<T> {
  let lock;
  try {
    lock = await acquireLock(join(dir, '.hydra-ops.lock'), waitSeconds);
  } catch (e) {
    if (e instanceof LockBusyError) throw new BinaryCacheError(`${dir} is in use by another export or gc${e.holderPid ? ` (process ${e.holderPid})` : ''}; waited ${waitSeconds} s`);
    throw e;
  }
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** Writes `text` to `file` durably: a temporary file, fsync, rename, fsync of the directory. */
async function writeDurably(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } finally {
    await rm(tmp, {force: true});
  }
  await syncDir(file.slice(0, file.lastIndexOf('/')) || '/');
}

async function syncFile(file: string): Promise<void> {
  const fh = await open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  await syncFile(dir);
}

const EXT: Record<CacheCompression, string> = {xz: '.nar.xz', bzip2: '.nar.bz2', none: '.nar'};
const COMPRESSOR: Record<CacheCompression, string[] | null> = {xz: ['xz', '-c', '-6'], bzip2: ['bzip2', '-c'], none: null};

export interface CacheExportResult {
  /** Paths whose NAR and narinfo were written now. */
  written: string[];
  /** Paths already present. */
  skipped: string[];
  narBytes: number;
  fileBytes: number;
}

export interface CacheExportOptions {
  compression?: CacheCompression;
  /** Paths compressed at once (default 4). */
  concurrency?: number;
  storeDir?: string;
  /** Called after each path written. */
  onPath?: (path: string, written: boolean) => void;
}

export class BinaryCacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BinaryCacheError';
  }
}

export function narinfoFile(dir: string, path: string): string {
  return join(dir, `${storePathHashPart(path)}.narinfo`);
}

/** Creates the directory layout and `nix-cache-info` when missing. */
export async function initBinaryCache(dir: string, storeDir = defaultStoreDir()): Promise<void> {
  await mkdir(join(dir, 'nar'), {recursive: true});
  await mkdir(join(dir, 'sets'), {recursive: true});
  const info = join(dir, 'nix-cache-info');
  try {
    const existing = await readFile(info, 'utf8');
    const sd = /^StoreDir:\s*(\S+)/m.exec(existing)?.[1];
    if (sd && sd !== storeDir) throw new BinaryCacheError(`${info}: the cache is for store ${sd}, not ${storeDir}`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await writeFile(info, `StoreDir: ${storeDir}\nWantMassQuery: 1\nPriority: 40\n`);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/** Counts bytes and hashes what passes through. */
class Digest extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.push(chunk);
    cb();
  }
}

/**
 * Writes one path's compressed NAR and then its narinfo; `beforePublish` runs in between (the narinfo of a path
 * appears only once those of its references have, so an interrupted export never leaves dangling references).
 */
async function writeOne(
  dir: string,
  path: string,
  info: PathInfo,
  compression: CacheCompression,
  beforePublish: () => Promise<unknown>,
): Promise<{narBytes: number; fileBytes: number}> {
  const tmp = join(dir, 'nar', `.tmp-${randomBytes(6).toString('hex')}`);
  const narDigest = new Digest();
  const fileDigest = new Digest();
  const argv = COMPRESSOR[compression];
  try {
    if (argv) {
      const child = spawn(argv[0]!, argv.slice(1), {stdio: ['pipe', 'pipe', 'pipe']});
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const exited = new Promise<number | null>((resolve, reject) => {
        child.once('error', (e) => reject(new BinaryCacheError(`cannot run ${argv[0]}: ${e.message}`)));
        child.once('close', (code) => resolve(code));
      });
      await Promise.all([
        pipeline(Readable.from(dumpLocalPath(path)), narDigest, child.stdin),
        pipeline(child.stdout, fileDigest, createWriteStream(tmp)),
        exited.then((code) => {
          if (code !== 0) throw new BinaryCacheError(`${argv[0]} failed (exit ${code}) compressing ${path}: ${stderr.trim()}`);
        }),
      ]);
    } else {
      await pipeline(Readable.from(dumpLocalPath(path)), narDigest, fileDigest, createWriteStream(tmp));
    }
    const narHash = `sha256:${toNixBase32(narDigest.hash.digest())}`;
    if (narHash !== info.narHash || narDigest.bytes !== info.narSize) {
      throw new BinaryCacheError(
        `${path}: its contents do not match the store's record (NAR hash ${narHash}, ${narDigest.bytes} bytes; expected ${info.narHash}, ${info.narSize} bytes); run nix-store --verify --check-contents`,
      );
    }
    const fileHash = toNixBase32(fileDigest.hash.digest());
    const url = `nar/${fileHash}${EXT[compression]}`;
    // On disk before the narinfo that points to it is published (a crash must not leave a narinfo to a torn NAR).
    await syncFile(tmp);
    await rename(tmp, join(dir, url));
    await syncDir(join(dir, 'nar'));
    const refs = info.references.map(storePathBasename).sort();
    const lines = [
      `StorePath: ${path}`,
      `URL: ${url}`,
      `Compression: ${compression}`,
      `FileHash: sha256:${fileHash}`,
      `FileSize: ${fileDigest.bytes}`,
      `NarHash: ${narHash}`,
      `NarSize: ${narDigest.bytes}`,
      `References: ${refs.join(' ')}`,
      ...(info.deriver ? [`Deriver: ${storePathBasename(info.deriver)}`] : []),
    ];
    await beforePublish();
    await writeDurably(narinfoFile(dir, path), lines.join('\n') + '\n');
    return {narBytes: narDigest.bytes, fileBytes: fileDigest.bytes};
  } finally {
    await rm(tmp, {force: true});
  }
}

/**
 * Writes `paths` (valid in the local store, with their infos) into the cache at `dir`; paths already there are
 * skipped. Dependencies are written before dependents when `paths` is in that order.
 */
export async function exportToBinaryCache(
  dir: string,
  paths: readonly string[],
  infos: ReadonlyMap<string, PathInfo>,
  options: CacheExportOptions = {},
): Promise<CacheExportResult> {
  const compression = options.compression ?? 'xz';
  await initBinaryCache(dir, options.storeDir);
  const result: CacheExportResult = {written: [], skipped: [], narBytes: 0, fileBytes: 0};
  const todo: string[] = [];
  for (const p of paths) {
    if (!infos.has(p)) throw new BinaryCacheError(`${p} is not valid in the local store`);
    if (await exists(narinfoFile(dir, p))) {
      result.skipped.push(p);
      options.onPath?.(p, false);
    } else todo.push(p);
  }
  // Each path's narinfo waits for those of its references that come earlier in `todo` (taken by a worker
  // before it, so this cannot deadlock); the NARs themselves are still written in parallel.
  const index = new Map(todo.map((p, i) => [p, i] as const));
  const published = todo.map(() => {
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {});
    return {promise, resolve, reject};
  });
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const i = next++;
      const p = todo[i]!;
      const info = infos.get(p)!;
      const refs = info.references.map((r) => index.get(r)).filter((j): j is number => j !== undefined && j < i);
      let r: {narBytes: number; fileBytes: number};
      try {
        r = await writeOne(dir, p, info, compression, () => Promise.all(refs.map((j) => published[j]!.promise)));
      } catch (e) {
        published[i]!.reject(e);
        throw e;
      }
      published[i]!.resolve();
      result.written.push(p);
      result.narBytes += r.narBytes;
      result.fileBytes += r.fileBytes;
      options.onPath?.(p, true);
    }
  };
  await Promise.all(Array.from({length: Math.max(1, Math.min(options.concurrency ?? 4, todo.length))}, worker));
  return result;
}

const SET_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

export function checkSetName(name: string): void {
  if (!SET_NAME.test(name)) throw new BinaryCacheError(`bad set name "${name}" (letters, digits, . _ + - ; up to 128 characters)`);
}

/** Records (or replaces) a named set of exported paths; returns false when it was already identical. */
export async function recordSet(dir: string, name: string, paths: readonly string[]): Promise<boolean> {
  checkSetName(name);
  const file = join(dir, 'sets', name);
  const text = [...new Set(paths)].sort().join('\n') + '\n';
  try {
    if ((await readFile(file, 'utf8')) === text) return false;
  } catch {
    // new set
  }
  await mkdir(join(dir, 'sets'), {recursive: true});
  await writeDurably(file, text);
  return true;
}

/** Forgets a named set (its paths stay until `gcBinaryCache`). Returns false when there was no such set. */
export async function forgetSet(dir: string, name: string): Promise<boolean> {
  checkSetName(name);
  const file = join(dir, 'sets', name);
  if (!(await exists(file))) return false;
  await rm(file);
  return true;
}

export async function listSets(dir: string): Promise<Map<string, string[]>> {
  const sets = new Map<string, string[]>();
  let names: string[];
  try {
    names = await readdir(join(dir, 'sets'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return sets;
    throw e;
  }
  for (const n of names.sort()) {
    if (!SET_NAME.test(n)) continue;
    const text = await readFile(join(dir, 'sets', n), 'utf8');
    sets.set(n, text.split('\n').filter((l) => l !== ''));
  }
  return sets;
}

export interface CacheGcResult {
  /** Files removed, relative to the cache directory. */
  removed: string[];
  keptPaths: number;
  freedBytes: number;
}

/**
 * Removes every narinfo whose store path no set lists, then every file under `nar/` no remaining narinfo
 * points to (including leftovers of interrupted exports). `dryRun` only reports.
 */
export async function gcBinaryCache(dir: string, options: {dryRun?: boolean} = {}): Promise<CacheGcResult> {
  if (!(await exists(join(dir, 'nix-cache-info')))) throw new BinaryCacheError(`${dir} is not a binary cache (no nix-cache-info)`);
  const wanted = new Set<string>();
  for (const paths of (await listSets(dir)).values()) for (const p of paths) if (isStorePath(p)) wanted.add(storePathHashPart(p));
  const removed: string[] = [];
  let freedBytes = 0;
  const keptUrls = new Set<string>();
  const remove = async (rel: string) => {
    const file = join(dir, rel);
    freedBytes += (await stat(file)).size;
    removed.push(rel);
    if (!options.dryRun) await rm(file, {force: true});
  };
  let keptPaths = 0;
  for (const name of (await readdir(dir)).sort()) {
    if (!name.endsWith('.narinfo')) continue;
    const hash = name.slice(0, -'.narinfo'.length);
    const text = await readFile(join(dir, name), 'utf8');
    if (wanted.has(hash)) {
      keptPaths++;
      const url = /^URL:\s*(\S+)/m.exec(text)?.[1];
      if (url) keptUrls.add(url);
    } else await remove(name);
  }
  for (const name of (await readdir(join(dir, 'nar'))).sort()) {
    const rel = `nar/${name}`;
    if (!keptUrls.has(rel)) await remove(rel);
  }
  return {removed, keptPaths, freedBytes};
}
