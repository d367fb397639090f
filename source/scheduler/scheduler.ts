// The queue runner: queue monitor, dispatcher and step bookkeeping (hydra-contract §6).
// The daemon runs it headless; the console runs the very same object in-process.
import {EventEmitter} from 'node:events';
import {copyFile, mkdir, stat} from 'node:fs/promises';
import {dirname, join, basename} from 'node:path';
import type pg from 'pg';
import {readDrv, outputPathMap, type Derivation} from '../nix/drv.js';
import {queryValidPaths, queryPathInfos, queryClosure, addGcRoot, drvLogBucketPath} from '../nix/store.js';
import {collectNixSupport, localNixSupportFs} from '../nix/nix-support.js';
import type {MachineSpec} from '../fleet/machines-file.js';
import {blankStepResult, type StepExecutor, type StepPhase, type StepResult} from '../fleet/step-api.js';
import type {RunnerSettings} from '../config/hydra-conf.js';
import {PgListener} from '../db/listener.js';
import {RunnerDbLock, describeLockSession, type RunnerLockSession} from '../db/runner-advisory-lock.js';
import * as sql from '../db/runner-sql.js';
import {BUSY, STATUS, withTransaction, nowSeconds} from '../db/runner-sql.js';
import {Build, DAY, Jobset, Step, dependentBuilds, propagatePriorities} from './model.js';
import {StepGraph, type GraphStore, type LoadResult} from './graph.js';
import {LookupBatcher} from './batcher.js';
import {assignSteps, sortRunnable, type StepOrder} from './dispatcher.js';
import {isAvailable, machineName, newRuntime, recordMachineFailure, stepPlatform, unsupportedReason, waitingReason, type RunnerMachine} from './machines.js';

export const QUEUE_CHANNELS = ['builds_added', 'builds_restarted', 'builds_cancelled', 'builds_deleted', 'builds_bumped', 'jobset_shares_changed'];

export interface SchedulerLog {
  (level: 'error' | 'warn' | 'info' | 'debug', message: string, fields?: Record<string, unknown>): void;
}

export interface SchedulerOptions {
  pool: pg.Pool;
  /** Settings for the dedicated LISTEN connection. */
  connection: pg.ClientConfig;
  dataDir: string;
  runner: RunnerSettings;
  executor: StepExecutor;
  /** Supplies the machines; the scheduler keeps runtime state per URI across reloads. */
  localSystem: string;
  stepOrder?: StepOrder;
  maxTries?: number;
  /** First retry delay; later ones multiply by 3 (§6.12). */
  retryIntervalMs?: number;
  /** First machine back-off; later ones multiply by 3, at most 4 steps. */
  machineBackoffMs?: number;
  /** Cap of one queue scan before pending notifications are handled (§6.2). */
  scanBudgetMs?: number;
  /** Poll period for operator drain state and the safety re-scan. */
  pollMs?: number;
  /** Only load this build (the `--build-one` test hook, §6.22). */
  buildOne?: number;
  /** Builds loaded concurrently during a scan (default 128: loading waits on files and queries, not CPU). */
  loadConcurrency?: number;
  /** Coordinator store access for loading (default: the local Nix store, batched). Benchmarks inject one. */
  graphStore?: GraphStore;
  log?: SchedulerLog;
  /**
   * The database's runner lock, held by the caller (the daemon's start-up takes it before anything
   * else). Without one, start() takes it on `connection` and stop() releases it.
   */
  lock?: RunnerDbLock;
  /**
   * Called at the end of every dispatch round, after real steps were assigned (the reproducibility sampler).
   * It may reserve free slots synchronously (rt.currentJobs++) and must release them itself.
   */
  idleWork?: (round: IdleRound) => void;
  /** Why local machines (`localhost`) cannot build at all (source/nix/local-nix.ts); they then take no steps. */
  localProblem?: string | null;
}

/** What a dispatch round leaves: the machines (with their remaining capacity) and the platforms with runnable steps. */
export interface IdleRound {
  now: number;
  machines: RunnerMachine[];
  /** Platforms of every runnable step not running at the start of the round (assigned, waiting or unsupported). */
  runnablePlatforms: ReadonlySet<string>;
}

interface ActiveStep {
  step: Step;
  machine: RunnerMachine;
  build: number;
  stepnr: number;
  phase: number;
  startedAt: number;
  phaseSince: number;
  controller: AbortController;
  slotReleased: boolean;
}

export interface SchedulerStats {
  startedAt: number;
  nrBuildsRead: number;
  buildReadTimeMs: number;
  nrBuildsDone: number;
  nrBuildsSucceeded: number;
  nrBuildsFailed: number;
  nrStepsStarted: number;
  nrStepsDone: number;
  nrRetries: number;
  maxNrRetries: number;
  nrQueueWakeups: number;
  nrDispatcherWakeups: number;
  dispatchTimeMs: number;
  lastDispatchMs: number;
  nrUnsupportedSteps: number;
  nrUnsupportedStepsAborted: number;
  totalStepTimeMs: number;
  totalStepBuildTimeMs: number;
  bytesSent: number;
  bytesReceived: number;
  queueChecksStarted: number;
  queueChecksFinished: number;
  queueChecksEarlyExits: number;
  queueStepsCreated: number;
  queueBuildLoads: number;
  dispatcherTimeSpentRunningUs: number;
  dispatcherTimeSpentWaitingUs: number;
  monitorTimeSpentRunningUs: number;
  monitorTimeSpentWaitingUs: number;
  /** Last time a step started or finished (progress indicator, ms). */
  lastProgressAt: number;
  /** Builds known to be queued in the database / loaded so far in the current scan. */
  ingestTotal: number;
  ingestDone: number;
}

/**
 * Events: 'step-started' ({build, stepnr, machine, drvPath}), 'step-finished' ({build, stepnr, status}),
 * 'build-finished' ({build, status}), 'dispatch' (), 'log' (level, message).
 */
