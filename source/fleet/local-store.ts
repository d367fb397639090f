// The coordinator's own store as the step executor uses it: the closure and validity of inputs, path infos, NAR
// dumps, the import of received outputs and the closure size. Two ways to reach it:
//  - StoreSessions (the default): a few long-lived `nix-store --serve --write` processes on the local store,
//    spoken to with the serve protocol (QueryClosure, QueryValidPaths, QueryPathInfos, DumpStorePath,
//    ImportPaths — NixOS/nix src/nix-store/nix-store.cc, opServe). One request at a time per process; a step takes
//    a process only for the duration of one request. Hydra's queue runner likewise keeps one connection to its
//    local store (a nix-daemon connection) instead of starting a command per query.
//  - StoreCommands: a `nix-store` command per operation (--query --requisites, --check-validity, --dump-db,
//    --dump, --import, --query --size).
// A session holds temporary roots for what it imported or locked; it is recycled after `maxUses` requests or
// `idleMs` without one, so those roots do not pile up.

import {PassThrough, type Readable} from 'node:stream';
import {dumpLocalPath} from '../nix/nar.js';
import {exportRecords, writeExportEnd, type ImportRecords} from '../nix/export-format.js';
import {ServeClient} from '../nix/serve-client.js';
import {closureNarSize, queryClosure, queryPathInfos, queryValidPaths, storeDir, type PathInfo} from '../nix/store.js';
import {isStorePath} from '../nix/store-path.js';
import {WireWriter} from '../nix/wire.js';
import {execa} from 'execa';
import {startLocalServe, type ServeTransport} from './local-transport.js';

