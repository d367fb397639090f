// Queueing existing store derivations directly, without an evaluation: one Builds row per .drv (finished 0, job =
// the derivation's name, priority 100, maxsilent 7200, timeout 36000, isCurrent 0 — it belongs to no eval) with its
// BuildOutputs, then NOTIFY build_queued per build and builds_added, all in one transaction.
// A derivation that already has a queued (unfinished) build in the same jobset is not queued twice.
// Every path is read and checked before anything is written.
import {stat} from 'node:fs/promises';
import type pg from 'pg';
import {DrvParseError, outputPathMap, readDrv, type Derivation} from '../nix/drv.js';
import {isStorePath, storePathName} from '../nix/store-path.js';
import {inTransaction} from './jobsets.js';
import {JobsetError} from './jobset-errors.js';

type Db = pg.Pool | pg.ClientBase;

export interface EnqueueOptions {
  project: string;
  jobset: string;
  drvPaths: readonly string[];
  /** Job name for every derivation (default: each derivation's name). */
  job?: string;
  /** Builds.priority (default 100). */
  priority?: number;
}

export interface EnqueuedBuild {
  drvPath: string;
  id: number;
  job: string;
  /** false: an unfinished build of this derivation already existed in the jobset (its id is reported). */
  isNew: boolean;
}

export async function enqueueDerivations(db: Db, o: EnqueueOptions): Promise<EnqueuedBuild[]> {
  if (o.drvPaths.length === 0) throw new JobsetError('usage', 'no derivation given');
  const parsed: Array<{path: string; drv: Derivation}> = [];
  for (const path of new Set(o.drvPaths)) {
    if (!path.endsWith('.drv') || !isStorePath(path)) {
      throw new JobsetError('usage', `'${path}' is not a store derivation path (/nix/store/<hash>-<name>.drv)`);
    }
    try {
      await stat(path);
    } catch {
      throw new JobsetError('not-found', `derivation '${path}' does not exist in the store`);
    }
    try {
      parsed.push({path, drv: await readDrv(path)});
    } catch (e) {
      if (e instanceof DrvParseError) throw new JobsetError('failed', e.message);
      throw new JobsetError('failed', `cannot read '${path}': ${(e as Error).message}`);
    }
  }
  const priority = o.priority ?? 100;

  return inTransaction(db, async (c) => {
    const js = await c.query<{id: number}>('SELECT id FROM jobsets WHERE project = $1 AND name = $2', [o.project, o.jobset]);
    const jobsetId = js.rows[0]?.id;
    if (jobsetId === undefined) throw new JobsetError('not-found', `jobset '${o.project}/${o.jobset}' does not exist`);
    const t = Math.floor(Date.now() / 1000);
    const result: EnqueuedBuild[] = [];
    const notify: Array<[string, string]> = [];
    for (const {path, drv} of parsed) {
      const name = drv.env.get('name') ?? storePathName(path).replace(/\.drv$/, '');
      const job = o.job ?? name;
      const existing = await c.query<{id: number}>(
        'SELECT id FROM builds WHERE jobset_id = $1 AND drvpath = $2 AND finished = 0 ORDER BY id LIMIT 1',
        [jobsetId, path],
      );
      if (existing.rows[0]) {
        result.push({drvPath: path, id: existing.rows[0].id, job, isNew: false});
        continue;
      }
      const r = await c.query<{id: number}>(
        `INSERT INTO builds (finished, timestamp, jobset_id, job, nixname, drvpath, system, maxsilent, timeout,
           ischannel, iscurrent, priority, globalpriority)
         VALUES (0, $1, $2, $3, $4, $5, $6, 7200, 36000, 0, 0, $7, 0) RETURNING id`,
        [t, jobsetId, job, name, path, drv.platform, priority],
      );
      const id = r.rows[0]!.id;
      for (const [out, outPath] of outputPathMap(drv)) {
        await c.query('INSERT INTO buildoutputs (build, name, path) VALUES ($1, $2, $3)', [id, out, outPath]);
      }
      notify.push(['build_queued', String(id)]);
      result.push({drvPath: path, id, job, isNew: true});
    }
    const fresh = result.filter((b) => b.isNew).map((b) => b.id);
    if (fresh.length > 0) notify.push(['builds_added', String(Math.min(...fresh))]);
    for (const [channel, payload] of notify) await c.query('SELECT pg_notify($1, $2)', [channel, payload]);
    return result;
  });
}
