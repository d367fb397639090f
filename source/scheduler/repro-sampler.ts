// Spending idle builder capacity on reproducibility: a random P% sample of the builds that finish
// successfully is re-checked (scheduler/repro-check.ts) at the lowest priority.
//
// Rules:
// - The sampler runs from the Scheduler's idleWork hook, at the end of a dispatch round, after real steps
//   were assigned. It starts a check only on a machine that is available (listed, not drained, not backing
//   off, a free slot) and none of whose systems had a runnable real step in that round — "nothing real is
//   runnable for that system". It takes the slot synchronously (a SlotLease) and frees it when the
//   check ends, then asks for a dispatch round.
// - The check machine is never the machine that built the derivation.
// - At most `maxConcurrent` sampled checks run at once (default 1).
// - Preemption: when a real step is runnable but unassigned for a system of a machine whose slots are all
//   taken, sampled checks on that machine are aborted (verdict unchecked), so they never delay real work
//   for longer than one dispatch round.
// - Sampled checks are system work: no Hydra privilege is checked; requested_by is `hydra-ops sampler`.

import {EventEmitter} from 'node:events';
import type pg from 'pg';
import {readDrv, requiredSystemFeatures} from '../nix/drv.js';
import {buildsIntoLocalStore, type CheckRunner} from '../fleet/check-runner.js';
import {STATUS} from '../db/runner-sql.js';
import {openSettings} from '../config/settings.js';
import {isAvailable, stepPlatform, type RunnerMachine} from './machines.js';
import {SlotLease} from './slot-lease.js';
import {machineCanBuild, performCheck, resolveCheckTarget, type CheckReport, type CheckTarget} from './repro-check.js';
import type {IdleRound, Scheduler} from './scheduler.js';
import {parseEnvNames} from '../config/child-env.js';

export const SAMPLER_USER = 'hydra-ops sampler';

export interface ReproSamplerOptions {
  pool: pg.Pool;
  runner: CheckRunner;
  /** $HYDRA_DATA. */
  dataDir: string;
  /** Share of newly successful builds to check, 0..100 (0 = off). */
  percent: number;
  diffHook?: string;
  diffEnv?: readonly string[];
  maxLogSize?: number;
  /** Sampled checks running at once (default 1). */
  maxConcurrent?: number;
  /** Candidates kept waiting for an idle machine; the oldest are dropped beyond this (default 1000). */
  maxPending?: number;
  /** Random source in [0, 1) (tests make it deterministic). */
  random?: () => number;
  log?: (level: 'error' | 'warn' | 'info' | 'debug', message: string) => void;
}

interface Candidate {
  target: CheckTarget;
  features: string[];
}

interface RunningCheck {
  build: number | null;
  machine: RunnerMachine;
  controller: AbortController;
  done: Promise<void>;
  id: number | null;
}

/**
 * Events: 'sampled' (build), 'started' ({build, machine, id}), 'finished' (CheckReport),
 * 'preempted' ({build, machine}), 'error' is never emitted (problems go to the log).
 */
export class ReproSampler extends EventEmitter {
  private scheduler: Scheduler | null = null;
  private readonly pending: Candidate[] = [];
  private readonly resolving = new Set<Promise<void>>();
  readonly running = new Set<RunningCheck>();
  private stopped = false;
  private readonly random: () => number;
  private readonly log: NonNullable<ReproSamplerOptions['log']>;
  private readonly onBuildFinished = (e: {build: number; status: number}) => {
    if (e.status !== STATUS.success || this.stopped) return;
    if (!(this.random() * 100 < this.options.percent)) return;
    this.emit('sampled', e.build);
    this.offer(e.build);
  };

  constructor(readonly options: ReproSamplerOptions) {
    super();
    if (!(options.percent >= 0 && options.percent <= 100)) throw new RangeError(`repro sample percent must be 0..100, got ${options.percent}`);
    this.random = options.random ?? Math.random;
    this.log = options.log ?? (() => undefined);
  }

  /** Starts sampling the scheduler's successful builds (its idleWork option must call onIdle). */
  attach(scheduler: Scheduler): void {
    this.scheduler = scheduler;
    scheduler.on('build-finished', this.onBuildFinished);
  }

  /** Candidates waiting for an idle machine. */
  get pendingCount(): number {
    return this.pending.length;
  }

  /** Queue a build for checking regardless of the sample share (it must be a finished successful build). */
  offer(build: number): void {
    const p = (async () => {
      try {
        const target = await resolveCheckTarget(this.options.pool, {build});
        const drv = await readDrv(target.drvPath);
        if (this.stopped) return;
        this.pending.push({target, features: requiredSystemFeatures(drv)});
        const max = this.options.maxPending ?? 1000;
        if (this.pending.length > max) this.pending.splice(0, this.pending.length - max);
        this.scheduler?.requestDispatch();
      } catch (e) {
        this.log('debug', `repro sampler: build ${build} is not checkable: ${(e as Error).message}`);
      }
    })();
    this.resolving.add(p);
    void p.finally(() => this.resolving.delete(p));
  }

