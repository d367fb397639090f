// Prometheus text exposition (format 0.0.4) of the queue runner (docs/hydra-compat.md, "Status documents and metrics"): the
// Rust runner's `hydraqueuerunner_*` names that hydra-ops can fill, the C++ runner's nine
// counters (four of them in microseconds without a `_total` suffix), and a few hydra-ops additions.
import type {Scheduler} from '../scheduler/scheduler.js';
import {BUSY} from '../db/runner-sql.js';
import {machineKeys, typeStats, DEFAULT_STALL_SECONDS} from './status-common.js';
import {restProgress} from './status-progress.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const PREFIX = 'hydraqueuerunner_';

export type MetricType = 'counter' | 'gauge';

export interface Sample {
  labels?: Record<string, string>;
  value: number | null | undefined;
}

/** Label value escaping of the text format: backslash, double quote and line feed. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

/** Collects metric families; a name is emitted once (the first registration wins). */
export class Exposition {
  private readonly lines: string[] = [];
  private readonly names = new Set<string>();

  add(name: string, type: MetricType, help: string, samples: Sample[] | number | null | undefined): void {
    const full = PREFIX + name;
    if (this.names.has(full)) return;
    this.names.add(full);
    const list: Sample[] = Array.isArray(samples) ? samples : [{value: samples}];
    this.lines.push(`# HELP ${full} ${escapeHelp(help)}`, `# TYPE ${full} ${type}`);
    for (const s of list) {
      if (s.value === null || s.value === undefined) continue;
      const labels = s.labels && Object.keys(s.labels).length > 0
        ? `{${Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`
        : '';
      this.lines.push(`${full}${labels} ${formatValue(s.value)}`);
    }
  }

  has(name: string): boolean {
    return this.names.has(PREFIX + name);
  }

  text(): string {
    return this.lines.join('\n') + '\n';
  }
}

export interface MetricsOptions {
  now?: number;
  stallThresholdSeconds?: number;
}

