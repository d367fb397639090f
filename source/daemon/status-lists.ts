// The Rust queue runner's REST list documents (NixOS/hydra subprojects/hydra-queue-runner/src/server/http.rs):
// `/status/builds`, `/status/steps`, `/status/runnable`, `/status/queues` and the per-queue step lists, each capped
// by `?limit=`, plus the build-active check; a step's object carries hydra-ops's system type and waiting reason.
// The other REST documents are status.ts.
import type {Scheduler} from '../scheduler/scheduler.js';
import type {Build, Step} from '../scheduler/model.js';
import {dependentBuilds} from '../scheduler/model.js';
import {sortRunnable, lowestShareUsed} from '../scheduler/dispatcher.js';
import {stepPlatform, waitingReason} from '../scheduler/machines.js';
import {EPOCH, limitOf, localSystem, machineList, rfc3339, waitingSteps, type Json, type ListOptions} from './status-common.js';

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
