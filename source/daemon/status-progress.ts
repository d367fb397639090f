// The progress indicator of the REST `/status` document and the metrics: runnable and running steps, free capacity,
// and whether the runner is stalled (work waits, a capable machine has a free slot, and nothing started or
// finished for the threshold).
import type {Scheduler} from '../scheduler/scheduler.js';
import {capabilityKey} from '../scheduler/dispatcher.js';
import {isAvailable, supportsStep} from '../scheduler/machines.js';
import {DEFAULT_STALL_SECONDS, rfc3339, localSystem, machineList, waitingSteps} from './status-common.js';

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
      const key = capabilityKey(step);
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
