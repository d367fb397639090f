// Reproducibility checks as operator actions: `hydra-ops check BUILD|DRV`, the console's `c` key, and the
// `hydra-ops repro` report.
//
// Privilege: a check needs Hydra's *restart* privilege (admin ∨ role restart-jobs ∨ owner/member of the
// build's project). Like a restart it spends builder capacity on a build that already finished, and it writes
// to the build's step (timesBuilt / isNonDeterministic) — it never changes the build's status or outputs.
// Every attempt is audited (action `check`): refused, ok (a verdict was reached: reproducible or
// not-reproducible, or the check was aborted) or failed (verdict check-failed, or an unexpected error).
import {readFile} from 'node:fs/promises';
import type pg from 'pg';
import {readDrv} from '../nix/drv.js';
import type {MachineSpec} from '../fleet/machines-file.js';
import {compileFilter, formatFilterError, FilterError, FILTER_FROM} from '../db/filter.js';
import {checkRegexes} from '../db/queries/sql.js';
import {getCheck, listChecks, type CheckRow, type ListChecksOptions} from '../db/repro-checks.js';
import {
  chooseCheckMachine,
  CheckRefused,
  performCheck,
  resolveCheckTarget,
  type CheckDeps,
  type CheckReport,
  type CheckTarget,
} from '../scheduler/repro-check.js';
import {ActionError} from './errors.js';
import type {Actor} from './actor.js';
import {readonlyError, requirePrivilege} from './permissions.js';
import {parseFilterOrThrow} from './selection.js';
import {tryWriteAudit} from './audit.js';

export type {CheckDeps, CheckReport} from '../scheduler/repro-check.js';

export interface CheckRequest {
  build?: number;
  drvPath?: string;
  /** NAME of the machine to rebuild on (URI, host, user@host). */
  machine?: string;
  /** Insist on another machine than the one that built it (the default when no machine is named). */
  otherMachine?: boolean;
  /** Rebuilds (default 1). */
  rounds?: number;
  /** Only resolve the target and the machine; rebuild nothing, record nothing but the audit row. */
  dryRun?: boolean;
  signal?: AbortSignal;
  /** Called once the check row exists (its id), before the rebuild starts. */
  onStarted?(id: number, machine: string): void;
}

export interface CheckPlan {
  dryRun: true;
  build: number | null;
  drvPath: string;
  originalMachine: string | null;
  checkMachine: string;
  rounds: number;
  auditId: number | null;
}

export type CheckActionResult = (CheckReport & {dryRun: false; auditId: number | null}) | CheckPlan;

function describe(req: CheckRequest): string {
  const what = req.build !== undefined ? `build ${req.build}` : (req.drvPath ?? '?');
  const where = req.machine ? ` on ${req.machine}` : '';
  const rounds = req.rounds && req.rounds > 1 ? ` ×${req.rounds}` : '';
  return `check ${what}${where}${rounds}`;
}

function toActionError(e: unknown): unknown {
  if (e instanceof CheckRefused) return new ActionError(e.kind, e.message);
  return e;
}

/**
 * Rebuilds the derivation of a finished successful build (or a derivation a successful step built) on another
 * machine, compares the outputs and records the verdict (see scheduler/repro-check.ts).
 */
