// What the parts of the queue runner share: its options, the one state object they work on (the step graph, the
// machines, the steps running now, the counters) and the typed events it emits. scheduler.ts owns the state;
// queue-monitor.ts, step-execution.ts and outcomes.ts each see it through `SchedulerContext`.
import type pg from 'pg';
import type {RunnerSettings} from '../config/hydra-conf.js';
import type {NixCallOptions} from '../nix/dest-store.js';
import type {RunnerDbLock} from '../db/runner-advisory-lock.js';
import type {ConnectionSettings} from '../db/scram-client.js';
import type {StepExecutor} from '../fleet/step-api.js';
import type {StepOrder} from './dispatcher.js';
import type {LocalNixSettings} from '../fleet/machines-file.js';
import type {GraphStore, StepGraph} from './graph.js';
import type {RunnerMachine} from './machines.js';
import type {Step} from './model.js';
import type {SlotLease} from './slot-lease.js';
import type {SchedulerStats} from './stats.js';

export interface SchedulerLog {
  (level: 'error' | 'warn' | 'info' | 'debug', message: string, fields?: Record<string, unknown>): void;
}

export interface StepTiming {
  drvPath: string;
  status: number;
  /** [instant name, ms since performance.timeOrigin], in the order they happened. */
  marks: [string, number][];
}

export interface SchedulerOptions {
  pool: pg.Pool;
  /** Settings for the dedicated LISTEN connection. */
  connection: ConnectionSettings;
  dataDir: string;
  runner: RunnerSettings;
  executor: StepExecutor;
  /** The coordinator's system (`builtin` steps run as it). */
  localSystem: string;
  /** The coordinator's Nix settings (extra-platforms, max-jobs, system-features) for preferLocalBuild. */
  localNix?: LocalNixSettings;
  stepOrder?: StepOrder;
  maxTries?: number;
  /** First retry delay; later ones multiply by 3 (docs/hydra-compat.md, "Retries"). */
  retryIntervalMs?: number;
  /** First machine back-off; later ones multiply by 3, at most 4 steps. */
  machineBackoffMs?: number;
  /** Cap of one queue scan before pending notifications are handled. */
  scanBudgetMs?: number;
  /** Poll period for operator drain state and the safety re-scan. */
  pollMs?: number;
  /** Only load this build (the `--build-one` test hook of Hydra's runner). */
  buildOne?: number;
  /** Wait before a build whose load failed (e.g. a .drv could not be read right now) is loaded again (default 30 s). */
  loadRetryMs?: number;
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
   * It may take free slots synchronously (SlotLease.take) and must release them itself.
   */
  idleWork?: (round: IdleRound) => void;
  /**
   * Environment and `--option`s for the Nix calls that publish to `store_uri` and substitute (`use-substitutes`),
   * e.g. NIX_SSHOPTS for an ssh:// destination, or substituters and trusted-public-keys not in nix.conf.
   */
  nix?: Omit<NixCallOptions, 'signal'>;
  /**
   * Timing hook (benchmarks): after each step, its drv path and the instants (ms, performance.timeOrigin based) of
   * its way through the runner — runnable, dispatched, step row written, the executor's StepMarks, executor done,
   * end recorded. Absent, nothing is measured.
   */
  stepTiming?: (timing: StepTiming) => void;
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

/** A step being built: where, for which build row, in which busy phase, and its slot. */
export interface ActiveStep {
  step: Step;
  machine: RunnerMachine;
  build: number;
  stepnr: number;
  phase: number;
  startedAt: number;
  phaseSince: number;
  controller: AbortController;
  lease: SlotLease;
}

/** The events a scheduler emits, with their payloads. */
export interface SchedulerEvents {
  'step-started': [{build: number; stepnr: number; machine: string; drvPath: string}];
  'step-finished': [{build: number; stepnr: number; status: number}];
  'build-finished': [{build: number; status: number}];
  dispatch: [];
}

/** A build that reached `finished = 1`, and how it is counted. */
export interface FinishedBuild {
  id: number;
  status: number;
  /** succeeded / failed count in nrBuildsSucceeded / nrBuildsFailed; aborted only in nrBuildsDone. */
  kind: 'succeeded' | 'failed' | 'aborted';
}

export interface SchedulerContext {
  readonly options: SchedulerOptions;
  readonly pool: pg.Pool;
  readonly graph: StepGraph;
  readonly stats: SchedulerStats;
  readonly active: Map<Step, ActiveStep>;
  readonly store: GraphStore;
  readonly log: SchedulerLog;
  /** True once stop() began. */
  isStopping(): boolean;
  /** The database's runner lock (held while the scheduler runs). */
  runnerLock(): RunnerDbLock;
  requestDispatch(): void;
  /** Puts a step back among the runnable ones (when it still belongs to the graph). */
  requeue(step: Step): void;
  /** Counts finished builds, emits `build-finished` and settles a `--build-one` run (buildOneSettled). */
  buildsFinished(builds: readonly FinishedBuild[]): void;
  /** Ends a `--build-one` run when `build` is the one (exit 0 on success, 1 otherwise). */
  buildOneSettled(build: number, success: boolean): void;
  emitEvent<K extends keyof SchedulerEvents>(event: K, ...args: SchedulerEvents[K]): void;
  /** Keeps a promise of work the scheduler must wait for when it stops. */
  track(p: Promise<unknown>): void;
}
