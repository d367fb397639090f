// The build detail's data (the console's `enter` on a build): the build, its steps, outputs and products, the
// job's history and latest successful build, why it is not building yet, and the Deps tab's merge of BuildSteps
// with the runner's view of the steps below the build. SQL from db/queries/; the runner through RunnerSource.
import type pg from 'pg';
import {buildOutputs, buildProducts} from '../../db/queries/builds.js';
import {buildSteps} from '../../db/queries/steps.js';
import {buildDetailRow} from '../../db/queries/windows.js';
import {HISTORY_LIMIT, jobHistory, latestSuccessful} from '../../db/queries/job-history.js';
import type {RunnerSnapshot, RunnerSource} from './runner-source.js';
import type {BuildDetail, DepEntry, RunnerMode, RunnerStepView} from './types.js';

export interface DetailContext {
  pool: pg.Pool;
  runner: RunnerSource | null;
  mode: RunnerMode;
  modeNote: string | null;
  /** The runner's snapshot (shared with the other reads of a refresh). */
  snapshot(): Promise<RunnerSnapshot | null>;
}

/**
 * The Deps tab's rows: the build's BuildSteps rows and the runner's in-memory steps, merged by drv path (the
 * runner's word wins for a step it holds: it knows steps that have no row yet and why they wait). Order: running,
 * runnable, waiting, failed, done; the build's own step last among equals.
 */
export function mergeDeps(
  toplevelDrv: string,
  rows: readonly {stepnr: number; drvpath: string | null; busy: number; status: number | null; machine: string; errormsg: string | null}[],
  runner: readonly RunnerStepView[] | null,
): DepEntry[] {
  const byDrv = new Map<string, DepEntry>();
  for (const r of [...rows].sort((x, y) => x.stepnr - y.stepnr)) {
    if (!r.drvpath) continue;
    const state: DepEntry['state'] = r.busy !== 0 ? 'running' : r.status === null ? 'waiting' : r.status === 0 ? 'done' : 'failed';
    byDrv.set(r.drvpath, {
      drvpath: r.drvpath,
      state,
      stepnr: r.stepnr,
      busy: r.busy,
      machine: r.machine || null,
      note: state === 'failed' ? (r.errormsg?.split('\n')[0] ?? null) : null,
      toplevel: r.drvpath === toplevelDrv,
    });
  }
  for (const v of runner ?? []) {
    if (v.finished) continue;
    const had = byDrv.get(v.drvPath);
    const state: DepEntry['state'] = v.running ? 'running' : v.runnable ? 'runnable' : 'waiting';
    byDrv.set(v.drvPath, {
      drvpath: v.drvPath,
      state,
      stepnr: had && had.state === 'running' ? had.stepnr : (had?.stepnr ?? null),
      busy: had?.busy ?? 0,
      machine: v.machine ?? (state === 'running' ? (had?.machine ?? null) : null),
      note: v.running ? null : v.waitingReason,
      toplevel: v.toplevel || v.drvPath === toplevelDrv,
    });
  }
  const rank = {running: 0, runnable: 1, waiting: 2, failed: 3, done: 4} as const;
  return [...byDrv.values()].sort((x, y) => rank[x.state] - rank[y.state] || Number(x.toplevel) - Number(y.toplevel) || (x.stepnr ?? 1e9) - (y.stepnr ?? 1e9));
}

export async function readBuildDetail(c: DetailContext, id: number): Promise<BuildDetail | null> {
  const b = await buildDetailRow(c.pool, id);
  if (!b) return null;
  const job = {project: b.project, jobset: b.jobset, job: b.job};
  const [steps, outputs, products, history, latest, runnerSteps] = await Promise.all([
    buildSteps(c.pool, id),
    buildOutputs(c.pool, id),
    buildProducts(c.pool, id),
    jobHistory(c.pool, job, {limit: HISTORY_LIMIT}),
    latestSuccessful(c.pool, job),
    b.finished === 0 && c.runner?.buildSteps ? c.runner.buildSteps(id).catch(() => null) : Promise.resolve(null),
  ]);
  const busyStep = steps.filter((s) => s.busy !== 0).sort((x, y) => y.stepnr - x.stepnr)[0];
  const build = {...b, busy: busyStep?.busy ?? 0, machine: busyStep?.machine ?? null};
  const depsNote =
    b.finished === 1
      ? null
      : !c.runner
        ? 'no queue runner: only the steps recorded in BuildSteps'
        : !c.runner.buildSteps
          ? `${c.runner.note} does not publish per-build steps: only BuildSteps`
          : runnerSteps === null
            ? `${c.runner.note} does not hold this build (not loaded yet, or finished)`
            : `steps from BuildSteps and the ${c.runner.note}`;
  return {
    deps: mergeDeps(b.drvpath, steps, runnerSteps),
    depsNote,
    history,
    latest,
    build,
    steps: steps.map((s) => ({stepnr: s.stepnr, drvpath: s.drvpath, busy: s.busy, status: s.status, machine: s.machine, starttime: s.starttime, stoptime: s.stoptime, errormsg: s.errormsg})),
    outputs,
    products: products.map((p) => ({productnr: p.productnr, type: p.type, subtype: p.subtype, name: p.name, path: p.path, filesize: p.filesize})),
    why: build.finished === 1 || busyStep ? [] : await whyNotBuilding(c, build),
  };
}

async function whyNotBuilding(c: DetailContext, b: {id: number; drvpath: string; system: string}): Promise<string[]> {
  const runner = c.runner;
  if (!runner) {
    return [
      c.mode === 'none' && c.modeNote ? `no queue runner: ${c.modeNote}` : 'no queue runner is running',
      'start one with `hydra-ops --daemon`, or open the console with --scheduler',
    ];
  }
  if (runner.explain) {
    const reason = runner.explain(b.drvpath);
    if (reason) return [reason];
    return ['the scheduler has not loaded this build yet (it reads new builds as they are queued)'];
  }
  const snap = await c.snapshot();
  if (!snap) return [`${runner.note} does not publish its state; cannot tell`];
  const capable = snap.machines.filter((m) => m.state !== 'removed' && m.systems.includes(b.system));
  if (capable.length === 0) {
    const systems = [...new Set(snap.machines.flatMap((m) => m.systems))].sort();
    return [`no machine has the platform ${b.system} (machines offer: ${systems.join(', ') || 'none'})`];
  }
  const usable = capable.filter((m) => m.state === 'idle' || m.state === 'busy');
  if (usable.length === 0) {
    return [`every machine for ${b.system} is unavailable: ${capable.map((m) => `${m.name} ${m.state}`).join(', ')}`];
  }
  return [`waiting its turn: ${snap.runnable ?? '?'} runnable step(s) on the runner; ${usable.length} machine(s) for ${b.system} have room`];
}