export async function runCheck(pool: pg.Pool, actor: Actor, req: CheckRequest, deps: CheckDeps): Promise<CheckActionResult> {
  const started = Date.now();
  const scope = describe(req);
  let targets: number[] | undefined;
  const audit = (outcome: 'ok' | 'refused' | 'failed' | 'dry-run', message: string, resultCount?: number) =>
    tryWriteAudit(pool, actor, {action: 'check', scope, targetIds: targets, outcome, message, resultCount, durationMs: Date.now() - started});
  if (req.build !== undefined && req.drvPath !== undefined) {
    const err = new ActionError('usage', 'name a build or a derivation, not both');
    await audit('refused', err.message);
    throw err;
  }
  // Read-only mode writes nothing, not even an audit row.
  if (actor.readonly) throw readonlyError(actor);
  let target: CheckTarget;
  try {
    target = await resolveCheckTarget(pool, req);
    targets = target.build !== null ? [target.build] : [];
    await requirePrivilege(pool, actor, 'restart', target.project ? [target.project] : []);
  } catch (e) {
    const err = toActionError(e);
    await audit(err instanceof ActionError ? 'refused' : 'failed', err instanceof Error ? err.message : String(err));
    throw err;
  }
  if (req.dryRun) {
    try {
      const drv = await readDrv(target.drvPath);
      const machine = chooseCheckMachine(deps.machines, drv, target.originalStep?.machine ?? null, {...req, drained: deps.drained});
      const auditId = await audit('dry-run', `would rebuild on ${machine.uri}`, 0);
      return {
        dryRun: true,
        build: target.build,
        drvPath: target.drvPath,
        originalMachine: target.originalStep?.machine ?? null,
        checkMachine: machine.uri,
        rounds: req.rounds ?? 1,
        auditId,
      };
    } catch (e) {
      const err = e instanceof CheckRefused ? toActionError(e) : new ActionError('refused', `cannot read ${target.drvPath}: ${(e as Error).message}`);
      await audit('refused', (err as Error).message);
      throw err;
    }
  }
  let report: CheckReport;
  try {
    report = await performCheck(pool, deps, target, {
      machine: req.machine,
      otherMachine: req.otherMachine,
      rounds: req.rounds,
      requestedBy: actor.hydraUser,
      signal: req.signal,
      onStarted: (id, m) => req.onStarted?.(id, m.uri),
    });
  } catch (e) {
    const err = toActionError(e);
    await audit(err instanceof ActionError ? 'refused' : 'failed', err instanceof Error ? err.message : String(err));
    throw err;
  }
  const message = `check ${report.id} on ${report.checkMachine}: ${report.verdict}${report.error ? ` (${report.error})` : ''}`;
  const auditId = await audit(report.verdict === 'check-failed' ? 'failed' : 'ok', message, report.stepMarked ? 1 : 0);
  return {...report, dryRun: false, auditId};
}

// ---------------------------------------------------------------------------------------------------------------
// Reading checks back

/** The first lines of a diff log that show differences (after its header), at most `lines`. */
export async function diffExcerpt(path: string | null, lines = 20): Promise<string[]> {
  if (!path) return [];
  let text: string;
  try {
    const fh = await readFile(path);
    text = fh.subarray(0, 256 * 1024).toString('utf8');
  } catch {
    return [];
  }
  const all = text.split('\n');
  const first = all.findIndex((l) => l.startsWith('=== '));
  return all.slice(first >= 0 ? first : 0).filter((l) => l.trim() !== '').slice(0, lines);
}

export interface CheckDetail {
  check: CheckRow;
  excerpt: string[];
}

/** One check with its diff excerpt (the console's drill-down). */
export async function checkDetail(pool: pg.Pool, id: number, excerptLines = 200): Promise<CheckDetail> {
  const check = await getCheck(pool, id);
  if (!check) throw new ActionError('not-found', `no reproducibility check ${id}`);
  return {check, excerpt: await diffExcerpt(check.diffLogPath, excerptLines)};
}

export {listChecks, type ListChecksOptions, type CheckRow};

export interface NonReproducible {
  build: number;
  project: string;
  jobset: string;
  job: string;
  drvPath: string;
  check: number;
  originalMachine: string | null;
  checkMachine: string | null;
  /** Outputs whose hashes differed. */
  differing: string[];
  diffLogPath: string | null;
  excerpt: string[];
}

export interface ReproReport {
  /** `all successful builds` or `filter <expr>`. */
  scope: string;
  /** Finished successful builds in scope. */
  builds: number;
  /** Builds whose derivation has a conclusive verdict. */
  checked: number;
  reproducible: number;
  notReproducible: number;
  /** Builds never checked conclusively (includes those whose checks all failed). */
  unchecked: number;
  /** Of the unchecked: builds whose checks all failed. */
  checkFailed: number;
  /** reproducible / checked (null when nothing is checked). */
  reproducibleShare: number | null;
  /** Checks running now (any build). */
  running: number;
  nonReproducibleList: NonReproducible[];
}

