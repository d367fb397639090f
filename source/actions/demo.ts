// The demo project: project `demo`, jobset `demo/main` evaluating examples/demo/release.nix (shipped with
// hydra-ops), created or refreshed on every run, then evaluated when Nix is installed.
//
// Through the same guarded, audited actions as `project create`, `jobset create --replace` and `eval`
// (jobset-actions.ts), as the acting user: the project is created only when missing, owned by the acting user
// (on a database with no Hydra user yet, the acting user becomes its first user: permissions.ts
// create-first-project); an existing `demo` project keeps its owner, and only its owner (or an admin) may
// redefine its jobset and evaluate it.
import {existsSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import type pg from 'pg';
import type {Actor} from './actor.js';
import type {JobsetResult} from './jobsets.js';
import type {EvaluateResult} from './evaluate.js';
import {createJobsetAs, createProjectAs, evaluateAs} from './jobset-actions.js';
import {nixInstantiateVersion} from '../nix/eval-jobs.js';

export const DEMO_PROJECT = 'demo';
export const DEMO_JOBSET = 'main';
const DEMO_FILE = join('examples', 'demo', 'release.nix');

/** examples/demo/release.nix of this installation: searched upwards from this module (source/ or dist/source/). */
export function demoExpressionPath(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, DEMO_FILE);
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`the demo expression ${DEMO_FILE} was not found above ${from}; is the hydra-ops installation complete?`);
}

export interface DemoOptions {
  /** The slowSeconds input: how long the slow jobs take (default 30). */
  slowSeconds?: number;
  /** Default: demoExpressionPath(). */
  exprFile?: string;
  /** Evaluate (default true; skipped anyway when Nix is not installed). */
  evaluate?: boolean;
  nixInstantiate?: string;
  log?: (line: string) => void;
}

export interface DemoResult {
  jobset: JobsetResult;
  /** The project was created by this run (owned by the acting user). */
  projectCreated: boolean;
  /** The acting user was created as a minimal Users row to own it. */
  ownerCreated: boolean;
  /** The `nix-instantiate --version` line, null when Nix is not installed. */
  nixVersion: string | null;
  /** null when not evaluated. */
  eval: EvaluateResult | null;
}

export async function setupDemo(pool: pg.Pool, actor: Actor, o: DemoOptions = {}): Promise<DemoResult> {
  const slowSeconds = o.slowSeconds ?? 30;
  const exists = await pool.query('SELECT 1 FROM projects WHERE name = $1', [DEMO_PROJECT]);
  let ownerCreated = false;
  if (!exists.rowCount) {
    const project = await createProjectAs(
      pool,
      actor,
      {
        name: DEMO_PROJECT,
        displayName: 'hydra-ops demo',
        description: 'A small example project: libraries, a server, tests, docs and release artefacts built from /bin/sh derivations',
        homepage: null,
        owner: actor.hydraUser,
        createOwner: true,
      },
      'create-first-project',
    );
    ownerCreated = project.ownerCreated;
  }
  const jobset = await createJobsetAs(pool, actor, {
    project: DEMO_PROJECT,
    name: DEMO_JOBSET,
    exprFile: o.exprFile ?? demoExpressionPath(),
    inputs: [{name: 'slowSeconds', type: 'string', value: String(slowSeconds)}],
    description: 'examples/demo/release.nix',
    checkInterval: 0,
    replace: true,
  });
  const nixVersion = await nixInstantiateVersion(o.nixInstantiate);
  let evaluated: EvaluateResult | null = null;
  if (nixVersion !== null && o.evaluate !== false) {
    evaluated = await evaluateAs(pool, actor, DEMO_PROJECT, DEMO_JOBSET, {nixInstantiate: o.nixInstantiate, log: o.log});
  }
  return {jobset, projectCreated: !exists.rowCount, ownerCreated, nixVersion, eval: evaluated};
}
