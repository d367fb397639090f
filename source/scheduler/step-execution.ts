// Running one step (Hydra's src/hydra-queue-runner/builder.cc and build-remote.cc, as seen from the database): the
// BuildSteps row and its busy phases, the limits from the builds that need the step, the log (and the archive of
// the previous one), the executor call, and the bookkeeping of its end — retried, cancelled, succeeded or failed.
// The step's slot is a SlotLease, released once whichever way the step ends.
import {copyFile, mkdir, stat} from 'node:fs/promises';
import {dirname, join, basename} from 'node:path';
import {drvLogBucketPath} from '../nix/store.js';
import {blankStepResult, type StepPhase, type StepResult} from '../fleet/step-api.js';
import * as sql from '../db/runner-sql.js';
import {BUSY, STATUS, nowSeconds} from '../db/runner-sql.js';
import {withTransaction} from '../db/transaction.js';
import {dependentBuilds, type Build, type Step} from './model.js';
import {machineName, noteJobEnd, noteJobStart, recordMachineFailure, type RunnerMachine} from './machines.js';
import type {SlotLease} from './slot-lease.js';
import {LocalWorkSlots} from './local-work.js';
import {StepDestination} from './destination.js';
import type {ActiveStep, SchedulerContext} from './context.js';
import type {Outcomes} from './outcomes.js';

export function failureResult(status: number, message: string, machineFault: boolean): StepResult {
  const now = nowSeconds();
  return blankStepResult({status, retry: status === STATUS.aborted, errorMsg: message, machineFault, startTime: now, stopTime: now});
}

