// The Rust queue runner's REST status documents (NixOS/hydra subprojects/hydra-queue-runner/src/server/http.rs;
// docs/hydra-compat.md, "Status documents and metrics") with hydra-ops additions (per machine: last error, time
// since last use; per waiting step: the reason; a progress indicator, status-progress.ts). Pure functions over the
// Scheduler's public state: no I/O except reading the process' own memory figures for `/status`. The C++ runner's
// document is status-cpp.ts; what both share is status-common.ts.
//
// Times: `time`, `timestamp`, `runnableSince` and other top-level instants are RFC 3339 strings, `uptime` is a
// float of seconds, machine `stats` times are Unix seconds (0 = never).
//
// The documents follow the serde types of NixOS/hydra subprojects/hydra-queue-runner/src/io/*.rs field by field
// (test/support/rust-status-schema.ts): integers where Rust has integers, and a value wherever Rust always sends
// one — a figure hydra-ops does not measure (builder load, memory, Nix version; import and upload times, which are
// part of the step's build here) is 0, "" or [], never null. Only Rust's Option fields (`proc.cgroup`,
// `stats.pressure`, `ioPsiThreshold`, `maxSilentTime`, `timeout`, top-level `store`) may be null. Queues are keyed
// by platform like the Rust runner; the system type (platform plus features) is a hydra-ops field of each step.
import {readFileSync} from 'node:fs';
import type {Scheduler} from '../scheduler/scheduler.js';
import {hasCapacity, isBackingOff, machineScore, type RunnerMachine} from '../scheduler/machines.js';
import {BUSY} from '../db/runner-sql.js';
import {
  activeSteps,
  avgInt,
  countPhase,
  machineKeys,
  machineList,
  rfc3339,
  seconds,
  typeStats,
  unixOrZero,
  type ActiveStepInfo,
  type Json,
  type TypeStats,
} from './status-common.js';
import {restProgress} from './status-progress.js';

// ------------------------------------------------------------------ machines

function jobsOn(s: Scheduler, m: RunnerMachine): ActiveStepInfo[] {
  return activeSteps(s).filter((a) => a.machine === m);
}

/** The Rust runner's Machine object (`/status/machines`) with hydra-ops additions. */
export function restMachine(s: Scheduler, m: RunnerMachine, now = Date.now()): Json {
  const rt = m.rt;
  const jobs = jobsOn(s, m);
  const staticCap = hasCapacity(m);
  const dynamicCap = rt.listed && !rt.drained && !isBackingOff(rt, now);
  return {
    systems: [...m.spec.systems],
    hostname: m.spec.host,
    uptime: Math.max(0, (now - rt.joinedAt) / 1000),
    // Builders do not report these over the serve protocol: 0 / "" / [] like an unknown in Rust.
    cpuCount: 0,
    bogomips: 0,
    speedFactor: m.spec.speedFactor,
    maxJobs: m.spec.maxJobs,
    buildDirAvailThreshold: 0,
    storeAvailThreshold: 0,
    load1Threshold: 0,
    cpuPsiThreshold: 0,
    memPsiThreshold: 0,
    ioPsiThreshold: null,
    score: machineScore(m),
    totalMem: 0,
    supportedFeatures: [...m.spec.supportedFeatures],
    mandatoryFeatures: [...m.spec.mandatoryFeatures],
    cgroups: false,
    substituters: [],
    useSubstitutes: s.options.runner?.useSubstitutes ?? false,
    nixVersion: '',
    stats: {
      currentJobs: rt.currentJobs,
      nrStepsDone: rt.nrStepsDone,
      avgStepTimeMs: avgInt(rt.totalStepTimeMs, rt.nrStepsDone),
      avgStepImportTimeMs: 0,
      avgStepBuildTimeMs: avgInt(rt.totalStepBuildTimeMs, rt.nrStepsDone),
      avgStepUploadTimeMs: 0,
      totalStepTimeMs: Math.round(rt.totalStepTimeMs),
      totalStepImportTimeMs: 0,
      totalStepBuildTimeMs: Math.round(rt.totalStepBuildTimeMs),
      totalStepUploadTimeMs: 0,
      idleSince: rt.currentJobs === 0 ? unixOrZero(rt.idleSince) : 0,
      lastFailure: unixOrZero(rt.lastFailure),
      disabledUntil: unixOrZero(rt.disabledUntil),
      consecutiveFailures: rt.consecutiveFailures,
      // No builder pings over SSH.
      lastPing: 0,
      sinceLastPing: 0,
      load1: 0,
      load5: 0,
      load15: 0,
      memUsage: 0,
      pressure: null,
      buildDirFreePercent: 0,
      storeFreePercent: 0,
      currentUploadingPathCount: jobs.filter((a) => a.phase === BUSY.sending).length,
      currentDownloadingPathCount: jobs.filter((a) => a.phase === BUSY.receiving).length,
      jobsInLast30sStart: rt.jobsInLast30sStart,
      jobsInLast30sCount: rt.jobsInLast30sCount,
      failedBuilds: rt.failedBuilds,
      succeededBuilds: rt.succeededBuilds,
    },
    jobs: jobs.map((a) => a.step.drvPath),
    hasCapacity: staticCap && dynamicCap,
    hasDynamicCapacity: dynamicCap,
    hasStaticCapacity: staticCap,
    // hydra-ops additions
    uri: m.spec.uri,
    drained: rt.drained,
    listed: rt.listed,
    backingOff: isBackingOff(rt, now),
    lastError: rt.lastError,
    lastErrorAt: rt.lastErrorAt > 0 ? seconds(rt.lastErrorAt) : null,
    sinceLastUsed: rt.lastUsed > 0 ? Math.max(0, seconds(now - rt.lastUsed)) : null,
  };
}

