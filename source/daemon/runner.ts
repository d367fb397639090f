// Starting and stopping the queue runner: shared by `hydra-ops --daemon` and the console, which runs
// the very same scheduler in-process when no other runner holds the lock.
// Start-up (docs/hydra-compat.md, "Runner lock and clearBusy"): runner lock files → the database's runner lock (a PostgreSQL
// advisory lock, db/runner-advisory-lock.ts: one runner per database, whatever its data directory) → schema check → machines → clearBusy → LISTEN →
// scan → status row and REST endpoints. Stop: no new dispatches, running steps get a grace
// period, the rest are aborted as retryable, clearBusy, status row deleted, lock released.
import {appendFileSync, existsSync} from 'node:fs';
import type {ResolvedConfig} from '../config/resolve.js';
import type {Database} from '../db/connection.js';
import {inspectSchema, initSchema} from '../db/schema.js';
import {MachinesMonitor} from '../fleet/machines-monitor.js';
import {localNixSettings, type LocalNixSettings} from '../fleet/machines-file.js';
import {FleetExecutor} from '../fleet/step-runner.js';
import type {StepExecutor} from '../fleet/step-api.js';
import {acquireRunnerLock, type RunnerLock} from '../scheduler/runner-lock.js';
import {RunnerDbLock} from '../db/runner-advisory-lock.js';
import {Scheduler, type IdleRound, type SchedulerOptions} from '../scheduler/scheduler.js';
import type {Logger} from './logger.js';
import {parseStatusAddress, startStatusServer, type StatusServer} from './http.js';
import {SystemStatusPublisher} from './system-status.js';
import {PostBuildRunner} from './post-build.js';
import {postBuildCommands} from '../config/run-commands.js';
import {CheckRunner} from '../fleet/check-runner.js';
import {ReproSampler, samplerSettings} from '../scheduler/repro-sampler.js';
import {describeLocalNixProblem, diagnoseLocalNix, type LocalNixPlan} from '../nix/local-nix.js';

export interface RunnerOptions {
  config: ResolvedConfig;
  db: Database;
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** Only build this build (docs/hydra-compat.md, "--build-one"). */
  buildOne?: number;
  /** host:port of the REST/metrics endpoint; 'off' disables it. */
  statusAddress?: string;
  schedulerOverrides?: Partial<SchedulerOptions>;
  executor?: StepExecutor;
  /** Reproducibility sampling share (%) and diff hook; default: the reproSamplePercent / diffHook settings. */
  reproSamplePercent?: number;
  diffHook?: string;
}

export interface RunningRunner {
  scheduler: Scheduler;
  /** How local machines build (null when no machine is local). */
  localNix: LocalNixPlan | null;
  /** The database's runner lock this runner holds. */
  dbLock: RunnerDbLock;
  monitor: MachinesMonitor;
  statusAddress: string | null;
  /** Where hydra.conf's queue_runner_metrics_address listener is bound (null when the key is not set). */
  metricsAddress: string | null;
  /** SIGHUP: reload the machines file (and, by the caller, configuration). */
  reload(): void;
  stop(graceMs?: number): Promise<void>;
}

export class RunnerStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerStartError';
  }
}

export function machinesFiles(config: ResolvedConfig): string[] {
  const {value, source} = config.machinesFiles;
  if (source === 'default') return value.filter((f) => existsSync(f));
  return value;
}

/**
 * Takes the runner lock files (RunnerLockBusyError when another runner holds one) and the database's
 * runner lock (RunnerDbLockBusyError naming the holder), then starts everything.
 */
