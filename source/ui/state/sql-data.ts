// The console's data from the real system: Hydra's tables through keyset-paged SQL (never a whole
// list), the runner's status (in-process or another runner's REST / SystemStatus), LISTEN for live
// updates plus polling of busy steps (phase changes send no NOTIFY), log files by derivation, and
// the operator actions of source/actions (shared with script mode). It is over 400 lines because it
// is the one implementation of the ConsoleData interface (types.ts); its SQL lives in db/queries/.
import type pg from 'pg';
import {compileMachineFilter, parseFilter} from '../../db/filter.js';
import {buildDrv, buildOutputs, buildProducts} from '../../db/queries/builds.js';
import {buildSteps, busySteps, busyStepsSignature, stepForLog} from '../../db/queries/steps.js';
import {listJobsets} from '../../db/queries/jobsets.js';
import {finishedPerMinute, queueSummary, queuedAndBusySteps, queuedBySystem} from '../../db/queries/queue.js';
import {buildDetailRow, buildsScope, countAuditLog, countBuildWindow, lastReproCheck, type CheckWindowRow, countEvals, countReproChecks, pageAuditLog, pageBuilds, pageEvals, pageReproChecks} from '../../db/queries/windows.js';
import {cancelEval, restartFailed} from '../../actions/eval-actions.js';
import {PgListener} from '../../db/listener.js';
import {HISTORY_LIMIT, jobHistory, latestSuccessful} from '../../db/queries/job-history.js';
import {drvLogBucketPath, findDrvLog} from '../../nix/store.js';
import type {MachineSpec} from '../../fleet/machines-file.js';
import type {Actor} from '../../actions/actor.js';
import {ActionError} from '../../actions/errors.js';
import {loadAuthority, readonlyError} from '../../actions/permissions.js';
import {BUILD_ACTIONS, isBuildActionKind, runBuildAction} from '../../actions/build-actions.js';
import {drainedMachines, machineStates, setMachineDrained} from '../../actions/machine-drain.js';
import {runCheck} from '../../actions/check.js';
import {CheckRunner} from '../../fleet/check-runner.js';
import {LogFile} from './log-file.js';
import {HourSeries} from './hour-series.js';
import {machineState, type RunnerSnapshot, type RunnerSource} from './runner-source.js';
import {pingMachines, type PingResult} from '../../actions/ping.js';
import type {
  ActionOutcome,
  ActionRequest,
  Anchor,
  AuditEntry,
  BuildDetail,
  BuildListRow,
  BuildOrder,
  Capabilities,
  ChangeKind,
  CheckEntry,
  ConsoleData,
  EvalEntry,
  DepEntry,
  RunnerStepView,
  HeaderData,
  JobsetShare,
  LogHandle,
  MachineRow,
  OverviewData,
  RunnerMode,
  RunnerStats,
  RunningStep,
  SystemQueue,
} from './types.js';

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

export const LIVE_CHANNELS = [
  'builds_added',
  'builds_restarted',
  'builds_cancelled',
  'builds_deleted',
  'builds_bumped',
  'build_started',
  'step_started',
  'step_finished',
  'build_finished',
  'jobset_shares_changed',
];

export interface SqlDataOptions {
  pool: pg.Pool;
  /** Settings for the dedicated LISTEN connection (null: no LISTEN, polling only). */
  connection: pg.ClientConfig | null;
  describe: string;
  dataDir: string;
  actor: Actor;
  runner: RunnerSource | null;
  mode: RunnerMode;
  modeNote: string | null;
  /** Shown in the header in red (e.g. why localhost cannot build). */
  alert?: string | null;
  /** Machines as the machines files define them (drain/enable name resolution, fallback list). */
  machineSpecs: () => Promise<MachineSpec[]>;
  /** Called after a drain/enable so an embedded scheduler sees it at once. */
  afterMachineAction?: () => void;
  /** Busy-steps poll period (default 1500 ms). */
  stepsPollMs?: number;
  /** Runner snapshot refresh (default 2000 ms). */
  runnerPollMs?: number;
  /** gc_roots_dir for restarts. */
  gcRootsDir?: string;
  log?: (line: string) => void;
  /** Clock of the samples of the last hour (tests move it); default Date.now. */
  now?: () => number;
}

