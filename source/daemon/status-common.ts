// What the status documents (status.ts: the Rust runner's REST documents; status-cpp.ts: the C++ runner's
// dumpStatus document; status-progress.ts: the progress indicator) and the metrics (metrics.ts) share: the time
// conversions, the views of the Scheduler's public state they all read, per-system-type step counts and the
// machines' REST keys.
import type {Scheduler} from '../scheduler/scheduler.js';
import type {Step} from '../scheduler/model.js';
import type {RunnerMachine} from '../scheduler/machines.js';

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

export type Json = Record<string, unknown>;

export const seconds = (ms: number): number => Math.floor(ms / 1000);
/** Unix seconds, 0 for "never". */
export const unixOrZero = (ms: number): number => (ms > 0 ? seconds(ms) : 0);
export const rfc3339 = (ms: number): string | null => (Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : null);
export const avg = (total: number, n: number): number => (n > 0 ? total / n : 0);
/** Integer mean like Rust's `checked_div(..).unwrap_or(0)`. */
export const avgInt = (total: number, n: number): number => (n > 0 ? Math.floor(total / n) : 0);
export const EPOCH = new Date(0).toISOString();
export const limitOf = (o: ListOptions | undefined): number => Math.max(0, Math.floor(o?.limit ?? DEFAULT_LIST_LIMIT));

export function activeSteps(s: Scheduler): ActiveStepInfo[] {
  return [...s.active.values()];
}

export function countPhase(s: Scheduler, ...phases: number[]): number {
  let n = 0;
  for (const a of s.active.values()) if (phases.includes(a.phase)) n++;
  return n;
}

export function localSystem(s: Scheduler): string {
  return s.options.localSystem;
}

export function machineList(s: Scheduler): RunnerMachine[] {
  return [...s.machines.values()];
}

/** Runnable steps not yet handed to a machine. */
export function waitingSteps(s: Scheduler): Step[] {
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
