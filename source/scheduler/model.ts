// The queue runner's in-memory state (docs/hydra-compat.md, "Step graph and runnable", "Priorities and shares"): builds, the shared step graph
// keyed by drv path, and jobsets with their fair-share windows.
import type {Derivation} from '../nix/drv.js';

export const DAY = 86400;

export class Jobset {
  /** Seconds of step time charged in the last 24 h. */
  seconds = 0;
  /** Step id → charge, so two steps starting in the same second never overwrite each other (docs/hydra-compat.md, "Priorities and shares"). */
  readonly window = new Map<number, {start: number; seconds: number}>();

  constructor(
    readonly id: number,
    readonly project: string,
    readonly name: string,
    public shares: number,
  ) {}

  get displayName(): string {
    return `${this.project}:${this.name}`;
  }

  get shareUsed(): number {
    return this.seconds / Math.max(1, this.shares);
  }

  charge(key: number, start: number, seconds: number): void {
    const previous = this.window.get(key);
    if (previous) this.seconds -= previous.seconds;
    this.window.set(key, {start, seconds});
    this.seconds += seconds;
  }

  prune(now: number): void {
    for (const [key, entry] of this.window) {
      if (entry.start < now - DAY) {
        this.seconds -= entry.seconds;
        this.window.delete(key);
      }
    }
  }
}

export class Build {
  toplevel: Step | null = null;
  /** The queue monitor saw it finish in the database. */
  finishedInDb = false;

  constructor(
    readonly id: number,
    readonly jobset: Jobset,
    readonly job: string,
    readonly drvPath: string,
    readonly maxSilent: number,
    readonly timeout: number,
    readonly timestamp: number,
    public globalPriority: number,
    readonly localPriority: number,
  ) {}

  get fullJobName(): string {
    return `${this.jobset.displayName}:${this.job}`;
  }
}

/**
 * A copy of `s` that keeps nothing else alive. V8 represents a substring as a view into the string it was cut
 * from: a step's drv path and output paths are cut from its .drv file's text, which would stay in memory for as
 * long as the step does (about half of a loaded step's memory).
 */
export function detached(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

const interned = new Map<string, string>();
/** One shared copy of a string that many steps repeat (platforms, system types, feature names). */
export function intern(s: string): string {
  let k = interned.get(s);
  if (k === undefined) interned.set(s, (k = detached(s)));
  return k;
}

let nextStepId = 1;

export class Step {
  readonly id = nextStepId++;
  /** Steps this one needs (unfinished). */
  readonly deps = new Set<Step>();
  /** Steps that need this one. */
  readonly rdeps = new Set<Step>();
  /** Builds whose top-level derivation this is. */
  readonly builds = new Set<Build>();
  readonly jobsets = new Set<Jobset>();

  created = false;
  finished = false;
  /** Currently reserved by the dispatcher or running on a machine. */
  running = false;
  /** Aborted because no build needs it any more. */
  cancelled = false;
  tries = 0;
  /** Not before this time (ms since epoch), after a retryable failure. */
  after = 0;
  /** When the step last became runnable (ms). */
  runnableSince = 0;
  /** Last time some machine could take it (ms); used for the unsupported timeout. */
  lastSupported = 0;
  highestGlobalPriority = 0;
  highestLocalPriority = 0;
  lowestBuildId = Number.MAX_SAFE_INTEGER;
  /** The last attempt's error, for "why is it waiting". */
  lastError: string | null = null;
  /** dispatcher.ts capabilityKey, computed once (platform, features and preferLocal do not change). */
  capabilityKey: string | undefined = undefined;

  constructor(
    readonly drvPath: string,
    /** The parsed derivation while the graph is being linked; dropped afterwards (memory) and re-read to run. */
    public drv: Derivation | null,
    readonly platform: string,
    readonly requiredFeatures: readonly string[],
    readonly preferLocal: boolean,
    readonly deterministic: boolean,
    readonly systemType: string,
    /** Output name → statically known path (null for floating content-addressed outputs). */
    readonly outputs: ReadonlyMap<string, string | null>,
  ) {}

  get name(): string {
    const base = this.drvPath.slice(this.drvPath.lastIndexOf('/') + 1);
    return base.slice(33).replace(/\.drv$/, '');
  }

  get runnable(): boolean {
    return this.created && !this.finished && this.deps.size === 0;
  }
}

/** Every build that (transitively) needs `step`. */
export function dependentBuilds(step: Step): Set<Build> {
  const builds = new Set<Build>();
  for (const s of dependentSteps(step)) for (const b of s.builds) builds.add(b);
  return builds;
}

/** Every step (including `step`) that transitively depends on `step`. */
export function dependentSteps(step: Step): Set<Step> {
  const seen = new Set<Step>();
  const stack = [step];
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    for (const r of s.rdeps) stack.push(r);
  }
  return seen;
}

/** docs/hydra-compat.md, "Priorities and shares": raise priorities and jobset membership over a build's whole dependency graph. */
export function propagatePriorities(build: Build): void {
  if (!build.toplevel) return;
  const seen = new Set<Step>();
  const stack = [build.toplevel];
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    s.highestGlobalPriority = Math.max(s.highestGlobalPriority, build.globalPriority);
    s.highestLocalPriority = Math.max(s.highestLocalPriority, build.localPriority);
    s.lowestBuildId = Math.min(s.lowestBuildId, build.id);
    s.jobsets.add(build.jobset);
    for (const d of s.deps) stack.push(d);
  }
}
