// The C++ queue runner's status document (NixOS/hydra src/hydra-queue-runner/hydra-queue-runner.cc,
// State::dumpStatus), kept in SystemStatus('queue-runner') (system-status.ts), with hydra-ops additions per machine
// (last error, time since last use). Times are Unix seconds; `…Ms` names are milliseconds.
import type {Scheduler} from '../scheduler/scheduler.js';
import type {RunnerMachine} from '../scheduler/machines.js';
import {BUSY} from '../db/runner-sql.js';
import {type Json, seconds, unixOrZero, avg, countPhase, machineList, typeStats} from './status-common.js';

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

