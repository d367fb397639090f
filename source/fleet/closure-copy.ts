// Copying store paths between the coordinator's store and a builder over the serve protocol:
// the input closure out (QueryValidPaths + ImportPaths, dependencies first, NARs streamed from
// `nix-store --dump`) and the outputs back (DumpStorePath, each NAR verified against the builder's
// narHash and streamed into the coordinator's store, with nix-support files kept in memory). The coordinator's store
// is reached through a CoordinatorStore (local-store.ts).

import {sameHash, type NarEntry} from '../nix/nar.js';
import {
  localNixSupportFs,
  memberMapFs,
  NIX_SUPPORT_MAX_BYTES,
  type NixSupportFs,
  type RecordedMember,
} from '../nix/nix-support.js';
import type {ImportEntry, PathInfo as RemotePathInfo, ServeClient} from '../nix/serve-client.js';
import {topoSortPaths} from '../nix/store.js';
import {StoreCommands, type CoordinatorStore} from './local-store.js';

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
  /** The coordinator's store (default: a nix-store command per operation). */
  store?: CoordinatorStore;
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
  const store = options.store ?? new StoreCommands(options.nixStore);
  const closure = await store.closure([...paths]);
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
    const infos = await store.pathInfos(missing);
    for (const p of missing) {
      if (!infos.has(p)) throw new Error(`input ${p} is no longer valid in the coordinator's store`);
    }
    const ordered = topoSortPaths(missing, (p) => infos.get(p)?.references);
    const entries = function* (): Generator<ImportEntry> {
      for (const path of ordered) {
        const info = infos.get(path)!;
        yield {path, references: info.references, deriver: info.deriver, nar: () => store.dump(path)};
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

export interface ReceiveOutputsOptions {
  nixStore?: string;
  /** The coordinator's store the outputs are imported into (default: `nix-store --import`). */
  store?: CoordinatorStore;
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
    const store = options.store ?? new StoreCommands(options.nixStore);
    await store.importRecords(async (importer) => {
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
    });
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
