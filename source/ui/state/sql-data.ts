// The console's data from the real system (the ConsoleData interface of types.ts): Hydra's tables through
// keyset-paged SQL (never a whole list; the SQL lives in db/queries/), the runner's status (in-process or another
// runner's REST / SystemStatus, runner-source.ts) with the console's samples of the last hour, log files by
// derivation, and — in modules of their own — the build detail (detail-data.ts), live updates (live.ts) and the
// operator actions (sql-actions.ts).
import type pg from 'pg';
import {compileMachineFilter, parseFilter} from '../../db/filter.js';
import {buildDrv} from '../../db/queries/builds.js';
import {busySteps, stepForLog} from '../../db/queries/steps.js';
import {listJobsets} from '../../db/queries/jobsets.js';
import {finishedPerMinute, queueSummary, queuedAndBusySteps} from '../../db/queries/queue.js';
import {lastReproCheck} from '../../db/queries/windows.js';
import {drvLogBucketPath, findDrvLog} from '../../nix/store.js';
import type {MachineSpec} from '../../fleet/machines-file.js';
import type {Actor} from '../../actions/actor.js';
import {loadAuthority, readonlyError} from '../../actions/permissions.js';
import {machineStates} from '../../actions/machine-drain.js';
import {LogFile} from './log-file.js';
import {RunnerReadings} from './runner-readings.js';
import {LiveUpdates} from './live.js';
import {ConsoleActions} from './sql-actions.js';
import {readBuildDetail} from './detail-data.js';
import {machineState, type RunnerSnapshot, type RunnerSource} from './runner-source.js';
import type {
  ActionOutcome,
  ActionRequest,
  BuildDetail,
  Capabilities,
  ChangeKind,
  CheckEntry,
  ConsoleData,
  HeaderData,
  JobsetShare,
  LogHandle,
  MachineRow,
  OverviewData,
  Read,
  RunnerMode,
  RunnerStats,
  RunningStep,
} from './types.js';

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

export class SqlConsoleData implements ConsoleData {
  private observed = new Map<string, Observed>();
  private readonly readings: RunnerReadings;
  /** The previous ingestion counter, for the rate between two Runner-view refreshes. */
  private ingestSample: {at: number; read: number} | null = null;
  private readonly live: LiveUpdates;
  private readonly actions: ConsoleActions;

  constructor(private readonly o: SqlDataOptions) {
    this.readings = new RunnerReadings(o);
    this.live = new LiveUpdates(o);
    this.actions = new ConsoleActions({
      ...o,
      emit: (what) => this.live.emit(what),
      machinesChanged: () => {
        this.readings.invalidate();
        this.live.emit('runner');
      },
      pinged: (uri, ok) => {
        this.readings.recordPing(uri, ok);
        this.live.emit('runner');
      },
    });
  }

  describe(): string {
    return this.o.describe;
  }

  private get pool(): pg.Pool {
    return this.o.pool;
  }

  private snapshot(): Promise<RunnerSnapshot | null> {
    return this.readings.snapshot();
  }

  async capabilities(): Promise<Capabilities> {
    const actor = this.o.actor;
    // A check rebuilds on a machine of the machines files (another one than the original where it can).
    const specs = await this.o.machineSpecs().catch(() => []);
    const checks = specs.length === 0 ? 'no build machine to rebuild on: the machines files list none' : null;
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

  async header(): Promise<HeaderData> {
    const [counts, snap, dbQueued] = await Promise.all([queuedAndBusySteps(this.pool), this.snapshot(), this.readings.systemQueues()]);
    const {queued, running} = counts;
    this.readings.sampleQueued(queued);
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
      systems: this.readings.systems(snap, dbQueued).filter((s) => s.runnable + s.running > 0 || (!snap && s.queued > 0)),
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
      this.readings.systemQueues(),
      this.jobsets(),
      finishedPerMinute(this.pool, now - 3600),
    ]);
    const throughput = new Array<number>(60).fill(0);
    for (const r of through) if (r.m >= 0 && r.m < 60) throughput[r.m] = r.n;
    return {
      systems: this.readings.systems(snap, dbQueued).map((q) => ({...q, history: this.readings.queueHistory(q.system)})),
      jobsets: jobsets.filter((j) => j.queued > 0 || j.running > 0).sort((a, b) => b.queued - a.queued || b.running - a.running),
      throughput,
      queueHistory: this.readings.queueHistory(null).filter((n): n is number => n !== null),
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

  // ---------------------------------------------------------------- the views' own reads

  query<A, T>(read: Read<A, T>, args: A): Promise<T> {
    return read.run(this.pool, args);
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
    return rows.map((m) => this.readings.withHistory(m));
  }


  // ---------------------------------------------------------------- build detail

  buildDetail(id: number): Promise<BuildDetail | null> {
    return readBuildDetail({pool: this.pool, runner: this.o.runner, mode: this.o.mode, modeNote: this.o.modeNote, snapshot: () => this.snapshot()}, id);
  }

  // ---------------------------------------------------------------- the last check of a build, runner internals

  lastCheck(build: number): Promise<CheckEntry | null> {
    return lastReproCheck(this.pool, build);
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
  // ---------------------------------------------------------------- actions and live updates

  act(req: ActionRequest): Promise<ActionOutcome> {
    return this.actions.act(req);
  }

  subscribe(onChange: (what: ChangeKind) => void): () => void {
    return this.live.subscribe(onChange);
  }

  close(): Promise<void> {
    return this.live.close();
  }
}
