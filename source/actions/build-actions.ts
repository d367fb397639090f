// The build actions an operator names by kind — restart, cancel, bump — in one table: which
// action runs (each in the one frame of perform.ts), and the words for what it did. Script mode
// (cli/commands/actions.ts) and the console (ui/state/sql-data.ts) both dispatch through here.
import type pg from 'pg';
import type {Actor} from './actor.js';
import type {ActionResult} from './perform.js';
import type {BuildSelection} from './selection.js';
import {restartBuilds} from './restart.js';
import {cancelBuilds} from './cancel.js';
import {bumpBuilds} from './bump.js';

export type BuildActionKind = 'restart' | 'cancel' | 'bump';

export interface BuildActionOptions {
  dryRun?: boolean;
  /** restart: where the registered GC roots of the restarted builds live. */
  gcRootsDir?: string;
  /** bump: above every existing bump instead of Hydra's "now". */
  toFront?: boolean;
}

export type BuildActionResult = ActionResult & {globalPriority?: number};

interface BuildActionSpec {
  /** Past tense, for results ("restarted 3 of 4 builds"). */
  done: string;
  /** Why a named build did not change. */
  unchanged: string;
  run(pool: pg.Pool, actor: Actor, sel: BuildSelection, o: BuildActionOptions): Promise<BuildActionResult>;
}

export const BUILD_ACTIONS: Record<BuildActionKind, BuildActionSpec> = {
  restart: {
    done: 'restarted',
    unchanged: 'it is not finished',
    run: (pool, actor, sel, o) => restartBuilds(pool, actor, sel, {dryRun: o.dryRun, gcRootsDir: o.gcRootsDir}),
  },
  cancel: {
    done: 'cancelled',
    unchanged: 'it is already finished',
    run: (pool, actor, sel, o) => cancelBuilds(pool, actor, sel, {dryRun: o.dryRun}),
  },
  bump: {
    done: 'bumped',
    unchanged: 'its globalPriority already has that value',
    run: (pool, actor, sel, o) => bumpBuilds(pool, actor, sel, {dryRun: o.dryRun, toFront: o.toFront === true}),
  },
};

export function isBuildActionKind(kind: string): kind is BuildActionKind {
  return Object.hasOwn(BUILD_ACTIONS, kind);
}

/** Runs one build action on a selection. */
export function runBuildAction(pool: pg.Pool, actor: Actor, kind: BuildActionKind, sel: BuildSelection, o: BuildActionOptions = {}): Promise<BuildActionResult> {
  return BUILD_ACTIONS[kind].run(pool, actor, sel, o);
}