/**
 * r13y-style summary over finished successful builds (optionally narrowed by a filter). A derivation counts as
 * not reproducible once any check found a difference, as reproducible when checks agreed and none differed,
 * and as unchecked otherwise — "unchecked" is never folded into either verdict.
 */
export async function reproReport(pool: pg.Pool, opts: {filter?: string; limit?: number; excerptLines?: number} = {}): Promise<ReproReport> {
  let where = '';
  let params: unknown[] = [];
  if (opts.filter !== undefined && opts.filter.trim() !== '') {
    const ast = parseFilterOrThrow(opts.filter);
    try {
      await checkRegexes(pool, ast);
      const compiled = compileFilter(ast, 'builds');
      if (compiled.where) where = ` AND (${compiled.where})`;
      params = compiled.params;
    } catch (e) {
      if (e instanceof FilterError) throw new ActionError('usage', formatFilterError(opts.filter, e), {position: e.position, token: e.token});
      throw e;
    }
  }
  const scope = `WITH scope AS (
      SELECT b.id, b.drvpath, j.project, j.name AS jobset, b.job FROM ${FILTER_FROM.builds}
       WHERE b.finished = 1 AND b.buildstatus = 0${where}),
    v AS (
      SELECT drv_path,
             bool_or(verdict = 'not-reproducible') AS bad,
             bool_or(verdict = 'reproducible') AS good,
             bool_or(verdict = 'check-failed') AS failed,
             max(id) FILTER (WHERE verdict = 'not-reproducible') AS bad_check
        FROM hydra_ops.repro_checks WHERE drv_path IN (SELECT drvpath FROM scope) GROUP BY drv_path)`;
  const counts = await pool.query<{builds: number; bad: number; good: number; failed: number}>(
    `${scope}
     SELECT count(*)::int AS builds,
            count(*) FILTER (WHERE v.bad)::int AS bad,
            count(*) FILTER (WHERE v.good AND NOT v.bad)::int AS good,
            count(*) FILTER (WHERE v.failed AND NOT v.good AND NOT v.bad)::int AS failed
       FROM scope s LEFT JOIN v ON v.drv_path = s.drvpath`,
    params,
  );
  const limit = opts.limit ?? 50;
  const list = await pool.query<{id: number; project: string; jobset: string; job: string; drvpath: string; check: number; original_machine: string | null; check_machine: string | null; outputs: Array<{name: string; differs: boolean}>; diff_log_path: string | null}>(
    `${scope}
     SELECT s.id, s.project, s.jobset, s.job, s.drvpath, c.id::float8 AS check, c.original_machine, c.check_machine, c.outputs, c.diff_log_path
       FROM scope s JOIN v ON v.drv_path = s.drvpath AND v.bad JOIN hydra_ops.repro_checks c ON c.id = v.bad_check
      ORDER BY s.id DESC LIMIT ${limit}`,
    params,
  );
  const running = await pool.query<{n: number}>(`SELECT count(*)::int AS n FROM hydra_ops.repro_checks WHERE verdict = 'running'`);
  const c = counts.rows[0]!;
  const checked = c.good + c.bad;
  const nonReproducibleList: NonReproducible[] = [];
  for (const r of list.rows) {
    nonReproducibleList.push({
      build: r.id,
      project: r.project,
      jobset: r.jobset,
      job: r.job,
      drvPath: r.drvpath,
      check: Number(r.check),
      originalMachine: r.original_machine,
      checkMachine: r.check_machine,
      differing: (Array.isArray(r.outputs) ? r.outputs : []).filter((o) => o.differs).map((o) => o.name),
      diffLogPath: r.diff_log_path,
      excerpt: await diffExcerpt(r.diff_log_path, opts.excerptLines ?? 12),
    });
  }
  return {
    scope: opts.filter?.trim() ? `filter ${opts.filter.trim()}` : 'all successful builds',
    builds: c.builds,
    checked,
    reproducible: c.good,
    notReproducible: c.bad,
    unchecked: c.builds - checked,
    checkFailed: c.failed,
    reproducibleShare: checked > 0 ? c.good / checked : null,
    running: running.rows[0]!.n,
    nonReproducibleList,
  };
}

/** Machines a check may use, for callers that only have the machines files' entries. */
export type {MachineSpec};
