// Where the console's runner data comes from, normalised into one snapshot shape:
// - in-process: the embedded Scheduler, read directly through the daemon's status documents;
// - attached: another runner's REST endpoint (`/status`, the Rust shape), or, when that does not
//   answer, the C++-shaped document in SystemStatus('queue-runner').
import type {Queryable} from '../../db/queryable.js';
import type {Scheduler} from '../../scheduler/scheduler.js';
import {restStatus} from '../../daemon/status.js';
import {stepInfo} from '../../daemon/status-lists.js';
import type {Step} from '../../scheduler/model.js';
import type {MachineRow, MachineState, Progress, RunnerStats, RunnerStepView} from './types.js';

/** Steps of one build's graph the Deps tab shows at most (the graph below a big build can be thousands). */
export const RUNNER_STEPS_MAX = 200;

export interface QueueStat {
  /** `x86_64-linux` or `x86_64-linux:big-parallel`. */
  systemType: string;
  runnable: number;
  running: number;
  avgWait: number | null;
}

export interface RunnerSnapshot {
  source: 'in-process' | 'rest' | 'system-status';
  up: boolean;
  uptimeSec: number | null;
  /** ms since epoch the data was taken. */
  at: number;
  runnable: number | null;
  running: number | null;
  queueStats: QueueStat[];
  machines: MachineRow[];
  jobsets: Map<string, {shares: number | null; shareUsed: number | null}>;
  progress: Progress | null;
  dispatcherBusy: number | null;
  lastDispatchMs: number | null;
  ingest: {total: number; done: number} | null;
  /** Scheduler internals for the Runner view (ingestion rate is filled in by the console). */
  stats: Omit<RunnerStats, 'source'>;
}

export interface RunnerSource {
  readonly kind: 'in-process' | 'external';
  /** Human description of where the data comes from. */
  readonly note: string;
  snapshot(): Promise<RunnerSnapshot | null>;
  /** ms since epoch a running step entered its phase (in-process only). */
  phaseSince?(build: number, stepnr: number): number | null;
  /** Why a queued derivation is not running (in-process only). */
  explain?(drvPath: string): string | null;
  /**
   * The runner's view of a build's steps: the unfinished graph below it (in-process), or the steps running for it
   * now (a runner's `GET /status/build/<id>/active`); null when the runner does not hold the build.
   */
  buildSteps?(build: number): Promise<RunnerStepView[] | null>;
}

type Json = Record<string, unknown>;
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});

export function machineState(m: {listed: boolean; drained: boolean; backingOff: boolean; currentJobs: number | null; maxJobs: number}): MachineState {
  if (!m.listed) return 'removed';
  if (m.drained) return 'drained';
  if (m.backingOff) return 'backoff';
  if (m.currentJobs === null) return 'unknown';
  if (m.currentJobs >= m.maxJobs) return 'full';
  if (m.currentJobs > 0) return 'busy';
  return 'idle';
}