/** The whole `/metrics` body. */
export function renderMetrics(s: Scheduler, o: MetricsOptions = {}): string {
  const now = o.now ?? Date.now();
  const st = s.stats;
  const e = new Exposition();
  const active = [...s.active.values()];
  const phase = (...p: number[]) => active.filter((a) => p.includes(a.phase)).length;
  const machines = [...s.machines.values()];
  const listed = machines.filter((m) => m.rt.listed);

  // Queue monitor and dispatcher counters (the first five are also the C++ names).
  e.add('queue_checks_started_total', 'counter', 'Queue scans started.', st.queueChecksStarted);
  e.add('queue_build_loads_total', 'counter', 'Builds loaded from the database.', st.queueBuildLoads);
  e.add('queue_steps_created_total', 'counter', 'Steps created while loading builds.', st.queueStepsCreated);
  e.add('queue_checks_early_exits_total', 'counter', 'Queue scans cut short to handle notifications.', st.queueChecksEarlyExits);
  e.add('queue_checks_finished_total', 'counter', 'Queue scans finished.', st.queueChecksFinished);
  e.add('dispatcher_time_spent_running_total', 'counter', 'Microseconds the dispatcher spent running.', st.dispatcherTimeSpentRunningUs);
  e.add('dispatcher_time_spent_waiting_total', 'counter', 'Microseconds the dispatcher spent waiting.', st.dispatcherTimeSpentWaitingUs);
  e.add('monitor_time_spent_running_total', 'counter', 'Microseconds the queue monitor spent running.', st.monitorTimeSpentRunningUs);
  e.add('monitor_time_spent_waiting_total', 'counter', 'Microseconds the queue monitor spent waiting.', st.monitorTimeSpentWaitingUs);
  // The C++ runner's four time counters: microseconds, no _total suffix.
  e.add('dispatcher_time_spent_running', 'counter', 'Microseconds the dispatcher spent running (C++ name).', st.dispatcherTimeSpentRunningUs);
  e.add('dispatcher_time_spent_waiting', 'counter', 'Microseconds the dispatcher spent waiting (C++ name).', st.dispatcherTimeSpentWaitingUs);
  e.add('queue_monitor_time_spent_running', 'counter', 'Microseconds the queue monitor spent running (C++ name).', st.monitorTimeSpentRunningUs);
  e.add('queue_monitor_time_spent_waiting', 'counter', 'Microseconds the queue monitor spent waiting (C++ name).', st.monitorTimeSpentWaitingUs);

  // Builds and steps.
  e.add('builds_read', 'gauge', 'Builds read from the database since start.', st.nrBuildsRead);
  e.add('builds_read_time_ms', 'gauge', 'Milliseconds spent reading builds since start.', Math.round(st.buildReadTimeMs));
  e.add('builds_unfinished', 'gauge', 'Builds held in memory.', s.graph.builds.size);
  e.add('builds_finished', 'gauge', 'Builds finished since start.', st.nrBuildsDone);
  e.add('builds_succeeded', 'gauge', 'Builds succeeded since start.', st.nrBuildsSucceeded);
  e.add('builds_failed', 'gauge', 'Builds failed since start.', st.nrBuildsFailed);
  e.add('steps_started', 'gauge', 'Step attempts started since start (including retries).', st.nrStepsStarted);
  e.add('steps_finished', 'gauge', 'Steps completed for good since start.', st.nrStepsDone);
  e.add('steps_building', 'gauge', 'Steps waiting for the remote build result.', phase(BUSY.building));
  e.add('steps_waiting', 'gauge', 'Steps on a machine that have not started transferring (preparing, connecting, waiting for a slot).', phase(BUSY.preparing, BUSY.connecting, BUSY.waitingForSlot));
  e.add('steps_runnable', 'gauge', 'Runnable steps.', s.graph.runnable.size);
  e.add('steps_unfinished', 'gauge', 'Unfinished steps in memory.', s.graph.steps.size);
  e.add('steps_unsupported', 'gauge', 'Runnable steps no machine supports (last dispatch round).', st.nrUnsupportedSteps);
  e.add('steps_unsupported_aborted', 'gauge', 'Steps aborted as unsupported since start.', st.nrUnsupportedStepsAborted);
  e.add('substitutes_started', 'gauge', 'Output paths asked of the substituters since start (use-substitutes).', st.nrSubstitutesStarted);
  e.add('substitutes_failed', 'gauge', 'Output paths the substituters did not provide since start.', st.nrSubstitutesFailed);
  e.add('substitutes_succeeded', 'gauge', 'Output paths substituted since start.', st.nrSubstitutesSucceeded);
  e.add('steps_retries', 'gauge', 'Step retries since start.', st.nrRetries);
  e.add('steps_max_retries', 'gauge', 'Highest number of tries of any step.', st.maxNrRetries);
  e.add('steps_copying_to', 'gauge', 'Steps sending their inputs.', phase(BUSY.sending));
  e.add('steps_copying_from', 'gauge', 'Steps receiving their outputs.', phase(BUSY.receiving));
  e.add('steps_avg_total_time_ms', 'gauge', 'Mean step time in milliseconds (including copying).', st.nrStepsDone > 0 ? st.totalStepTimeMs / st.nrStepsDone : 0);
  e.add('steps_avg_build_time_ms', 'gauge', 'Mean remote build time in milliseconds.', st.nrStepsDone > 0 ? st.totalStepBuildTimeMs / st.nrStepsDone : 0);
  e.add('steps_total_time_ms', 'gauge', 'Total step time in milliseconds.', st.totalStepTimeMs);
  e.add('steps_total_build_time_ms', 'gauge', 'Total remote build time in milliseconds.', st.totalStepBuildTimeMs);
  e.add('monitor_checks', 'gauge', 'Queue monitor wake-ups by a notification.', st.nrQueueWakeups);
  e.add('dispatch_wakeup', 'gauge', 'Dispatcher rounds.', st.nrDispatcherWakeups);
  e.add('dispatch_time_ms', 'gauge', 'Milliseconds spent dispatching.', Math.round(st.dispatchTimeMs));
  e.add('machines_total', 'gauge', 'Machines in the machines file.', listed.length);
  e.add('machines_in_use', 'gauge', 'Machines running at least one step.', machines.filter((m) => m.rt.currentJobs > 0).length);
  e.add('s3_uploads_pending', 'gauge', 'Pending S3 uploads (none: hydra-ops has no S3 destination).', 0);

  // Per system type.
  const types = [...typeStats(s, now)].sort(([a], [b]) => a.localeCompare(b));
  const perType = (f: (t: (typeof types)[number][1]) => number): Sample[] => types.map(([name, t]) => ({labels: {machine_type: name}, value: f(t)}));
  e.add('machine_type_runnable', 'gauge', 'Runnable steps per system type (waiting and running).', perType((t) => t.runnable + t.running));
  e.add('machine_type_running', 'gauge', 'Running steps per system type.', perType((t) => t.running));
  e.add('machine_type_waiting', 'gauge', 'Runnable steps ready to dispatch per system type.', perType((t) => t.waiting));
  e.add('machine_type_disabled', 'gauge', 'Runnable steps held back by a retry delay per system type.', perType((t) => t.disabled));
  e.add('machine_type_avg_runnable_time', 'gauge', 'Mean seconds the waiting steps of a system type have been runnable.', perType((t) => (t.runnable > 0 ? t.waitSeconds / t.runnable : 0)));
  e.add('machine_type_wait_time', 'gauge', 'Summed milliseconds the waiting steps of a system type have been runnable.', perType((t) => Math.round(t.waitSeconds * 1000)));

  // Per machine.
  const keys = machineKeys(machines);
  const perMachine = (f: (m: (typeof machines)[number]) => number | null): Sample[] => machines.map((m) => ({labels: {hostname: keys.get(m)!}, value: f(m)}));
  e.add('machine_current_jobs', 'gauge', 'Steps running on the machine.', perMachine((m) => m.rt.currentJobs));
  e.add('machine_steps_done', 'gauge', 'Steps finished on the machine since start.', perMachine((m) => m.rt.nrStepsDone));
  e.add('machine_total_step_time_ms', 'gauge', 'Total step time on the machine in milliseconds.', perMachine((m) => m.rt.totalStepTimeMs));
  e.add('machine_total_step_build_time_ms', 'gauge', 'Total build time on the machine in milliseconds.', perMachine((m) => m.rt.totalStepBuildTimeMs));
  e.add('machine_consecutive_failures', 'gauge', 'Consecutive connection failures of the machine (0-4).', perMachine((m) => m.rt.consecutiveFailures));
  e.add('machine_idle_since_timestamp', 'gauge', 'Unix time the machine became idle (0 while busy).', perMachine((m) => (m.rt.currentJobs === 0 && m.rt.idleSince > 0 ? Math.floor(m.rt.idleSince / 1000) : 0)));
  // hydra-ops additions per machine.
  e.add('machine_disabled_until_timestamp', 'gauge', 'Unix time until which the machine is backed off (0 = not).', perMachine((m) => (m.rt.disabledUntil > now ? Math.floor(m.rt.disabledUntil / 1000) : 0)));
  e.add('machine_max_jobs', 'gauge', 'Slots of the machine.', perMachine((m) => m.spec.maxJobs));
  e.add('machine_drained', 'gauge', '1 when the operator drained the machine.', perMachine((m) => (m.rt.drained ? 1 : 0)));

  // Jobsets.
  const jobsets = [...s.graph.jobsets.values()].sort((a, b) => a.displayName.localeCompare(b.displayName));
  e.add('jobset_share_used', 'gauge', 'Seconds of the last 24 h per scheduling share.', jobsets.map((j) => ({labels: {jobset_name: j.displayName}, value: j.shareUsed})));
  e.add('jobset_seconds', 'gauge', 'Step seconds charged to the jobset in the last 24 h.', jobsets.map((j) => ({labels: {jobset_name: j.displayName}, value: j.seconds})));

  // Progress (hydra-ops addition) and clocks.
  const progress = restProgress(s, now, o.stallThresholdSeconds ?? DEFAULT_STALL_SECONDS);
  e.add('stalled_seconds', 'gauge', 'Seconds without a step start or end while runnable steps wait and a capable machine has a free slot.', progress.stalledSeconds);
  e.add('idle_capacity', 'gauge', 'Free slots on machines that can take work now.', progress.idleCapacity);
  e.add('current_time_seconds', 'gauge', 'Current Unix time.', Math.floor(now / 1000));
  e.add('uptime_seconds', 'gauge', 'Seconds since the queue runner started.', Math.max(0, Math.floor((now - st.startedAt) / 1000)));
  return e.text();
}
