// The shared step graph (docs/hydra-compat.md, "Step graph and runnable"): builds attach to steps keyed by drv path;
// derivations whose outputs are valid are not steps; a step is runnable once created and all its
// dependencies are done. Loading walks the derivation graph breadth-first so that validity and
// FailedPaths are checked with one store call and one query per graph level, not per derivation,
// and never descends below a derivation whose outputs already exist.
import {DrvAttributeError, DrvParseError, preferLocalBuild, isDeterministic, outputPathMap, requiredSystemFeatures, systemType, type Derivation} from '../nix/drv.js';
import type {LocalNixSettings} from '../fleet/machines-file.js';
import {Build, Jobset, Step, detached, intern, propagatePriorities} from './model.js';

const NO_FEATURES: readonly string[] = Object.freeze([]);

export interface GraphStore {
  readDrv(path: string): Promise<Derivation>;
  validPaths(paths: string[]): Promise<Set<string>>;
  failedPathsAmong(paths: string[]): Promise<string[]>;
  /**
   * `use-substitutes`: fetch these missing output paths from the substituters. `valid`: the ones valid now;
   * `substituted`: those this call fetched (a path another load was fetching at the same time is only valid).
   * Absent when substitution is off.
   */
  substitute?(paths: string[]): Promise<{valid: Set<string>; substituted: Set<string>}>;
  /**
   * `store_uri`: copies these locally valid output paths (with their closures) to the destination store where it
   * lacks them. `copied`: the paths this call found missing there and copied; `failed`: paths that are still not
   * there (the copy was refused). Absent without a destination store.
   */
  publish?(paths: string[]): Promise<{copied: Set<string>; failed: Set<string>}>;
}

/**
 * Outputs of one derivation that were substituted, or copied from the local store to the destination store, instead
 * of built: a BuildSteps row of type 1 each (Hydra's createSubstitutionStep, written for both in createStep).
 */
export interface Substitution {
  drvPath: string;
  /** Output name → path, the outputs that were missing and are valid now. */
  outputs: Map<string, string>;
  startTime: number;
  stopTime: number;
}

export type LoadResult =
  | {kind: 'missing-drv'; drvPath: string; message: string}
  | {kind: 'cached-success'}
  | {kind: 'cached-failure'; drvPath: string; outputs: Map<string, string | null>; toplevel: boolean; system: string}
  | {kind: 'queued'; newSteps: Step[]; newRunnable: Step[]};

/** A derivation read while loading a build, with its outputs (outputPathMap, computed once). */
interface Loaded {
  path: string;
  drv: Derivation;
  outputs: Map<string, string | null>;
}

/** A load's result and the substitutions made while loading (recorded for the build being loaded, as in Hydra). */
export type LoadOutcome = LoadResult & {substituted: Substitution[]};

/** A .drv file that is missing or is not a derivation: reading it again will not help. */
export function isPermanentDrvError(e: unknown): boolean {
  if (e instanceof DrvParseError || e instanceof DrvAttributeError) return true;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}

export class StepGraph {
  readonly builds = new Map<number, Build>();
  readonly steps = new Map<string, Step>();
  readonly jobsets = new Map<number, Jobset>();
  readonly runnable = new Set<Step>();

  /** `local`: the coordinator's Nix settings, for preferLocalBuild (without them only the system is compared). */
  constructor(
    readonly localSystem: string,
    readonly local: Pick<LocalNixSettings, 'extraPlatforms' | 'maxJobs' | 'systemFeatures'> | null = null,
  ) {}

  /**
   * Nix's ParsedDerivation::canBuildLocally (libstore/parsed-derivations.cc), which willBuildLocally and so Hydra's
   * preferLocalBuild use: the local system or one of `extra-platforms`, `max-jobs` not 0, and every required system
   * feature among the local ones; a builtin derivation always.
   */
  canBuildLocally(platform: string, features: readonly string[]): boolean {
    if (platform === 'builtin') return true;
    if (platform !== this.localSystem && !(this.local?.extraPlatforms ?? []).includes(platform)) return false;
    if (!this.local) return true;
    if (this.local.maxJobs === 0) return false;
    return features.every((f) => this.local!.systemFeatures.includes(f));
  }

