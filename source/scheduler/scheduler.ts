// The queue runner (docs/architecture.md, "A build's way through hydra-ops"). This file is its table of contents:
// the state it owns, its lifecycle (runner lock, clearBusy, LISTEN, polling, a graceful stop), the machines and
// the dispatcher. The other roles live beside it, as in Hydra's C++ runner:
//   queue-monitor.ts   reading the queue into the step graph, reacting to queue changes
//   step-execution.ts  running one step: its row, phases, limits, log, the end of it
//   outcomes.ts        what a finished step or a cached result means for the builds (rows, graph)
//   stats.ts           the counters; context.ts the options, events and the view the parts share
//   runner-store.ts    the store the step graph reads through (batched look-ups, substitution)
// The daemon runs it headless; the console runs the very same object in-process.
import {EventEmitter} from 'node:events';
import type pg from 'pg';
import type {Derivation} from '../nix/drv.js';
import type {MachineSpec} from '../fleet/machines-file.js';
import {PgListener} from '../db/listener.js';
import {RunnerDbLock, describeLockSession, type RunnerLockSession} from '../db/runner-advisory-lock.js';
import * as sql from '../db/runner-sql.js';
import {nowSeconds} from '../db/runner-sql.js';
import type {Step} from './model.js';
import {StepGraph, type GraphStore} from './graph.js';
import {assignSteps, capabilityKey, orderRunnable} from './dispatcher.js';
import {isAvailable, newRuntime, stepPlatform, unsupportedReason, waitingReason, type RunnerMachine} from './machines.js';
import {newSchedulerStats, type SchedulerStats} from './stats.js';
import type {ActiveStep, FinishedBuild, SchedulerContext, SchedulerEvents, SchedulerLog, SchedulerOptions} from './context.js';
import {Outcomes} from './outcomes.js';
import {QueueMonitor} from './queue-monitor.js';
import {runnerGraphStore} from './runner-store.js';
import {StepExecution} from './step-execution.js';

export type {ActiveStep, IdleRound, SchedulerEvents, SchedulerLog, SchedulerOptions} from './context.js';
export type {SchedulerStats} from './stats.js';
export {failureResult} from './step-execution.js';
export type {Derivation};

export const QUEUE_CHANNELS = ['builds_added', 'builds_restarted', 'builds_cancelled', 'builds_deleted', 'builds_bumped', 'jobset_shares_changed'];

export interface Scheduler {
  on<K extends keyof SchedulerEvents>(event: K, listener: (...args: SchedulerEvents[K]) => void): this;
  once<K extends keyof SchedulerEvents>(event: K, listener: (...args: SchedulerEvents[K]) => void): this;
  off<K extends keyof SchedulerEvents>(event: K, listener: (...args: SchedulerEvents[K]) => void): this;
  emit<K extends keyof SchedulerEvents>(event: K, ...args: SchedulerEvents[K]): boolean;
}

export class Scheduler extends EventEmitter implements SchedulerContext {
  // ---------------------------------------------------------------- state
  readonly graph: StepGraph;
  readonly machines = new Map<string, RunnerMachine>();
  readonly active = new Map<Step, ActiveStep>();
  readonly stats: SchedulerStats = newSchedulerStats();
  readonly log: SchedulerLog;
  readonly store: GraphStore;
  private readonly outcomes: Outcomes;
  private readonly monitor: QueueMonitor;
  private readonly execution: StepExecution;
  private listener: PgListener | null = null;
  private lock: RunnerDbLock | null = null;
  private ownsLock = false;
  private stopping = false;
  private machinesReady = false;
  /** Machines drained by operators, as last read; applied to machines that appear later too. */
  private drained = new Set<string>();
  private dispatchTimer: NodeJS.Timeout | null = null;
  private dispatchRunning = false;
  private dispatchAgain = false;
  private lastDispatchEnd = 0;
  private pollTimer: NodeJS.Timeout | null = null;
  private orphanTimer: NodeJS.Timeout | null = null;
  /** Work to wait for at stop: running steps and failure writes. */
  private readonly running = new Set<Promise<unknown>>();
  private buildOneResult: ((code: number) => void) | null = null;

  constructor(readonly options: SchedulerOptions) {
    super();
    this.graph = new StepGraph(options.localSystem, options.localNix ?? null);
    this.log = options.log ?? (() => {});
    this.store =
      options.graphStore ??
      runnerGraphStore({pool: options.pool, useSubstitutes: options.runner.useSubstitutes, nix: options.nix, log: this.log});
    this.outcomes = new Outcomes(this);
    this.monitor = new QueueMonitor(this, this.outcomes);
    this.execution = new StepExecution(this, this.outcomes);
  }