/** Parses the Rust-shaped `/status` document (as hydra-ops' runner serves it). */
export function parseRestStatus(doc: unknown, at: number, source: RunnerSnapshot['source']): RunnerSnapshot {
  const d = obj(doc);
  const qr = obj(d.queueRunner);
  const queueStats: QueueStat[] = Object.entries(obj(qr.queueStats)).map(([systemType, v]) => {
    const q = obj(v);
    const running = num(q.activeRunnable) ?? 0;
    const total = num(q.totalRunnable) ?? running;
    return {systemType, runnable: Math.max(0, total - running), running, avgWait: num(q.avgRunnableTime)};
  });
  const now = at;
  const machines: MachineRow[] = Object.entries(obj(d.machines)).map(([name, v]) => {
    const m = obj(v);
    const stats = obj(m.stats);
    const disabledUntil = (num(stats.disabledUntil) ?? 0) * 1000;
    const consecutiveFailures = num(stats.consecutiveFailures) ?? 0;
    const currentJobs = num(stats.currentJobs);
    const maxJobs = num(m.maxJobs) ?? 1;
    const listed = m.listed !== false;
    const drained = m.drained === true;
    const backingOff = typeof m.backingOff === 'boolean' ? m.backingOff : consecutiveFailures > 0 && disabledUntil > now;
    const lastPing = num(stats.lastPing);
    return {
      name,
      uri: typeof m.uri === 'string' ? m.uri : name,
      state: machineState({listed, drained, backingOff, currentJobs, maxJobs}),
      systems: strs(m.systems),
      supportedFeatures: strs(m.supportedFeatures),
      mandatoryFeatures: strs(m.mandatoryFeatures),
      currentJobs,
      maxJobs,
      speedFactor: num(m.speedFactor) ?? 1,
      score: num(m.score),
      load1: num(stats.load1),
      disabledUntil: backingOff ? disabledUntil : 0,
      consecutiveFailures,
      drained,
      lastError: typeof m.lastError === 'string' ? m.lastError : null,
      // The Rust runner pings its builders (0: not yet); hydra-ops' runner does not.
      ...(lastPing ? {lastPing: {at: lastPing * 1000, ok: null}} : {}),
    };
  });
  const jobsets = new Map<string, {shares: number | null; shareUsed: number | null}>();
  for (const [name, v] of Object.entries(obj(d.jobsets))) jobsets.set(name, {shares: num(obj(v).shares), shareUsed: num(obj(v).shareUsed)});
  const p = obj(qr.progress);
  const progress: Progress | null =
    qr.progress === undefined
      ? null
      : {
          stalled: p.stalled === true,
          stalledSeconds: num(p.stalledSeconds) ?? 0,
          thresholdSeconds: num(p.stallThresholdSeconds) ?? 300,
          lastProgressAt: typeof p.lastProgressAt === 'string' ? Date.parse(p.lastProgressAt) : null,
        };
  const runUs = num(qr.dispatcherTimeSpentRunning);
  const waitUs = num(qr.dispatcherTimeSpentWaiting);
  const ingest = obj(qr.ingest);
  return {
    source,
    up: qr.status === undefined || qr.status === 'up',
    uptimeSec: num(qr.uptime),
    at,
    runnable: num(p.runnable) ?? queueStats.reduce((n, q) => n + q.runnable, 0),
    running: num(qr.nrActiveSteps) ?? queueStats.reduce((n, q) => n + q.running, 0),
    queueStats,
    machines,
    jobsets,
    progress,
    dispatcherBusy: runUs !== null && waitUs !== null && runUs + waitUs > 0 ? runUs / (runUs + waitUs) : null,
    lastDispatchMs: num(qr.lastDispatchMs),
    ingest: num(ingest.total) !== null ? {total: num(ingest.total)!, done: num(ingest.done) ?? 0} : null,
    stats: statsOf(qr, at, {
      busyShare: runUs !== null && waitUs !== null && runUs + waitUs > 0 ? runUs / (runUs + waitUs) : null,
      backlog: num(ingest.total) !== null ? {total: num(ingest.total)!, done: num(ingest.done) ?? 0} : null,
      runnable: num(qr.nrStepsRunnable) ?? num(qr.runnableCount),
      unfinished: num(qr.nrStepsUnfinished) ?? num(qr.stepCount),
    }),
  };
}

/**
 * The counters both status shapes share (the C++ runner's dump_status names, which hydra-ops' REST
 * `/status` also carries in `queueRunner`); absent counters stay null ("not published").
 */