  /** Loads one build's derivation graph and attaches the build to it. */
  async addBuild(build: Build, store: GraphStore, now = Date.now()): Promise<LoadOutcome> {
    const substituted: Substitution[] = [];
    const result = await this.load(build, store, now, substituted);
    return {...result, substituted};
  }

  private async load(build: Build, store: GraphStore, now: number, substituted: Substitution[]): Promise<LoadResult> {
    const attached = this.steps.get(build.drvPath);
    if (attached) {
      this.attach(build, attached);
      return {kind: 'queued', newSteps: [], newRunnable: []};
    }
    const drafts = new Map<string, Loaded>();
    const seen = new Set<string>([build.drvPath]);
    let frontier = [build.drvPath];
    while (frontier.length > 0) {
      const drvs: Array<{path: string; drv: Derivation} | {path: string; error: unknown}> = await Promise.all(
        frontier.map(async (p) => {
          try {
            return {path: p, drv: await store.readDrv(p)};
          } catch (e) {
            return {path: p, error: e};
          }
        }),
      );
      for (const d of drvs) {
        if (!('error' in d)) continue;
        const message = d.error instanceof Error ? d.error.message : String(d.error);
        // Only a top-level derivation that is not there (or is no derivation) aborts the build, as Hydra aborts a
        // build whose drv path is not valid (queue-monitor.cc); anything else (EMFILE, EIO, an input derivation that
        // cannot be read right now) fails this load, and the queue monitor tries again later.
        if (d.path === build.drvPath && isPermanentDrvError(d.error)) return {kind: 'missing-drv', drvPath: d.path, message};
        throw new Error(`cannot read ${d.path}: ${message}`);
      }
      // Each derivation's outputs once: every decision below (failed, valid, substitutable, published) reads them.
      const loaded: Loaded[] = (drvs as Array<{path: string; drv: Derivation}>).map(({path, drv}) => ({path, drv, outputs: outputPathMap(drv)}));
      const staticOutputs = loaded.flatMap(({outputs}) => [...outputs.values()].filter((p): p is string => p !== null));
      const failed = new Set(await store.failedPathsAmong(staticOutputs));
      if (failed.size > 0) {
        const hit = loaded.find(({outputs}) => [...outputs.values()].some((p) => p !== null && failed.has(p)))!;
        return {
          kind: 'cached-failure',
          drvPath: hit.path,
          outputs: hit.outputs,
          toplevel: hit.path === build.drvPath,
          system: hit.drv.platform,
        };
      }
      const valid = await store.validPaths(staticOutputs);
      if (store.substitute) await this.substituteMissing(loaded, valid, store.substitute.bind(store), substituted);
      if (store.publish) await this.publishValid(loaded, valid, store.publish.bind(store), substituted);
      const next: string[] = [];
      for (const l of loaded) {
        const {path, drv} = l;
        const outputs = [...l.outputs.values()];
        if (outputs.length > 0 && outputs.every((p) => p !== null && valid.has(p))) continue;
        drafts.set(path, l);
        for (const input of drv.inputDrvs.keys()) {
          if (seen.has(input) || this.steps.has(input)) continue;
          seen.add(input);
          next.push(input);
        }
      }
      frontier = next;
    }
    if (!drafts.has(build.drvPath)) return {kind: 'cached-success'};

    // Loads run concurrently: a derivation another load registered meanwhile is reused, not duplicated.
    const resolved = new Map<string, Step>();
    const created: Step[] = [];
    for (const [path, l] of drafts) {
      const existing = this.steps.get(path);
      if (existing && !existing.finished) {
        resolved.set(path, existing);
      } else {
        const step = this.makeStep(path, l.drv, l.outputs);
        resolved.set(path, step);
        created.push(step);
      }
    }
    for (const step of created) {
      for (const input of step.drv!.inputDrvs.keys()) {
        const dep = resolved.get(input) ?? this.steps.get(input);
        if (dep && !dep.finished) {
          step.deps.add(dep);
          dep.rdeps.add(step);
        }
      }
    }
    const newRunnable: Step[] = [];
    for (const step of created) {
      this.steps.set(step.drvPath, step);
      step.created = true;
      step.drv = null;
    }
    this.attach(build, resolved.get(build.drvPath)!);
    for (const step of created) {
      if (step.runnable) {
        step.runnableSince = now;
        step.lastSupported = now;
        this.runnable.add(step);
        newRunnable.push(step);
      }
    }
    return {kind: 'queued', newSteps: created, newRunnable};
  }

