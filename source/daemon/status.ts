// Status documents of the queue runner (docs/hydra-compat.md, "Status documents and metrics"): the C++-shaped JSON kept in
// SystemStatus('queue-runner') (Hydra's State::dumpStatus) and the Rust runner's REST documents
// (subprojects/hydra-queue-runner/src/server/http.rs), plus
// hydra-ops additions (per machine: last error, time since last use; per waiting step: the reason;
// a progress indicator). Pure functions over the Scheduler's public state: no I/O except reading
// the process' own memory figures for `/status`.
//
// Time conventions: C++ document — Unix seconds, `…Ms` names in milliseconds. REST documents —
// `time`, `timestamp`, `runnableSince` and other top-level instants are RFC 3339 strings, `uptime`
// is a float of seconds, machine `stats` times are Unix seconds (0 = never).
//
// The REST documents follow the serde types of NixOS/hydra subprojects/hydra-queue-runner/src/io/*.rs
// field by field (test/support/rust-status-schema.ts): integers where Rust has integers, and a
// value wherever Rust always sends one — a figure hydra-ops does not measure (builder load, memory,
// Nix version; import and upload times, which are part of the step's build here) is 0, "" or [],
// never null. Only Rust's Option fields (`proc.cgroup`, `stats.pressure`, `ioPsiThreshold`,
// `maxSilentTime`, `timeout`, top-level `store`) may be null. Queues are keyed by platform like the
// Rust runner; the system type (platform plus features) is a hydra-ops field of each step.
import {readFileSync} from 'node:fs';
import type {Scheduler} from '../scheduler/scheduler.js';
import type {Build, Step} from '../scheduler/model.js';
import {dependentBuilds} from '../scheduler/model.js';
import {sortRunnable, lowestShareUsed} from '../scheduler/dispatcher.js';
import {hasCapacity, isAvailable, isBackingOff, machineScore, stepPlatform, supportsStep, waitingReason, type RunnerMachine} from '../scheduler/machines.js';
import {BUSY} from '../db/runner-sql.js';

/** One running step as the scheduler keeps it. */
export type ActiveStepInfo = Scheduler['active'] extends Map<Step, infer A> ? A : never;

/** Default cap of list documents (`?limit=`). */
export const DEFAULT_LIST_LIMIT = 1000;
/** Default idle time after which the progress indicator reports a stall. */
export const DEFAULT_STALL_SECONDS = 300;

export interface ListOptions {
  /** At most this many entries (default 1000). */
  limit?: number;
}

type Json = Record<string, unknown>;

const seconds = (ms: number): number => Math.floor(ms / 1000);
/** Unix seconds, 0 for "never". */
const unixOrZero = (ms: number): number => (ms > 0 ? seconds(ms) : 0);
const rfc3339 = (ms: number): string | null => (Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : null);
const avg = (total: number, n: number): number => (n > 0 ? total / n : 0);
/** Integer mean like Rust's `checked_div(..).unwrap_or(0)`. */
const avgInt = (total: number, n: number): number => (n > 0 ? Math.floor(total / n) : 0);
const EPOCH = new Date(0).toISOString();
const limitOf = (o: ListOptions | undefined): number => Math.max(0, Math.floor(o?.limit ?? DEFAULT_LIST_LIMIT));

function activeSteps(s: Scheduler): ActiveStepInfo[] {
  return [...s.active.values()];
}

function countPhase(s: Scheduler, ...phases: number[]): number {
  let n = 0;
  for (const a of s.active.values()) if (phases.includes(a.phase)) n++;
  return n;
}

function localSystem(s: Scheduler): string {
  return s.options.localSystem;
}

function machineList(s: Scheduler): RunnerMachine[] {
  return [...s.machines.values()];
}

/** Runnable steps not yet handed to a machine. */
function waitingSteps(s: Scheduler): Step[] {
  const out: Step[] = [];
  for (const step of s.graph.runnable) if (!step.running) out.push(step);
  return out;
}

// ------------------------------------------------------------------ per system type

export interface TypeStats {
  /** Runnable steps not running (dispatchable now or after a retry delay). */
  runnable: number;
  running: number;
  /** Runnable steps whose retry delay is over. */
  waiting: number;
  /** Runnable steps held back by a retry delay. */
  disabled: number;
  /** Summed seconds the runnable steps have waited. */
  waitSeconds: number;
}