function statsOf(d: Json, at: number, extra: {busyShare: number | null; backlog: {total: number; done: number} | null; runnable: number | null; unfinished: number | null}): Omit<RunnerStats, 'source'> {
  const rounds = num(d.nrDispatcherWakeups);
  const totalMs = num(d.dispatchTimeMs);
  const pool = obj(d.dbPool);
  const poolTotal = num(pool.total) ?? num(d.nrDbConnections);
  const poolIdle = num(pool.idle) ?? (poolTotal !== null && num(d.nrActiveDbUpdates) !== null ? poolTotal - num(d.nrActiveDbUpdates)! : null);
  return {
    at,
    uptimeSec: num(d.uptime),
    dispatch: {
      rounds,
      totalMs,
      avgMs: num(d.dispatchTimeAvgMs) ?? (rounds && totalMs !== null ? totalMs / rounds : null),
      lastMs: num(d.lastDispatchMs),
      busyShare: extra.busyShare,
    },
    ingest: {buildsRead: num(d.nrBuildsRead), readMs: num(d.buildReadTimeMs), perSec: null, backlog: extra.backlog},
    queueWakeups: num(d.nrQueueWakeups),
    dbPool: poolTotal !== null && poolIdle !== null ? {total: poolTotal, idle: poolIdle, waiting: num(pool.waiting)} : null,
    retries: {count: num(d.nrRetries), max: num(d.maxNrRetries)},
    unsupported: {steps: num(d.nrUnsupportedSteps), aborted: num(d.nrUnsupportedStepsAborted)},
    steps: {started: num(d.nrStepsStarted), done: num(d.nrStepsDone), unfinished: extra.unfinished, runnable: extra.runnable, active: num(d.nrActiveSteps)},
  };
}

/** Parses the C++-shaped SystemStatus('queue-runner') document (Hydra's runner or ours). */
export function parseCppStatus(doc: unknown, at: number): RunnerSnapshot {
  const d = obj(doc);
  const queueStats: QueueStat[] = Object.entries(obj(d.machineTypes)).map(([systemType, v]) => {
    const t = obj(v);
    const runnable = num(t.runnable) ?? 0;
    const wait = num(t.waitTime);
    return {systemType, runnable, running: num(t.running) ?? 0, avgWait: wait !== null && runnable > 0 ? wait / runnable : null};
  });
  const machines: MachineRow[] = Object.entries(obj(d.machines)).map(([uri, v]) => {
    const m = obj(v);
    const disabledUntil = (num(m.disabledUntil) ?? 0) * 1000;
    const consecutiveFailures = num(m.consecutiveFailures) ?? 0;
    const currentJobs = num(m.currentJobs);
    const maxJobs = num(m.maxJobs) ?? Math.max(1, currentJobs ?? 1);
    const listed = m.enabled !== false;
    const drained = m.drained === true;
    const backingOff = consecutiveFailures > 0 && disabledUntil > at;
    return {
      name: uri.replace(/^[a-z+-]+:\/\/(?:[^@/]*@)?/, ''),
      uri,
      state: machineState({listed, drained, backingOff, currentJobs, maxJobs}),
      systems: strs(m.systemTypes),
      supportedFeatures: strs(m.supportedFeatures),
      mandatoryFeatures: strs(m.mandatoryFeatures),
      currentJobs,
      maxJobs,
      speedFactor: num(m.speedFactor) ?? 1,
      score: null,
      load1: null,
      disabledUntil: backingOff ? disabledUntil : 0,
      consecutiveFailures,
      drained,
      lastError: typeof m.lastError === 'string' ? m.lastError : null,
    };
  });
  const jobsets = new Map<string, {shares: number | null; shareUsed: number | null}>();
  for (const [name, v] of Object.entries(obj(d.jobsets))) jobsets.set(name, {shares: null, shareUsed: num(obj(v).shareUsed)});
  const time = num(d.time);
  return {
    source: 'system-status',
    up: d.status === 'up',
    uptimeSec: num(d.uptime),
    at: time !== null ? time * 1000 : at,
    runnable: num(d.nrRunnableSteps),
    running: num(d.nrActiveSteps),
    queueStats,
    machines,
    jobsets,
    progress: null,
    dispatcherBusy: null,
    lastDispatchMs: num(d.dispatchTimeAvgMs),
    ingest: null,
    stats: statsOf(d, time !== null ? time * 1000 : at, {busyShare: null, backlog: null, runnable: num(d.nrRunnableSteps), unfinished: num(d.nrUnfinishedSteps)}),
  };
}

