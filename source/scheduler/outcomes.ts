// What a finished step or a cached result means for the builds that wait on it (Hydra's State::markSucceededBuild,
// failStep and the cached paths of createBuild, src/hydra-queue-runner/{builder.cc,queue-monitor.cc}): the rows to
// write, in one transaction each, and the builds that finished. The `record*` functions only talk to the database
// and return what finished; the `Outcomes` class applies that to the graph and the counters.
import type pg from 'pg';
import {readDrv, outputPathMap} from '../nix/drv.js';
import {queryPathInfos, queryClosure, addGcRoot} from '../nix/store.js';
import {collectNixSupport, localNixSupportFs} from '../nix/nix-support.js';
import type {StepResult} from '../fleet/step-api.js';
import * as sql from '../db/runner-sql.js';
import {STATUS, nowSeconds} from '../db/runner-sql.js';
import {withTransaction} from '../db/transaction.js';
import {dependentBuilds, type Build, type Step} from './model.js';
import type {LoadResult} from './graph.js';
import type {FinishedBuild, SchedulerContext, SchedulerLog} from './context.js';

export interface FailureFacts {
  status: number;
  errorMsg: string | null;
  startTime: number;
  stopTime: number;
  machine: string;
  cacheFailure: boolean;
}

/** The status a dependent build gets from a failed step: its own failure when it is the build's top level. */
function failedBuildStatus(stepStatus: number, isTop: boolean): number {
  const status = stepStatus === STATUS.cachedFailure ? STATUS.failed : stepStatus;
  return status === STATUS.failed && !isTop ? STATUS.depFailed : status;
}

export async function addGcRoots(dir: string | null | undefined, paths: readonly string[], log: SchedulerLog): Promise<void> {
  if (!dir) return;
  for (const p of paths) await addGcRoot(dir, p).catch((e) => log('warn', `cannot create GC root for ${p}: ${(e as Error).message}`));
}

/** Size, closure size, products and metrics recomputed from the local store (a cached build with no earlier row). */
async function describeLocalOutputs(outputs: Map<string, string>, now: number): Promise<sql.SuccessInfo> {
  const paths = [...outputs.values()];
  const infos = await queryPathInfos(paths);
  const closure = await queryClosure(paths).catch(() => paths);
  const closureInfos = await queryPathInfos(closure);
  const support = await collectNixSupport(
    [...outputs].map(([name, path]) => ({name, path})),
    localNixSupportFs(paths),
  );
  return {
    failed: support.failed,
    startTime: now,
    stopTime: now,
    size: paths.reduce((s, p) => s + (infos.get(p)?.narSize ?? 0), 0),
    closureSize: [...closureInfos.values()].reduce((s, i) => s + i.narSize, 0),
    releaseName: support.releaseName,
    isCachedBuild: true,
    outputs,
    products: support.products,
    metrics: [...support.metrics.values()],
  };
}

/** A queued build whose outputs are all valid already: finished as a cached success, with an earlier row's facts. */
export async function recordCachedSuccess(
  pool: pg.Pool,
  build: Build,
  gcRootsDir: string | null | undefined,
  log: SchedulerLog,
): Promise<FinishedBuild[]> {
  const drv = await readDrv(build.drvPath);
  const outputs = new Map([...outputPathMap(drv)].filter((e): e is [string, string] => e[1] !== null));
  // With store_uri the load has put the outputs in the destination store already (StepGraph.publishValid).
  const now = nowSeconds();
  const first = [...outputs.values()][0];
  const earlier = first ? await sql.earlierSuccess(pool, first) : null;
  const info: sql.SuccessInfo = earlier
    ? {
        failed: earlier.buildstatus === STATUS.failedWithOutput,
        startTime: now,
        stopTime: now,
        size: earlier.size,
        closureSize: earlier.closuresize,
        releaseName: earlier.releasename,
        isCachedBuild: true,
        outputs,
        products: earlier.products,
        metrics: earlier.metrics,
      }
    : await describeLocalOutputs(outputs, now);
  const done = await withTransaction(pool, async (c) => {
    const ok = await sql.markSucceededBuild(c, build.id, info);
    if (ok) await sql.notifyBuildFinished(c, build.id);
    return ok;
  });
  await addGcRoots(gcRootsDir, [...outputs.values()], log);
  return done ? [{id: build.id, status: info.failed ? STATUS.failedWithOutput : STATUS.success, kind: 'succeeded'}] : [];
}

