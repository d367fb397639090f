// Machines as the dispatcher sees them: the machines-file entry plus runtime state that survives
// reloads (docs/hydra-compat.md, "Machine choice and back-off", "Machines file").
import type {MachineSpec} from '../fleet/machines-file.js';
import type {Step} from './model.js';

export interface MachineRuntime {
  currentJobs: number;
  consecutiveFailures: number;
  /** ms since epoch; the machine is skipped until then while consecutiveFailures > 0. */
  disabledUntil: number;
  lastFailure: number;
  lastError: string | null;
  lastErrorAt: number;
  /** ms of the last step start on this machine (0 = never). */
  lastUsed: number;
  idleSince: number;
  nrStepsDone: number;
  totalStepTimeMs: number;
  totalStepBuildTimeMs: number;
  /** Steps on this machine that ended in success / in a failure (retried attempts included). */
  succeededBuilds: number;
  failedBuilds: number;
  /** Unix seconds the current 30-second window of step starts began (0 = none yet), and starts in it. */
  jobsInLast30sStart: number;
  jobsInLast30sCount: number;
  /** ms since epoch this runner first saw the machine. */
  joinedAt: number;
  /** Operator drain (hydra_ops.machine_state): no new steps; running ones finish. */
  drained: boolean;
  /** False once removed from the machines file (kept for statistics; never dispatched to). */
  listed: boolean;
  /** Why this machine cannot build at all, found before any step ran (e.g. local Nix cannot write its store). */
  unusable: string | null;
}

export interface RunnerMachine {
  spec: MachineSpec;
  rt: MachineRuntime;
}

export function newRuntime(now = Date.now()): MachineRuntime {
  return {
    currentJobs: 0,
    consecutiveFailures: 0,
    disabledUntil: 0,
    lastFailure: 0,
    lastError: null,
    lastErrorAt: 0,
    lastUsed: 0,
    idleSince: now,
    nrStepsDone: 0,
    totalStepTimeMs: 0,
    totalStepBuildTimeMs: 0,
    succeededBuilds: 0,
    failedBuilds: 0,
    jobsInLast30sStart: 0,
    jobsInLast30sCount: 0,
    joinedAt: now,
    drained: false,
    listed: true,
    unusable: null,
  };
}

/** The name operators use for a machine (also BuildSteps.machine). */
export function machineName(spec: MachineSpec): string {
  return spec.uri;
}

export function stepPlatform(step: Step, localSystem: string): string {
  return step.platform === 'builtin' ? localSystem : step.platform;
}

/** Hydra's Machine::supportsStep (capacity and back-off are separate). */
export function supportsStep(spec: MachineSpec, step: Step, localSystem: string): boolean {
  const platform = stepPlatform(step, localSystem);
  if (!spec.systems.includes(platform) && !(step.platform === 'builtin' && spec.systems.includes('builtin'))) return false;
  for (const f of spec.mandatoryFeatures) {
    if (!step.requiredFeatures.includes(f) && !(f === 'local' && step.preferLocal)) return false;
  }
  for (const f of step.requiredFeatures) {
    if (!spec.supportedFeatures.includes(f)) return false;
  }
  return true;
}

export function isBackingOff(rt: MachineRuntime, now: number): boolean {
  return rt.consecutiveFailures > 0 && rt.disabledUntil > now;
}

export function hasCapacity(m: RunnerMachine): boolean {
  return m.rt.currentJobs < m.spec.maxJobs;
}

/** Can take a new step right now (apart from whether it supports it). */
export function isAvailable(m: RunnerMachine, now: number): boolean {
  return m.rt.listed && !m.rt.drained && m.rt.unusable === null && !isBackingOff(m.rt, now) && hasCapacity(m);
}

/**
 * Machine choice (documented in README.md): among the machines that support the step and are
 * available, the highest `speedFactor × (1 − currentJobs / maxJobs)` wins; ties go to the machine
 * with more free slots, then to the one idle longest, then by name.
 */
export function machineScore(m: RunnerMachine): number {
  return m.spec.speedFactor * (1 - m.rt.currentJobs / Math.max(1, m.spec.maxJobs));
}

export function compareMachines(a: RunnerMachine, b: RunnerMachine): number {
  return (
    machineScore(b) - machineScore(a) ||
    b.spec.maxJobs - b.rt.currentJobs - (a.spec.maxJobs - a.rt.currentJobs) ||
    a.rt.lastUsed - b.rt.lastUsed ||
    a.spec.uri.localeCompare(b.spec.uri)
  );
}