export class Scheduler extends EventEmitter {
  readonly graph: StepGraph;
  readonly machines = new Map<string, RunnerMachine>();
  readonly active = new Map<Step, ActiveStep>();
  readonly stats: SchedulerStats;
  private listener: PgListener | null = null;
  private lock: RunnerDbLock | null = null;
  private ownsLock = false;
  private stopping = false;
  private dispatchTimer: NodeJS.Timeout | null = null;
  private dispatchRunning = false;
  private dispatchAgain = false;
  private scanRunning: Promise<void> | null = null;
  private scanAgain = false;
  private changeCheck: Promise<void> | null = null;
  private changeAgain = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private running = new Set<Promise<void>>();
  private loadFailures = new Map<number, number>();
  private readonly log: SchedulerLog;
  private readonly maxTries: number;
  private readonly retryIntervalMs: number;
  private readonly machineBackoffMs: number;
  private readonly scanBudgetMs: number;
  private machinesReady = false;
  private shutdownReason: 'shutdown' | null = null;
  private buildOneResult: ((code: number) => void) | null = null;

  constructor(readonly options: SchedulerOptions) {
    super();
    this.graph = new StepGraph(options.localSystem);
    this.log = options.log ?? (() => {});
    this.maxTries = options.maxTries ?? 5;
    this.retryIntervalMs = options.retryIntervalMs ?? 60_000;
    this.machineBackoffMs = options.machineBackoffMs ?? 60_000;
    this.scanBudgetMs = options.scanBudgetMs ?? 60_000;
    this.store = options.graphStore ?? {
      readDrv: (p: string) => readDrv(p),
      validPaths: (paths: string[]) => this.validity.filter(paths),
      failedPathsAmong: async (paths: string[]) => [...(await this.failedPaths.filter(paths))],
    };
    const now = Date.now();
    this.stats = {
      startedAt: now,
      nrBuildsRead: 0,
      buildReadTimeMs: 0,
      nrBuildsDone: 0,
      nrBuildsSucceeded: 0,
      nrBuildsFailed: 0,
      nrStepsStarted: 0,
      nrStepsDone: 0,
      nrRetries: 0,
      maxNrRetries: 0,
      nrQueueWakeups: 0,
      nrDispatcherWakeups: 0,
      dispatchTimeMs: 0,
      lastDispatchMs: 0,
      nrUnsupportedSteps: 0,
      nrUnsupportedStepsAborted: 0,
      totalStepTimeMs: 0,
      totalStepBuildTimeMs: 0,
      bytesSent: 0,
      bytesReceived: 0,
      queueChecksStarted: 0,
      queueChecksFinished: 0,
      queueChecksEarlyExits: 0,
      queueStepsCreated: 0,
      queueBuildLoads: 0,
      dispatcherTimeSpentRunningUs: 0,
      dispatcherTimeSpentWaitingUs: 0,
      monitorTimeSpentRunningUs: 0,
      monitorTimeSpentWaitingUs: 0,
      lastProgressAt: now,
      ingestTotal: 0,
      ingestDone: 0,
    };
  }

  get pool(): pg.Pool {
    return this.options.pool;
  }

  // ---------------------------------------------------------------- lifecycle

  /** clearBusy, LISTEN, first scan and dispatch. Machines must be supplied with setMachines first or soon after. */
  async start(): Promise<void> {
    if (this.options.lock) this.lock = this.options.lock;
    else {
      this.lock = await RunnerDbLock.acquire(this.options.connection);
      this.ownsLock = true;
    }
    const lock = this.lock;
    lock.on('lost', (e: Error) => this.log('error', `runner lock connection lost (${e.message}): no new steps are dispatched until the lock is held again`));
    lock.on('regained', () => {
      this.log('warn', 'runner lock re-acquired: dispatching again');
      this.requestDispatch();
    });
    lock.on('taken', (holder: RunnerLockSession | null) =>
      this.log(
        'error',
        `ANOTHER QUEUE RUNNER took the database's runner lock while our connection was down: ${holder ? describeLockSession(holder) : 'unknown session'}. ` +
          'Not dispatching anything while it holds the lock (only one runner may work on a database); stop one of the two runners',
      ),
    );
    let cleared: number;
    try {
      cleared = await sql.clearBusy(this.pool, lock);
    } catch (e) {
      if (this.ownsLock) await lock.release();
      throw e;
    }
    if (cleared > 0) this.log('warn', `clearBusy: ${cleared} step(s) left busy by a previous run marked aborted`);
    await this.refreshDrained();
    this.listener = new PgListener({
      connection: this.options.connection,
      channels: QUEUE_CHANNELS,
      onResync: (reconnect) => {
        if (reconnect) this.log('warn', 'database connection restored; re-reading the queue');
        this.requestChangeCheck();
        this.requestScan();
      },
    });
    this.listener.on('notification', (n: {channel: string}) => this.onNotification(n.channel));
    this.listener.on('disconnected', (e: Error) => this.log('error', `LISTEN connection lost: ${e.message}`));
    await this.listener.start();
    const pollMs = this.options.pollMs ?? 5000;
    this.pollTimer = setInterval(() => {
      void this.refreshDrained();
      this.requestDispatch();
    }, pollMs);
    this.pollTimer.unref();
    this.orphanTimer = setInterval(() => void this.cleanOrphans(), Math.max(1000, pollMs * 4));
    this.orphanTimer.unref();
  }

  private async cleanOrphans(): Promise<void> {
    for (const [key, o] of this.orphans) {
      try {
        await sql.abortOrphanedStep(this.pool, this.lock!, o.build, o.stepnr);
        this.orphans.delete(key);
        this.log('info', `orphaned step ${o.build}/${o.stepnr} marked aborted`);
      } catch {
        return; // still no database; try again later
      }
    }
  }