/** A queued build one of whose outputs is a cached failure (FailedPaths): finished with a status-8 step row. */
export async function recordCachedFailure(pool: pg.Pool, build: Build, r: Extract<LoadResult, {kind: 'cached-failure'}>): Promise<FinishedBuild[]> {
  const now = nowSeconds();
  const status = r.toplevel ? STATUS.failed : STATUS.depFailed;
  const done = await withTransaction(pool, async (c) => {
    const propagatedFrom = await sql.originalFailure(c, r.drvPath, r.outputs);
    await sql.insertBuildStep(c, {
      build: build.id,
      type: 0,
      drvPath: r.drvPath,
      busy: 0,
      startTime: null,
      stopTime: null,
      system: r.system,
      status: STATUS.cachedFailure,
      propagatedFrom,
      machine: '',
      outputs: r.outputs,
    });
    const ok = await sql.failBuild(c, {id: build.id, status, startTime: now, stopTime: now, isCachedBuild: true});
    if (ok) await sql.notifyBuildFinished(c, build.id);
    return ok;
  });
  return done ? [{id: build.id, status, kind: 'failed'}] : [];
}

/**
 * A successful step: its row finished (when `finish` is given) and `builds`, whose top level it is, marked succeeded.
 * Outcomes.succeed calls it again for builds that attached to the step while an earlier call was writing.
 */
export async function recordStepSuccess(
  pool: pg.Pool,
  accounting: Build,
  builds: readonly Build[],
  finish: sql.FinishStepInput,
  result: StepResult,
  opts: {finishStepRow: boolean} = {finishStepRow: true},
): Promise<FinishedBuild[]> {
  const outputs = new Map([...result.outputs].map(([n, o]) => [n, o.path] as const));
  const finished: FinishedBuild[] = [];
  await withTransaction(pool, async (c) => {
    if (opts.finishStepRow) await sql.finishBuildStep(c, {...finish, outputs});
    for (const b of [...builds].sort((x, y) => x.id - y.id)) {
      const ok = await sql.markSucceededBuild(c, b.id, {
        failed: result.failedMarker,
        startTime: finish.startTime,
        stopTime: finish.stopTime,
        size: result.size,
        closureSize: result.closureSize,
        releaseName: result.releaseName,
        isCachedBuild: b !== accounting || result.isCached,
        outputs,
        products: result.products,
        metrics: result.metrics,
      });
      if (ok) {
        await sql.notifyBuildFinished(c, b.id);
        finished.push({id: b.id, status: result.failedMarker ? STATUS.failedWithOutput : STATUS.success, kind: 'succeeded'});
      }
    }
  });
  return finished;
}

/**
 * A failed step: its row finished (when there is one), every dependent build failed with a propagated step row
 * (the accounting build gets none: its real row is `finish`), FailedPaths when the failure is cacheable, and one
 * `build_finished` notification for all of them.
 */
export async function recordStepFailure(
  pool: pg.Pool,
  step: Step,
  accounting: Build,
  dependents: readonly Build[],
  finish: sql.FinishStepInput | null,
  f: FailureFacts,
): Promise<FinishedBuild[]> {
  const failed: FinishedBuild[] = [];
  await withTransaction(pool, async (c) => {
    if (finish) await sql.finishBuildStep(c, finish);
    for (const b of dependents) {
      if (await sql.isBuildFinished(c, b.id)) continue;
      const isTop = b.toplevel === step;
      const skip =
        (f.status === STATUS.cachedFailure && isTop) ||
        (f.status !== STATUS.cachedFailure && f.status !== STATUS.unsupported && b === accounting);
      if (!skip) {
        await sql.insertBuildStep(c, {
          build: b.id,
          type: 0,
          drvPath: step.drvPath,
          busy: 0,
          startTime: null,
          stopTime: null,
          system: step.platform,
          status: f.status,
          errorMsg: f.status === STATUS.aborted || f.status === STATUS.unsupported ? f.errorMsg : null,
          propagatedFrom: b === accounting ? null : accounting.id,
          machine: f.machine,
          outputs: step.outputs,
        });
      }
      const status = failedBuildStatus(f.status, isTop);
      if (await sql.failBuild(c, {id: b.id, status, startTime: f.startTime, stopTime: f.stopTime, isCachedBuild: f.status === STATUS.cachedFailure})) {
        failed.push({id: b.id, status, kind: 'failed'});
      }
    }
    if (f.cacheFailure && f.status !== STATUS.cachedFailure) {
      await sql.insertFailedPaths(c, [...step.outputs.values()].filter((p): p is string => p !== null));
    }
    if (failed.length > 0) {
      const ids = failed.map((x) => x.id);
      const head = ids.includes(accounting.id) ? accounting.id : ids[0]!;
      await sql.notifyBuildFinished(c, head, ids.filter((id) => id !== head));
    }
  });
  return failed;
}

