// The store the queue runner's step graph reads through (graph.ts GraphStore): .drv files, valid outputs, FailedPaths
// and, with `use-substitutes`, substitution. Look-ups of concurrent loads are coalesced into few `nix-store` calls
// and queries (batcher.ts), and a path another load is substituting is waited for, not fetched twice.

import type pg from 'pg';
import {readDrv} from '../nix/drv.js';
import {queryValidPaths} from '../nix/store.js';
import {substitutePaths, type NixCallOptions} from '../nix/dest-store.js';
import {failedPathsAmong} from '../db/runner-sql.js';
import {LookupBatcher} from './batcher.js';
import type {GraphStore} from './graph.js';
import type {SchedulerLog} from './context.js';

export interface RunnerStoreOptions {
  pool: pg.Pool;
  /** use-substitutes: fetch missing outputs before building them. */
  useSubstitutes: boolean;
  nix?: Omit<NixCallOptions, 'signal'>;
  log: SchedulerLog;
}

export function runnerGraphStore(o: RunnerStoreOptions): GraphStore {
  const validity = new LookupBatcher((paths) => queryValidPaths(paths));
  const failed = new LookupBatcher(async (paths) => new Set(await failedPathsAmong(o.pool, paths)));
  return {
    readDrv: (p: string) => readDrv(p),
    validPaths: (paths: string[]) => validity.filter(paths),
    failedPathsAmong: async (paths: string[]) => [...(await failed.filter(paths))],
    ...(o.useSubstitutes ? {substitute: substituter(o)} : {}),
  };
}

/** use-substitutes: one `nix-store --realise` per call for the paths no other load is fetching already. */
function substituter(o: RunnerStoreOptions): NonNullable<GraphStore['substitute']> {
  /** Output paths being substituted now, and the call fetching them (concurrent loads wait for it). */
  const substituting = new Map<string, Promise<unknown>>();
  return async (paths) => {
    const others = [...new Set(paths.filter((p) => substituting.has(p)).map((p) => substituting.get(p)!))];
    const candidates = paths.filter((p) => !substituting.has(p));
    const already = await queryValidPaths(candidates);
    const mine = candidates.filter((p) => !already.has(p) && !substituting.has(p));
    const run = substitutePaths(mine, o.nix ?? {});
    for (const p of mine) substituting.set(p, run);
    let message = '';
    try {
      message = (await run).message;
      await Promise.allSettled(others);
    } finally {
      for (const p of mine) substituting.delete(p);
    }
    const valid = await queryValidPaths(paths);
    const substituted = new Set(mine.filter((p) => valid.has(p)));
    if (substituted.size < mine.length) o.log('debug', `${mine.length - substituted.size} of ${mine.length} output(s) not substitutable: ${message}`);
    return {valid, substituted};
  };
}
