// Copying store paths between the coordinator's store and a builder over the serve protocol:
// the input closure out (QueryValidPaths + ImportPaths, dependencies first, NARs streamed from
// `nix-store --dump`) and the outputs back (DumpStorePath, each NAR verified against the builder's
// narHash and streamed into a local `nix-store --import`, with nix-support files kept in memory).

import type {Writable} from 'node:stream';
import {execa} from 'execa';
import {dumpLocalPath, EXPORT_MAGIC, sameHash, type NarEntry} from '../nix/nar.js';
import {
  localNixSupportFs,
  memberMapFs,
  NIX_SUPPORT_MAX_BYTES,
  type NixSupportFs,
  type RecordedMember,
} from '../nix/nix-support.js';
import type {ImportEntry, PathInfo as RemotePathInfo, ServeClient} from '../nix/serve-client.js';
import {queryClosure, queryPathInfos, topoSortPaths} from '../nix/store.js';
import {WireWriter, sortedSet} from '../nix/wire.js';

// ---------------------------------------------------------------------------------------------------------------
// Per-machine send lock (Hydra's build-remote.cc; docs/hydra-compat.md, "Serve protocol"): one upload at a time per machine.

/** A FIFO mutex per key whose waiters give up waiting after a time limit (then proceed anyway, as Hydra does). */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  /**
   * Wait for the lock of `key` (at most `maxWaitMs`, or until `signal` aborts, which rejects); resolves with the
   * release function.
   */
  async acquire(key: string, maxWaitMs: number, signal?: AbortSignal): Promise<() => void> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([
        previous,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, maxWaitMs);
          timer.unref();
        }),
        new Promise<void>((_, reject) => {
          if (!signal) return;
          onAbort = () => reject(new Error('aborted while waiting for the send lock'));
          if (signal.aborted) onAbort();
          else signal.addEventListener('abort', onAbort, {once: true});
        }),
      ]);
    } catch (error) {
      release();
      throw error;
    } finally {
      if (timer) clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
    let done = false;
    return () => {
      if (!done) {
        done = true;
        release();
      }
    };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs: coordinator → builder

export interface SendClosureOptions {
  /** Taken around the upload itself (after the validity query); returns the release function. */
  lock?: () => Promise<() => void>;
  nixStore?: string;
  /** Timing hook: the closure is known and its validity on the builder checked (before any upload). */
  onQueried?: () => void;
}

export interface SendClosureResult {
  /** The input closure in the coordinator's store. */
  closure: string[];
  /** Paths that were imported on the builder, in the order sent. */
  copied: string[];
  narBytes: number;
}

/**
 * Make the closure of `paths` (computed in the coordinator's store) valid on the builder: QueryValidPaths with
 * lock and substitute, then ImportPaths of what is still missing, dependencies first.
 */
export async function sendClosure(client: ServeClient, paths: readonly string[], options: SendClosureOptions = {}): Promise<SendClosureResult> {
  const closure = await queryClosure(paths);
  if (closure.length === 0) {
    options.onQueried?.();
    return {closure, copied: [], narBytes: 0};
  }
  const valid = await client.queryValidPaths(closure, {lock: true, substitute: true});
  options.onQueried?.();
  let missing = closure.filter((p) => !valid.has(p));
  if (missing.length === 0) return {closure, copied: [], narBytes: 0};
  const release = options.lock ? await options.lock() : () => undefined;
  try {
    // Another step may have uploaded some of them while this one waited for the lock.
    if (options.lock) {
      const nowValid = await client.queryValidPaths(missing);
      missing = missing.filter((p) => !nowValid.has(p));
      if (missing.length === 0) return {closure, copied: [], narBytes: 0};
    }
    const infos = await queryPathInfos(missing);
    for (const p of missing) {
      if (!infos.has(p)) throw new Error(`input ${p} is no longer valid in the coordinator's store`);
    }
    const ordered = topoSortPaths(missing, (p) => infos.get(p)?.references);
    const nixStore = options.nixStore;
    const entries = function* (): Generator<ImportEntry> {
      for (const path of ordered) {
        const info = infos.get(path)!;
        yield {path, references: info.references, deriver: info.deriver, nar: () => dumpLocalPath(path, nixStore ? {nixStore} : {})};
      }
    };
    const r = await client.importPaths(entries());
    return {closure, copied: ordered, narBytes: r.narBytes};
  } finally {
    release();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Outputs: builder → coordinator

/** A `nix-store --import` process fed with export records (one per path, dependencies first). */
export class LocalImport {
  private readonly child;
  private readonly writer: WireWriter;
  private finished = false;

  constructor(nixStore = 'nix-store') {
    this.child = execa(nixStore, ['--import'], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      encoding: 'utf8',
      reject: false,
      cleanup: true,
    });
    this.child.catch(() => undefined);
    this.child.stdin!.on('error', () => undefined);
    this.writer = new WireWriter(this.child.stdin!, {label: 'local nix-store --import'});
  }

  /** The stream the NAR bytes go to (after begin()). */
  get sink(): Writable {
    return this.child.stdin!;
  }

  /** Start a record: everything written to `sink` next is the NAR. */
  async begin(): Promise<void> {
    this.writer.u64(1);
    await this.writer.flush();
  }

  /** Finish a record whose NAR was written to `sink` (only once it has been verified). */
  async commit(path: string, references: Iterable<string>, deriver: string | undefined | null): Promise<void> {
    this.writer.u64(EXPORT_MAGIC).string(path).strings(sortedSet(references)).string(deriver ?? '').u64(0);
    await this.writer.flush();
  }

  /** End the stream and wait for the import to succeed. */
  async finish(): Promise<void> {
    this.finished = true;
    this.writer.u64(0);
    try {
      await this.writer.end();
    } catch {
      // reported through the exit status below
    }
    const r = await this.child;
    if (r.exitCode !== 0) {
      throw new Error(`importing into the coordinator's store failed (nix-store --import exit ${r.exitCode ?? r.signal}): ${String(r.stderr ?? '').trim() || 'no message'}`);
    }
  }

  /** Abandon the import: nothing whose record was not committed gets registered. */
  async cancel(): Promise<void> {
    if (this.finished && this.child.exitCode !== null) return;
    this.finished = true;
    this.child.kill('SIGKILL');
    await this.child.catch(() => undefined);
  }
}

export interface ReceiveOutputsOptions {
  nixStore?: string;
  /** Paths already valid in the coordinator's store are not copied again. */
  skip?: ReadonlySet<string>;
  /** Hashing product files through the returned reader stops when this aborts. */
  signal?: AbortSignal;
}

export interface ReceiveOutputsResult {
  /** Paths copied, in the order received. */
  copied: string[];
  narBytes: number;
  /** nix-support reader over the outputs: members recorded from the NARs, the local store for the rest. */
  fs: NixSupportFs;
}

/** True for `nix-support/<file>` directly below an output's root. */
function isNixSupportFile(entry: NarEntry): boolean {
  return /^nix-support\/[^/]+$/.test(entry.path);
}

/**
 * Copy `outputs` from the builder into the coordinator's store, dependencies first: DumpStorePath each one,
 * checking its NAR hash and size against the builder's path info before the record is committed to the local
 * import, and recording the NAR's members (with the contents of nix-support files) for collectNixSupport.
 */
export async function receiveOutputs(
  client: ServeClient,
  outputs: readonly string[],
  infos: ReadonlyMap<string, RemotePathInfo>,
  options: ReceiveOutputsOptions = {},
): Promise<ReceiveOutputsResult> {
  const wanted = outputs.filter((p) => !options.skip?.has(p));
  for (const p of wanted) if (!infos.has(p)) throw new Error(`output ${p} is not valid on the builder`);
  const ordered = topoSortPaths(wanted, (p) => infos.get(p)?.references);
  const members = new Map<string, RecordedMember>();
  const copied: string[] = [];
  let narBytes = 0;
  if (ordered.length > 0) {
    const importer = new LocalImport(options.nixStore);
    try {
      for (const path of ordered) {
        const info = infos.get(path)!;
        await importer.begin();
        const got = await client.dumpStorePath(
          path,
          (entry, contents) => {
            const abs = entry.path === '' ? path : `${path}/${entry.path}`;
            const m: RecordedMember = {type: entry.type};
            if (entry.type === 'regular') {
              m.size = entry.size ?? 0;
              if (contents !== undefined) m.contents = contents;
            }
            members.set(abs, m);
          },
          importer.sink,
          {contentsCap: NIX_SUPPORT_MAX_BYTES, wantContents: isNixSupportFile},
        );
        if (info.narHash && !sameHash(got.narHash, info.narHash)) {
          throw new Error(`hash mismatch receiving ${path}: the builder reports ${info.narHash}, the NAR received hashes to ${got.narHash}`);
        }
        if (got.narSize !== info.narSize) {
          throw new Error(`size mismatch receiving ${path}: the builder reports ${info.narSize} bytes, received ${got.narSize}`);
        }
        await importer.commit(path, info.references, info.deriver);
        copied.push(path);
        narBytes += got.narSize;
      }
      await importer.finish();
    } catch (error) {
      await importer.cancel();
      throw error;
    }
  }
  return {copied, narBytes, fs: streamedOutputsFs(members, copied, outputs, options.signal)};
}

/**
 * A NixSupportFs that answers for `streamed` outputs from the recorded members and for the other outputs from
 * the local store. Regular files' size/hash (products) are read from the local store, where the outputs are now.
 */
export function streamedOutputsFs(
  members: ReadonlyMap<string, RecordedMember>,
  streamed: readonly string[],
  allOutputs: readonly string[],
  signal?: AbortSignal,
): NixSupportFs {
  const memory = memberMapFs(members);
  const local = localNixSupportFs(allOutputs, signal);
  const inMemory = (p: string) => streamed.some((o) => p === o || p.startsWith(`${o}/`));
  return {
    typeOf: (p) => (inMemory(p) ? memory.typeOf(p) : local.typeOf(p)),
    fileInfo: async (p) => {
      if (!inMemory(p)) return local.fileInfo(p);
      const e = await memory.fileInfo(p);
      return e.type === 'regular' && e.sha256 === undefined ? local.fileInfo(p) : e;
    },
    readRegular: async (p, maxBytes) => {
      if (!inMemory(p)) return local.readRegular(p, maxBytes);
      const m = members.get(p);
      if (m?.type === 'regular' && m.contents === undefined && (m.size ?? 0) > maxBytes) return {kind: 'too-large', size: m.size ?? 0};
      if (m?.type === 'regular' && m.contents === undefined && (m.size ?? 0) > 0) return local.readRegular(p, maxBytes);
      if (m?.type === 'regular' && m.contents === undefined) return {kind: 'ok', data: Buffer.alloc(0)};
      return memory.readRegular(p, maxBytes);
    },
  };
}