interface Observed {
  busy: number;
  since: number | null;
}

function systemOf(systemType: string): string {
  const i = systemType.indexOf(':');
  return i < 0 ? systemType : systemType.slice(0, i);
}

function actionVerb(kind: string, dryRun: boolean): string {
  return dryRun ? `would ${kind}` : isBuildActionKind(kind) ? BUILD_ACTIONS[kind].done : kind;
}

export class SqlConsoleData implements ConsoleData {
  private snapshotCache: {at: number; value: Promise<RunnerSnapshot | null>} | null = null;
  private observed = new Map<string, Observed>();
  /** The last hour, by minute (hour-series.ts): queued builds in all (key '') and per system; jobs/maxJobs per machine. */
  private queueSeries = new HourSeries();
  private usageSeries = new HourSeries();
  /** This console's `i` pings: machine URI → when, and whether it was usable. */
  private pings = new Map<string, {at: number; ok: boolean}>();
  private dbSystems: {at: number; rows: {system: string; queued: number}[]} | null = null;
  private listener: PgListener | null = null;
  private subscribers = new Set<(what: ChangeKind) => void>();
  private timers: NodeJS.Timeout[] = [];
  private stepsSignature = '';
  /** The previous ingestion counter, for the rate between two Runner-view refreshes. */
  private ingestSample: {at: number; read: number} | null = null;
  private closed = false;
  /** Machines drained by operators, as last read (kept when a later read fails). */
  private lastDrained: Set<string> | null = null;

  constructor(private readonly o: SqlDataOptions) {}

  describe(): string {
    return this.o.describe;
  }

  private get pool(): pg.Pool {
    return this.o.pool;
  }

