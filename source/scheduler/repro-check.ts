// One reproducibility check, end to end: find what to check (a finished successful build, or a derivation some
// successful step built), choose the machine (by default one other than the machine that built it), record
// the check as running, rebuild on the builder (fleet/check-runner.ts), compare every output's NAR hash with
// the coordinator's, run the diff hook on a mismatch, record the verdict and mark the original step.
// Shared by the operator action (actions/check.ts: permission + audit on top) and the idle-time sampler.
//
// Verdicts: reproducible · not-reproducible · check-failed (the rebuild did not complete: it failed, the builder
// was unreachable, the output could not be freed there) · unchecked (aborted before a verdict, e.g. preempted
// or shut down). Nothing here touches the build's rows, outputs or store paths; only a conclusive verdict
// marks the step that built the derivation (BuildSteps.timesBuilt / isNonDeterministic, see
// db/repro-checks.ts markStepRebuilt).

import {join} from 'node:path';
import type pg from 'pg';
import {readDrv, outputPathMap, requiredSystemFeatures, type Derivation} from '../nix/drv.js';
import {queryPathInfos} from '../nix/store.js';
import {sameHash} from '../nix/nar.js';
import {buildsIntoLocalStore, CheckError, type CheckRunner, type RebuildResult} from '../fleet/check-runner.js';
import {runDiffHook, startDiffLog, type DiffTool} from '../fleet/diff-hook.js';
import type {MachineSpec} from '../fleet/machines-file.js';
import {finishCheck, findBuiltStep, insertCheck, markStepRebuilt, stepsHaveDeterminismColumns, type CheckOutputRecord} from '../db/repro-checks.js';
import type {ReproVerdict} from '../db/schema/hydra-ops-migrations.js';

export type CheckRefusalKind = 'not-found' | 'refused' | 'usage';

/** The check cannot start: nothing to check, or no machine to check it on. */
export class CheckRefused extends Error {
  constructor(
    readonly kind: CheckRefusalKind,
    message: string,
  ) {
    super(message);
    this.name = 'CheckRefused';
  }
}

export interface CheckTarget {
  /** The build the check is filed under (the one named, or the one whose step built the derivation). */
  build: number | null;
  project: string | null;
  drvPath: string;
  system: string;
  /** The step that built the derivation (where timesBuilt / isNonDeterministic are marked). */
  originalStep: {build: number; stepnr: number; machine: string} | null;
  maxSilentTime: number;
  buildTimeout: number;
}

/** What to check: a finished successful build (by id) or a derivation a successful build step built. */
export async function resolveCheckTarget(db: pg.Pool | pg.PoolClient, what: {build?: number; drvPath?: string}): Promise<CheckTarget> {
  type Row = {id: number; drvpath: string; finished: number; buildstatus: number | null; system: string; project: string; maxsilent: number | null; timeout: number | null};
  const select = `SELECT b.id, b.drvpath, b.finished, b.buildstatus, b.system, j.project, b.maxsilent, b.timeout
                    FROM Builds b JOIN Jobsets j ON j.id = b.jobset_id`;
  let row: Row | undefined;
  if (what.build !== undefined) {
    if (!Number.isSafeInteger(what.build) || what.build <= 0) throw new CheckRefused('usage', `bad build id ${JSON.stringify(what.build)}`);
    row = (await db.query<Row>(`${select} WHERE b.id = $1`, [what.build])).rows[0];
    if (!row) throw new CheckRefused('not-found', `no build ${what.build}`);
    if (row.finished !== 1 || row.buildstatus !== 0) {
      const state = row.finished !== 1 ? 'is not finished' : `finished with status ${row.buildstatus}`;
      throw new CheckRefused('refused', `build ${row.id} ${state}; only successful builds can be checked`);
    }
  } else if (what.drvPath) {
    if (!what.drvPath.endsWith('.drv')) throw new CheckRefused('usage', `${what.drvPath} is not a derivation path (.drv)`);
  } else {
    throw new CheckRefused('usage', 'name a build id or a derivation path to check');
  }
  const drvPath = row?.drvpath ?? what.drvPath!;
  const step = await findBuiltStep(db, drvPath);
  if (!row) {
    row = (await db.query<Row>(`${select} WHERE b.drvpath = $1 AND b.finished = 1 AND b.buildstatus = 0 ORDER BY b.id DESC LIMIT 1`, [drvPath])).rows[0];
    if (!row && step) row = (await db.query<Row>(`${select} WHERE b.id = $1`, [step.build])).rows[0];
    if (!row) throw new CheckRefused('not-found', `no successful build or build step of ${drvPath}`);
  }
  // A dependency's derivation: its platform comes from the .drv, its limits from the build it was built for.
  const system = row.drvpath === drvPath ? row.system : ((await readDrv(drvPath).catch(() => null))?.platform ?? row.system);
  return {
    build: row.id,
    project: row.project,
    drvPath,
    system,
    originalStep: step ? {build: step.build, stepnr: step.stepnr, machine: step.machine} : null,
    maxSilentTime: row.maxsilent ?? 7200,
    buildTimeout: row.timeout ?? 36000,
  };
}