  /**
   * Hydra's createStep (queue-monitor.cc): a derivation whose missing outputs can all be substituted is not built;
   * its outputs are fetched and it counts as done. One call per graph level; derivations with outputs of unknown
   * path (content-addressed) are left to be built.
   */
  private async substituteMissing(
    loaded: Loaded[],
    valid: Set<string>,
    substitute: NonNullable<GraphStore['substitute']>,
    substituted: Substitution[],
  ): Promise<void> {
    const wanted: Array<{path: string; missing: Map<string, string>}> = [];
    for (const l of loaded) {
      const path = l.path;
      const outputs = [...l.outputs];
      if (outputs.length === 0 || outputs.some(([, p]) => p === null)) continue;
      const missing = new Map(outputs.filter(([, p]) => !valid.has(p!)) as Array<[string, string]>);
      if (missing.size > 0 && !this.steps.has(path)) wanted.push({path, missing});
    }
    if (wanted.length === 0) return;
    const startTime = Math.floor(Date.now() / 1000);
    const got = await substitute([...new Set(wanted.flatMap((w) => [...w.missing.values()]))]);
    const stopTime = Math.floor(Date.now() / 1000);
    for (const w of wanted) {
      const missing = [...w.missing.values()];
      for (const p of missing) if (got.valid.has(p)) valid.add(p);
      if (missing.every((p) => got.substituted.has(p))) substituted.push({drvPath: w.path, outputs: w.missing, startTime, stopTime});
    }
  }

  /**
   * Hydra's createStep decides against the destination store (getMissingRemotePaths): a derivation whose outputs are
   * valid locally but missing there has them copied there, and counts as done; one whose copy is refused is built
   * instead (its outputs leave `valid`), and a substitution recorded for it is dropped. One call per graph level.
   */
  private async publishValid(
    loaded: Loaded[],
    valid: Set<string>,
    publish: NonNullable<GraphStore['publish']>,
    substituted: Substitution[],
  ): Promise<void> {
    const done: Array<{path: string; outputs: Array<[string, string]>}> = [];
    for (const l of loaded) {
      const path = l.path;
      const outputs = [...l.outputs];
      if (outputs.length > 0 && outputs.every(([, p]) => p !== null && valid.has(p)) && !this.steps.has(path)) {
        done.push({path, outputs: outputs as Array<[string, string]>});
      }
    }
    if (done.length === 0) return;
    const startTime = Math.floor(Date.now() / 1000);
    const got = await publish([...new Set(done.flatMap((d) => d.outputs.map(([, p]) => p)))]);
    const stopTime = Math.floor(Date.now() / 1000);
    for (const d of done) {
      const recorded = substituted.findIndex((s) => s.drvPath === d.path);
      if (d.outputs.some(([, p]) => got.failed.has(p))) {
        for (const [, p] of d.outputs) valid.delete(p);
        if (recorded >= 0) substituted.splice(recorded, 1);
        continue;
      }
      const copied = new Map(d.outputs.filter(([, p]) => got.copied.has(p)));
      if (copied.size > 0 && recorded < 0) substituted.push({drvPath: d.path, outputs: copied, startTime, stopTime});
    }
  }

