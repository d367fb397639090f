// The coordinator's store as the step graph sees it while loading builds (GraphStore): derivations, validity and
// FailedPaths look-ups coalesced across concurrent loads, and, when hydra.conf asks for them, substitution
// (`use-substitutes`) and the copy of locally valid outputs to the destination store (`store_uri`), both as Hydra's
// createStep does them (src/hydra-queue-runner/queue-monitor.cc; docs/hydra-compat.md, "Destination store").
import type pg from 'pg';
import {readDrv} from '../nix/drv.js';
import {queryValidPaths} from '../nix/store.js';
import {copyClosureTo, missingPathsIn, substitutePaths, type NixCallOptions} from '../nix/dest-store.js';
import type {RunnerSettings} from '../config/hydra-conf.js';
import * as sql from '../db/runner-sql.js';
import {LookupBatcher} from './batcher.js';
import type {GraphStore} from './graph.js';
import type {SchedulerLog} from './context.js';
import type {SchedulerStats} from './stats.js';

export interface LoadStoreOptions {
  pool: pg.Pool;
  runner: Pick<RunnerSettings, 'useSubstitutes' | 'storeUri'>;
  nix?: Omit<NixCallOptions, 'signal'>;
  log: SchedulerLog;
  /** The substitution counters (status documents, metrics). */
  stats?: Pick<SchedulerStats, 'nrSubstitutesStarted' | 'nrSubstitutesSucceeded' | 'nrSubstitutesFailed'>;
}

class LoadStore {
  /** Store look-ups of concurrent loads are coalesced into few `nix-store` calls and queries. */
  private readonly validity = new LookupBatcher((paths) => queryValidPaths(paths));
  private readonly failed: LookupBatcher;
  /** Output paths being substituted now, and the call fetching them (concurrent loads wait for it). */
  private readonly substituting = new Map<string, Promise<unknown>>();
  /** store_uri: which paths the destination store lacks (concurrent loads share calls), and the copies running now. */
  private readonly destMissing: LookupBatcher;
  private readonly publishing = new Map<string, Promise<unknown>>();

  constructor(private readonly o: LoadStoreOptions) {
    this.failed = new LookupBatcher(async (paths) => new Set(await sql.failedPathsAmong(o.pool, paths)));
    this.destMissing = new LookupBatcher((paths) => missingPathsIn(o.runner.storeUri, paths, o.nix ?? {}));
  }

  validPaths(paths: string[]): Promise<Set<string>> {
    return this.validity.filter(paths);
  }

  async failedPathsAmong(paths: string[]): Promise<string[]> {
    return [...(await this.failed.filter(paths))];
  }

  /** use-substitutes: one `nix-store --realise` per call for the paths no other load is fetching already. */
  async substitute(paths: string[]): Promise<{valid: Set<string>; substituted: Set<string>}> {
    const others = [...new Set(paths.filter((p) => this.substituting.has(p)).map((p) => this.substituting.get(p)!))];
    const candidates = paths.filter((p) => !this.substituting.has(p));
    const already = await queryValidPaths(candidates);
    const mine = candidates.filter((p) => !already.has(p) && !this.substituting.has(p));
    const run = substitutePaths(mine, this.o.nix ?? {});
    for (const p of mine) this.substituting.set(p, run);
    const stats = this.o.stats;
    if (stats) stats.nrSubstitutesStarted += mine.length;
    let message = '';
    try {
      message = (await run).message;
      await Promise.allSettled(others);
    } finally {
      for (const p of mine) this.substituting.delete(p);
    }
    const valid = await queryValidPaths(paths);
    const substituted = new Set(mine.filter((p) => valid.has(p)));
    if (stats) {
      stats.nrSubstitutesSucceeded += substituted.size;
      stats.nrSubstitutesFailed += mine.length - substituted.size;
    }
    if (substituted.size < mine.length) this.o.log('debug', `${mine.length - substituted.size} of ${mine.length} output(s) not substitutable: ${message}`);
    return {valid, substituted};
  }

  /**
   * store_uri at load time (Hydra's createStep): the paths the destination lacks are copied there, signatures
   * checked (CheckSigs, as createStep's copyClosure; the copy after a build does not check them). Concurrent loads
   * wait for a path another load is copying instead of copying it twice, and then look whether it got there.
   */
  async publish(paths: string[]): Promise<{copied: Set<string>; failed: Set<string>}> {
    const uri = this.o.runner.storeUri;
    const nix = this.o.nix ?? {};
    const theirs = paths.filter((p) => this.publishing.has(p));
    const missing = await this.destMissing.filter(paths.filter((p) => !this.publishing.has(p)));
    // Another load may have started copying some of these while the destination was being asked: wait for it too.
    const mine: string[] = [];
    for (const p of missing) (this.publishing.has(p) ? theirs : mine).push(p);
    const others = [...new Set(theirs.map((p) => this.publishing.get(p)).filter((r) => r !== undefined))];
    const waited = theirs.length > 0;
    const copied = new Set<string>();
    const failed = new Set<string>();
    if (mine.length > 0) {
      const run = copyClosureTo(uri, mine, {...nix, checkSigs: true});
      for (const p of mine) this.publishing.set(p, run);
      try {
        await run;
        for (const p of mine) copied.add(p);
      } catch (e) {
        this.o.log('warn', `${(e as Error).message}; their derivations are built instead`);
        for (const p of mine) failed.add(p);
      } finally {
        for (const p of mine) if (this.publishing.get(p) === run) this.publishing.delete(p);
      }
    }
    if (waited) {
      await Promise.allSettled(others);
      for (const p of await this.destMissing.filter(theirs)) failed.add(p);
    }
    return {copied, failed};
  }
}

/** The GraphStore of a scheduler: `substitute` only with use-substitutes, `publish` only with a store_uri. */
export function loadStore(o: LoadStoreOptions): GraphStore {
  const s = new LoadStore(o);
  return {
    readDrv: (p: string) => readDrv(p),
    validPaths: (paths: string[]) => s.validPaths(paths),
    failedPathsAmong: (paths: string[]) => s.failedPathsAmong(paths),
    ...(o.runner.useSubstitutes ? {substitute: (paths: string[]) => s.substitute(paths)} : {}),
    ...(o.runner.storeUri ? {publish: (paths: string[]) => s.publish(paths)} : {}),
  };
}