  private emit(what: ChangeKind): void {
    for (const fn of this.subscribers) fn(what);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** The runner snapshot, shared by the calls of one refresh (cached ~1 s); each new one is a utilisation sample. */
  private snapshot(): Promise<RunnerSnapshot | null> {
    const now = this.now();
    if (!this.o.runner) return Promise.resolve(null);
    if (this.snapshotCache && now - this.snapshotCache.at < 1000) return this.snapshotCache.value;
    const value = this.o.runner.snapshot().then(
      (snap) => {
        if (snap) this.sampleUsage(snap.machines, now);
        return snap;
      },
      (e) => {
        this.o.log?.(`runner status: ${(e as Error).message}`);
        return null;
      },
    );
    this.snapshotCache = {at: now, value};
    return value;
  }

  /** jobs/maxJobs of every listed machine the runner reports (one sample per snapshot, averaged by minute). */
  private sampleUsage(machines: readonly MachineRow[], now: number): void {
    for (const m of machines) {
      if (m.state === 'removed' || m.currentJobs === null || m.maxJobs <= 0) continue;
      this.usageSeries.add(m.uri, Math.min(1, m.currentJobs / m.maxJobs), now);
    }
    this.usageSeries.prune(now);
  }

  /** Queued builds per system (every system seen in the last hour: 0 when it has none queued now). */
  private sampleQueues(rows: readonly {system: string; queued: number}[], now: number): void {
    const queued = new Map(rows.map((r) => [r.system, r.queued]));
    for (const system of new Set([...queued.keys(), ...this.queueSeries.keys().filter((k) => k !== '')])) this.queueSeries.add(system, queued.get(system) ?? 0, now);
    this.queueSeries.prune(now);
  }

  async capabilities(): Promise<Capabilities> {
    const actor = this.o.actor;
    const checks = null;
    if (actor.readonly) {
      const why = readonlyError(actor).message;
      return {readonly: why, admin: why, checks, user: actor.hydraUser};
    }
    const auth = await loadAuthority(this.pool, actor);
    if (!auth.exists && !auth.admin) {
      const why = `Hydra user "${actor.hydraUser}" is unknown, so the console is read-only (use --user NAME or --local-admin)`;
      return {readonly: why, admin: why, checks, user: actor.hydraUser};
    }
    return {readonly: null, admin: auth.admin ? null : `needs the admin role (user "${auth.user}")`, checks, user: actor.hydraUser};
  }

  // ---------------------------------------------------------------- header and overview

  private async dbSystemQueues(): Promise<{system: string; queued: number}[]> {
    const now = this.now();
    if (this.dbSystems && now - this.dbSystems.at < 10_000) return this.dbSystems.rows;
    const rows = await queuedBySystem(this.pool);
    this.dbSystems = {at: now, rows};
    this.sampleQueues(rows, now);
    return rows;
  }

  private systemsFrom(snap: RunnerSnapshot | null, dbQueued: {system: string; queued: number}[]): SystemQueue[] {
    const by = new Map<string, SystemQueue>();
    const get = (system: string): SystemQueue => {
      let e = by.get(system);
      if (!e) by.set(system, (e = {system, runnable: 0, running: 0, capacity: 0, queued: 0, avgWait: null}));
      return e;
    };
    for (const r of dbQueued) get(r.system).queued = r.queued;
    if (snap) {
      for (const q of snap.queueStats) {
        const e = get(systemOf(q.systemType));
        e.runnable += q.runnable;
        e.running += q.running;
        if (q.avgWait !== null) e.avgWait = Math.max(e.avgWait ?? 0, q.avgWait);
      }
      for (const m of snap.machines) {
        if (m.state === 'drained' || m.state === 'removed' || m.state === 'backoff') continue;
        for (const s of m.systems) if (by.has(s)) get(s).capacity += m.maxJobs;
      }
    }
    return [...by.values()].sort((a, b) => b.runnable + b.running - (a.runnable + a.running) || b.queued - a.queued || a.system.localeCompare(b.system));
  }

  async header(): Promise<HeaderData> {
    const [counts, snap, dbQueued] = await Promise.all([queuedAndBusySteps(this.pool), this.snapshot(), this.dbSystemQueues()]);
    const {queued, running} = counts;
    this.queueSeries.add('', queued, this.now());
    const machines = snap?.machines ?? [];
    const listed = machines.filter((m) => m.state !== 'removed');
    return {
      mode: this.o.mode,
      modeNote: this.o.modeNote,
      alert: this.o.alert ?? null,
      runnerUp: snap?.up ?? false,
      uptimeSec: snap?.uptimeSec ?? null,
      runnerDataAt: snap?.at ?? null,
      queued,
      runnable: snap?.runnable ?? null,
      running: snap?.running ?? running,
      systems: this.systemsFrom(snap, dbQueued).filter((s) => s.runnable + s.running > 0 || (!snap && s.queued > 0)),
      builders: {
        online: listed.filter((m) => m.state !== 'drained' && m.state !== 'backoff').length,
        backingOff: listed.filter((m) => m.state === 'backoff').length,
        drained: listed.filter((m) => m.state === 'drained').length,
        total: listed.length,
      },
      dispatcherBusy: snap?.dispatcherBusy ?? null,
      lastDispatchMs: snap?.lastDispatchMs ?? null,
      progress: snap?.progress ?? null,
      ingest: snap?.ingest ?? null,
    };
  }

  async overview(): Promise<OverviewData> {
    const now = Math.floor(Date.now() / 1000);
    const [snap, dbQueued, jobsets, through] = await Promise.all([
      this.snapshot(),
      this.dbSystemQueues(),
      this.jobsets(),
      finishedPerMinute(this.pool, now - 3600),
    ]);
    const throughput = new Array<number>(60).fill(0);
    for (const r of through) if (r.m >= 0 && r.m < 60) throughput[r.m] = r.n;
    const at = this.now();
    return {
      systems: this.systemsFrom(snap, dbQueued).map((q) => ({...q, history: this.queueSeries.get(q.system, at)})),
      jobsets: jobsets.filter((j) => j.queued > 0 || j.running > 0).sort((a, b) => b.queued - a.queued || b.running - a.running),
      throughput,
      queueHistory: this.queueSeries.get('', at).filter((n): n is number => n !== null),
    };
  }

  async jobsets(): Promise<JobsetShare[]> {
    const [rows, summary, snap] = await Promise.all([listJobsets(this.pool), queueSummary(this.pool), this.snapshot()]);
    const oldest = new Map(summary.jobsets.map((j) => [j.jobset_id, j.oldest]));
    return rows.map((j) => {
      const s = snap?.jobsets.get(`${j.project}:${j.name}`);
      return {
        project: j.project,
        name: j.name,
        enabled: j.enabled,
        shares: j.schedulingshares,
        shareUsed: s?.shareUsed ?? null,
        queued: j.nrqueued,
        running: j.nrrunning,
        oldest: oldest.get(j.id) ?? null,
      };
    });
  }

  // ---------------------------------------------------------------- builds

  pageBuilds(req: {filter: string | null; order: BuildOrder; reverse?: boolean; anchor: Anchor; limit: number}): Promise<BuildListRow[]> {
    return pageBuilds(this.pool, req);
  }

  countBuilds(req: {filter: string | null; order: BuildOrder}): Promise<number> {
    return countBuildWindow(this.pool, req.filter, req.order);
  }

  // ---------------------------------------------------------------- steps and machines

  async runningSteps(filter: string | null): Promise<RunningStep[]> {
    const rows = await busySteps(this.pool, filter);
    const now = Date.now();
    const seen = new Set<string>();
    const out = rows.map((r) => {
      const key = `${r.build}/${r.stepnr}`;
      seen.add(key);
      let phaseSince = this.o.runner?.phaseSince?.(r.build, r.stepnr) ?? null;
      if (phaseSince === null) {
        // Another runner: the phase age is what this console has observed (unknown until a change).
        const o = this.observed.get(key);
        if (!o) this.observed.set(key, {busy: r.busy, since: null});
        else if (o.busy !== r.busy) this.observed.set(key, {busy: r.busy, since: now});
        phaseSince = this.observed.get(key)!.since;
      }
      return {...r, phaseSince};
    });
    if (!filter) for (const k of this.observed.keys()) if (!seen.has(k)) this.observed.delete(k);
    return out;
  }

  async machines(filter: string | null): Promise<MachineRow[]> {
    const snap = await this.snapshot();
    let rows: MachineRow[];
    if (snap) rows = snap.machines;
    else {
      const [specs, states] = await Promise.all([this.o.machineSpecs(), machineStates(this.pool).catch(() => new Map())]);
      rows = specs.map((m) => {
        const drained = states.get(m.uri)?.drained === true;
        return {
          name: m.host,
          uri: m.uri,
          state: drained ? 'drained' : machineState({listed: true, drained, backingOff: false, currentJobs: null, maxJobs: m.maxJobs}),
          systems: m.systems,
          supportedFeatures: m.supportedFeatures,
          mandatoryFeatures: m.mandatoryFeatures,
          currentJobs: null,
          maxJobs: m.maxJobs,
          speedFactor: m.speedFactor,
          score: null,
          load1: null,
          disabledUntil: 0,
          consecutiveFailures: 0,
          drained,
          lastError: null,
        };
      });
    }
    if (filter && filter.trim() !== '') {
      const pred = compileMachineFilter(parseFilter(filter));
      rows = rows.filter((m) => pred({name: m.name, uri: m.uri, systems: m.systems, supportedFeatures: m.supportedFeatures, mandatoryFeatures: m.mandatoryFeatures, state: m.state}));
    }
    const at = this.now();
    return rows.map((m) => {
      const mine = this.pings.get(m.uri);
      const lastPing = mine && (!m.lastPing || mine.at >= m.lastPing.at) ? mine : m.lastPing;
      return {...m, ...(this.usageSeries.has(m.uri) ? {usage: this.usageSeries.get(m.uri, at)} : {}), ...(lastPing ? {lastPing} : {})};
    });
  }

  // ---------------------------------------------------------------- build detail

  async buildDetail(id: number): Promise<BuildDetail | null> {
    const b = await buildDetailRow(this.pool, id);
    if (!b) return null;
    const job = {project: b.project, jobset: b.jobset, job: b.job};
    const [steps, outputs, products, history, latest, runnerSteps] = await Promise.all([
      buildSteps(this.pool, id),
      buildOutputs(this.pool, id),
      buildProducts(this.pool, id),
      jobHistory(this.pool, job, {limit: HISTORY_LIMIT}),
      latestSuccessful(this.pool, job),
      b.finished === 0 && this.o.runner?.buildSteps ? this.o.runner.buildSteps(id).catch(() => null) : Promise.resolve(null),
    ]);
    const busyStep = steps.filter((s) => s.busy !== 0).sort((x, y) => y.stepnr - x.stepnr)[0];
    const build = {...b, busy: busyStep?.busy ?? 0, machine: busyStep?.machine ?? null};
    const depsNote =
      b.finished === 1
        ? null
        : !this.o.runner
          ? 'no queue runner: only the steps recorded in BuildSteps'
          : !this.o.runner.buildSteps
            ? `${this.o.runner.note} does not publish per-build steps: only BuildSteps`
            : runnerSteps === null
              ? `${this.o.runner.note} does not hold this build (not loaded yet, or finished)`
              : `steps from BuildSteps and the ${this.o.runner.note}`;
    return {
      deps: mergeDeps(b.drvpath, steps, runnerSteps),
      depsNote,
      history,
      latest,
      build,
      steps: steps.map((s) => ({stepnr: s.stepnr, drvpath: s.drvpath, busy: s.busy, status: s.status, machine: s.machine, starttime: s.starttime, stoptime: s.stoptime, errormsg: s.errormsg})),
      outputs,
      products: products.map((p) => ({productnr: p.productnr, type: p.type, subtype: p.subtype, name: p.name, path: p.path, filesize: p.filesize})),
      why: build.finished === 1 || busyStep ? [] : await this.whyNotBuilding(build),
    };
  }

  private async whyNotBuilding(b: {id: number; drvpath: string; system: string}): Promise<string[]> {
    const runner = this.o.runner;
    if (!runner) {
      return [
        this.o.mode === 'none' && this.o.modeNote ? `no queue runner: ${this.o.modeNote}` : 'no queue runner is running',
        'start one with `hydra-ops --daemon`, or open the console with --scheduler',
      ];
    }
    if (runner.explain) {
      const reason = runner.explain(b.drvpath);
      if (reason) return [reason];
      return ['the scheduler has not loaded this build yet (it reads new builds as they are queued)'];
    }
    const snap = await this.snapshot();
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

  // ---------------------------------------------------------------- audit and checks

  async pageAudit(anchor: Anchor, limit: number): Promise<AuditEntry[]> {
    const rows = await pageAuditLog(this.pool, anchor, limit);
    return rows.map((r) => ({
      id: r.id,
      at: r.at,
      hydraUser: r.hydra_user ?? '',
      unixUser: r.unix_user ?? '',
      action: r.action,
      scope: r.scope ?? '',
      targetCount: r.target_count ?? 0,
      resultCount: r.result_count,
      outcome: r.outcome,
      message: r.message,
    }));
  }

  countAudit(): Promise<number> {
    return countAuditLog(this.pool);
  }

  async pageChecks(anchor: Anchor, limit: number): Promise<CheckEntry[]> {
    const rows = await pageReproChecks(this.pool, anchor, limit);
    return rows.map(checkEntry);
  }

  async lastCheck(build: number): Promise<CheckEntry | null> {
    const row = await lastReproCheck(this.pool, build);
    return row ? checkEntry(row) : null;
  }

  countChecks(): Promise<number> {
    return countReproChecks(this.pool);
  }

  // ---------------------------------------------------------------- evals and runner internals

  pageEvals(req: {filter: string | null; anchor: Anchor; limit: number}): Promise<EvalEntry[]> {
    return pageEvals(this.pool, req);
  }

  countEvals(filter: string | null): Promise<number> {
    return countEvals(this.pool, filter);
  }

  async runnerStats(): Promise<RunnerStats | null> {
    const runner = this.o.runner;
    const snap = await this.snapshot();
    if (!runner || !snap) return null;
    const where = snap.source === 'in-process' ? runner.note : snap.source === 'rest' ? `${runner.note} (REST /status)` : `${runner.note} (SystemStatus dump)`;
    const st = snap.stats;
    let perSec: number | null = null;
    const read = st.ingest.buildsRead;
    if (read !== null) {
      const prev = this.ingestSample;
      if (prev && st.at > prev.at && read >= prev.read) perSec = ((read - prev.read) * 1000) / (st.at - prev.at);
      if (!prev || st.at > prev.at) this.ingestSample = {at: st.at, read};
    }
    return {...st, source: where, ingest: {...st.ingest, perSec}};
  }

  // ---------------------------------------------------------------- logs

  async openLog(build: number, stepnr?: number): Promise<LogHandle> {
    const step = await stepForLog(this.pool, build, stepnr);
    if (stepnr !== undefined && !step) throw new Error(`build ${build} has no step ${stepnr}`);
    let drvPath = step?.drvpath ?? null;
    if (!drvPath) {
      const b = await buildDrv(this.pool, build);
      if (!b) throw new Error(`build ${build} does not exist`);
      if (b.finished === 0) throw new Error(`build ${build} has not started yet: no log so far`);
      drvPath = b.drvpath;
    }
    const path = await findDrvLog(this.o.dataDir, drvPath);
    if (!path) throw new Error(`no log for ${drvPath} (looked for ${drvLogBucketPath(this.o.dataDir, drvPath)}[.bz2|.zst])`);
    return LogFile.open(path, step?.stepnr ?? null);
  }

  async openFile(path: string): Promise<LogHandle> {
    return LogFile.open(path, null);
  }

  // ---------------------------------------------------------------- actions

  private async scopeOf(ids: number[]): Promise<string> {
    if (ids.length === 0) return '';
    const rows = await buildsScope(this.pool, ids);
    const queued = rows.reduce((n, r) => n + r.queued, 0);
    const running = rows.reduce((n, r) => n + r.running, 0);
    const where = rows.length === 1 ? rows[0]!.js : `${rows.length} jobsets (${rows.slice(0, 3).map((r) => r.js).join(', ')}${rows.length > 3 ? ', …' : ''})`;
    return `in ${where} (${queued} not running, ${running} running)`;
  }

  async act(req: ActionRequest): Promise<ActionOutcome> {
    const dryRun = req.dryRun === true;
    const actor = this.o.actor;
    try {
      switch (req.kind) {
        case 'restart':
        case 'cancel':
        case 'bump':
          break;
        case 'ping': {
          const specs = await this.o.machineSpecs();
          const spec = specs.find((s) => s.uri === req.machine);
          if (!spec) return {ok: false, message: `ping: ${req.machine} is not in the machines file`};
          const [r] = await pingMachines([spec], {timeoutMs: 15_000});
          this.pings.set(spec.uri, {at: this.now(), ok: r!.ok});
          this.emit('runner');
          return {ok: r!.ok, message: pingSummary(r!)};
        }
        case 'drain':
        case 'enable': {
          const specs = await this.o.machineSpecs();
          const m = await setMachineDrained(this.pool, actor, specs, req.machine ?? '', req.kind === 'drain', {dryRun});
          this.o.afterMachineAction?.();
          this.snapshotCache = null;
          this.emit('runner');
          this.emit('audit');
          const changed = m.wasDrained !== m.drained;
          return {ok: true, message: `${m.machine} ${req.kind === 'drain' ? 'drained' : 'enabled'}${changed ? '' : ' (it already was)'}`};
        }
        case 'check':
          return this.check(req.ids ?? []);
        case 'restart-failed':
        case 'cancel-eval':
          return await this.evalAction(req.kind, req.eval, dryRun);
      }
      const selection = req.filter !== undefined ? ({kind: 'filter', filter: req.filter} as const) : ({kind: 'ids', ids: req.ids ?? []} as const);
      const r = await runBuildAction(this.pool, actor, req.kind, selection, {dryRun, gcRootsDir: this.o.gcRootsDir, toFront: req.toFront === true});
      this.emit('audit');
      if (!dryRun) this.emit('queue');
      const scope = dryRun ? await this.scopeOf(r.changed) : undefined;
      const unchanged = r.unchanged.length ? `; ${r.unchanged.length} already in that state` : '';
      const ids = r.changed.length ? `: ${r.changed.slice(0, 8).join(', ')}${r.changed.length > 8 ? ' …' : ''}` : '';
      return {
        ok: true,
        message: `${actionVerb(req.kind, dryRun)} ${r.changed.length} of ${r.targets.length} build(s)${ids}${unchanged}`,
        changed: r.changed,
        targets: r.targets,
        scope,
      };
    } catch (e) {
      if (e instanceof ActionError) return {ok: false, message: e.message, refusal: e.kind};
      throw e;
    }
  }

  /** Hydra's per-eval actions (source/actions/eval-actions.ts): restart its failed builds, cancel its queued ones. */
  private async evalAction(kind: 'restart-failed' | 'cancel-eval', evalId: number | undefined, dryRun: boolean): Promise<ActionOutcome> {
    if (evalId === undefined) return {ok: false, message: `${kind}: no evaluation selected`, refusal: 'usage'};
    const r =
      kind === 'restart-failed'
        ? await restartFailed(this.pool, this.o.actor, evalId, {dryRun, gcRootsDir: this.o.gcRootsDir})
        : await cancelEval(this.pool, this.o.actor, evalId, {dryRun});
    this.emit('audit');
    if (!dryRun) this.emit('queue');
    const what = kind === 'restart-failed' ? 'failed build(s)' : 'queued build(s)';
    const verb = dryRun ? (kind === 'restart-failed' ? 'would restart' : 'would cancel') : kind === 'restart-failed' ? 'restarted' : 'cancelled';
    const unchanged = r.unchanged.length ? `; ${r.unchanged.length} already in that state` : '';
    return {
      ok: true,
      message: `eval ${evalId}: ${verb} ${r.changed.length} of ${r.targets.length} ${what}${unchanged}`,
      changed: r.changed,
      targets: r.targets,
      scope: dryRun ? await this.scopeOf(r.changed) : undefined,
    };
  }

  /**
   * `c`: a reproducibility check of one build (source/actions/check.ts). The rebuild takes as long as
   * the build did, so this resolves once the check has started; its verdict lands in the Checks view.
   */
  private async check(ids: number[]): Promise<ActionOutcome> {
    if (ids.length !== 1) return {ok: false, message: 'check one build at a time (unmark the others)', refusal: 'usage'};
    const build = ids[0]!;
    // Drained machines as last read: a database error keeps the last known state, never "none drained".
    try {
      this.lastDrained = await drainedMachines(this.pool);
    } catch (e) {
      if (!this.lastDrained) return {ok: false, message: `cannot read which machines are drained: ${(e as Error).message}`};
    }
    const runner = new CheckRunner();
    const deps = {
      runner,
      machines: await this.o.machineSpecs(),
      dataDir: this.o.dataDir,
      drained: this.lastDrained,
    };
    return new Promise<ActionOutcome>((resolve) => {
      let started = false;
      runCheck(this.pool, this.o.actor, {build, onStarted: (id, machine) => {
        started = true;
        this.emit('checks');
        this.emit('audit');
        resolve({ok: true, message: `check ${id} of build ${build} started on ${machine}; its verdict appears in the Checks view (6)`});
      }}, deps)
        .then((r) => {
          const message = r.dryRun ? `check of build ${build} planned on ${r.checkMachine}` : `check ${r.id} of build ${build}: ${r.verdict}`;
          if (!started) resolve({ok: true, message});
          this.o.log?.(message);
        })
        .catch((e) => {
          const message = e instanceof Error ? e.message : String(e);
          if (!started) resolve({ok: false, message, refusal: e instanceof ActionError ? e.kind : 'failed'});
          else this.o.log?.(`check of build ${build}: ${message}`);
        })
        .finally(() => {
          this.emit('checks');
          this.emit('audit');
          void runner.close();
        });
    });
  }

  // ---------------------------------------------------------------- live updates

  subscribe(onChange: (what: ChangeKind) => void): () => void {
    this.subscribers.add(onChange);
    if (this.subscribers.size === 1) this.startLive();
    return () => {
      this.subscribers.delete(onChange);
    };
  }

  private startLive(): void {
    if (this.closed) return;
    if (this.o.connection) {
      const listener = new PgListener({
        connection: this.o.connection,
        channels: LIVE_CHANNELS,
        // Notifications sent while disconnected are lost: re-read everything visible.
        onResync: (reconnect) => {
          if (reconnect) this.emit('all');
        },
      });
      listener.on('notification', (n: {channel: string}) => {
        if (n.channel.startsWith('builds_') || n.channel === 'jobset_shares_changed') this.emit('queue');
        else {
          this.emit('steps');
          this.emit('queue');
        }
      });
      listener.on('disconnected', (e: Error) => this.o.log?.(`LISTEN connection lost: ${e.message}`));
      listener.on('error', () => {});
      this.listener = listener;
      void listener.start().catch((e) => this.o.log?.(`LISTEN: ${(e as Error).message}`));
    }
    const stepsPoll = setInterval(() => void this.pollSteps(), this.o.stepsPollMs ?? 1500);
    const runnerPoll = setInterval(() => this.emit('runner'), this.o.runnerPollMs ?? 2000);
    stepsPoll.unref?.();
    runnerPoll.unref?.();
    this.timers.push(stepsPoll, runnerPoll);
  }

  private async pollSteps(): Promise<void> {
    try {
      // Phase changes update BuildSteps.busy without a NOTIFY.
      const sig = await busyStepsSignature(this.pool);
      if (sig !== this.stepsSignature) {
        this.stepsSignature = sig;
        this.emit('steps');
      }
    } catch (e) {
      this.o.log?.(`steps poll: ${(e as Error).message}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.listener?.stop();
    this.listener = null;
  }
}

/** A row of hydra_ops.repro_checks as the Checks view shows it (differing outputs from the outputs jsonb). */
function checkEntry(r: CheckWindowRow): CheckEntry {
  return {
    id: r.id,
    build: r.build,
    drvPath: r.drv_path,
    originalMachine: r.original_machine,
    checkMachine: r.check_machine,
    verdict: r.verdict,
    differing: (Array.isArray(r.outputs) ? r.outputs : [])
      .filter((o: {expected?: string; got?: string}) => o && o.expected !== undefined && o.got !== undefined && o.expected !== o.got)
      .map((o: {name?: string}) => String(o.name ?? '?')),
    diffLogPath: r.diff_log_path,
    startedAt: r.started_at,
  };
}

/** One line for the footer: the ping verdict of a machine. */
export function pingSummary(r: PingResult): string {
  const proto = r.handshake && 'version' in r.handshake ? `protocol ${r.handshake.version}` : null;
  const free = r.storeFreeBytes === null ? null : `${(r.storeFreeBytes / 2 ** 30).toFixed(1)} GiB free`;
  const facts = [r.connectMs === null ? null : `connect ${r.connectMs} ms`, proto, r.nixVersion ? `Nix ${r.nixVersion}` : null, free].filter(Boolean).join(', ');
  if (r.problems.length === 0) return `${r.uri}: ok — ${facts}`;
  const problems = r.problems.map((p) => `${p.severity === 'error' ? '✖' : '!'} ${p.kind}: ${p.message}${p.fix ? ` (fix: ${p.fix})` : ''}`).join('; ');
  return `${r.uri}: ${r.ok ? 'usable' : 'UNUSABLE'} — ${problems}${facts ? ` [${facts}]` : ''}`;
}