/** Machine back-off after a transport failure (docs/hydra-compat.md, "Machine choice and back-off"); a burst within 30 s counts once. */
export function recordMachineFailure(rt: MachineRuntime, message: string, now: number, baseMs = 60_000): void {
  rt.lastError = message;
  rt.lastErrorAt = now;
  if (rt.lastFailure && now - rt.lastFailure < 30_000 && rt.consecutiveFailures > 0) return;
  rt.consecutiveFailures = Math.min(rt.consecutiveFailures + 1, 4);
  rt.lastFailure = now;
  rt.disabledUntil = now + baseMs * 3 ** (rt.consecutiveFailures - 1);
}

/** Why no machine can ever take this step, or null when some machine could (ignoring load). */
export function unsupportedReason(step: Step, machines: readonly RunnerMachine[], localSystem: string): string | null {
  const platform = stepPlatform(step, localSystem);
  const features = step.requiredFeatures.length > 0 ? ` with features ${step.requiredFeatures.join(', ')}` : '';
  const listed = machines.filter((m) => m.rt.listed);
  if (listed.some((m) => supportsStep(m.spec, step, localSystem))) return null;
  const ofPlatform = listed.filter((m) => m.spec.systems.includes(platform));
  if (ofPlatform.length === 0) return `no machine supports system ${platform}${features}`;
  const missing = step.requiredFeatures.filter((f) => !ofPlatform.some((m) => m.spec.supportedFeatures.includes(f)));
  if (missing.length > 0) return `no machine for system ${platform} supports the required features ${missing.join(', ')}`;
  const featured = ofPlatform.filter((m) => step.requiredFeatures.every((f) => m.spec.supportedFeatures.includes(f)));
  const mandatory = [...new Set(featured.flatMap((m) => m.spec.mandatoryFeatures))];
  return `every machine for system ${platform}${features} has mandatory features (${mandatory.join(', ')}) the step does not require`;
}

/** A sentence explaining why a runnable step is not running (the console's "why isn't this building"). */
export function waitingReason(step: Step, machines: readonly RunnerMachine[], localSystem: string, now: number): string {
  if (step.running) return 'running';
  if (!step.created) return 'being loaded';
  if (step.deps.size > 0) {
    const names = [...step.deps].slice(0, 3).map((d) => d.name);
    return `waiting for ${step.deps.size} dependenc${step.deps.size === 1 ? 'y' : 'ies'}: ${names.join(', ')}${step.deps.size > 3 ? ', …' : ''}`;
  }
  if (step.after > now) {
    return `waiting to retry at ${new Date(step.after).toISOString()} (attempt ${step.tries + 1})${step.lastError ? `; last error: ${step.lastError}` : ''}`;
  }
  const unsupported = unsupportedReason(step, machines, localSystem);
  if (unsupported) return unsupported;
  const capable = machines.filter((m) => m.rt.listed && supportsStep(m.spec, step, localSystem));
  const unusable = capable.filter((m) => m.rt.unusable !== null);
  if (unusable.length === capable.length && unusable.length > 0) return `no capable machine can build: ${unusable[0]!.rt.unusable}`;
  const usable = capable.filter((m) => m.rt.unusable === null);
  const drained = usable.filter((m) => m.rt.drained).length;
  const backingOff = usable.filter((m) => !m.rt.drained && isBackingOff(m.rt, now)).length;
  const busy = usable.filter((m) => !m.rt.drained && !isBackingOff(m.rt, now) && !hasCapacity(m)).length;
  const parts = [`${busy} busy`];
  if (backingOff) parts.push(`${backingOff} backing off`);
  if (drained) parts.push(`${drained} drained`);
  if (unusable.length) parts.push(`${unusable.length} cannot build`);
  if (busy + backingOff + drained + unusable.length === capable.length) return `all ${capable.length} capable machine${capable.length === 1 ? ' is' : 's are'} unavailable (${parts.join(', ')})`;
  return 'queued behind higher-priority steps';
}

/**
 * The Rust runner's `jobsInLast30s*` machine statistics (NixOS/hydra
 * subprojects/hydra-queue-runner/src/state/machine.rs): a window opens at the first start after
 * it was empty or older than 30 s; every start counts, a step that ends within the window is taken
 * off again.
 */
export function noteJobStart(m: RunnerMachine, nowMs: number): void {
  const now = Math.floor(nowMs / 1000);
  const rt = m.rt;
  if (rt.jobsInLast30sCount === 0 || now > rt.jobsInLast30sStart + 30) {
    rt.jobsInLast30sStart = now;
    rt.jobsInLast30sCount = 0;
  }
  rt.jobsInLast30sCount++;
}

export function noteJobEnd(m: RunnerMachine, nowMs: number): void {
  const rt = m.rt;
  if (rt.jobsInLast30sCount > 0 && Math.floor(nowMs / 1000) <= rt.jobsInLast30sStart + 30) rt.jobsInLast30sCount--;
}