/** Runnable and running step counts per system type (`x86_64-linux`, `x86_64-linux:big-parallel,kvm`). */
export function typeStats(s: Scheduler, now = Date.now()): Map<string, TypeStats> {
  const types = new Map<string, TypeStats>();
  const get = (t: string): TypeStats => {
    let e = types.get(t);
    if (!e) types.set(t, (e = {runnable: 0, running: 0, waiting: 0, disabled: 0, waitSeconds: 0}));
    return e;
  };
  for (const step of waitingSteps(s)) {
    const e = get(step.systemType);
    e.runnable++;
    if (step.after > now) e.disabled++;
    else e.waiting++;
    if (step.runnableSince > 0) e.waitSeconds += Math.max(0, now - step.runnableSince) / 1000;
  }
  for (const a of s.active.values()) get(a.step.systemType).running++;
  return types;
}

// ------------------------------------------------------------------ machines

/**
 * REST key of each machine: its host name like the Rust runner (`localhost` for the local
 * machine); when two machines share a host, `host:port`, and the URI if that is still ambiguous.
 */
export function machineKeys(machines: readonly RunnerMachine[]): Map<RunnerMachine, string> {
  const byHost = new Map<string, number>();
  for (const m of machines) byHost.set(m.spec.host, (byHost.get(m.spec.host) ?? 0) + 1);
  const withPort = (m: RunnerMachine) => (m.spec.port === undefined ? m.spec.host : `${m.spec.host}:${m.spec.port}`);
  const byHostPort = new Map<string, number>();
  for (const m of machines) if (byHost.get(m.spec.host)! > 1) byHostPort.set(withPort(m), (byHostPort.get(withPort(m)) ?? 0) + 1);
  const keys = new Map<RunnerMachine, string>();
  for (const m of machines) {
    if (byHost.get(m.spec.host) === 1) keys.set(m, m.spec.host);
    else if (byHostPort.get(withPort(m)) === 1) keys.set(m, withPort(m));
    else keys.set(m, m.spec.uri);
  }
  return keys;
}

function jobsOn(s: Scheduler, m: RunnerMachine): ActiveStepInfo[] {
  return activeSteps(s).filter((a) => a.machine === m);
}