  /** The Scheduler's idleWork hook. Synchronous: reserves slots before returning. */
  onIdle(round: IdleRound): void {
    if (this.stopped) return;
    if (this.running.size > 0) this.preempt(round);
    const max = this.options.maxConcurrent ?? 1;
    while (this.pending.length > 0 && this.running.size < max) {
      const free = round.machines.filter(
        (m) =>
          isAvailable(m, round.now) &&
          !buildsIntoLocalStore(m.spec) &&
          !m.spec.systems.some((s) => round.runnablePlatforms.has(s)) &&
          ![...this.running].some((r) => r.machine === m),
      );
      if (free.length === 0) return;
      let started = false;
      for (let i = 0; i < this.pending.length && !started; i++) {
        const c = this.pending[i]!;
        const original = c.target.originalStep?.machine ?? null;
        const m = free.find((x) => x.spec.uri !== original && machineCanBuild(x.spec, c.target.system, c.features));
        if (!m) continue;
        this.pending.splice(i, 1);
        this.start(c, m);
        started = true;
      }
      if (!started) return;
    }
  }

  /** Aborts sampled checks that hold the last slot of a machine real steps are waiting for. */
  private preempt(round: IdleRound): void {
    const scheduler = this.scheduler;
    if (!scheduler) return;
    const localSystem = scheduler.options.localSystem;
    const waiting = new Set<string>();
    for (const step of scheduler.graph.runnable) {
      if (!step.running && step.after <= round.now) waiting.add(stepPlatform(step, localSystem));
    }
    if (waiting.size === 0) return;
    for (const r of this.running) {
      if (r.controller.signal.aborted) continue;
      const full = r.machine.rt.currentJobs >= r.machine.spec.maxJobs;
      if (full && r.machine.spec.systems.some((s) => waiting.has(s))) {
        this.log('info', `repro sampler: preempting the check of build ${r.build} on ${r.machine.spec.uri} for real work`);
        this.emit('preempted', {build: r.build, machine: r.machine.spec.uri});
        r.controller.abort('preempted');
      }
    }
  }

  private start(c: Candidate, m: RunnerMachine): void {
    const lease = SlotLease.take(m);
    const controller = new AbortController();
    const entry: RunningCheck = {build: c.target.build, machine: m, controller, done: Promise.resolve(), id: null};
    this.running.add(entry);
    entry.done = (async () => {
      try {
        const report: CheckReport = await performCheck(
          this.options.pool,
          {runner: this.options.runner, machines: [m.spec], dataDir: this.options.dataDir, diffHook: this.options.diffHook, diffEnv: this.options.diffEnv, maxLogSize: this.options.maxLogSize},
          c.target,
          {
            machine: m.spec.uri,
            requestedBy: SAMPLER_USER,
            signal: controller.signal,
            onStarted: (id) => {
              entry.id = id;
              this.emit('started', {build: c.target.build, machine: m.spec.uri, id});
            },
          },
        );
        this.log(report.verdict === 'not-reproducible' ? 'warn' : 'info', `repro sampler: check ${report.id} of build ${report.build} on ${report.checkMachine}: ${report.verdict}${report.error ? ` (${report.error})` : ''}`);
        this.emit('finished', report);
      } catch (e) {
        this.log('warn', `repro sampler: check of build ${c.target.build} on ${m.spec.uri} did not start: ${(e as Error).message}`);
      } finally {
        this.running.delete(entry);
        lease.release();
        this.scheduler?.requestDispatch();
      }
    })();
  }

  /** Stops sampling; running checks are aborted (verdict unchecked) and awaited. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.scheduler?.off('build-finished', this.onBuildFinished);
    this.pending.length = 0;
    await Promise.allSettled([...this.resolving]);
    for (const r of this.running) r.controller.abort('shutdown');
    await Promise.allSettled([...this.running].map((r) => r.done));
  }
}

/** The sampler's settings (reproSamplePercent, diffHook) from hydra-ops' settings; unreadable settings: off. */
export function samplerSettings(
  env: NodeJS.ProcessEnv,
  log?: (message: string) => void,
): {percent: number; diffHook: string | undefined; commandEnv: string[]} {
  try {
    const settings = openSettings(env);
    return {
      percent: settings.getSetting('reproSamplePercent') ?? 0,
      diffHook: settings.getSetting('diffHook'),
      commandEnv: parseEnvNames(settings.getSetting('commandEnv') ?? ''),
    };
  } catch (e) {
    log?.(`reproducibility sampling is off: ${(e as Error).message}`);
    return {percent: 0, diffHook: undefined, commandEnv: []};
  }
}