/** Machines named NAME: the full URI, `ssh://NAME`, the host name, or `user@host`. */
export function machinesNamed(machines: readonly MachineSpec[], name: string): MachineSpec[] {
  const exact = machines.filter((m) => m.uri === name || m.uri === `ssh://${name}`);
  if (exact.length > 0) return exact;
  return machines.filter((m) => m.host === name || (m.user !== undefined && `${m.user}@${m.host}` === name));
}

/** The machine can build the derivation: system, required features, mandatory features (docs/hydra-compat.md, "Machine choice and back-off"). */
export function machineCanBuild(m: MachineSpec, system: string, features: readonly string[]): boolean {
  if (!m.systems.includes(system)) return false;
  if (!features.every((f) => m.supportedFeatures.includes(f))) return false;
  return m.mandatoryFeatures.every((f) => features.includes(f));
}

export interface MachineChoice {
  /** NAME of a machine (URI, host, user@host). */
  machine?: string;
  /** Insist on a machine other than the one that built it (also the default when no machine is named). */
  otherMachine?: boolean;
  /** Drained machines are not chosen automatically. */
  drained?: ReadonlySet<string>;
  /** Extra machines to skip when choosing automatically (e.g. busy ones). */
  exclude?: (m: MachineSpec) => boolean;
}

/** Picks the check machine; throws CheckRefused with the reason when there is none. */
export function chooseCheckMachine(machines: readonly MachineSpec[], drv: Derivation, originalMachine: string | null, choice: MachineChoice = {}): MachineSpec {
  const features = requiredSystemFeatures(drv);
  const system = drv.platform;
  const feat = features.length > 0 ? ` with features ${features.join(', ')}` : '';
  if (choice.machine !== undefined) {
    const hits = machinesNamed(machines, choice.machine);
    if (hits.length === 0) {
      throw new CheckRefused('not-found', `no machine "${choice.machine}" in the machines files${machines.length ? ` (known: ${machines.map((m) => m.uri).join(', ')})` : ''}`);
    }
    if (hits.length > 1) throw new CheckRefused('usage', `machine name "${choice.machine}" is ambiguous: ${hits.map((m) => m.uri).join(', ')}; give the full URI`);
    const m = hits[0]!;
    if (!machineCanBuild(m, system, features)) throw new CheckRefused('refused', `${m.uri} cannot build ${system}${feat}`);
    if (buildsIntoLocalStore(m)) {
      throw new CheckRefused('refused', `${m.uri} builds into the coordinator's own store, where the outputs are already valid; choose a machine with its own store`);
    }
    if (choice.otherMachine && m.uri === originalMachine) throw new CheckRefused('usage', `${m.uri} built it originally; --other-machine and --machine contradict each other`);
    return m;
  }
  const capable = machines.filter((m) => machineCanBuild(m, system, features) && !buildsIntoLocalStore(m));
  const others = capable.filter((m) => m.uri !== originalMachine && !(choice.exclude?.(m) ?? false));
  const pool = others.filter((m) => !choice.drained?.has(m.uri));
  const pick = (pool.length > 0 ? pool : others).sort((a, b) => b.speedFactor - a.speedFactor || a.uri.localeCompare(b.uri))[0];
  if (pick) return pick;
  const built = originalMachine ? ` than ${originalMachine}, which built it,` : '';
  throw new CheckRefused(
    'refused',
    capable.length === 0
      ? `no machine with its own store can build ${system}${feat}`
      : `no machine other${built} can build ${system}${feat}; name one with --machine to rebuild there (the output is deleted there first)`,
  );
}

