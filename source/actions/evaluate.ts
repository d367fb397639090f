// Evaluating a jobset and recording the result the way Hydra's evaluator does (Hydra's src/script/hydra-eval-jobset; docs/hydra-compat.md, "Evaluation"), so a farm
// without Hydra's evaluator — and every test, benchmark and demo — gets queued builds indistinguishable from
// Hydra's:
//
//   NOTIFY eval_started; evaluate with Nix (source/nix/eval-jobs.ts); then in ONE transaction:
//   EvaluationErrors row (empty message when every job evaluated), Jobsets.errorMsg/errorTime, isCurrent cleared,
//   JobsetEvals row; per job: re-use the previous eval's build of the same job with the same first output path
//   (same drvPath when the path is not known) — NOTIFY cached_build_finished / cached_build_queued — or insert a
//   Builds row (finished 0, isCurrent 1, priority = meta.schedulingPriority or 100, maxsilent 7200, timeout
//   36000 by default) with its BuildOutputs and NOTIFY build_queued; hasNewBuilds = any new build or a different
//   member count than the previous eval; members, JobsetEvalInputs and isCurrent only when something changed
//   (otherwise the previous eval's builds become current again and the eval has no members, nrBuilds NULL);
//   NOTIFY eval_added and builds_added (lowest new id); one-shot jobsets (enabled 2) become disabled.
//   Notifications are raised inside the transaction, so listeners see them only once everything is committed.
//
// An expression that cannot be evaluated at all (syntax error, missing file, not an attribute set) is recorded
// as an EvaluationErrors row linked to a JobsetEvals row with no builds (hasNewBuilds 0, nrBuilds 0), plus
// Jobsets.errorMsg and NOTIFY eval_failed; the builds of the previous eval stay current. (Hydra itself only sets
// Jobsets.errorMsg in that case; the eval row makes the failure visible in eval listings.)
import {createHash} from 'node:crypto';
import type pg from 'pg';
import {addGcRoot} from '../nix/store.js';
import {evalJobs, NixEvalError, type EvalJobsResult, type EvaluatedJob, type JobEvalError} from '../nix/eval-jobs.js';
import {inTransaction, loadJobsetDefinition, type JobsetDefinition} from './jobsets.js';

type Db = pg.Pool | pg.ClientBase;

export interface EvaluateOptions {
  /** Register each job's .drv as a GC root there (Hydra's gc_roots_dir), so a GC cannot delete queued drvs. */
  gcRootsDir?: string;
  /** Correlates the eval_* notifications (default `<unix time>.<pid>`, like Hydra). */
  traceId?: string;
  /** Passed to nix-instantiate processes. */
  timeoutMs?: number;
  nixInstantiate?: string;
  /** Progress lines for an operator (stderr in the CLI). */
  log?: (line: string) => void;
  /** Called inside the transaction that records the eval (the audit row commits with it). */
  record?: (c: pg.ClientBase, evalId: number) => Promise<void>;
}

export interface EvalBuild {
  id: number;
  job: string;
  drvPath: string;
  isNew: boolean;
}

export interface EvaluateResult {
  evalId: number;
  jobsetId: number;
  project: string;
  jobset: string;
  /** The whole expression failed: Nix's message (nothing was queued). */
  evalError: string | null;
  /** Jobs that failed to evaluate (the rest were recorded). */
  jobErrors: JobEvalError[];
  hasNewBuilds: boolean;
  /** Member count when the eval changed something, else null (Hydra's nrBuilds). */
  nrBuilds: number | null;
  /** Every job's build (new and re-used), sorted by job name. */
  builds: EvalBuild[];
  newBuilds: number[];
  reusedBuilds: number[];
  /** Seconds in Nix, seconds writing the database. */
  nixSeconds: number;
  dbSeconds: number;
  nixProcesses: number;
}

const now = () => Math.floor(Date.now() / 1000);

