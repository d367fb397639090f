// The queue monitor (Hydra's src/hydra-queue-runner/queue-monitor.cc): reads queued builds into the step graph —
// incrementally, newest-priority first, in chunks with a time budget — reacts to the queue's NOTIFY channels, and
// applies cancellations, deletions, bumps and share changes.
import {Build, DAY, Jobset, propagatePriorities} from './model.js';
import type {LoadOutcome} from './graph.js';
import * as sql from '../db/runner-sql.js';
import {STATUS, nowSeconds} from '../db/runner-sql.js';
import {withTransaction} from '../db/transaction.js';
import {Coalesced} from './coalesce.js';
import type {SchedulerContext} from './context.js';
import type {Outcomes} from './outcomes.js';

export class QueueMonitor {
  private readonly scan: Coalesced;
  private readonly changes: Coalesced;
  private readonly loadFailures = new Map<number, number>();
  private readonly jobsetLoads = new Map<number, Promise<Jobset>>();
  private readonly loading = new Set<number>();
  private lastScanEnd = 0;

  constructor(
    private readonly ctx: SchedulerContext,
    private readonly outcomes: Outcomes,
  ) {
    const stopped = () => ctx.isStopping();
    this.scan = new Coalesced(async () => {
      try {
        if (!(await this.scanQueue())) this.scan.request();
      } catch (e) {
        ctx.log('error', `queue scan failed: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 2000));
        this.scan.request();
      }
    }, stopped);
    this.changes = new Coalesced(async () => {
      try {
        await this.processQueueChange();
      } catch (e) {
        ctx.log('error', `processing a queue change failed: ${(e as Error).message}`);
      }
    }, stopped);
  }

  /** The scan in progress, if any. */
  get scanning(): Promise<void> | null {
    return this.scan.running;
  }

  requestScan(): void {
    this.scan.request();
  }

  requestChangeCheck(): void {
    this.changes.request();
  }

  onNotification(channel: string): void {
    this.ctx.stats.nrQueueWakeups++;
    switch (channel) {
      case 'builds_added':
      case 'builds_restarted':
        this.requestScan();
        break;
      case 'builds_cancelled':
      case 'builds_deleted':
      case 'builds_bumped':
        this.requestChangeCheck();
        break;
      case 'jobset_shares_changed':
        void this.reloadShares();
        break;
    }
  }

  /** getQueuedBuilds, incremental: only builds not yet in memory are read. Returns false on early exit. */
  private async scanQueue(): Promise<boolean> {
    const {ctx} = this;
    const stats = ctx.stats;
    const began = Date.now();
    if (this.lastScanEnd) stats.monitorTimeSpentWaitingUs += (began - this.lastScanEnd) * 1000;
    stats.queueChecksStarted++;
    const ids = await sql.queuedBuildIds(ctx.pool);
    let fresh = ids.filter((r) => !ctx.graph.builds.has(r.id));
    if (ctx.options.buildOne !== undefined) fresh = fresh.filter((r) => r.id === ctx.options.buildOne);
    const retryAfter = Date.now() - (ctx.options.loadRetryMs ?? 30_000);
    fresh = fresh.filter((r) => (this.loadFailures.get(r.id) ?? 0) < retryAfter);
    fresh.sort((a, b) => b.globalpriority - a.globalpriority || a.id - b.id);
    stats.ingestTotal = ids.length;
    stats.ingestDone = ids.length - fresh.length;
    const pending = fresh.map((r) => r.id);
    const byDrv = new Map<string, number[]>();
    const chunk = 500;
    const concurrency = ctx.options.loadConcurrency ?? 128;
    const scanBudgetMs = ctx.options.scanBudgetMs ?? 60_000;
    for (let i = 0; i < pending.length; i += chunk) {
      if (ctx.isStopping()) return true;
      const rows = await sql.queuedBuildRows(ctx.pool, pending.slice(i, i + chunk));
      const batch = new Map(rows.map((r) => [r.id, r]));
      for (const r of rows) byDrv.set(r.drvpath, [...(byDrv.get(r.drvpath) ?? []), r.id]);
      let next = 0;
      const worker = async () => {
        while (next < rows.length && !ctx.isStopping()) {
          const row = rows[next++]!;
          await this.loadBuild(row, batch, byDrv);
          stats.ingestDone++;
        }
      };
      await Promise.all(Array.from({length: Math.min(concurrency, rows.length)}, worker));
      if (Date.now() - began > scanBudgetMs) {
        stats.queueChecksEarlyExits++;
        this.lastScanEnd = Date.now();
        stats.monitorTimeSpentRunningUs += (this.lastScanEnd - began) * 1000;
        return false;
      }
    }
    stats.queueChecksFinished++;
    this.lastScanEnd = Date.now();
    stats.monitorTimeSpentRunningUs += (this.lastScanEnd - began) * 1000;
    return true;
  }

  /** The jobset object of a build (created once, even when several loads ask at the same time). */
  private jobsetFor(row: sql.QueuedBuildRow): Promise<Jobset> {
    const known = this.ctx.graph.jobsets.get(row.jobset_id);
    if (known) return Promise.resolve(known);
    let p = this.jobsetLoads.get(row.jobset_id);
    if (!p) {
      p = (async () => {
        const j = new Jobset(row.jobset_id, row.project, row.jobset, row.schedulingshares);
        const now = nowSeconds();
        let key = -1;
        for (const h of await sql.jobsetStepHistory(this.ctx.pool, row.jobset_id, now - DAY)) {
          if (h.starttime >= now - DAY) j.charge(key--, h.starttime, Math.max(0, h.stoptime - h.starttime));
        }
        this.ctx.graph.jobsets.set(row.jobset_id, j);
        return j;
      })().finally(() => this.jobsetLoads.delete(row.jobset_id));
      this.jobsetLoads.set(row.jobset_id, p);
    }
    return p;
  }

  /** createBuild: one queued build into the graph (or finished at once when its result is cached). */
  private async loadBuild(row: sql.QueuedBuildRow, batch: Map<number, sql.QueuedBuildRow>, byDrv: Map<string, number[]>): Promise<void> {
    if (this.ctx.graph.builds.has(row.id) || this.loading.has(row.id)) return;
    this.loading.add(row.id);
    try {
      await this.loadBuildNow(row, batch, byDrv);
    } finally {
      this.loading.delete(row.id);
    }
  }

  private async loadBuildNow(row: sql.QueuedBuildRow, batch: Map<number, sql.QueuedBuildRow>, byDrv: Map<string, number[]>): Promise<void> {
    const {ctx} = this;
    const t0 = Date.now();
    const jobset = await this.jobsetFor(row);
    const build = new Build(row.id, jobset, row.job, row.drvpath, row.maxsilent ?? 3600, row.timeout ?? 36000, row.timestamp, row.globalpriority, row.priority);
    let result: LoadOutcome;
    try {
      result = await ctx.graph.addBuild(build, ctx.store);
    } catch (e) {
      this.loadFailures.set(row.id, Date.now());
      ctx.log('error', `cannot load build ${row.id} (trying again later): ${(e as Error).message}`);
      // No notification may come: scan again once the build may be retried.
      setTimeout(() => this.requestScan(), (ctx.options.loadRetryMs ?? 30_000) + 10).unref();
      return;
    }
    if (result.substituted.length > 0) {
      try {
        await this.recordSubstitutions(build.id, result);
      } catch (e) {
        this.loadFailures.set(row.id, Date.now());
        ctx.log('error', `cannot record the substitutions of build ${row.id}: ${(e as Error).message}`);
        ctx.graph.dropBuilds([row.id]);
        return;
      }
    }
    ctx.stats.nrBuildsRead++;
    ctx.stats.queueBuildLoads++;
    ctx.stats.buildReadTimeMs += Date.now() - t0;
    switch (result.kind) {
      case 'missing-drv': {
        ctx.log('warn', `build ${row.id}: derivation ${result.drvPath} is missing (${result.message}); aborting it`);
        const aborted = await sql.abortBuildMissingDrv(ctx.pool, row.id);
        if (aborted) ctx.stats.nrBuildsDone++;
        ctx.emitEvent('build-finished', {build: row.id, status: STATUS.aborted});
        return;
      }
      case 'cached-success':
        try {
          await this.outcomes.cachedSuccess(build);
        } catch (e) {
          // The build stays queued and is tried again later.
          this.loadFailures.set(row.id, Date.now());
          ctx.log('error', `build ${row.id}: cannot record its cached success: ${(e as Error).message}`);
        }
        return;
      case 'cached-failure':
        await this.outcomes.cachedFailure(build, result);
        return;
      case 'queued': {
        ctx.stats.queueStepsCreated += result.newSteps.length;
        // Content-addressed derivations (floating outputs, the ca-derivations experimental feature) are
        // refused here, before any machine is tried: no builder fault, status 9 with the reason. The Rust
        // runner resolves them instead (step status 13, BuildSteps.resolvedDrvPath); hydra-ops does not.
        for (const s of result.newSteps) {
          if ([...s.outputs.values()].some((p) => p === null)) {
            this.outcomes.failUnsupported(s, `content-addressed derivations are not supported: ${s.drvPath} has floating output(s) ${[...s.outputs].filter(([, p]) => p === null).map(([n]) => n).join(', ')}`);
          }
        }
        // Attribution: a new step that is another queued build's top level is accounted to that build.
        for (const s of result.newSteps) {
          for (const other of byDrv.get(s.drvPath) ?? []) {
            const r = batch.get(other);
            if (r && other !== row.id) await this.loadBuild(r, batch, byDrv);
          }
        }
        if (result.newRunnable.length > 0) ctx.requestDispatch();
        return;
      }
    }
  }

  /**
   * Outputs substituted (use-substitutes) or copied to the destination store (store_uri) while loading, already in
   * the destination: each gets a finished substitution row for the build being loaded (Hydra's
   * createSubstitutionStep: type 1, busy 0, status 0, start and stop time).
   */
  private async recordSubstitutions(buildId: number, result: LoadOutcome): Promise<void> {
    const {ctx} = this;
    await withTransaction(ctx.pool, async (c) => {
      for (const s of result.substituted) {
        for (const [name, path] of s.outputs) {
          await sql.insertBuildStep(c, {build: buildId, type: 1, drvPath: s.drvPath, busy: 0, status: STATUS.success, startTime: s.startTime, stopTime: s.stopTime, system: null, machine: '', outputs: [[name, path]]});
        }
      }
    });
    for (const s of result.substituted) ctx.log('info', `build ${buildId}: ${[...s.outputs.values()].join(', ')} (${s.drvPath}) substituted or copied to the destination store`);
  }

  private async reloadShares(): Promise<void> {
    for (const row of await sql.jobsetRows(this.ctx.pool)) {
      const j = this.ctx.graph.jobsets.get(row.id);
      if (j) j.shares = row.schedulingshares;
    }
    this.ctx.requestDispatch();
  }

  /** processQueueChange: drop cancelled/deleted builds, raise bumped priorities, abort steps nobody needs. */
  private async processQueueChange(): Promise<void> {
    const {ctx} = this;
    const rows = await sql.queuedBuildIds(ctx.pool);
    const queued = new Map(rows.map((r) => [r.id, r.globalpriority]));
    const gone: number[] = [];
    for (const [id, b] of ctx.graph.builds) {
      const prio = queued.get(id);
      if (prio === undefined) {
        gone.push(id);
      } else if (prio > b.globalPriority) {
        b.globalPriority = prio;
        propagatePriorities(b);
      }
    }
    if (gone.length > 0) {
      ctx.log('info', `discarding ${gone.length} cancelled or deleted build(s)`);
      ctx.graph.dropBuilds(gone);
    }
    for (const a of ctx.active.values()) {
      if (!a.step.cancelled && !ctx.graph.hasDependents(a.step)) {
        a.step.cancelled = true;
        ctx.log('info', `aborting step ${a.step.drvPath} (build ${a.build}): no queued build needs it any more`);
        a.controller.abort('cancelled');
      }
    }
    ctx.requestDispatch();
  }
}