/** `GET /status/machines`: `{machines: {<host>: Machine}, machinesCount}`. */
export function restMachines(s: Scheduler, now = Date.now()): {machines: Record<string, Json>; machinesCount: number} {
  const list = machineList(s);
  const keys = machineKeys(list);
  const machines: Record<string, Json> = {};
  for (const m of list) machines[keys.get(m)!] = restMachine(s, m, now);
  return {machines, machinesCount: list.length};
}

// ------------------------------------------------------------------ jobsets

/** `GET /status/jobsets`: `{jobsets: {<project:jobset>: {id, projectName, name, seconds, shares, shareUsed}}, jobsetCount}`. */
export function restJobsets(s: Scheduler): {jobsets: Record<string, Json>; jobsetCount: number} {
  const jobsets: Record<string, Json> = {};
  for (const j of s.graph.jobsets.values()) {
    jobsets[j.displayName] = {id: j.id, projectName: j.project, name: j.name, seconds: Math.round(j.seconds), shares: Math.round(j.shares), shareUsed: j.shareUsed};
  }
  return {jobsets, jobsetCount: s.graph.jobsets.size};
}

// ------------------------------------------------------------------ process figures

export interface ProcInfo {
  pid: number;
  vsizeBytes: number;
  rssBytes: number;
  sharedBytes: number;
  /** Rust's Option<CgroupStats>: not collected by hydra-ops. */
  cgroup: null;
}

/** Memory of this process from /proc/self/status where available, else Node's own figure (0 = unknown). */
export function procInfo(): ProcInfo {
  const info: ProcInfo = {pid: process.pid, vsizeBytes: 0, rssBytes: 0, sharedBytes: 0, cgroup: null};
  try {
    const text = readFileSync('/proc/self/status', 'utf8');
    const kib = (field: string): number => {
      const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
      return m ? Number(m[1]) * 1024 : 0;
    };
    info.vsizeBytes = kib('VmSize');
    info.rssBytes = kib('VmRSS');
    info.sharedBytes = kib('RssShmem');
  } catch {
    /* not Linux */
  }
  if (info.rssBytes === 0) info.rssBytes = process.memoryUsage.rss();
  return info;
}

// ------------------------------------------------------------------ whole documents