export interface CheckDeps {
  runner: CheckRunner;
  machines: readonly MachineSpec[];
  /** $HYDRA_DATA: checks live in <dataDir>/hydra-ops/checks/<id>. */
  dataDir: string;
  /** Diff hook program (Nix's calling convention); empty: diffoscope if installed, else built-in. */
  diffHook?: string;
  /** Extra environment variables the diff hook gets (the commandEnv setting). */
  diffEnv?: readonly string[];
  /** Machines drained by the operator (not chosen automatically). */
  drained?: ReadonlySet<string>;
  maxLogSize?: number;
  log?: (line: string) => void;
}

export interface CheckOptions extends Omit<MachineChoice, 'drained'> {
  rounds?: number;
  requestedBy: string;
  signal?: AbortSignal;
  /** Called once the check row exists (before the rebuild starts). */
  onStarted?(id: number, machine: MachineSpec): void;
}

export interface CheckReport {
  id: number;
  verdict: Exclude<ReproVerdict, 'running'>;
  build: number | null;
  drvPath: string;
  originalMachine: string | null;
  checkMachine: string;
  rounds: number;
  outputs: CheckOutputRecord[];
  /** The check's directory (round logs, `.check` trees, diff.log). */
  checkDir: string;
  diffLogPath: string | null;
  diffTool: DiffTool | null;
  error: string | null;
  /** The original step was marked (timesBuilt / isNonDeterministic). */
  stepMarked: boolean;
  /** Round logs. */
  logs: string[];
}

export function checkDirOf(dataDir: string, id: number): string {
  return join(dataDir, 'hydra-ops', 'checks', String(id));
}