/** The inputs' digest, Hydra-style: expression input and path, then each input as the evaluator passes it. */
export function evalInputsHash(def: Pick<JobsetDefinition, 'nixExprInput' | 'nixExprPath' | 'inputs'>): string {
  const args: string[] = [def.nixExprInput, def.nixExprPath];
  for (const i of [...def.inputs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (i.type === 'path') args.push('-I', `${i.name}=${i.value}`, '--arg', i.name, i.value);
    else if (i.type === 'boolean') args.push('--arg', i.name, i.value);
    else args.push('--argstr', i.name, i.value);
  }
  return createHash('sha256').update(args.join(' ')).digest('hex');
}

/** Hydra's EvaluationErrors text: one paragraph per job. */
export function formatJobErrors(errors: readonly JobEvalError[]): string {
  return errors.map((e) => `${e.name !== '' ? `in job ‘${e.name}’` : 'at top-level'}:\n${e.message}\n\n`).join('');
}

export async function evaluateJobset(db: Db, project: string, jobset: string, opts: EvaluateOptions = {}): Promise<EvaluateResult> {
  const def = await loadJobsetDefinition(db, project, jobset);
  const traceId = opts.traceId ?? `${(Date.now() / 1000).toFixed(6)}.${process.pid}`;
  const log = opts.log ?? (() => {});
  await db.query('SELECT pg_notify($1, $2)', ['eval_started', `${traceId}\t${def.id}`]);

  log(`evaluating ${project}:${jobset} (${def.exprFile})`);
  let evaluated: EvalJobsResult | null = null;
  let wholeError: NixEvalError | null = null;
  const nixStart = performance.now();
  try {
    evaluated = await evalJobs({file: def.exprFile, inputs: def.inputs, timeoutMs: opts.timeoutMs, nixInstantiate: opts.nixInstantiate});
  } catch (e) {
    if (!(e instanceof NixEvalError)) throw e;
    wholeError = e;
  }
  const nixSeconds = (performance.now() - nixStart) / 1000;
  const evalTime = Math.round(nixSeconds);
  const hash = evalInputsHash(def);

  if (wholeError || !evaluated) {
    const message = wholeError!.nixMessage;
    const dbStart = performance.now();
    const evalId = await inTransaction(db, async (c) => {
      await c.query('SELECT 1 FROM jobsets WHERE id = $1 FOR UPDATE', [def.id]);
      const t = now();
      const err = await c.query<{id: number}>('INSERT INTO evaluationerrors (errormsg, errortime) VALUES ($1, $2) RETURNING id', [message, t]);
      const ev = await c.query<{id: number}>(
        `INSERT INTO jobsetevals (jobset_id, evaluationerror_id, timestamp, checkouttime, evaltime, hasnewbuilds, hash,
           nrbuilds, flake, nixexprinput, nixexprpath)
         VALUES ($1, $2, $3, 0, $4, 0, $5, 0, NULL, $6, $7) RETURNING id`,
        [def.id, err.rows[0]!.id, t, evalTime, hash, def.nixExprInput, def.nixExprPath],
      );
      await c.query(
        `UPDATE jobsets SET errormsg = $2, errortime = $3, lastcheckedtime = $3, forceeval = NULL, triggertime = NULL,
           enabled = CASE WHEN enabled = 2 THEN 0 ELSE enabled END
         WHERE id = $1`,
        [def.id, message, t],
      );
      await c.query('SELECT pg_notify($1, $2)', ['eval_failed', `${traceId}\t${def.id}`]);
      await opts.record?.(c, ev.rows[0]!.id);
      return ev.rows[0]!.id;
    });
    return {
      evalId,
      jobsetId: def.id,
      project,
      jobset,
      evalError: message,
      jobErrors: [],
      hasNewBuilds: false,
      nrBuilds: 0,
      builds: [],
      newBuilds: [],
      reusedBuilds: [],
      nixSeconds,
      dbSeconds: (performance.now() - dbStart) / 1000,
      nixProcesses: 0,
    };
  }

  const jobs = evaluated.jobs;
  log(`evaluated ${jobs.length} job(s)${evaluated.errors.length ? `, ${evaluated.errors.length} failed to evaluate` : ''} in ${evaluated.seconds.toFixed(2)} s`);
  if (opts.gcRootsDir) {
    for (const j of jobs) await addGcRoot(opts.gcRootsDir, j.drvPath);
  }

  const dbStart = performance.now();
  const recorded = await inTransaction(db, async (c) => {
    const r = await recordEval(c, def, jobs, evaluated!.errors, {traceId, hash, evalTime});
    await opts.record?.(c, r.evalId);
    return r;
  });
  return {
    ...recorded,
    jobsetId: def.id,
    project,
    jobset,
    evalError: null,
    jobErrors: evaluated.errors,
    nixSeconds,
    dbSeconds: (performance.now() - dbStart) / 1000,
    nixProcesses: evaluated.processes,
  };
}

interface Recorded {
  evalId: number;
  hasNewBuilds: boolean;
  nrBuilds: number | null;
  builds: EvalBuild[];
  newBuilds: number[];
  reusedBuilds: number[];
}

function firstOutput(job: EvaluatedJob): {name: string; path: string | null} {
  const names = Object.keys(job.outputs).sort();
  const name = names[0] ?? 'out';
  return {name, path: job.outputs[name] ?? null};
}

const reuseKey = (job: string, output: string, path: string | null, drvPath: string) =>
  path !== null ? `${job}\t${output}\t${path}` : `${job}\t${output}\t\t${drvPath}`;

const orNull = (s: string) => (s === '' ? null : s);

async function recordEval(
  c: pg.ClientBase,
  def: JobsetDefinition,
  jobs: readonly EvaluatedJob[],
  errors: readonly JobEvalError[],
  meta: {traceId: string; hash: string; evalTime: number},
): Promise<Recorded> {
  const notify: Array<[string, string]> = [];
  // One evaluation of a jobset at a time.
  await c.query('SELECT 1 FROM jobsets WHERE id = $1 FOR UPDATE', [def.id]);
  const t = now();

  const errorMsg = formatJobErrors(errors);
  const err = await c.query<{id: number}>('INSERT INTO evaluationerrors (errormsg, errortime) VALUES ($1, $2) RETURNING id', [errorMsg, t]);
  await c.query('UPDATE jobsets SET errormsg = $2, errortime = $3, fetcherrormsg = NULL WHERE id = $1', [def.id, errorMsg, t]);

  const prev = await c.query<{id: number}>(
    'SELECT id FROM jobsetevals WHERE jobset_id = $1 AND hasnewbuilds = 1 ORDER BY id DESC LIMIT 1',
    [def.id],
  );
  const prevEval = prev.rows[0]?.id ?? null;
  const prevBuilds = new Map<string, {id: number; finished: number}>();
  let prevMembers = 0;
  if (prevEval !== null) {
    const r = await c.query<{id: number; job: string; finished: number; drvpath: string; name: string; path: string | null}>(
      `SELECT b.id, b.job, b.finished, b.drvpath, o.name, o.path
         FROM jobsetevalmembers m JOIN builds b ON b.id = m.build JOIN buildoutputs o ON o.build = b.id
        WHERE m.eval = $1`,
      [prevEval],
    );
    for (const row of r.rows) prevBuilds.set(reuseKey(row.job, row.name, row.path, row.drvpath), {id: row.id, finished: row.finished});
    const n = await c.query<{n: number}>('SELECT count(*)::int AS n FROM jobsetevalmembers WHERE eval = $1', [prevEval]);
    prevMembers = n.rows[0]!.n;
  }

  await c.query('UPDATE builds SET iscurrent = 0 WHERE jobset_id = $1 AND iscurrent = 1', [def.id]);
  const ev = await c.query<{id: number}>(
    `INSERT INTO jobsetevals (jobset_id, evaluationerror_id, timestamp, checkouttime, evaltime, hasnewbuilds, hash,
       nrbuilds, flake, nixexprinput, nixexprpath)
     VALUES ($1, $2, $3, 0, $4, 0, $5, 0, NULL, $6, $7) RETURNING id`,
    [def.id, err.rows[0]!.id, t, meta.evalTime, meta.hash, def.nixExprInput, def.nixExprPath],
  );
  const evalId = ev.rows[0]!.id;

  const members = new Map<number, EvalBuild>();
  const toInsert: EvaluatedJob[] = [];
  const seen = new Set<string>();
  for (const job of jobs) {
    const first = firstOutput(job);
    const key = reuseKey(job.name, first.name, first.path, job.drvPath);
    const old = prevBuilds.get(key);
    if (old) {
      members.set(old.id, {id: old.id, job: job.name, drvPath: job.drvPath, isNew: false});
      notify.push([old.finished ? 'cached_build_finished' : 'cached_build_queued', `${evalId}\t${old.id}`]);
      continue;
    }
    // The same (job, output path) twice in one eval: one build.
    if (seen.has(key)) continue;
    seen.add(key);
    toInsert.push(job);
  }

  const newIds: number[] = [];
  if (toInsert.length > 0) {
    const col = <T>(f: (j: EvaluatedJob) => T) => toInsert.map(f);
    const ins = await c.query<{id: number; job: string}>(
      `INSERT INTO builds (finished, timestamp, jobset_id, job, nixname, description, drvpath, system, license, homepage,
         maintainers, maxsilent, timeout, ischannel, iscurrent, priority, globalpriority)
       SELECT 0, $1, $2, u.job, u.nixname, u.description, u.drvpath, u.system, u.license, u.homepage, u.maintainers,
              u.maxsilent, u.timeout, u.ischannel, 1, u.priority, 0
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                     $11::int[], $12::int[], $13::int[], $14::int[])
              WITH ORDINALITY AS u(job, nixname, description, drvpath, system, license, homepage, maintainers,
                                   maxsilent, timeout, ischannel, priority, ord)
        ORDER BY u.ord
       RETURNING id, job`,
      [
        t,
        def.id,
        col((j) => j.name),
        col((j) => orNull(j.nixName)),
        col((j) => orNull(j.description)),
        col((j) => j.drvPath),
        col((j) => j.system),
        col((j) => orNull(j.license)),
        col((j) => orNull(j.homepage)),
        col((j) => orNull(j.maintainers)),
        col((j) => j.maxSilent),
        col((j) => j.timeout),
        col((j) => (j.isChannel ? 1 : 0)),
        col((j) => j.schedulingPriority),
      ],
    );
    const idByJob = new Map(ins.rows.map((r) => [r.job, r.id]));
    const outBuild: number[] = [];
    const outName: string[] = [];
    const outPath: Array<string | null> = [];
    for (const job of toInsert) {
      const id = idByJob.get(job.name)!;
      newIds.push(id);
      members.set(id, {id, job: job.name, drvPath: job.drvPath, isNew: true});
      for (const name of Object.keys(job.outputs).sort()) {
        outBuild.push(id);
        outName.push(name);
        outPath.push(job.outputs[name] ?? null);
      }
    }
    await c.query(
      'INSERT INTO buildoutputs (build, name, path) SELECT * FROM unnest($1::int[], $2::text[], $3::text[])',
      [outBuild, outName, outPath],
    );
    newIds.sort((a, b) => a - b);
    for (const id of newIds) notify.push(['build_queued', String(id)]);
  }

  const changed = newIds.length > 0 || (prevEval !== null && prevMembers !== members.size);
  const nrBuilds = changed ? members.size : null;
  await c.query('UPDATE jobsetevals SET hasnewbuilds = $2, nrbuilds = $3 WHERE id = $1', [evalId, changed ? 1 : 0, nrBuilds]);
  notify.push(['eval_added', `${meta.traceId}\t${def.id}\t${evalId}`]);

  if (changed) {
    const ids = [...members.keys()];
    await c.query(
      'INSERT INTO jobsetevalmembers (eval, build, isnew) SELECT $1, b, n FROM unnest($2::int[], $3::int[]) AS u(b, n)',
      [evalId, ids, ids.map((id) => (members.get(id)!.isNew ? 1 : 0))],
    );
    for (const i of def.inputs) {
      await c.query(
        `INSERT INTO jobsetevalinputs (eval, name, altnr, type, uri, revision, value, dependency, path, sha256hash)
         VALUES ($1, $2, 0, $3, $4, NULL, $5, NULL, '', NULL)`,
        [evalId, i.name, i.type, i.type === 'path' ? i.value : null, i.type === 'path' ? null : i.value],
      );
    }
    await c.query('UPDATE builds SET iscurrent = 1 WHERE id IN (SELECT build FROM jobsetevalmembers WHERE eval = $1)', [evalId]);
    if (newIds.length > 0) notify.push(['builds_added', String(newIds[0])]);
  } else if (prevEval !== null) {
    await c.query('UPDATE builds SET iscurrent = 1 WHERE id IN (SELECT build FROM jobsetevalmembers WHERE eval = $1)', [prevEval]);
  }

  await c.query(
    `UPDATE jobsets SET lastcheckedtime = $2, forceeval = NULL, triggertime = NULL,
       enabled = CASE WHEN enabled = 2 THEN 0 ELSE enabled END
     WHERE id = $1`,
    [def.id, now()],
  );
  if (notify.length > 0) {
    await c.query('SELECT pg_notify(u.c, u.p) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(c, p, o) ORDER BY u.o', [
      notify.map((n) => n[0]),
      notify.map((n) => n[1]),
    ]);
  }

  const builds = [...members.values()].sort((a, b) => (a.job < b.job ? -1 : a.job > b.job ? 1 : a.id - b.id));
  return {
    evalId,
    hasNewBuilds: changed,
    nrBuilds,
    builds,
    newBuilds: newIds,
    reusedBuilds: builds.filter((b) => !b.isNew).map((b) => b.id),
  };
}