  /** Resolves with 0/1 once the `buildOne` build's top-level step is done (§6.22 exit codes). */
  buildOneDone(): Promise<number> {
    return new Promise((resolve) => (this.buildOneResult = resolve));
  }

  /**
   * Graceful stop: no new dispatches; running steps get `graceMs` to finish, then are aborted as
   * retryable (status 3); finally clearBusy.
   */
  async stop(graceMs = 30_000): Promise<void> {
    this.stopping = true;
    if (this.dispatchTimer) clearTimeout(this.dispatchTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.orphanTimer) clearInterval(this.orphanTimer);
    await this.listener?.stop();
    const all = Promise.allSettled([...this.running]);
    const graceful = await Promise.race([all.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), graceMs).unref())]);
    if (!graceful) {
      this.shutdownReason = 'shutdown';
      for (const a of this.active.values()) a.controller.abort('shutdown');
      await Promise.race([all, new Promise((r) => setTimeout(r, 10_000).unref())]);
    }
    await this.scanRunning?.catch(() => {});
    if (this.lock) {
      await this.cleanOrphans();
      await sql.clearBusy(this.pool, this.lock).catch((e) => this.log('warn', `clearBusy at stop skipped: ${(e as Error).message}`));
      if (this.ownsLock) await this.lock.release();
    }
  }

  /** Whether this scheduler holds the database's runner lock right now (it dispatches only then). */
  get holdsLock(): boolean {
    return this.lock?.held === true;
  }

  // ---------------------------------------------------------------- machines

  /** Installs the machine set (machines-file reload); runtime state survives by URI. */
  setMachines(specs: readonly MachineSpec[]): void {
    const listed = new Set(specs.map((s) => s.uri));
    for (const spec of specs) {
      const existing = this.machines.get(spec.uri);
      if (existing) {
        existing.spec = spec;
        existing.rt.listed = true;
      } else {
        const rt = newRuntime();
        rt.drained = this.isDrained(spec);
        this.machines.set(spec.uri, {spec, rt});
      }
      const m = this.machines.get(spec.uri)!;
      m.rt.unusable = spec.kind === 'local' ? (this.options.localProblem ?? null) : null;
      if (m.rt.unusable !== null) m.rt.lastError = m.rt.unusable;
    }
    for (const m of this.machines.values()) if (!listed.has(m.spec.uri)) m.rt.listed = false;
    this.machinesReady = true;
    this.requestDispatch();
  }

  /** Machines drained by operators, as last read; applied to machines that appear later too. */
  private drained = new Set<string>();

  private isDrained(spec: MachineSpec): boolean {
    return this.drained.has(spec.uri) || this.drained.has(spec.host);
  }

  async refreshDrained(): Promise<void> {
    const drained = await sql.drainedMachines(this.pool).catch(() => null);
    if (!drained) return;
    this.drained = drained;
    let changed = false;
    for (const m of this.machines.values()) {
      const d = this.isDrained(m.spec);
      if (d !== m.rt.drained) {
        m.rt.drained = d;
        changed = true;
        this.log('info', `machine ${m.spec.uri} ${d ? 'drained' : 'enabled'}`);
      }
    }
    if (changed) this.requestDispatch();
  }

  /** Operator "enable now": clear a machine's back-off. */
  resetMachine(uri: string): boolean {
    const m = this.machines.get(uri);
    if (!m) return false;
    m.rt.consecutiveFailures = 0;
    m.rt.disabledUntil = 0;
    this.requestDispatch();
    return true;
  }

  // ---------------------------------------------------------------- queue monitor

  private onNotification(channel: string): void {
    this.stats.nrQueueWakeups++;
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

  requestScan(): void {
    if (this.stopping) return;
    if (this.scanRunning) {
      this.scanAgain = true;
      return;
    }
    this.scanRunning = this.scanLoop().finally(() => (this.scanRunning = null));
  }

  private async scanLoop(): Promise<void> {
    do {
      this.scanAgain = false;
      try {
        const complete = await this.scanQueue();
        if (!complete) this.scanAgain = true;
      } catch (e) {
        this.log('error', `queue scan failed: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 2000));
        this.scanAgain = !this.stopping;
      }
    } while (this.scanAgain && !this.stopping);
  }

  /** §6.2 getQueuedBuilds, incremental: only builds not yet in memory are read. Returns false on early exit. */
  private async scanQueue(): Promise<boolean> {
    const began = Date.now();
    if (this.lastScanEnd) this.stats.monitorTimeSpentWaitingUs += (began - this.lastScanEnd) * 1000;
    this.stats.queueChecksStarted++;
    const ids = await sql.queuedBuildIds(this.pool);
    let fresh = ids.filter((r) => !this.graph.builds.has(r.id));
    if (this.options.buildOne !== undefined) fresh = fresh.filter((r) => r.id === this.options.buildOne);
    const retryAfter = Date.now() - 30_000;
    fresh = fresh.filter((r) => (this.loadFailures.get(r.id) ?? 0) < retryAfter);
    fresh.sort((a, b) => b.globalpriority - a.globalpriority || a.id - b.id);
    this.stats.ingestTotal = ids.length;
    this.stats.ingestDone = ids.length - fresh.length;
    const pending = fresh.map((r) => r.id);
    const byDrv = new Map<string, number[]>();
    const chunk = 500;
    const concurrency = this.options.loadConcurrency ?? 128;
    for (let i = 0; i < pending.length; i += chunk) {
      if (this.stopping) return true;
      const rows = await sql.queuedBuildRows(this.pool, pending.slice(i, i + chunk));
      const batch = new Map(rows.map((r) => [r.id, r]));
      for (const r of rows) byDrv.set(r.drvpath, [...(byDrv.get(r.drvpath) ?? []), r.id]);
      let next = 0;
      const worker = async () => {
        while (next < rows.length && !this.stopping) {
          const row = rows[next++]!;
          await this.loadBuild(row, batch, byDrv);
          this.stats.ingestDone++;
        }
      };
      await Promise.all(Array.from({length: Math.min(concurrency, rows.length)}, worker));
      if (Date.now() - began > this.scanBudgetMs) {
        this.stats.queueChecksEarlyExits++;
        this.lastScanEnd = Date.now();
        this.stats.monitorTimeSpentRunningUs += (this.lastScanEnd - began) * 1000;
        return false;
      }
    }
    this.stats.queueChecksFinished++;
    this.lastScanEnd = Date.now();
    this.stats.monitorTimeSpentRunningUs += (this.lastScanEnd - began) * 1000;
    return true;
  }

  private readonly jobsetLoads = new Map<number, Promise<Jobset>>();

  /** The jobset object of a build (created once, even when several loads ask at the same time). */
  private jobsetFor(row: sql.QueuedBuildRow): Promise<Jobset> {
    const known = this.graph.jobsets.get(row.jobset_id);
    if (known) return Promise.resolve(known);
    let p = this.jobsetLoads.get(row.jobset_id);
    if (!p) {
      p = (async () => {
        const j = new Jobset(row.jobset_id, row.project, row.jobset, row.schedulingshares);
        const now = nowSeconds();
        let key = -1;
        for (const h of await sql.jobsetStepHistory(this.pool, row.jobset_id, now - DAY)) {
          if (h.starttime >= now - DAY) j.charge(key--, h.starttime, Math.max(0, h.stoptime - h.starttime));
        }
        this.graph.jobsets.set(row.jobset_id, j);
        return j;
      })().finally(() => this.jobsetLoads.delete(row.jobset_id));
      this.jobsetLoads.set(row.jobset_id, p);
    }
    return p;
  }

  /** Store look-ups of concurrent loads are coalesced into few `nix-store` calls and queries. */
  private readonly validity = new LookupBatcher((paths) => queryValidPaths(paths));
  private readonly failedPaths = new LookupBatcher(async (paths) => new Set(await sql.failedPathsAmong(this.pool, paths)));
  private readonly store: GraphStore;
  private readonly loading = new Set<number>();
  private lastDispatchEnd = 0;
  private lastScanEnd = 0;
  /** Step rows whose final write failed (database trouble): retried until they are marked aborted (§6.1). */
  private readonly orphans = new Map<string, {build: number; stepnr: number}>();
  private orphanTimer: NodeJS.Timeout | null = null;

  /** §6.3 createBuild. */
  private async loadBuild(row: sql.QueuedBuildRow, batch: Map<number, sql.QueuedBuildRow>, byDrv: Map<string, number[]>): Promise<void> {
    if (this.graph.builds.has(row.id) || this.loading.has(row.id)) return;
    this.loading.add(row.id);
    try {
      await this.loadBuildNow(row, batch, byDrv);
    } finally {
      this.loading.delete(row.id);
    }
  }

  private async loadBuildNow(row: sql.QueuedBuildRow, batch: Map<number, sql.QueuedBuildRow>, byDrv: Map<string, number[]>): Promise<void> {
    const t0 = Date.now();
    const jobset = await this.jobsetFor(row);
    const build = new Build(
      row.id,
      jobset,
      row.job,
      row.drvpath,
      row.maxsilent ?? 3600,
      row.timeout ?? 36000,
      row.timestamp,
      row.globalpriority,
      row.priority,
    );
    let result: LoadResult;
    try {
      result = await this.graph.addBuild(build, this.store);
    } catch (e) {
      this.loadFailures.set(row.id, Date.now());
      this.log('error', `cannot load build ${row.id}: ${(e as Error).message}`);
      return;
    }
    this.stats.nrBuildsRead++;
    this.stats.queueBuildLoads++;
    this.stats.buildReadTimeMs += Date.now() - t0;
    switch (result.kind) {
      case 'missing-drv':
        this.log('warn', `build ${row.id}: derivation ${result.drvPath} is missing (${result.message}); aborting it`);
        if (await sql.abortBuildMissingDrv(this.pool, row.id)) this.stats.nrBuildsDone++;
        this.emit('build-finished', {build: row.id, status: STATUS.aborted});
        return;
      case 'cached-success':
        await this.finishCachedSuccess(build);
        return;
      case 'cached-failure':
        await this.finishCachedFailure(build, result);
        return;
      case 'queued': {
        this.stats.queueStepsCreated += result.newSteps.length;
        // Attribution (§6.3.4): a new step that is another queued build's top level is accounted to that build.
        for (const s of result.newSteps) {
          for (const other of byDrv.get(s.drvPath) ?? []) {
            const r = batch.get(other);
            if (r && other !== row.id) await this.loadBuild(r, batch, byDrv);
          }
        }
        if (result.newRunnable.length > 0) this.requestDispatch();
        return;
      }
    }
  }

  private async finishCachedSuccess(build: Build): Promise<void> {
    const drv = await readDrv(build.drvPath);
    const outputs = new Map([...outputPathMap(drv)].filter((e): e is [string, string] => e[1] !== null));
    const now = nowSeconds();
    const first = [...outputs.values()][0];
    const earlier = first ? await sql.earlierSuccess(this.pool, first) : null;
    let info: sql.SuccessInfo;
    if (earlier) {
      info = {
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
      };
    } else {
      info = await this.describeLocalOutputs(outputs, now);
    }
    const done = await withTransaction(this.pool, async (c) => {
      const ok = await sql.markSucceededBuild(c, build.id, info);
      if (ok) await sql.notifyBuildFinished(c, build.id);
      return ok;
    });
    await this.gcRoot([...outputs.values()]);
    if (done) {
      this.stats.nrBuildsDone++;
      this.stats.nrBuildsSucceeded++;
      this.emit('build-finished', {build: build.id, status: info.failed ? STATUS.failedWithOutput : STATUS.success});
    }
    this.checkBuildOne(build.id, true);
  }

  /** Size, closure size, products and metrics recomputed from the local store (§6.3.5). */
  private async describeLocalOutputs(outputs: Map<string, string>, now: number): Promise<sql.SuccessInfo> {
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

  private async finishCachedFailure(build: Build, r: Extract<LoadResult, {kind: 'cached-failure'}>): Promise<void> {
    const now = nowSeconds();
    const done = await withTransaction(this.pool, async (c) => {
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
      const ok = await sql.failBuild(c, {id: build.id, status: r.toplevel ? STATUS.failed : STATUS.depFailed, startTime: now, stopTime: now, isCachedBuild: true});
      if (ok) await sql.notifyBuildFinished(c, build.id);
      return ok;
    });
    if (done) {
      this.stats.nrBuildsDone++;
      this.stats.nrBuildsFailed++;
      this.emit('build-finished', {build: build.id, status: r.toplevel ? STATUS.failed : STATUS.depFailed});
    }
    this.checkBuildOne(build.id, false);
  }

  private async reloadShares(): Promise<void> {
    for (const row of await sql.jobsetRows(this.pool)) {
      const j = this.graph.jobsets.get(row.id);
      if (j) j.shares = row.schedulingshares;
    }
    this.requestDispatch();
  }

  requestChangeCheck(): void {
    if (this.stopping) return;
    if (this.changeCheck) {
      this.changeAgain = true;
      return;
    }
    this.changeCheck = (async () => {
      do {
        this.changeAgain = false;
        try {
          await this.processQueueChange();
        } catch (e) {
          this.log('error', `processing a queue change failed: ${(e as Error).message}`);
        }
      } while (this.changeAgain && !this.stopping);
    })().finally(() => (this.changeCheck = null));
  }

  /** §6.16: drop cancelled/deleted builds, raise bumped priorities, abort steps nobody needs. */
  private async processQueueChange(): Promise<void> {
    const rows = await sql.queuedBuildIds(this.pool);
    const queued = new Map(rows.map((r) => [r.id, r.globalpriority]));
    const gone: number[] = [];
    for (const [id, b] of this.graph.builds) {
      const prio = queued.get(id);
      if (prio === undefined) {
        gone.push(id);
      } else if (prio > b.globalPriority) {
        b.globalPriority = prio;
        propagatePriorities(b);
      }
    }
    if (gone.length > 0) {
      this.log('info', `discarding ${gone.length} cancelled or deleted build(s)`);
      this.graph.dropBuilds(gone);
    }
    for (const a of this.active.values()) {
      if (!a.step.cancelled && !this.graph.hasDependents(a.step)) {
        a.step.cancelled = true;
        this.log('info', `aborting step ${a.step.drvPath} (build ${a.build}): no queued build needs it any more`);
        a.controller.abort('cancelled');
      }
    }
    this.requestDispatch();
  }

  // ---------------------------------------------------------------- dispatcher

  requestDispatch(): void {
    if (this.stopping) return;
    if (this.dispatchRunning) {
      this.dispatchAgain = true;
      return;
    }
    if (this.dispatchTimer) clearTimeout(this.dispatchTimer);
    this.dispatchTimer = setTimeout(() => this.dispatch(), 0);
  }

  private dispatch(): void {
    this.dispatchTimer = null;
    if (this.stopping || !this.machinesReady || !this.holdsLock) return;
    this.dispatchRunning = true;
    const t0 = performance.now();
    const now = Date.now();
    if (this.lastDispatchEnd) this.stats.dispatcherTimeSpentWaitingUs += (now - this.lastDispatchEnd) * 1000;
    this.stats.nrDispatcherWakeups++;
    try {
      for (const j of this.graph.jobsets.values()) j.prune(nowSeconds());
      const machines = [...this.machines.values()];
      // With every machine full (the usual state of a busy farm), ordering the runnable steps is wasted work.
      const anyFree = machines.some((m) => isAvailable(m, now));
      const candidates: Step[] = [];
      let nextWake = Number.POSITIVE_INFINITY;
      let unsupported = 0;
      const reasonCache = new Map<string, string | null>();
      const runnablePlatforms = new Set<string>();
      for (const step of this.graph.runnable) {
        if (step.running) continue;
        if (this.options.idleWork) runnablePlatforms.add(stepPlatform(step, this.options.localSystem));
        const key = `${step.platform}|${step.requiredFeatures.join(',')}|${step.preferLocal}`;
        let reason = reasonCache.get(key);
        if (reason === undefined) {
          reason = unsupportedReason(step, machines, this.options.localSystem);
          reasonCache.set(key, reason);
        }
        if (reason === null) {
          step.lastSupported = now;
        } else {
          unsupported++;
          const limitMs = this.options.runner.maxUnsupportedTime * 1000;
          if (now - step.lastSupported >= limitMs) {
            this.failUnsupported(step, reason);
            continue;
          }
          nextWake = Math.min(nextWake, step.lastSupported + limitMs);
        }
        if (step.after > now) {
          nextWake = Math.min(nextWake, step.after);
          continue;
        }
        if (anyFree) candidates.push(step);
      }
      this.stats.nrUnsupportedSteps = unsupported;
      for (const m of machines) if (m.rt.consecutiveFailures > 0 && m.rt.disabledUntil > now) nextWake = Math.min(nextWake, m.rt.disabledUntil);
      const sorted = anyFree ? sortRunnable(candidates, this.options.stepOrder ?? 'rdeps') : [];
      const assignments = assignSteps(sorted, machines, this.options.localSystem, now);
      for (const {step, machine} of assignments) {
        this.graph.runnable.delete(step);
        const p = this.runStep(step, machine).catch((e) => this.log('error', `step ${step.drvPath}: ${(e as Error).stack ?? e}`));
        this.running.add(p);
        void p.finally(() => this.running.delete(p));
      }
      if (this.options.idleWork) {
        try {
          this.options.idleWork({now, machines, runnablePlatforms});
        } catch (e) {
          this.log('error', `idle work: ${(e as Error).message}`);
        }
      }
      if (Number.isFinite(nextWake)) {
        const delay = Math.max(50, Math.min(nextWake - now + 10, 60_000));
        this.dispatchTimer = setTimeout(() => this.dispatch(), delay);
        this.dispatchTimer.unref();
      }
      this.emit('dispatch');
    } finally {
      const ms = performance.now() - t0;
      this.stats.dispatchTimeMs += ms;
      this.stats.lastDispatchMs = ms;
      this.stats.dispatcherTimeSpentRunningUs += Math.round(ms * 1000);
      this.lastDispatchEnd = Date.now();
      this.dispatchRunning = false;
      if (this.dispatchAgain) {
        this.dispatchAgain = false;
        this.requestDispatch();
      }
    }
  }

  // ---------------------------------------------------------------- running one step

  private releaseSlot(a: ActiveStep): void {
    if (a.slotReleased) return;
    a.slotReleased = true;
    a.machine.rt.currentJobs = Math.max(0, a.machine.rt.currentJobs - 1);
    if (a.machine.rt.currentJobs === 0) a.machine.rt.idleSince = Date.now();
    this.requestDispatch();
  }

  /** Limits from the dependent builds (§6.17, Rust rule: maximum, with floors for shared dependencies). */
  private limitsFor(step: Step, builds: Build[]): {maxSilent: number; timeout: number} {
    let maxSilent = 0;
    let timeout = 0;
    for (const b of builds) {
      maxSilent = Math.max(maxSilent, b.maxSilent);
      timeout = Math.max(timeout, b.timeout);
    }
    if (!builds.some((b) => b.toplevel === step)) {
      maxSilent = Math.max(maxSilent, 3600);
      timeout = Math.max(timeout, 36000);
    }
    return {maxSilent, timeout};
  }

  private async runStep(step: Step, machine: RunnerMachine): Promise<void> {
    const dependents = [...dependentBuilds(step)].sort((a, b) => a.id - b.id);
    if (dependents.length === 0) {
      machine.rt.currentJobs = Math.max(0, machine.rt.currentJobs - 1);
      step.running = false;
      this.graph.collectGarbage();
      this.requestDispatch();
      return;
    }
    const accounting = dependents.find((b) => b.toplevel === step) ?? dependents[0]!;
    const {maxSilent, timeout} = this.limitsFor(step, dependents);
    const staticOutputs = [...step.outputs.values()].filter((p): p is string => p !== null);

    // §6.10.3: it may have failed for another build meanwhile.
    let nowFailed: string[];
    try {
      nowFailed = await sql.failedPathsAmong(this.pool, staticOutputs);
    } catch (e) {
      this.log('error', `cannot start step ${step.drvPath}: ${(e as Error).message}`);
      machine.rt.currentJobs = Math.max(0, machine.rt.currentJobs - 1);
      step.after = Date.now() + 2000;
      this.requeue(step);
      return;
    }
    if (nowFailed.length > 0) {
      machine.rt.currentJobs = Math.max(0, machine.rt.currentJobs - 1);
      await this.failStep(step, accounting, null, {status: STATUS.cachedFailure, errorMsg: null, startTime: nowSeconds(), stopTime: nowSeconds(), machine: '', cacheFailure: false});
      this.requestDispatch();
      return;
    }

    const mname = machineName(machine.spec);
    const startedAt = Date.now();
    let stepnr: number;
    try {
      stepnr = await this.insertStepRow(step, accounting, mname, startedAt);
    } catch (e) {
      // No database: give the slot back and try again a little later.
      this.log('error', `cannot start step ${step.drvPath}: ${(e as Error).message}`);
      machine.rt.currentJobs = Math.max(0, machine.rt.currentJobs - 1);
      step.after = Date.now() + 2000;
      this.requeue(step);
      return;
    }
    await this.executeStep(step, machine, accounting, stepnr, mname, startedAt, maxSilent, timeout);
  }

  private insertStepRow(step: Step, accounting: Build, mname: string, startedAt: number): Promise<number> {
    return withTransaction(this.pool, async (c) => {
      const nr = await sql.insertBuildStep(c, {
        build: accounting.id,
        type: 0,
        drvPath: step.drvPath,
        busy: BUSY.preparing,
        startTime: Math.floor(startedAt / 1000),
        system: step.platform,
        machine: mname,
        outputs: step.outputs,
      });
      await sql.notify(c, 'step_started', `${accounting.id}\t${nr}`);
      for (const b of step.builds) await sql.notify(c, 'build_started', String(b.id));
      return nr;
    });
  }

  private async executeStep(
    step: Step,
    machine: RunnerMachine,
    accounting: Build,
    stepnr: number,
    mname: string,
    startedAt: number,
    maxSilent: number,
    timeout: number,
  ): Promise<void> {
    const a: ActiveStep = {
      step,
      machine,
      build: accounting.id,
      stepnr,
      phase: BUSY.preparing,
      startedAt,
      phaseSince: startedAt,
      controller: new AbortController(),
      slotReleased: false,
    };
    this.active.set(step, a);
    machine.rt.lastUsed = startedAt;
    this.stats.nrStepsStarted++;
    this.stats.lastProgressAt = startedAt;
    this.emit('step-started', {build: accounting.id, stepnr, machine: mname, drvPath: step.drvPath});

    const logPath = drvLogBucketPath(this.options.dataDir, step.drvPath);
    await this.archiveLog(logPath, accounting.id, stepnr, step.drvPath);

    let result: StepResult;
    try {
      const drv = step.drv ?? (await this.store.readDrv(step.drvPath));
      result = await this.options.executor.run({
        machine: machine.spec,
        drvPath: step.drvPath,
        drv,
        maxSilentTime: maxSilent,
        buildTimeout: timeout,
        maxLogSize: this.options.runner.maxLogSize,
        maxOutputSize: this.options.runner.maxOutputSize,
        logPath,
        signal: a.controller.signal,
        onPhase: (phase: StepPhase) => this.setPhase(a, phase),
        onConnected: () => {
          machine.rt.consecutiveFailures = 0;
          machine.rt.disabledUntil = 0;
        },
        onSlotReleased: () => this.releaseSlot(a),
      });
    } catch (e) {
      // The executor reports builder trouble in its result; what is thrown here is ours (e.g. the
      // .drv vanished): retry without blaming the machine.
      result = failureResult(3, (e as Error).message, false);
    }
    this.releaseSlot(a);
    this.active.delete(step);
    const stoppedAt = Date.now();
    this.stats.bytesSent += result.bytesSent;
    this.stats.bytesReceived += result.bytesReceived;
    this.stats.lastProgressAt = stoppedAt;
    machine.rt.nrStepsDone++;
    machine.rt.totalStepTimeMs += stoppedAt - startedAt;
    machine.rt.totalStepBuildTimeMs += Math.max(0, result.stopTime - result.startTime) * 1000;
    this.stats.totalStepTimeMs += stoppedAt - startedAt;
    this.stats.totalStepBuildTimeMs += Math.max(0, result.stopTime - result.startTime) * 1000;

    if (a.controller.signal.aborted) {
      const why = a.controller.signal.reason;
      result = why === 'shutdown'
        ? {...result, status: STATUS.aborted, retry: true, errorMsg: 'the queue runner stopped during this step', machineFault: false, cacheFailure: false}
        : {...result, status: STATUS.cancelled, retry: false, errorMsg: null, machineFault: false, cacheFailure: false};
    }
    if (result.machineFault) {
      recordMachineFailure(machine.rt, result.errorMsg ?? 'connection failed', stoppedAt, this.machineBackoffMs);
      this.log('warn', `machine ${mname} failed: ${result.errorMsg}; backing off until ${new Date(machine.rt.disabledUntil).toISOString()}`);
    }
    step.lastError = result.status === 0 ? null : result.errorMsg;

    // Charge the step time to every jobset that needed it (§6.6).
    const seconds = Math.max(0, result.stopTime - result.startTime);
    const perJobset = step.jobsets.size > 0 ? Math.floor(seconds / step.jobsets.size) : 0;
    for (const j of step.jobsets) j.charge(step.id * 1000 + step.tries, result.startTime, perJobset);

    const start = result.startTime || Math.floor(startedAt / 1000);
    const stop = result.stopTime || Math.floor(stoppedAt / 1000);
    const finish: sql.FinishStepInput = {
      build: accounting.id,
      stepnr,
      status: result.status,
      errorMsg: result.errorMsg,
      startTime: start,
      stopTime: stop,
      machine: mname,
      overheadMs: result.overheadMs,
      timesBuilt: result.timesBuilt,
      isNonDeterministic: result.isNonDeterministic,
      logPath: result.logPath,
    };

    try {
      if (result.status === STATUS.success) {
        await this.succeedStep(step, accounting, finish, result);
      } else if (result.status === STATUS.cancelled || (result.retry && this.shutdownReason)) {
        await withTransaction(this.pool, (c) => sql.finishBuildStep(c, finish));
        step.running = false;
        if (result.status === STATUS.aborted) this.requeue(step);
        else this.graph.collectGarbage();
      } else if (result.retry && step.tries + 1 < this.maxTries) {
        await withTransaction(this.pool, (c) => sql.finishBuildStep(c, finish));
        step.tries++;
        this.stats.nrRetries++;
        this.stats.maxNrRetries = Math.max(this.stats.maxNrRetries, step.tries);
        step.after = Date.now() + this.retryIntervalMs * 3 ** (step.tries - 1);
        this.log('warn', `step ${step.drvPath} failed on ${mname} (${result.errorMsg}); retry ${step.tries} at ${new Date(step.after).toISOString()}`);
        this.requeue(step);
      } else {
        this.stats.nrStepsDone++;
        await this.failStep(step, accounting, finish, {
          status: result.status,
          errorMsg: result.errorMsg,
          startTime: start,
          stopTime: stop,
          machine: mname,
          cacheFailure: result.cacheFailure,
        });
      }
    } catch (e) {
      this.log('error', `could not record the end of step ${accounting.id}/${stepnr}: ${(e as Error).message}`);
      await sql.abortOrphanedStep(this.pool, this.lock!, accounting.id, stepnr).catch(() => this.orphans.set(`${accounting.id}/${stepnr}`, {build: accounting.id, stepnr}));
      step.running = false;
      this.requeue(step);
    }
    this.emit('step-finished', {build: accounting.id, stepnr, status: result.status});
    this.requestDispatch();
  }

  private requeue(step: Step): void {
    step.running = false;
    if (this.graph.steps.get(step.drvPath) === step && step.runnable && !step.cancelled) {
      this.graph.runnable.add(step);
      step.runnableSince = Date.now();
    }
    this.requestDispatch();
  }

  private async setPhase(a: ActiveStep, phase: StepPhase): Promise<void> {
    const busy = {connecting: BUSY.connecting, sending: BUSY.sending, building: BUSY.building, receiving: BUSY.receiving, postprocessing: BUSY.postprocessing}[phase];
    a.phase = busy;
    a.phaseSince = Date.now();
    await sql.updateStepPhase(this.pool, a.build, a.stepnr, busy).catch((e) => this.log('error', `phase update failed: ${(e as Error).message}`));
  }

  /** hydra-ops rule (#694): keep the previous log of this derivation before a rebuild truncates it. */
  private async archiveLog(logPath: string, build: number, stepnr: number, drvPath: string): Promise<void> {
    try {
      const st = await stat(logPath);
      if (st.size === 0) return;
      const target = join(this.options.dataDir, 'hydra-ops', 'log-archive', basename(dirname(logPath)), `${basename(logPath)}.${Date.now()}`);
      await mkdir(dirname(target), {recursive: true});
      await copyFile(logPath, target);
      await this.pool
        .query('INSERT INTO hydra_ops.log_archive (build, stepnr, drv_path, archived_path, reason) VALUES ($1, $2, $3, $4, $5)', [
          build,
          stepnr,
          drvPath,
          target,
          'rebuild of the same derivation',
        ])
        .catch(() => {});
    } catch {
      /* no previous log */
    }
  }

  private async gcRoot(paths: string[]): Promise<void> {
    const dir = this.options.runner.gcRootsDir;
    if (!dir) return;
    for (const p of paths) await addGcRoot(dir, p).catch((e) => this.log('warn', `cannot create GC root for ${p}: ${(e as Error).message}`));
  }

  /** §6.13 success bookkeeping. */
  private async succeedStep(step: Step, accounting: Build, finish: sql.FinishStepInput, result: StepResult): Promise<void> {
    const outputs = new Map([...result.outputs].map(([n, o]) => [n, o.path] as const));
    await this.gcRoot([...outputs.values()]);
    const finished: Array<{id: number; status: number}> = [];
    await withTransaction(this.pool, async (c) => {
      await sql.finishBuildStep(c, {...finish, outputs});
      for (const b of [...step.builds].sort((x, y) => x.id - y.id)) {
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
          finished.push({id: b.id, status: result.failedMarker ? STATUS.failedWithOutput : STATUS.success});
        }
      }
    });
    this.stats.nrStepsDone++;
    this.stats.nrBuildsDone += finished.length;
    this.stats.nrBuildsSucceeded += finished.length;
    const woken = this.graph.completeStep(step);
    this.graph.dropBuilds([...step.builds].map((b) => b.id));
    for (const f of finished) {
      this.emit('build-finished', {build: f.id, status: f.status});
      this.checkBuildOne(f.id, true);
    }
    if (woken.length > 0) this.requestDispatch();
  }

  /** §6.14 failure propagation. `finish` is the real step row to finalise (null for 8/9 without one). */
  private async failStep(
    step: Step,
    accounting: Build,
    finish: sql.FinishStepInput | null,
    f: {status: number; errorMsg: string | null; startTime: number; stopTime: number; machine: string; cacheFailure: boolean},
  ): Promise<void> {
    const failed: number[] = [];
    const dependents = [...dependentBuilds(step)].sort((a, b) => a.id - b.id);
    await withTransaction(this.pool, async (c) => {
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
        let status = f.status === STATUS.cachedFailure ? STATUS.failed : f.status;
        if (status === STATUS.failed && !isTop) status = STATUS.depFailed;
        if (await sql.failBuild(c, {id: b.id, status, startTime: f.startTime, stopTime: f.stopTime, isCachedBuild: f.status === STATUS.cachedFailure})) {
          failed.push(b.id);
        }
      }
      if (f.cacheFailure && f.status !== STATUS.cachedFailure) {
        await sql.insertFailedPaths(c, [...step.outputs.values()].filter((p): p is string => p !== null));
      }
      if (failed.length > 0) {
        const head = failed.includes(accounting.id) ? accounting.id : failed[0]!;
        await sql.notifyBuildFinished(c, head, failed.filter((id) => id !== head));
      }
    });
    step.running = false;
    this.stats.nrBuildsDone += failed.length;
    this.stats.nrBuildsFailed += failed.length;
    this.graph.runnable.delete(step);
    this.graph.dropBuilds(dependents.map((b) => b.id));
    for (const id of failed) {
      const b = dependents.find((x) => x.id === id)!;
      let status = f.status === STATUS.cachedFailure ? STATUS.failed : f.status;
      if (status === STATUS.failed && b.toplevel !== step) status = STATUS.depFailed;
      this.emit('build-finished', {build: id, status});
      this.checkBuildOne(id, false);
    }
  }

  /** §6.9: no machine can ever take this step. */
  private failUnsupported(step: Step, reason: string): void {
    const dependents = [...dependentBuilds(step)].sort((a, b) => a.id - b.id);
    this.graph.runnable.delete(step);
    if (dependents.length === 0) return;
    step.running = true; // keep the dispatcher off it while we write
    this.stats.nrUnsupportedStepsAborted++;
    this.log('warn', `step ${step.drvPath} is unsupported: ${reason}`);
    const accounting = dependents.find((b) => b.toplevel === step) ?? dependents[0]!;
    const now = nowSeconds();
    const p = this.failStep(step, accounting, null, {status: STATUS.unsupported, errorMsg: reason, startTime: now, stopTime: now, machine: '', cacheFailure: false}).catch(
      (e) => this.log('error', `could not fail unsupported step ${step.drvPath}: ${(e as Error).message}`),
    );
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  private checkBuildOne(buildId: number, success: boolean): void {
    if (this.options.buildOne === buildId && this.buildOneResult) {
      this.buildOneResult(success ? 0 : 1);
      this.buildOneResult = null;
    }
  }

  // ---------------------------------------------------------------- introspection

  /** Why a step (by drv path) is not running. */
  explain(drvPath: string): string | null {
    const step = this.graph.steps.get(drvPath);
    if (!step) return null;
    return waitingReason(step, [...this.machines.values()], this.options.localSystem, Date.now());
  }

  activeSteps(): ActiveStep[] {
    return [...this.active.values()];
  }

  idle(): boolean {
    return this.graph.builds.size === 0 && this.active.size === 0 && !this.scanRunning;
  }
}

export function failureResult(status: number, message: string, machineFault: boolean): StepResult {
  const now = nowSeconds();
  return blankStepResult({status, retry: status === STATUS.aborted, errorMsg: message, machineFault, startTime: now, stopTime: now});
}

export type {Derivation};