export interface CoordinatorStore {
  /** The closure of `paths`, the paths included (an invalid path is an error). */
  closure(paths: readonly string[]): Promise<string[]>;
  /** The valid ones among `paths` (non-store paths count as invalid). */
  validPaths(paths: readonly string[]): Promise<Set<string>>;
  /** Path infos of the valid ones among `paths`. */
  pathInfos(paths: readonly string[]): Promise<Map<string, PathInfo>>;
  /** A path's NAR. */
  dump(path: string): Readable | AsyncIterable<Buffer>;
  /** Σ NAR size over the closure of `paths`. */
  closureNarSize(paths: readonly string[], signal?: AbortSignal): Promise<number>;
  /**
   * An import of export records written by `body` (ServeClient.importRecords' contract): each record is registered
   * once committed; when `body` throws, the record in progress is dropped and nothing more is imported.
   */
  importRecords<T>(body: (io: ImportRecords) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** A `nix-store` command per operation. */
export class StoreCommands implements CoordinatorStore {
  constructor(private readonly nixStore = 'nix-store') {}
  closure(paths: readonly string[]): Promise<string[]> {
    return queryClosure(paths);
  }
  validPaths(paths: readonly string[]): Promise<Set<string>> {
    return queryValidPaths(paths);
  }
  pathInfos(paths: readonly string[]): Promise<Map<string, PathInfo>> {
    return queryPathInfos(paths);
  }
  dump(path: string): AsyncIterable<Buffer> {
    return dumpLocalPath(path, {nixStore: this.nixStore});
  }
  closureNarSize(paths: readonly string[], signal?: AbortSignal): Promise<number> {
    return closureNarSize(paths, {nixStore: this.nixStore, ...(signal ? {signal} : {})});
  }
  async importRecords<T>(body: (io: ImportRecords) => Promise<T>): Promise<T> {
    const child = execa(this.nixStore, ['--import'], {stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', encoding: 'utf8', reject: false, cleanup: true});
    child.catch(() => undefined);
    child.stdin!.on('error', () => undefined);
    const w = new WireWriter(child.stdin!, {label: 'local nix-store --import'});
    let value: T;
    try {
      value = await body(exportRecords(w, child.stdin!));
    } catch (error) {
      child.kill('SIGKILL');
      await child.catch(() => undefined);
      throw error;
    }
    writeExportEnd(w);
    await w.end().catch(() => undefined);
    const r = await child;
    if (r.exitCode !== 0) {
      throw new Error(`importing into the coordinator's store failed (nix-store --import exit ${r.exitCode ?? r.signal}): ${String(r.stderr ?? '').trim() || 'no message'}`);
    }
    return value;
  }
  async close(): Promise<void> {}
}

interface Session {
  transport: ServeTransport;
  client: ServeClient;
  uses: number;
  idleTimer?: NodeJS.Timeout;
}

export interface StoreSessionsOptions {
  nixStore?: string;
  /** Processes at most (default 4); a request waits for a free one beyond that. */
  max?: number;
  /** Requests per process before it is replaced (default 1000). */
  maxUses?: number;
  /** An idle process exits after this long (default 30 s). */
  idleMs?: number;
}

/** Paths per request: bounds one message (as the command-line chunks do). */
const CHUNK = 2000;

/** Long-lived `nix-store --serve --write` processes on the coordinator's store. */
export class StoreSessions implements CoordinatorStore {
  private readonly idle: Session[] = [];
  private readonly waiters: ((s: Session | null) => void)[] = [];
  private live = 0;
  private closed = false;
  private readonly o: Required<StoreSessionsOptions>;
  /** Processes started so far (for tests and statistics). */
  started = 0;

  constructor(options: StoreSessionsOptions = {}) {
    this.o = {nixStore: options.nixStore ?? 'nix-store', max: options.max ?? 4, maxUses: options.maxUses ?? 1000, idleMs: options.idleMs ?? 30_000};
  }

  private async open(): Promise<Session> {
    this.started++;
    const transport = startLocalServe({nixStore: this.o.nixStore});
    const client = new ServeClient(transport, {label: "the coordinator's store (nix-store --serve)"});
    const s: Session = {transport, client, uses: 0};
    try {
      await client.handshake();
    } catch (error) {
      await transport.kill(1000);
      throw error;
    }
    return s;
  }

  private async acquire(): Promise<Session> {
    if (this.closed) throw new Error("the coordinator's store sessions are closed");
    const s = this.idle.pop();
    if (s) {
      clearTimeout(s.idleTimer);
      return s;
    }
    if (this.live < this.o.max) {
      this.live++;
      try {
        return await this.open();
      } catch (error) {
        this.live--;
        this.handOn();
        throw error;
      }
    }
    const got = await new Promise<Session | null>((resolve) => this.waiters.push(resolve));
    return got ?? this.acquire();
  }

  /** A freed place (not a session): the first waiter opens its own. */
  private handOn(): void {
    this.waiters.shift()?.(null);
  }

  private release(s: Session, healthy: boolean): void {
    s.uses++;
    if (!healthy || this.closed || s.uses >= this.o.maxUses) {
      this.live--;
      void (healthy ? s.client.close().then(() => s.transport.exited) : s.transport.kill(1000));
      this.handOn();
      return;
    }
    const w = this.waiters.shift();
    if (w) return w(s);
    s.idleTimer = setTimeout(() => {
      const i = this.idle.indexOf(s);
      if (i >= 0) this.idle.splice(i, 1);
      this.live--;
      void s.client.close();
      this.handOn();
    }, this.o.idleMs);
    s.idleTimer.unref();
    this.idle.push(s);
  }

  /** Runs `fn` on a session of its own; a failure retires that session. */
  private async with<T>(fn: (client: ServeClient) => Promise<T>): Promise<T> {
    const s = await this.acquire();
    let healthy = false;
    try {
      const v = await fn(s.client);
      healthy = true;
      return v;
    } finally {
      this.release(s, healthy);
    }
  }

  async closure(paths: readonly string[]): Promise<string[]> {
    const all = [...new Set(paths)];
    if (all.length === 0) return [];
    const res = new Set<string>();
    for (let i = 0; i < all.length; i += CHUNK) for (const p of await this.with((c) => c.queryClosure(all.slice(i, i + CHUNK)))) res.add(p);
    return [...res];
  }

  async validPaths(paths: readonly string[]): Promise<Set<string>> {
    const dir = storeDir();
    const candidates = [...new Set(paths)].filter((p) => isStorePath(p, dir));
    const valid = new Set<string>();
    for (let i = 0; i < candidates.length; i += CHUNK) for (const p of await this.with((c) => c.queryValidPaths(candidates.slice(i, i + CHUNK)))) valid.add(p);
    return valid;
  }

  async pathInfos(paths: readonly string[]): Promise<Map<string, PathInfo>> {
    const dir = storeDir();
    const candidates = [...new Set(paths)].filter((p) => isStorePath(p, dir));
    const res = new Map<string, PathInfo>();
    for (let i = 0; i < candidates.length; i += CHUNK) {
      const got = await this.with((c) => c.queryPathInfos(candidates.slice(i, i + CHUNK)));
      for (const [p, info] of got) {
        res.set(p, {narHash: info.narHash, narSize: info.narSize, references: [...info.references].sort(), deriver: info.deriver ?? null});
      }
    }
    return res;
  }

  dump(path: string): Readable {
    const out = new PassThrough({highWaterMark: 1 << 20});
    this.with((c) => c.dumpStorePath(path, undefined, out)).then(
      () => out.end(),
      (e: unknown) => out.destroy(e instanceof Error ? e : new Error(String(e))),
    );
    return out;
  }

  async closureNarSize(paths: readonly string[], signal?: AbortSignal): Promise<number> {
    signal?.throwIfAborted();
    const closure = await this.closure(paths);
    signal?.throwIfAborted();
    const infos = await this.pathInfos(closure);
    let total = 0;
    for (const p of closure) {
      const info = infos.get(p);
      if (!info) throw new Error(`${p} is no longer valid in the coordinator's store`);
      total += info.narSize;
    }
    return total;
  }

  importRecords<T>(body: (io: ImportRecords) => Promise<T>): Promise<T> {
    return this.with((c) => c.importRecords(body));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w(null);
    const all = this.idle.splice(0);
    this.live -= all.length;
    await Promise.all(
      all.map(async (s) => {
        clearTimeout(s.idleTimer);
        await s.client.close();
        await s.transport.kill(1000);
      }),
    );
  }
}