/** The C++ document's per-machine object (keyed by store URI). */
function cppMachine(m: RunnerMachine, now: number): Json {
  const rt = m.rt;
  const doc: Json = {
    enabled: rt.listed,
    systemTypes: [...m.spec.systems],
    supportedFeatures: [...m.spec.supportedFeatures],
    mandatoryFeatures: [...m.spec.mandatoryFeatures],
    nrStepsDone: rt.nrStepsDone,
    currentJobs: rt.currentJobs,
  };
  if (rt.currentJobs === 0) doc.idleSince = unixOrZero(rt.idleSince);
  doc.disabledUntil = unixOrZero(rt.disabledUntil);
  doc.lastFailure = unixOrZero(rt.lastFailure);
  doc.consecutiveFailures = rt.consecutiveFailures;
  if (rt.nrStepsDone > 0) {
    doc.totalStepTime = seconds(rt.totalStepTimeMs);
    doc.totalStepBuildTime = seconds(rt.totalStepBuildTimeMs);
    doc.avgStepTime = rt.totalStepTimeMs / 1000 / rt.nrStepsDone;
    doc.avgStepBuildTime = rt.totalStepBuildTimeMs / 1000 / rt.nrStepsDone;
  }
  // hydra-ops additions (consumers ignore unknown fields).
  doc.drained = rt.drained;
  doc.lastError = rt.lastError;
  doc.lastErrorAt = rt.lastErrorAt > 0 ? seconds(rt.lastErrorAt) : null;
  doc.sinceLastUsed = rt.lastUsed > 0 ? Math.max(0, seconds(now - rt.lastUsed)) : null;
  return doc;
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

// ------------------------------------------------------------------ builds

function buildInfo(b: Build): Json {
  return {
    id: b.id,
    drvPath: b.drvPath,
    jobsetId: b.jobset.id,
    name: b.job,
    timestamp: new Date(b.timestamp * 1000).toISOString(),
    maxSilentTime: b.maxSilent,
    timeout: b.timeout,
    localPriority: b.localPriority,
    globalPriority: b.globalPriority,
    finishedInDb: b.finishedInDb,
    // hydra-ops addition
    fullJobName: b.fullJobName,
  };
}

/** `GET /status/builds`: `{builds: [...], buildCount}` (lowest ids first, at most `limit`). */
export function restBuilds(s: Scheduler, o?: ListOptions): {builds: Json[]; buildCount: number; limit: number} {
  const limit = limitOf(o);
  const all = [...s.graph.builds.values()].sort((a, b) => a.id - b.id);
  return {builds: all.slice(0, limit).map(buildInfo), buildCount: all.length, limit};
}

/**
 * `GET /status/build/<id>/active`. `active` has the Rust runner's meaning (the build's row is
 * unfinished, `Builds.finished = 0`; `unfinished` is the caller's database answer); hydra-ops adds
 * `queued` (loaded by this runner) and `steps` (its steps running now).
 */
export function restBuildActive(s: Scheduler, id: number, unfinished: boolean): {active: boolean; queued: boolean; steps: string[]} {
  const build = s.graph.builds.get(id);
  const steps: string[] = [];
  if (build) {
    for (const a of s.active.values()) if (dependentBuilds(a.step).has(build)) steps.push(a.step.drvPath);
  } else {
    for (const a of s.active.values()) if (a.build === id) steps.push(a.step.drvPath);
  }
  return {active: unfinished, queued: build !== undefined, steps};
}

// ------------------------------------------------------------------ steps

/** StepInfo: the union of the Rust runner's step and queue shapes, with hydra-ops additions. */
export function stepInfo(s: Scheduler, step: Step, now = Date.now(), machines = machineList(s)): Json {
  const active = s.active.get(step);
  return {
    drvPath: step.drvPath,
    runnable: step.runnable,
    finished: step.finished,
    previousFailure: step.tries > 0 || step.lastError !== null,
    created: step.created,
    tries: step.tries,
    highestGlobalPriority: step.highestGlobalPriority,
    highestLocalPriority: step.highestLocalPriority,
    lowestBuildId: step.lowestBuildId === Number.MAX_SAFE_INTEGER ? 0 : step.lowestBuildId,
    depsCount: step.deps.size,
    alreadyScheduled: step.running,
    cancelled: step.cancelled,
    // Unix epoch for a step that has not been runnable (Rust only lists runnable ones here).
    runnableSince: step.runnableSince > 0 ? new Date(step.runnableSince).toISOString() : EPOCH,
    lowestShareUsed: lowestShareUsed(step),
    // hydra-ops additions
    name: step.name,
    system: step.platform,
    systemType: step.systemType,
    requiredFeatures: [...step.requiredFeatures],
    rdepsCount: step.rdeps.size,
    retryAt: step.after > now ? rfc3339(step.after) : null,
    lastError: step.lastError,
    waitingReason: step.finished ? null : waitingReason(step, machines, localSystem(s), now),
    machine: active ? active.machine.spec.uri : null,
    build: active ? active.build : null,
    stepnr: active ? active.stepnr : null,
  };
}

/** `GET /status/steps`: every unfinished step in memory, `{steps, stepCount, limit}`. */
export function restSteps(s: Scheduler, o?: ListOptions, now = Date.now()): {steps: Json[]; stepCount: number; limit: number} {
  const limit = limitOf(o);
  const machines = machineList(s);
  const steps: Json[] = [];
  for (const step of s.graph.steps.values()) {
    if (steps.length >= limit) break;
    steps.push(stepInfo(s, step, now, machines));
  }
  return {steps, stepCount: s.graph.steps.size, limit};
}

/** Runnable steps not yet dispatched, in the order the dispatcher would take them. */
export function dispatchOrder(s: Scheduler): Step[] {
  return sortRunnable(waitingSteps(s), s.options.stepOrder ?? 'rdeps');
}

/**
 * `GET /status/runnable`: the runnable steps (`{steps, stepCount, limit}`), waiting ones in dispatch
 * order (each with its `position`, 1 = next) followed by those already on a machine.
 */
export function restRunnable(s: Scheduler, o?: ListOptions, now = Date.now()): {steps: Json[]; stepCount: number; limit: number} {
  const limit = limitOf(o);
  const machines = machineList(s);
  const ordered = dispatchOrder(s);
  const runningRunnable = [...s.graph.runnable].filter((x) => x.running);
  const all = [...ordered, ...runningRunnable];
  const steps = all.slice(0, limit).map((step, i) => ({...stepInfo(s, step, now, machines), position: step.running ? null : i + 1}));
  return {steps, stepCount: all.length, limit};
}

/**
 * `GET /status/queues`: `{queues: {<systemType>: [StepInfo]}}` — per system type the running steps,
 * then the waiting ones in dispatch order, at most `limit` per queue; `queueSizes` has the full counts.
 */
export function restQueues(s: Scheduler, o?: ListOptions, now = Date.now()): {queues: Record<string, Json[]>; queueSizes: Record<string, number>} {
  const limit = limitOf(o);
  const machines = machineList(s);
  const members = new Map<string, Step[]>();
  const add = (step: Step) => {
    const key = stepPlatform(step, localSystem(s));
    let list = members.get(key);
    if (!list) members.set(key, (list = []));
    list.push(step);
  };
  for (const a of s.active.values()) add(a.step);
  for (const step of dispatchOrder(s)) add(step);
  const queues: Record<string, Json[]> = {};
  const queueSizes: Record<string, number> = {};
  for (const [type, list] of [...members].sort(([a], [b]) => a.localeCompare(b))) {
    queues[type] = list.slice(0, limit).map((step) => stepInfo(s, step, now, machines));
    queueSizes[type] = list.length;
  }
  return {queues, queueSizes};
}

/** `GET /status/queues/jobs` (every queued step) or `/status/queues/scheduled` (those on a machine). */
export function restQueueSteps(s: Scheduler, which: 'jobs' | 'scheduled', o?: ListOptions, now = Date.now()): {steps: Json[]; stepCount: number; limit: number} {
  const limit = limitOf(o);
  const machines = machineList(s);
  const running = [...s.active.values()].map((a) => a.step);
  const all = which === 'scheduled' ? running : [...running, ...dispatchOrder(s)];
  return {steps: all.slice(0, limit).map((step) => stepInfo(s, step, now, machines)), stepCount: all.length, limit};
}

// ------------------------------------------------------------------ progress

export interface Progress {
  /** Runnable steps waiting for a machine. */
  runnable: number;
  /** Steps on a machine. */
  running: number;
  /** Free slots on machines that can take work now (listed, not drained, not backing off). */
  idleCapacity: number;
  /** Some waiting step (past its retry delay) could run on a machine with a free slot. */
  capacityForRunnable: boolean;
  /** RFC 3339 time of the last step start or end (or of the runner's start). */
  lastProgressAt: string | null;
  /** Seconds since lastProgressAt while work and capacity for it exist; 0 otherwise. */
  stalledSeconds: number;
  stallThresholdSeconds: number;
  /** stalledSeconds ≥ stallThresholdSeconds. */
  stalled: boolean;
}

/**
 * The progress indicator (README.md, "The console": the header turns red on a stalled runner): the runner is "stalled" when runnable steps
 * wait, a capable machine has a free slot, and no step started or finished for the threshold.
 */
export function restProgress(s: Scheduler, now = Date.now(), stallThresholdSeconds = DEFAULT_STALL_SECONDS): Progress {
  const machines = machineList(s);
  const free = machines.filter((m) => isAvailable(m, now));
  const idleCapacity = free.reduce((n, m) => n + Math.max(0, m.spec.maxJobs - m.rt.currentJobs), 0);
  const waiting = waitingSteps(s);
  let capacityForRunnable = false;
  if (free.length > 0) {
    const seen = new Set<string>();
    for (const step of waiting) {
      if (step.after > now) continue;
      const key = `${step.platform}|${step.requiredFeatures.join(',')}|${step.preferLocal}`;
      if (seen.has(key)) continue;
      seen.add(key);
      if (free.some((m) => supportsStep(m.spec, step, localSystem(s)))) {
        capacityForRunnable = true;
        break;
      }
    }
  }
  const last = s.stats.lastProgressAt;
  const stalledSeconds = capacityForRunnable && last > 0 ? Math.max(0, Math.floor((now - last) / 1000)) : 0;
  return {
    runnable: waiting.length,
    running: s.active.size,
    idleCapacity,
    capacityForRunnable,
    lastProgressAt: rfc3339(last),
    stalledSeconds,
    stallThresholdSeconds,
    stalled: stalledSeconds >= stallThresholdSeconds && capacityForRunnable,
  };
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

/** The C++ runner's document (State::dumpStatus), written to SystemStatus('queue-runner'). */
export function cppStatus(s: Scheduler, now = Date.now()): Json {
  const st = s.stats;
  const pool = s.pool as {totalCount?: number; idleCount?: number} | undefined;
  const doc: Json = {
    status: 'up',
    time: seconds(now),
    uptime: Math.max(0, seconds(now - st.startedAt)),
    pid: process.pid,
    nrQueuedBuilds: s.graph.builds.size,
    nrActiveSteps: s.active.size,
    nrStepsBuilding: countPhase(s, BUSY.building),
    nrStepsCopyingTo: countPhase(s, BUSY.sending),
    nrStepsWaitingForDownloadSlot: countPhase(s, BUSY.waitingForSlot),
    nrStepsCopyingFrom: countPhase(s, BUSY.receiving),
    nrStepsWaiting: 0,
    nrUnsupportedSteps: st.nrUnsupportedSteps,
    bytesSent: st.bytesSent,
    bytesReceived: st.bytesReceived,
    nrBuildsRead: st.nrBuildsRead,
    buildReadTimeMs: Math.round(st.buildReadTimeMs),
    buildReadTimeAvgMs: avg(st.buildReadTimeMs, st.nrBuildsRead),
    nrBuildsDone: st.nrBuildsDone,
    nrStepsStarted: st.nrStepsStarted,
    nrStepsDone: st.nrStepsDone,
    nrRetries: st.nrRetries,
    maxNrRetries: st.maxNrRetries,
    nrQueueWakeups: st.nrQueueWakeups,
    nrDispatcherWakeups: st.nrDispatcherWakeups,
    dispatchTimeMs: Math.round(st.dispatchTimeMs),
    dispatchTimeAvgMs: avg(st.dispatchTimeMs, st.nrDispatcherWakeups),
    // The pool's open connections, and those checked out (a stand-in for write transactions in flight).
    nrDbConnections: pool?.totalCount ?? 0,
    nrActiveDbUpdates: Math.max(0, (pool?.totalCount ?? 0) - (pool?.idleCount ?? 0)),
    nrUnfinishedSteps: s.graph.steps.size,
    nrRunnableSteps: s.graph.runnable.size,
  };
  if (st.nrStepsDone > 0) {
    doc.totalStepTime = seconds(st.totalStepTimeMs);
    doc.totalStepBuildTime = seconds(st.totalStepBuildTimeMs);
    doc.avgStepTime = st.totalStepTimeMs / 1000 / st.nrStepsDone;
    doc.avgStepBuildTime = st.totalStepBuildTimeMs / 1000 / st.nrStepsDone;
  }
  const machines: Json = {};
  for (const m of machineList(s)) machines[m.spec.uri] = cppMachine(m, now);
  doc.machines = machines;
  const jobsets: Json = {};
  for (const j of s.graph.jobsets.values()) jobsets[j.displayName] = {shareUsed: j.shareUsed, seconds: j.seconds};
  doc.jobsets = jobsets;
  const machineTypes: Json = {};
  for (const [type, t] of typeStats(s, now)) {
    const entry: Json = {runnable: t.runnable, running: t.running};
    // Summed seconds the runnable steps of this type have waited (hydra-ops; consumers must not rely on it).
    if (t.runnable > 0) entry.waitTime = Math.round(t.waitSeconds);
    machineTypes[type] = entry;
  }
  doc.machineTypes = machineTypes;
  // The destination is the local store: no binary-cache traffic to count.
  doc.store = {
    narInfoRead: 0,
    narInfoReadAverted: 0,
    narInfoMissing: 0,
    narInfoWrite: 0,
    narInfoCacheSize: 0,
    narRead: 0,
    narReadBytes: 0,
    narReadCompressedBytes: 0,
    narWrite: 0,
    narWriteAverted: 0,
    narWriteBytes: 0,
    narWriteCompressedBytes: 0,
    narWriteCompressionTimeMs: 0,
    narCompressionSavings: 0,
    narCompressionSpeed: 0,
  };
  return doc;
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
    nrSubstitutesStarted: 0,
    nrSubstitutesFailed: 0,
    nrSubstitutesSucceeded: 0,
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