/** Limits from the dependent builds (the Rust runner's rule: the maximum, with floors for shared dependencies). */
export function stepLimits(step: Step, builds: readonly Build[]): {maxSilent: number; timeout: number} {
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

const PHASE_BUSY: Record<StepPhase, number> = {
  connecting: BUSY.connecting,
  sending: BUSY.sending,
  building: BUSY.building,
  receiving: BUSY.receiving,
  postprocessing: BUSY.postprocessing,
};

export class StepExecution {
  /** Step rows whose final write failed (database trouble): retried until they are marked aborted. */
  private readonly orphans = new Map<string, {build: number; stepnr: number}>();
  /** Set when the runner stops and its grace period is over: aborted steps are then recorded as such. */
  shuttingDown = false;
  private readonly maxTries: number;
  private readonly retryIntervalMs: number;
  private readonly machineBackoffMs: number;
  /** Slots for local work after a build (max_local_worker_threads). */
  readonly localWork: LocalWorkSlots;
  private readonly destination: StepDestination;

  constructor(
    private readonly ctx: SchedulerContext,
    private readonly outcomes: Outcomes,
  ) {
    this.maxTries = ctx.options.maxTries ?? 5;
    this.retryIntervalMs = ctx.options.retryIntervalMs ?? 60_000;
    this.machineBackoffMs = ctx.options.machineBackoffMs ?? 60_000;
    this.localWork = new LocalWorkSlots(ctx.options.runner.maxLocalWorkerThreads);
    this.destination = new StepDestination(ctx);
  }

  /** Gives the slot back (once) and lets the dispatcher use it. */
  private release(lease: SlotLease): void {
    if (lease.release()) this.ctx.requestDispatch();
  }

  /** Runs a step the dispatcher assigned to `lease.machine`. Never throws for the step's own failure. */
  async run(step: Step, lease: SlotLease): Promise<void> {
    try {
      await this.runLeased(step, lease);
    } finally {
      this.release(lease);
    }
  }

  private async runLeased(step: Step, lease: SlotLease): Promise<void> {
    const {ctx} = this;
    let marks: [string, number][] | undefined;
    if (ctx.options.stepTiming) {
      marks = [['dispatched', performance.now()]];
      if (step.runnableSince > 0) marks.unshift(['runnable', step.runnableSince - performance.timeOrigin]);
    }
    const machine = lease.machine;
    const dependents = [...dependentBuilds(step)].sort((a, b) => a.id - b.id);
    if (dependents.length === 0) {
      step.running = false;
      ctx.graph.collectGarbage();
      return;
    }
    const accounting = dependents.find((b) => b.toplevel === step) ?? dependents[0]!;
    const {maxSilent, timeout} = stepLimits(step, dependents);
    const staticOutputs = [...step.outputs.values()].filter((p): p is string => p !== null);

    // It may have failed for another build meanwhile (Hydra checks FailedPaths again before building).
    let nowFailed: string[];
    try {
      nowFailed = await sql.failedPathsAmong(ctx.pool, staticOutputs);
    } catch (e) {
      this.startLater(step, lease, e);
      return;
    }
    if (nowFailed.length > 0) {
      this.release(lease);
      await this.outcomes.fail(step, accounting, null, {status: STATUS.cachedFailure, errorMsg: null, startTime: nowSeconds(), stopTime: nowSeconds(), machine: '', cacheFailure: false});
      ctx.requestDispatch();
      return;
    }

    const mname = machineName(machine.spec);
    const startedAt = Date.now();
    let stepnr: number;
    try {
      stepnr = await this.insertStepRow(step, accounting, mname, startedAt);
    } catch (e) {
      this.startLater(step, lease, e);
      return;
    }
    marks?.push(['row-inserted', performance.now()]);
    const status = await this.execute(step, lease, accounting, stepnr, mname, startedAt, maxSilent, timeout, marks);
    if (marks) {
      marks.push(['recorded', performance.now()]);
      ctx.options.stepTiming!({drvPath: step.drvPath, status, marks});
    }
  }

  /** The step could not start (no database): give the slot back and try again a little later. */
  private startLater(step: Step, lease: SlotLease, e: unknown): void {
    this.ctx.log('error', `cannot start step ${step.drvPath}: ${(e as Error).message}`);
    this.release(lease);
    step.after = Date.now() + 2000;
    this.ctx.requeue(step);
  }

  private insertStepRow(step: Step, accounting: Build, mname: string, startedAt: number): Promise<number> {
    return withTransaction(this.ctx.pool, async (c) => {
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

  private async execute(
    step: Step,
    lease: SlotLease,
    accounting: Build,
    stepnr: number,
    mname: string,
    startedAt: number,
    maxSilent: number,
    timeout: number,
    marks: [string, number][] | undefined,
  ): Promise<number> {
    const {ctx} = this;
    const machine = lease.machine;
    const a: ActiveStep = {step, machine, build: accounting.id, stepnr, phase: BUSY.preparing, startedAt, phaseSince: startedAt, controller: new AbortController(), lease};
    ctx.active.set(step, a);
    machine.rt.lastUsed = startedAt;
    noteJobStart(machine, startedAt);
    ctx.stats.nrStepsStarted++;
    ctx.stats.lastProgressAt = startedAt;
    ctx.emitEvent('step-started', {build: accounting.id, stepnr, machine: mname, drvPath: step.drvPath});

    const logPath = drvLogBucketPath(ctx.options.dataDir, step.drvPath);
    await this.archiveLog(logPath, accounting.id, stepnr, step.drvPath);

    const destination = this.destination.uri;
    // A local worker slot: the executor takes it for the output copy into the local store; with a destination store
    // it is kept (Hydra copies into its destStore under localWorkThrottler) until the outputs are published too.
    const takeSlot = () =>
      this.localWork.acquire(a.controller.signal, async () => {
        a.phase = BUSY.waitingForSlot;
        a.phaseSince = Date.now();
        await sql.updateStepPhase(ctx.pool, a.build, a.stepnr, BUSY.waitingForSlot).catch((e) => ctx.log('error', `phase update failed: ${(e as Error).message}`));
      });
    let heldSlot: (() => void) | null = null;
    let result: StepResult;
    try {
      const drv = step.drv ?? (await ctx.store.readDrv(step.drvPath));
      result = await ctx.options.executor.run({
        machine: machine.spec,
        drvPath: step.drvPath,
        drv,
        maxSilentTime: maxSilent,
        buildTimeout: timeout,
        maxLogSize: ctx.options.runner.maxLogSize,
        maxOutputSize: ctx.options.runner.maxOutputSize,
        logPath,
        ...(ctx.options.runner.gcRootsDir ? {gcRootsDir: ctx.options.runner.gcRootsDir} : {}),
        signal: a.controller.signal,
        ...(marks ? {mark: (m: string) => void marks.push([m, performance.now()])} : {}),
        // With a destination store the outputs go there in busy 40 (as Hydra copies them to its destStore while
        // receiving); post-processing is shown once they are published.
        onPhase: (phase: StepPhase) => (destination && phase === 'postprocessing' ? undefined : this.setPhase(a, phase)),
        onConnected: () => {
          machine.rt.consecutiveFailures = 0;
          machine.rt.disabledUntil = 0;
        },
        onSlotReleased: () => this.release(lease),
        localWorkSlot: async () => {
          const release = await takeSlot();
          if (!destination) return release;
          heldSlot = release;
          return () => undefined;
        },
      });
    } catch (e) {
      // The executor reports builder trouble in its result; what is thrown here is ours (e.g. the
      // .drv vanished): retry without blaming the machine.
      result = failureResult(3, (e as Error).message, false);
    }
    marks?.push(['executed', performance.now()]);
    this.release(lease);
    try {
      if (destination && result.status === STATUS.success && !a.controller.signal.aborted) {
        // An executor that took no slot (the outputs were already local) still publishes under one.
        heldSlot ??= await takeSlot().catch(() => null);
        if (!a.controller.signal.aborted) {
          await this.setPhase(a, 'receiving');
          result = await this.destination.publishOutputs(step.drvPath, result, a.controller.signal);
          if (result.status === STATUS.success) await this.destination.uploadLog(step.drvPath, result.logPath, a.controller.signal);
          await this.setPhase(a, 'postprocessing');
        }
      }
    } finally {
      (heldSlot as (() => void) | null)?.();
    }
    ctx.active.delete(step);
    const stoppedAt = Date.now();
    this.account(machine, result, startedAt, stoppedAt);

    if (a.controller.signal.aborted) {
      const why = a.controller.signal.reason;
      result =
        why === 'shutdown'
          ? {...result, status: STATUS.aborted, retry: true, errorMsg: 'the queue runner stopped during this step', machineFault: false, cacheFailure: false}
          : {...result, status: STATUS.cancelled, retry: false, errorMsg: null, machineFault: false, cacheFailure: false};
    }
    if (result.machineFault) {
      recordMachineFailure(machine.rt, result.errorMsg ?? 'connection failed', stoppedAt, this.machineBackoffMs);
      ctx.log('warn', `machine ${mname} failed: ${result.errorMsg}; backing off until ${new Date(machine.rt.disabledUntil).toISOString()}`);
    }
    step.lastError = result.status === 0 ? null : result.errorMsg;

    // Charge the step time to every jobset that needed it (scheduling shares).
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
      await this.recordEnd(step, accounting, finish, result);
    } catch (e) {
      ctx.log('error', `could not record the end of step ${accounting.id}/${stepnr}: ${(e as Error).message}`);
      await sql
        .abortOrphanedStep(ctx.pool, ctx.runnerLock(), accounting.id, stepnr)
        .catch(() => this.orphans.set(`${accounting.id}/${stepnr}`, {build: accounting.id, stepnr}));
      step.running = false;
      ctx.requeue(step);
    }
    // A failed (or cancelled, or retried) step's log goes to the binary cache too, once its end is recorded, as in
    // Hydra's builder.cc; a succeeded step's went with its outputs, before its builds finished.
    if (result.status !== STATUS.success) await this.destination.uploadLog(step.drvPath, result.logPath);
    ctx.emitEvent('step-finished', {build: accounting.id, stepnr, status: result.status});
    ctx.requestDispatch();
    return result.status;
  }

  private account(machine: RunnerMachine, result: StepResult, startedAt: number, stoppedAt: number): void {
    const stats = this.ctx.stats;
    stats.bytesSent += result.bytesSent;
    stats.bytesReceived += result.bytesReceived;
    stats.lastProgressAt = stoppedAt;
    const buildMs = Math.max(0, result.stopTime - result.startTime) * 1000;
    machine.rt.nrStepsDone++;
    if (result.status === STATUS.success) machine.rt.succeededBuilds++;
    else if (result.status !== STATUS.cancelled) machine.rt.failedBuilds++;
    noteJobEnd(machine, stoppedAt);
    machine.rt.totalStepTimeMs += stoppedAt - startedAt;
    machine.rt.totalStepBuildTimeMs += buildMs;
    stats.totalStepTimeMs += stoppedAt - startedAt;
    stats.totalStepBuildTimeMs += buildMs;
  }

  /** The step's end: success, cancelled (or aborted by a stop), retried, or failed for good. */
  private async recordEnd(step: Step, accounting: Build, finish: sql.FinishStepInput, result: StepResult): Promise<void> {
    const {ctx} = this;
    if (result.status === STATUS.success) {
      await this.outcomes.succeed(step, accounting, finish, result);
    } else if (result.status === STATUS.cancelled || (result.retry && this.shuttingDown)) {
      await withTransaction(ctx.pool, (c) => sql.finishBuildStep(c, finish));
      step.running = false;
      if (result.status === STATUS.aborted) ctx.requeue(step);
      else if (step.cancelled && ctx.graph.hasDependents(step)) {
        // Cancelled because no build needed it, then needed again (a restart) before it died: it runs again.
        step.cancelled = false;
        ctx.requeue(step);
      } else ctx.graph.collectGarbage();
    } else if (result.retry && step.tries + 1 < this.maxTries) {
      await withTransaction(ctx.pool, (c) => sql.finishBuildStep(c, finish));
      step.tries++;
      ctx.stats.nrRetries++;
      ctx.stats.maxNrRetries = Math.max(ctx.stats.maxNrRetries, step.tries);
      step.after = Date.now() + this.retryIntervalMs * 3 ** (step.tries - 1);
      ctx.log('warn', `step ${step.drvPath} failed on ${finish.machine} (${result.errorMsg}); retry ${step.tries} at ${new Date(step.after).toISOString()}`);
      ctx.requeue(step);
    } else {
      ctx.stats.nrStepsDone++;
      await this.outcomes.fail(step, accounting, finish, {
        status: result.status,
        errorMsg: result.errorMsg,
        startTime: finish.startTime,
        stopTime: finish.stopTime,
        machine: finish.machine,
        cacheFailure: result.cacheFailure,
      });
    }
  }

  private async setPhase(a: ActiveStep, phase: StepPhase): Promise<void> {
    const busy = PHASE_BUSY[phase];
    a.phase = busy;
    a.phaseSince = Date.now();
    await sql.updateStepPhase(this.ctx.pool, a.build, a.stepnr, busy).catch((e) => this.ctx.log('error', `phase update failed: ${(e as Error).message}`));
  }

  /** hydra-ops rule (NixOS/hydra#694): keep the previous log of this derivation before a rebuild truncates it. */
  private async archiveLog(logPath: string, build: number, stepnr: number, drvPath: string): Promise<void> {
    try {
      const st = await stat(logPath);
      if (st.size === 0) return;
      const target = join(this.ctx.options.dataDir, 'hydra-ops', 'log-archive', basename(dirname(logPath)), `${basename(logPath)}.${Date.now()}`);
      await mkdir(dirname(target), {recursive: true});
      await copyFile(logPath, target);
      await this.ctx.pool
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

  /** Marks aborted the step rows whose end could not be written (called periodically and at stop). */
  async cleanOrphans(): Promise<void> {
    for (const [key, o] of this.orphans) {
      try {
        await sql.abortOrphanedStep(this.ctx.pool, this.ctx.runnerLock(), o.build, o.stepnr);
        this.orphans.delete(key);
        this.ctx.log('info', `orphaned step ${o.build}/${o.stepnr} marked aborted`);
      } catch {
        return; // still no database; try again later
      }
    }
  }
}