  get pool(): pg.Pool {
    return this.options.pool;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Runner lock, clearBusy, LISTEN, polling. Machines must be supplied with setMachines first or soon after. */
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
    this.listener.on('notification', (n: {channel: string}) => this.monitor.onNotification(n.channel));
    this.listener.on('disconnected', (e: Error) => this.log('error', `LISTEN connection lost: ${e.message}`));
    await this.listener.start();
    const pollMs = this.options.pollMs ?? 5000;
    this.pollTimer = setInterval(() => {
      void this.refreshDrained();
      this.requestDispatch();
    }, pollMs);
    this.pollTimer.unref();
    this.orphanTimer = setInterval(() => void this.execution.cleanOrphans(), Math.max(1000, pollMs * 4));
    this.orphanTimer.unref();
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
      this.execution.shuttingDown = true;
      for (const a of this.active.values()) a.controller.abort('shutdown');
      await Promise.race([all, new Promise((r) => setTimeout(r, 10_000).unref())]);
    }
    await this.monitor.scanning?.catch(() => {});
    if (this.lock) {
      await this.execution.cleanOrphans();
      await sql.clearBusy(this.pool, this.lock).catch((e) => this.log('warn', `clearBusy at stop skipped: ${(e as Error).message}`));
      if (this.ownsLock) await this.lock.release();
    }
  }

  /** Whether this scheduler holds the database's runner lock right now (it dispatches only then). */
  get holdsLock(): boolean {
    return this.lock?.held === true;
  }

  /** Resolves with 0/1 once the `buildOne` build's top-level step is done (the exit codes of Hydra's --build-one). */
  buildOneDone(): Promise<number> {
    return new Promise((resolve) => (this.buildOneResult = resolve));
  }

  // ---------------------------------------------------------------- machines

  /** Installs the machine set (machines-file reload); runtime state survives by URI. */
  setMachines(specs: readonly MachineSpec[]): void {
    const listed = new Set(specs.map((s) => s.uri));
    for (const spec of specs) {
      let m = this.machines.get(spec.uri);
      if (m) {
        m.spec = spec;
        m.rt.listed = true;
      } else {
        m = {spec, rt: newRuntime()};
        m.rt.drained = this.isDrained(spec);
        this.machines.set(spec.uri, m);
      }
      m.rt.unusable = spec.kind === 'local' ? (this.options.localProblem ?? null) : null;
      if (m.rt.unusable !== null) m.rt.lastError = m.rt.unusable;
    }
    for (const m of this.machines.values()) if (!listed.has(m.spec.uri)) m.rt.listed = false;
    this.machinesReady = true;
    this.requestDispatch();
  }

  private isDrained(spec: MachineSpec): boolean {
    return this.drained.has(spec.uri) || this.drained.has(spec.host);
  }

  async refreshDrained(): Promise<void> {
    let drained: Set<string>;
    try {
      drained = await sql.drainedMachines(this.pool);
    } catch (e) {
      // Keep the last known state: an unreadable table must not enable every drained machine.
      this.log('warn', `cannot read which machines are drained (keeping the last known state): ${(e as Error).message}`);
      return;
    }
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

  // ---------------------------------------------------------------- queue monitor (queue-monitor.ts)

  requestScan(): void {
    this.monitor.requestScan();
  }

  requestChangeCheck(): void {
    this.monitor.requestChangeCheck();
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

  /** One dispatch round: fail what no machine can ever build, order the rest, start what fits (dispatcher.ts). */
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
      const limitMs = this.options.runner.maxUnsupportedTime * 1000;
      for (const step of this.graph.runnable) {
        if (step.running) continue;
        if (this.options.idleWork) runnablePlatforms.add(stepPlatform(step, this.options.localSystem));
        const key = capabilityKey(step);
        let reason = reasonCache.get(key);
        if (reason === undefined) {
          reason = unsupportedReason(step, machines, this.options.localSystem);
          reasonCache.set(key, reason);
        }
        if (reason === null) {
          step.lastSupported = now;
        } else {
          unsupported++;
          if (now - step.lastSupported >= limitMs) {
            this.outcomes.failUnsupported(step, reason);
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
      const sorted = anyFree ? orderRunnable(candidates, this.options.stepOrder ?? 'rdeps') : [];
      for (const {step, lease} of assignSteps(sorted, machines, this.options.localSystem, now)) {
        this.graph.runnable.delete(step);
        this.track(this.execution.run(step, lease).catch((e) => this.log('error', `step ${step.drvPath}: ${(e as Error).stack ?? e}`)));
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

  // ---------------------------------------------------------------- what the parts share (context.ts)

  isStopping(): boolean {
    return this.stopping;
  }

  runnerLock(): RunnerDbLock {
    if (!this.lock) throw new Error('the scheduler has not taken the runner lock (start() first)');
    return this.lock;
  }

  requeue(step: Step): void {
    step.running = false;
    if (this.graph.steps.get(step.drvPath) === step && step.runnable && !step.cancelled) {
      this.graph.runnable.add(step);
      step.runnableSince = Date.now();
    }
    this.requestDispatch();
  }

  buildsFinished(builds: readonly FinishedBuild[]): void {
    for (const b of builds) {
      this.stats.nrBuildsDone++;
      if (b.kind === 'succeeded') this.stats.nrBuildsSucceeded++;
      else if (b.kind === 'failed') this.stats.nrBuildsFailed++;
    }
    for (const b of builds) {
      this.emit('build-finished', {build: b.id, status: b.status});
      if (b.kind !== 'aborted') this.buildOneSettled(b.id, b.kind === 'succeeded');
    }
  }

  buildOneSettled(build: number, success: boolean): void {
    if (this.options.buildOne === build && this.buildOneResult) {
      this.buildOneResult(success ? 0 : 1);
      this.buildOneResult = null;
    }
  }

  emitEvent<K extends keyof SchedulerEvents>(event: K, ...args: SchedulerEvents[K]): void {
    this.emit(event, ...args);
  }

  track(p: Promise<unknown>): void {
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
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
    return this.graph.builds.size === 0 && this.active.size === 0 && !this.monitor.scanning;
  }
}