  private attach(build: Build, step: Step): void {
    build.toplevel = step;
    step.builds.add(build);
    this.builds.set(build.id, build);
    propagatePriorities(build);
  }

  private makeStep(path: string, drv: Derivation, drvOutputs: ReadonlyMap<string, string | null>): Step {
    const features = requiredSystemFeatures(drv);
    const preferLocal = preferLocalBuild(drv) && this.canBuildLocally(drv.platform, features);
    // Long-lived strings are detached from the .drv text (model.ts, detached) and repeated ones shared.
    const outputs = new Map<string, string | null>();
    for (const [name, out] of drvOutputs) outputs.set(intern(name), out === null ? null : detached(out));
    return new Step(detached(path), drv, intern(drv.platform), features.length === 0 ? NO_FEATURES : features.map(intern), preferLocal, isDeterministic(drv), intern(systemType(drv, features, preferLocal)), outputs);
  }

  /** A step succeeded: it leaves the graph; returns parents that became runnable. */
  completeStep(step: Step, now = Date.now()): Step[] {
    step.finished = true;
    step.running = false;
    this.steps.delete(step.drvPath);
    this.runnable.delete(step);
    const woken: Step[] = [];
    for (const parent of step.rdeps) {
      parent.deps.delete(step);
      if (parent.runnable && !this.runnable.has(parent)) {
        parent.runnableSince = now;
        parent.lastSupported = now;
        this.runnable.add(parent);
        woken.push(parent);
      }
    }
    step.rdeps.clear();
    return woken;
  }

  /** Removes builds (finished, cancelled, deleted) and every step no remaining build needs. */
  dropBuilds(ids: Iterable<number>): void {
    const released: Step[] = [];
    for (const id of ids) {
      const b = this.builds.get(id);
      if (!b) continue;
      this.builds.delete(id);
      if (b.toplevel) {
        b.toplevel.builds.delete(b);
        released.push(b.toplevel);
      }
    }
    this.release(released);
  }

  /**
   * Incremental collection below the given steps: the graph is acyclic and holds no garbage between calls,
   * so a step is garbage exactly when no build names it and no step needs it. Costs what it frees, where
   * collectGarbage() walks the whole graph.
   */
  private release(stack: Step[]): void {
    while (stack.length > 0) {
      const step = stack.pop()!;
      if (step.builds.size > 0 || step.rdeps.size > 0 || this.steps.get(step.drvPath) !== step) continue;
      for (const d of step.deps) {
        d.rdeps.delete(step);
        stack.push(d);
      }
      this.runnable.delete(step);
      if (!step.running) this.steps.delete(step.drvPath);
    }
  }

  /** Steps not reachable from any build are dropped (running ones stay until they end, unlinked). */
  collectGarbage(): void {
    const live = new Set<Step>();
    const stack: Step[] = [];
    for (const b of this.builds.values()) if (b.toplevel) stack.push(b.toplevel);
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (live.has(s)) continue;
      live.add(s);
      for (const d of s.deps) stack.push(d);
    }
    for (const [path, step] of this.steps) {
      if (live.has(step)) continue;
      for (const d of step.deps) d.rdeps.delete(step);
      for (const r of step.rdeps) r.deps.delete(step);
      step.rdeps.clear();
      this.runnable.delete(step);
      if (!step.running) this.steps.delete(path);
    }
  }

  /** Unfinished builds that need `step`, directly or through other steps. */
  hasDependents(step: Step): boolean {
    const seen = new Set<Step>();
    const stack = [step];
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (s.builds.size > 0) return true;
      if (seen.has(s)) continue;
      seen.add(s);
      for (const r of s.rdeps) stack.push(r);
    }
    return false;
  }
}