function machinesInUse(s: Scheduler): number {
  return machineList(s).filter((m) => m.rt.currentJobs > 0).length;
}
/** The `queueRunner` part of the Rust runner's `/status` document with hydra-ops additions. */
export function restQueueRunner(s: Scheduler, now = Date.now()): Json {
  const st = s.stats;
  // Keyed by platform like the Rust runner's queues (system types with features are summed in).
  const byPlatform = new Map<string, TypeStats>();
  for (const [type, t] of typeStats(s, now)) {
    const key = type.split(':')[0]!;
    const e = byPlatform.get(key) ?? {runnable: 0, running: 0, waiting: 0, disabled: 0, waitSeconds: 0};
    e.runnable += t.runnable;
    e.running += t.running;
    e.waiting += t.waiting;
    e.disabled += t.disabled;
    e.waitSeconds += t.waitSeconds;
    byPlatform.set(key, e);
  }
  const queueStats: Json = {};
  for (const [key, t] of byPlatform) {
    queueStats[key] = {
      activeRunnable: t.running,
      totalRunnable: t.runnable + t.running,
      nrRunnableWaiting: t.waiting,
      nrRunnableDisabled: t.disabled,
      avgRunnableTime: t.runnable > 0 ? Math.floor(t.waitSeconds / t.runnable) : 0,
      waitTimeMs: Math.round(t.waitSeconds * 1000),
    };
  }
  const features = new Set<string>();
  for (const m of machineList(s)) if (m.rt.listed) for (const f of m.spec.supportedFeatures) features.add(f);
  return {
    status: 'up',
    time: rfc3339(now),
    uptime: Math.max(0, (now - st.startedAt) / 1000),
    proc: procInfo(),
    supportedFeatures: [...features].sort(),
    buildCount: s.graph.builds.size,
    jobsetCount: s.graph.jobsets.size,
    stepCount: s.graph.steps.size,
    runnableCount: s.graph.runnable.size,
    queueStats,
    queueChecksStarted: st.queueChecksStarted,
    queueBuildLoads: st.queueBuildLoads,
    queueStepsCreated: st.queueStepsCreated,
    queueChecksEarlyExits: st.queueChecksEarlyExits,
    queueChecksFinished: st.queueChecksFinished,
    dispatcherTimeSpentRunning: Math.round(st.dispatcherTimeSpentRunningUs),
    dispatcherTimeSpentWaiting: Math.round(st.dispatcherTimeSpentWaitingUs),
    queueMonitorTimeSpentRunning: Math.round(st.monitorTimeSpentRunningUs),
    queueMonitorTimeSpentWaiting: Math.round(st.monitorTimeSpentWaitingUs),
    nrBuildsRead: st.nrBuildsRead,
    buildReadTimeMs: Math.round(st.buildReadTimeMs),
    nrBuildsUnfinished: s.graph.builds.size,
    nrBuildsDone: st.nrBuildsDone,
    nrBuildsSucceeded: st.nrBuildsSucceeded,
    nrBuildsFailed: st.nrBuildsFailed,
    nrStepsStarted: st.nrStepsStarted,
    nrStepsDone: st.nrStepsDone,
    nrStepsBuilding: countPhase(s, BUSY.building),
    nrStepsWaiting: countPhase(s, BUSY.preparing, BUSY.connecting, BUSY.waitingForSlot),
    nrStepsRunnable: s.graph.runnable.size,
    nrStepsUnfinished: s.graph.steps.size,
    nrUnsupportedSteps: st.nrUnsupportedSteps,
    nrUnsupportedStepsAborted: st.nrUnsupportedStepsAborted,
    nrSubstitutesStarted: st.nrSubstitutesStarted,
    nrSubstitutesFailed: st.nrSubstitutesFailed,
    nrSubstitutesSucceeded: st.nrSubstitutesSucceeded,
    nrRetries: st.nrRetries,
    maxNrRetries: st.maxNrRetries,
    avgStepTimeMs: avgInt(st.totalStepTimeMs, st.nrStepsDone),
    avgStepImportTimeMs: 0,
    avgStepBuildTimeMs: avgInt(st.totalStepBuildTimeMs, st.nrStepsDone),
    avgStepUploadTimeMs: 0,
    totalStepTimeMs: Math.round(st.totalStepTimeMs),
    totalStepImportTimeMs: 0,
    totalStepBuildTimeMs: Math.round(st.totalStepBuildTimeMs),
    totalStepUploadTimeMs: 0,
    nrQueueWakeups: st.nrQueueWakeups,
    nrDispatcherWakeups: st.nrDispatcherWakeups,
    dispatchTimeMs: Math.round(st.dispatchTimeMs),
    machinesTotal: machineList(s).filter((m) => m.rt.listed).length,
    machinesInUse: machinesInUse(s),
    s3UploadsPending: 0,
    // hydra-ops additions
    nrActiveSteps: s.active.size,
    nrStepsCopyingTo: countPhase(s, BUSY.sending),
    nrStepsCopyingFrom: countPhase(s, BUSY.receiving),
    nrStepsWaitingForDownloadSlot: countPhase(s, BUSY.waitingForSlot),
    bytesSent: st.bytesSent,
    bytesReceived: st.bytesReceived,
    lastDispatchMs: st.lastDispatchMs,
    ingest: {total: st.ingestTotal, done: st.ingestDone},
    progress: restProgress(s, now),
    dbPool: dbPool(s),
  };
}

/** The runner's PostgreSQL pool: open connections, idle ones, and queries waiting for one (node-postgres counters). */
function dbPool(s: Scheduler): {total: number; idle: number; waiting: number} | null {
  const pool = s.pool as {totalCount?: number; idleCount?: number; waitingCount?: number} | undefined;
  if (!pool || typeof pool.totalCount !== 'number') return null;
  return {total: pool.totalCount, idle: pool.idleCount ?? 0, waiting: pool.waitingCount ?? 0};
}

/** `GET /status/uploads`: `{paths, pathCount}` — hydra-ops has no S3 upload queue (outputs go to the local store). */
export function restUploads(): {paths: string[]; pathCount: number} {
  return {paths: [], pathCount: 0};
}

/** `GET /status` (the Rust runner's document): `{queueRunner, machines, jobsets, store, s3}`. */
export function restStatus(s: Scheduler, now = Date.now()): Json {
  return {
    queueRunner: restQueueRunner(s, now),
    machines: restMachines(s, now).machines,
    jobsets: restJobsets(s).jobsets,
    store: null,
    s3: {},
  };
}