/** Applies outcomes to the scheduler's graph and counters. */
export class Outcomes {
  constructor(private readonly ctx: SchedulerContext) {}

  async cachedSuccess(build: Build): Promise<void> {
    const finished = await recordCachedSuccess(this.ctx.pool, build, this.ctx.options.runner.gcRootsDir, this.ctx.log);
    this.ctx.buildsFinished(finished);
    if (finished.length === 0) this.ctx.buildOneSettled(build.id, true);
  }

  async cachedFailure(build: Build, r: Extract<LoadResult, {kind: 'cached-failure'}>): Promise<void> {
    const finished = await recordCachedFailure(this.ctx.pool, build, r);
    this.ctx.buildsFinished(finished);
    if (finished.length === 0) this.ctx.buildOneSettled(build.id, false);
  }

  /**
   * Success bookkeeping: GC roots, rows, then the graph releases what waited on the step. A build the queue monitor
   * attached to the step while the rows were being written is written too, in a further round, until a round finds
   * none new (Hydra's markSucceededBuild loop in builder.cc); the graph is updated with no wait after that check.
   */
  async succeed(step: Step, accounting: Build, finish: sql.FinishStepInput, result: StepResult): Promise<void> {
    await addGcRoots(this.ctx.options.runner.gcRootsDir, [...result.outputs.values()].map((o) => o.path), this.ctx.log);
    const written = new Set<Build>();
    const finished: FinishedBuild[] = [];
    for (let round = 0; ; round++) {
      const pending = [...step.builds].filter((b) => !written.has(b));
      if (round > 0 && pending.length === 0) break;
      for (const b of pending) written.add(b);
      finished.push(...(await recordStepSuccess(this.ctx.pool, accounting, pending, finish, result, {finishStepRow: round === 0})));
    }
    this.ctx.stats.nrStepsDone++;
    const woken = this.ctx.graph.completeStep(step);
    this.ctx.graph.dropBuilds([...written].map((b) => b.id));
    this.ctx.buildsFinished(finished);
    if (woken.length > 0) this.ctx.requestDispatch();
  }

  /**
   * Failure propagation. `finish` is the real step row to finalise (null for 8/9 without one). Builds that came to
   * depend on the step while the rows were being written fail in further rounds, until a round finds none new
   * (Hydra's failStep loop in builder.cc): none stays attached to a step that will never run again.
   */
  async fail(step: Step, accounting: Build, finish: sql.FinishStepInput | null, f: FailureFacts): Promise<void> {
    const handled = new Set<Build>();
    const failed: FinishedBuild[] = [];
    for (let round = 0; ; round++) {
      const dependents = [...dependentBuilds(step)].filter((b) => !handled.has(b)).sort((a, b) => a.id - b.id);
      if (round > 0 && dependents.length === 0) break;
      for (const b of dependents) handled.add(b);
      // FailedPaths and the real step row are written once, in the first round.
      const facts = round === 0 ? f : {...f, cacheFailure: false};
      failed.push(...(await recordStepFailure(this.ctx.pool, step, accounting, dependents, round === 0 ? finish : null, facts)));
    }
    step.running = false;
    this.ctx.graph.runnable.delete(step);
    this.ctx.graph.dropBuilds([...handled].map((b) => b.id));
    this.ctx.buildsFinished(failed);
  }

  /** No machine can ever take this step: its builds fail with status 9 (Hydra's max_unsupported_time). */
  failUnsupported(step: Step, reason: string): void {
    const dependents = [...dependentBuilds(step)].sort((a, b) => a.id - b.id);
    this.ctx.graph.runnable.delete(step);
    if (dependents.length === 0) return;
    step.running = true; // keep the dispatcher off it while we write
    this.ctx.stats.nrUnsupportedStepsAborted++;
    this.ctx.log('warn', `step ${step.drvPath} is unsupported: ${reason}`);
    const accounting = dependents.find((b) => b.toplevel === step) ?? dependents[0]!;
    const now = nowSeconds();
    this.ctx.track(
      this.fail(step, accounting, null, {status: STATUS.unsupported, errorMsg: reason, startTime: now, stopTime: now, machine: '', cacheFailure: false}).catch((e) =>
        this.ctx.log('error', `could not fail unsupported step ${step.drvPath}: ${(e as Error).message}`),
      ),
    );
  }
}