/** Runs a check of an already resolved target. */
export async function performCheck(db: pg.Pool, deps: CheckDeps, target: CheckTarget, opts: CheckOptions): Promise<CheckReport> {
  const rounds = opts.rounds ?? 1;
  if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > 100) throw new CheckRefused('usage', `--rounds must be a whole number 1..100, got ${rounds}`);
  let drv: Derivation;
  try {
    drv = await readDrv(target.drvPath);
  } catch (e) {
    throw new CheckRefused('refused', `cannot read ${target.drvPath} in the coordinator's store: ${(e as Error).message}`);
  }
  const outputs = outputPathMap(drv);
  const paths: string[] = [];
  for (const [name, path] of outputs) {
    if (path === null) throw new CheckRefused('refused', `${target.drvPath}: output '${name}' is content-addressed without a known path; it cannot be checked`);
    paths.push(path);
  }
  const infos = await queryPathInfos(paths);
  const expected = new Map<string, {path: string; narHash: string}>();
  for (const [name, path] of outputs) {
    const info = infos.get(path!);
    if (!info) throw new CheckRefused('refused', `output ${path} of ${target.drvPath} is not valid in the coordinator's store (garbage-collected?): there is nothing to compare with`);
    expected.set(name, {path: path!, narHash: info.narHash});
  }
  const originalMachine = target.originalStep?.machine ?? null;
  const machine = chooseCheckMachine(deps.machines, drv, originalMachine, {...opts, drained: deps.drained});
  const initial: CheckOutputRecord[] = [...expected].map(([name, e]) => ({name, path: e.path, expected: e.narHash, got: [], differs: false, checkPath: null}));
  const id = await insertCheck(db, {
    build: target.build,
    drvPath: target.drvPath,
    originalMachine,
    checkMachine: machine.uri,
    rounds,
    requestedBy: opts.requestedBy,
    outputs: initial,
  });
  const checkDir = checkDirOf(deps.dataDir, id);
  opts.onStarted?.(id, machine);

  let rebuilt: RebuildResult;
  try {
    rebuilt = await deps.runner.rebuild({
      machine,
      drvPath: target.drvPath,
      drv,
      expected,
      rounds,
      checkDir,
      maxSilentTime: target.maxSilentTime,
      buildTimeout: target.buildTimeout,
      maxLogSize: deps.maxLogSize,
      signal: opts.signal,
    });
  } catch (e) {
    const message = e instanceof CheckError || e instanceof Error ? e.message : String(e);
    rebuilt = {outcome: opts.signal?.aborted ? 'aborted' : 'failed', error: message, rounds: [], outputs: [], deletedBefore: [], mismatch: false};
  }

  const records: CheckOutputRecord[] = initial.map((o) => {
    const r = rebuilt.outputs.find((x) => x.name === o.name);
    if (!r) return o;
    return {...o, got: r.got, differs: r.got.some((h) => !sameHash(h, o.expected)) || new Set(r.got).size > 1, checkPath: r.checkPath};
  });
  let verdict: CheckReport['verdict'];
  if (rebuilt.outcome === 'aborted') verdict = 'unchecked';
  else if (rebuilt.outcome === 'failed') verdict = 'check-failed';
  else verdict = rebuilt.mismatch ? 'not-reproducible' : 'reproducible';

  let diffLogPath: string | null = null;
  let diffTool: DiffTool | null = null;
  let error = rebuilt.error;
  if (verdict === 'not-reproducible') {
    diffLogPath = join(checkDir, 'diff.log');
    try {
      await startDiffLog(diffLogPath, [
        `reproducibility check ${id}: ${target.drvPath}`,
        `built by ${originalMachine ?? '(unknown)'}, rebuilt ${rounds}× on ${machine.uri}`,
        ...records.map((o) => `${o.name}: ${o.path}: recorded ${o.expected}; rebuilt ${o.got.join(', ')}${o.differs ? ' — DIFFERS' : ''}`),
      ]);
      for (const o of records) {
        if (!o.checkPath) continue;
        const r = await runDiffHook({oldPath: o.path, newPath: o.checkPath, drvPath: target.drvPath, buildDir: checkDir, logPath: diffLogPath, hook: deps.diffHook, passEnv: deps.diffEnv});
        diffTool = r.tool;
        if (r.error) error = error ? `${error}; ${r.error}` : r.error;
      }
    } catch (e) {
      error = `diff hook: ${(e as Error).message}`;
    }
  }
  await finishCheck(db, id, {verdict, outputs: records, diffLogPath, error});

  let stepMarked = false;
  if ((verdict === 'reproducible' || verdict === 'not-reproducible') && target.originalStep) {
    try {
      if (await stepsHaveDeterminismColumns(db)) {
        stepMarked = await markStepRebuilt(db, target.originalStep.build, target.originalStep.stepnr, rounds, verdict === 'not-reproducible');
      }
    } catch (e) {
      deps.log?.(`check ${id}: could not mark step ${target.originalStep.build}/${target.originalStep.stepnr}: ${(e as Error).message}`);
    }
  }
  return {
    id,
    verdict,
    build: target.build,
    drvPath: target.drvPath,
    originalMachine,
    checkMachine: machine.uri,
    rounds,
    outputs: records,
    checkDir,
    diffLogPath,
    diffTool,
    error,
    stepMarked,
    logs: rebuilt.rounds.map((r) => r.logPath),
  };
}