/** The embedded scheduler, read in-process. */
export function inProcessSource(s: Scheduler): RunnerSource {
  return {
    kind: 'in-process',
    note: 'in-process scheduler',
    async snapshot() {
      const now = Date.now();
      return parseRestStatus(restStatus(s, now), now, 'in-process');
    },
    phaseSince(build, stepnr) {
      for (const a of s.active.values()) if (a.build === build && a.stepnr === stepnr) return a.phaseSince;
      return null;
    },
    explain(drvPath) {
      return s.explain(drvPath);
    },
    async buildSteps(build) {
      const b = s.graph.builds.get(build);
      if (!b?.toplevel) return null;
      // Breadth-first from the top-level step, so the nearest dependencies come first when the graph is cut off.
      const out: RunnerStepView[] = [];
      const seen = new Set<Step>([b.toplevel]);
      const queue: Step[] = [b.toplevel];
      const now = Date.now();
      while (queue.length > 0 && out.length < RUNNER_STEPS_MAX) {
        const step = queue.shift()!;
        const info = stepInfo(s, step, now);
        out.push({
          drvPath: step.drvPath,
          finished: step.finished,
          running: s.active.has(step),
          runnable: step.runnable,
          machine: typeof info.machine === 'string' ? info.machine : null,
          waitingReason: typeof info.waitingReason === 'string' ? info.waitingReason : null,
          toplevel: step === b.toplevel,
        });
        for (const d of step.deps) {
          if (seen.has(d)) continue;
          seen.add(d);
          queue.push(d);
        }
      }
      return out;
    },
  };
}

/** Another runner: its REST endpoint, else SystemStatus. */
export function externalSource(o: {address: string | null; db: Queryable; timeoutMs?: number; fetch?: typeof fetch}): RunnerSource {
  const doFetch = o.fetch ?? fetch;
  let restWorks = true;
  let lastRestTry = 0;
  return {
    kind: 'external',
    note: o.address ? `runner at ${o.address}` : 'runner via SystemStatus',
    async snapshot() {
      const now = Date.now();
      // After a failure the REST endpoint is retried at most every 10 s (SystemStatus meanwhile).
      if (o.address && (restWorks || now - lastRestTry > 10_000)) {
        lastRestTry = now;
        try {
          const res = await doFetch(`http://${o.address}/status`, {signal: AbortSignal.timeout(o.timeoutMs ?? 1500)});
          if (res.ok) {
            const doc = await res.json();
            restWorks = true;
            return parseRestStatus(doc, Date.now(), 'rest');
          }
          restWorks = false;
        } catch {
          restWorks = false;
        }
      }
      const {rows} = await o.db.query<{status: unknown}>("SELECT status FROM SystemStatus WHERE what = 'queue-runner'");
      if (rows.length === 0) return null;
      const status = typeof rows[0]!.status === 'string' ? JSON.parse(rows[0]!.status as string) : rows[0]!.status;
      return parseCppStatus(status, now);
    },
    async buildSteps(build) {
      if (!o.address) return null;
      try {
        const res = await doFetch(`http://${o.address}/status/build/${build}/active`, {signal: AbortSignal.timeout(o.timeoutMs ?? 1500)});
        if (!res.ok) return null;
        const d = obj(await res.json());
        if (d.queued === false) return null;
        return strs(d.steps).map((drvPath) => ({drvPath, finished: false, running: true, runnable: false, machine: null, waitingReason: null, toplevel: false}));
      } catch {
        return null;
      }
    },
  };
}