export async function startRunner(o: RunnerOptions): Promise<RunningRunner> {
  const {config, db, log} = o;
  const dataDir = config.dataDir.dir;
  const lock: RunnerLock = await acquireRunnerLock(dataDir);
  let dbLock: RunnerDbLock;
  try {
    dbLock = await RunnerDbLock.acquire(db.connection);
  } catch (e) {
    await lock.release().catch(() => {});
    throw e;
  }
  log('info', `holding the database's runner lock as "${dbLock.applicationName}" (database backend pid ${dbLock.backendPid})`);
  let monitor: MachinesMonitor | null = null;
  let scheduler: Scheduler | null = null;
  let executor: StepExecutor | null = null;
  let server: StatusServer | null = null;
  let metricsServer: StatusServer | null = null;
  let publisher: SystemStatusPublisher | null = null;
  let postBuild: PostBuildRunner | null = null;
  let sampler: ReproSampler | null = null;
  let checkRunner: CheckRunner | null = null;
  const teardown = async (graceMs: number) => {
    await sampler?.stop().catch(() => {});
    await checkRunner?.close().catch(() => {});
    await postBuild?.stop(Math.min(graceMs, 5000)).catch(() => {});
    await server?.close().catch(() => {});
    await metricsServer?.close().catch(() => {});
    await scheduler?.stop(graceMs).catch((e) => log('error', `stop: ${(e as Error).message}`));
    await publisher?.stop().catch(() => {});
    if (!o.executor) await executor?.close().catch(() => {});
    monitor?.stop();
    await dbLock.release().catch(() => {});
    await lock.release().catch(() => {});
  };
  try {
    let schema = await inspectSchema(db.pool);
    if (schema.kind === 'empty' || (schema.kind === 'hydra' && schema.supported && schema.hydraOpsVersion !== schema.hydraOpsLatest)) {
      const r = await initSchema(db.pool);
      schema = r.state;
      if (r.createdHydraSchema) log('info', "created Hydra's schema in the empty database");
    }
    if (schema.kind !== 'hydra' || !schema.supported) throw new RunnerStartError(`refusing to run: ${schema.message}`);

    let localSystem: string;
    let localSettings: LocalNixSettings;
    try {
      localSettings = await localNixSettings(o.env);
      localSystem = localSettings.system;
    } catch (e) {
      throw new RunnerStartError(`Nix is needed to run the queue runner: ${(e as Error).message} (Debian: apt-get install nix-bin)`);
    }

    const files = machinesFiles(config);
    monitor = new MachinesMonitor({files});
    monitor.on('error', (e) => log('error', `machines file: ${e.messages.join('; ')} (keeping the last good configuration)`));
    await monitor.start();
    // Local machines build with this machine's Nix: decide its settings once, and say why when it cannot build.
    let localNix: LocalNixPlan | null = null;
    if (monitor.machines().some((m) => m.kind === 'local')) {
      localNix = await diagnoseLocalNix(o.env, {implicit: files.length === 0});
      for (const n of localNix.notices) log('warn', `localhost: ${n}`);
      if (localNix.problem) log('error', `localhost cannot build: ${describeLocalNixProblem(localNix.problem)}`);
    }
    executor = o.executor ?? new FleetExecutor({log: (line) => log('debug', line), ...(localNix?.options.length ? {localServe: {extraArgs: localNix.options}} : {})});
    const repro = samplerSettings(o.env, (m) => log('warn', m));
    const percent = o.reproSamplePercent ?? repro.percent;
    if (percent > 0) {
      checkRunner = new CheckRunner({log: (line) => log('debug', line)});
      const diffHook = o.diffHook ?? repro.diffHook;
      sampler = new ReproSampler({pool: db.pool, runner: checkRunner, dataDir, percent, diffHook, diffEnv: repro.commandEnv, maxLogSize: config.runner.maxLogSize, log: (l, m) => log(l, m)});
      log('info', `reproducibility sampling: ${percent}% of successful builds are re-checked on idle machines`);
    }
    const smp = sampler;
    scheduler = new Scheduler({
      pool: db.pool,
      connection: db.connection,
      dataDir,
      runner: config.runner,
      executor,
      localSystem,
      localNix: localSettings,
      buildOne: o.buildOne,
      lock: dbLock,
      log: (level, message, fields) => log(level, message, fields),
      ...(smp ? {idleWork: (round: IdleRound) => smp.onIdle(round)} : {}),
      localProblem: localNix?.problem ? describeLocalNixProblem(localNix.problem) : null,
      ...stepTimingsTo(o.env.HYDRA_OPS_STEP_TIMINGS, (m) => log('warn', m)),
      ...o.schedulerOverrides,
    });
    smp?.attach(scheduler);
    const sched = scheduler;
    const mon = monitor;
    monitor.on('change', (c) => {
      sched.setMachines(c.machines);
      log('info', `machines: ${c.machines.length} in force (${c.added.length} added, ${c.removed.length} removed, ${c.changed.length} changed)`);
    });
    scheduler.setMachines(monitor.machines());
    if (monitor.machines().length === 0) log('warn', 'no build machines are defined');
    log('info', `machines from ${files.length > 0 ? files.join(', ') : 'the implicit localhost machine'}: ${monitor.machines().map((m) => m.uri).join(', ') || 'none'}`);

    scheduler.on('step-started', (e) => log('debug', `step ${e.build}/${e.stepnr} started on ${e.machine}: ${e.drvPath}`));
    scheduler.on('step-finished', (e) => log('debug', `step ${e.build}/${e.stepnr} finished with status ${e.status}`));
    scheduler.on('build-finished', (e) => log('debug', `build ${e.build} finished with status ${e.status}`));

    await scheduler.start();
    // Post-build commands (hydra.conf <runcommand>): off the dispatch path, see post-build.ts.
    const runCommands = postBuildCommands(config.hydraConf?.parsed ?? null);
    for (const w of runCommands.warnings) log('warn', w);
    postBuild = new PostBuildRunner({pool: db.pool, commands: runCommands.commands, env: o.env, passEnv: repro.commandEnv, log: (l, m) => log(l, m)});
    const pb = postBuild;
    scheduler.on('build-finished', (e) => pb.buildFinished(e.build));
    await postBuild.start();
    if (runCommands.commands.length > 0) log('info', `post-build commands: ${runCommands.commands.map((c) => `${c.matcher} (${c.source})`).join(', ')}`);
    publisher = new SystemStatusPublisher(scheduler, {pool: db.pool, connection: db.connection, log: (l: string) => log('warn', l)});
    await publisher.start();
    const statusAddress = o.statusAddress ?? config.statusAddress.value;
    if (statusAddress !== 'off') {
      try {
        server = await startStatusServer(scheduler, parseStatusAddress(statusAddress));
        log('info', `status and metrics on http://${server.address}/status and /metrics`);
      } catch (e) {
        log('error', `cannot serve status on ${statusAddress}: ${(e as Error).message}`);
      }
    }
    // hydra.conf queue_runner_metrics_address: a second listener with /metrics only, like the C++ runner's Prometheus
    // exposer — started only when hydra.conf sets the key, so two runners on one host do not fight over the default.
    const parsed = config.hydraConf?.parsed;
    if (parsed && parsed.runnerSources.queueRunnerMetricsAddress !== 'default') {
      const address = parsed.runner.queueRunnerMetricsAddress;
      try {
        metricsServer = await startStatusServer(scheduler, {...parseStatusAddress(address), only: ['/metrics']});
        log('info', `metrics (queue_runner_metrics_address) on http://${metricsServer.address}/metrics`);
      } catch (e) {
        log('error', `cannot serve metrics on queue_runner_metrics_address ${address} (${parsed.runnerSources.queueRunnerMetricsAddress}): ${(e as Error).message}`);
      }
    }
    scheduler.requestScan();
    let stopped: Promise<void> | null = null;
    return {
      scheduler,
      localNix,
      dbLock,
      monitor,
      statusAddress: server?.address ?? null,
      metricsAddress: metricsServer?.address ?? null,
      reload: () => void mon.reload(),
      stop: (graceMs = 30_000) => (stopped ??= teardown(graceMs)),
    };
  } catch (e) {
    await teardown(0);
    throw e;
  }
}

/**
 * HYDRA_OPS_STEP_TIMINGS=<file>: every finished step's instants appended to the file as one JSON line (the
 * breakdown bench/dispatch-vs-nix.ts prints). Unset, the scheduler measures nothing.
 */
function stepTimingsTo(file: string | undefined, warn: (message: string) => void): Partial<SchedulerOptions> {
  if (!file) return {};
  let failed = false;
  return {
    stepTiming: (t) => {
      try {
        appendFileSync(file, JSON.stringify(t) + '\n');
      } catch (e) {
        if (!failed) warn(`HYDRA_OPS_STEP_TIMINGS: cannot append to ${file}: ${(e as Error).message}`);
        failed = true;
      }
    },
  };
}
