// What the console shows, as plain data: the ConsoleData interface the views are fed from (the SQL
// + runner implementation in sql-data.ts; tests substitute a fake) and the row shapes it returns.

/** Views whose rows are a keyset-paged window onto a long SQL list, by row type. */
export interface WindowRows {
  builds: BuildListRow;
  audit: AuditEntry;
  checks: CheckEntry;
  evals: EvalEntry;
}

/** Views whose rows are a bounded list loaded whole, by row type. */
export interface ListRows {
  steps: RunningStep;
  machines: MachineRow;
  jobsets: JobsetShare;
}

export type WindowName = keyof WindowRows;
export type ListName = keyof ListRows;
/** Every console view; each has one entry in the views table (views.ts). */
export type ViewName = WindowName | ListName | 'overview' | 'detail' | 'log' | 'runner';
/** Views with a `/` filter. */
export type FilterView = 'builds' | 'steps' | 'machines' | 'evals';

export type {BuildSortColumn as BuildOrder} from '../../db/queries/windows.js';
export type {Anchor} from '../../db/queries/windows.js';
import {buildSortKey, type Anchor, type AuditWindowRow, type BuildSortColumn as BuildOrder, type BuildWindowRow, type CheckWindowRow, type EvalWindowRow} from '../../db/queries/windows.js';
import type {Queryable} from '../../db/queryable.js';
import type {BusyStepRow} from '../../db/queries/steps.js';
import type {JobHistoryRow} from '../../db/queries/job-history.js';

/** A row of the Builds view (one page row of the builds window query). */
export type BuildListRow = BuildWindowRow;

/** A row of the Evals view: an evaluation with its member counts. */
export type EvalEntry = EvalWindowRow;

/** A busy step as the Running steps view shows it: the row, and when it entered its current phase. */
export interface RunningStep extends BusyStepRow {
  /** ms since epoch the step entered its current phase, when known. */
  phaseSince: number | null;
}

export type MachineState = 'idle' | 'busy' | 'full' | 'backoff' | 'drained' | 'removed' | 'unknown';

export interface MachineRow {
  name: string;
  uri: string;
  state: MachineState;
  systems: string[];
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  currentJobs: number | null;
  maxJobs: number;
  speedFactor: number;
  score: number | null;
  load1: number | null;
  /** ms since epoch; 0 = not backing off. */
  disabledUntil: number;
  consecutiveFailures: number;
  drained: boolean;
  lastError: string | null;
  /**
   * jobs/maxJobs (0…1) per minute over the last hour, oldest first (60 values; null: no sample that minute), as the
   * console sampled the runner's reports; absent when it has none for the machine.
   */
  usage?: (number | null)[];
  /**
   * The machine's last ping: the runner's (the Rust runner's `stats.lastPing`; ok unknown) or this console's `i`,
   * whichever is newer (ms since epoch); absent: never pinged.
   */
  lastPing?: {at: number; ok: boolean | null};
}

export interface SystemQueue {
  system: string;
  runnable: number;
  running: number;
  capacity: number;
  /** Queued builds of that system in the database. */
  queued: number;
  /** Average seconds runnable steps have waited, when known. */
  avgWait: number | null;
  /** Queued builds per minute over the last hour, oldest first (60 values; null: not sampled); Overview only. */
  history?: (number | null)[];
}

export interface JobsetShare {
  project: string;
  name: string;
  enabled: number;
  shares: number;
  shareUsed: number | null;
  queued: number;
  running: number;
  /** Unix seconds of the oldest queued build. */
  oldest: number | null;
}

export interface Progress {
  stalled: boolean;
  stalledSeconds: number;
  thresholdSeconds: number;
  /** ms since epoch. */
  lastProgressAt: number | null;
}

export type RunnerMode = 'embedded' | 'attached' | 'none';

export interface HeaderData {
  mode: RunnerMode;
  /** Why the console is not running or attached to a runner, or where it attached. */
  modeNote: string | null;
  /** Something the operator must know first (e.g. why localhost cannot build), shown in red; null when none. */
  alert?: string | null;
  runnerUp: boolean;
  uptimeSec: number | null;
  /** ms since epoch the runner data was taken (null: no runner data). */
  runnerDataAt: number | null;
  queued: number;
  runnable: number | null;
  running: number;
  systems: SystemQueue[];
  builders: {online: number; backingOff: number; drained: number; total: number};
  /** Share of time the dispatcher spent working (0..1), when known. */
  dispatcherBusy: number | null;
  lastDispatchMs: number | null;
  progress: Progress | null;
  ingest: {total: number; done: number} | null;
}

export interface OverviewData {
  systems: SystemQueue[];
  jobsets: JobsetShare[];
  /** Builds finished per minute over the last hour, oldest first (60 values). */
  throughput: number[];
  /** Queued-build counts sampled by the console (oldest first, at most the last hour). */
  queueHistory: number[];
}

/** Scheduler internals (the Runner view), from whichever runner the header names; null: not published. */
export interface RunnerStats {
  /** Where the numbers come from ("in-process scheduler", "runner at [::1]:8080 (REST /status)", …). */
  source: string;
  /** ms since epoch the numbers were taken. */
  at: number;
  uptimeSec: number | null;
  dispatch: {rounds: number | null; totalMs: number | null; avgMs: number | null; lastMs: number | null; busyShare: number | null};
  ingest: {buildsRead: number | null; readMs: number | null; perSec: number | null; backlog: {total: number; done: number} | null};
  queueWakeups: number | null;
  dbPool: {total: number; idle: number; waiting: number | null} | null;
  retries: {count: number | null; max: number | null};
  unsupported: {steps: number | null; aborted: number | null};
  steps: {started: number | null; done: number | null; unfinished: number | null; runnable: number | null; active: number | null};
}

export interface StepDetail {
  stepnr: number;
  drvpath: string | null;
  busy: number;
  status: number | null;
  machine: string;
  starttime: number | null;
  stoptime: number | null;
  errormsg: string | null;
}

export interface BuildDetail {
  build: BuildListRow & {nixname: string | null; description: string | null; timeout: number | null; maxsilent: number | null; releasename: string | null};
  steps: StepDetail[];
  outputs: {name: string; path: string | null}[];
  products: {productnr: number; type: string; subtype: string; name: string; path: string | null; filesize: number | null}[];
  /** Why it is not building yet (empty when finished or running). */
  why: string[];
  /** The steps below the build: which dependencies it waits for and where they run. */
  deps: DepEntry[];
  /** Where the runner's view of the steps came from, or why there is none (shown in the Deps tab). */
  depsNote: string | null;
  /** The job's last builds, newest first (at most 30; History tab): the rows of db/queries/job-history.ts. */
  history: JobHistoryRow[];
  /** The latest successful build of the same job (Hydra's `/job/P/J/JOB/latest`), or null. */
  latest: number | null;
}

/** A step of the build's dependency graph, from BuildSteps and the runner's memory merged by drv path. */
export interface DepEntry {
  drvpath: string;
  /** running: busy on a machine; runnable: may start now; waiting: for its own dependencies or a retry; done/failed: finished. */
  state: 'running' | 'runnable' | 'waiting' | 'done' | 'failed';
  /** BuildSteps step number, when the step has a row. */
  stepnr: number | null;
  busy: number;
  machine: string | null;
  /** The runner's reason it is not running (no machine for X, retry at …), or the step's error. */
  note: string | null;
  /** The build's own top-level step. */
  toplevel: boolean;
}

/** One step as the runner holds it in memory (in-process scheduler or a runner's REST). */
export interface RunnerStepView {
  drvPath: string;
  finished: boolean;
  running: boolean;
  runnable: boolean;
  machine: string | null;
  waitingReason: string | null;
  toplevel: boolean;
}

/** A row of the Audit view (db/queries/windows.ts). */
export type AuditEntry = AuditWindowRow;

/** A row of the Checks view, and a build's last check (`d`) (db/queries/windows.ts). */
export type CheckEntry = CheckWindowRow;

export type ActionKind = 'restart' | 'cancel' | 'bump' | 'drain' | 'enable' | 'check' | 'ping' | 'restart-failed' | 'cancel-eval';

export interface ActionRequest {
  kind: ActionKind;
  /** Build ids (restart, cancel, bump, check). */
  ids?: number[];
  /** Instead of ids: every build this filter matches (a mark-all, `a`; restart, cancel, bump). */
  filter?: string;
  /** Machine name or URI (drain, enable). */
  machine?: string;
  /** Evaluation id (restart-failed, cancel-eval: Hydra's per-eval actions). */
  eval?: number;
  dryRun?: boolean;
  /** bump: above every existing bump (`B`), not just "now" (`b`). */
  toFront?: boolean;
}

export interface ActionOutcome {
  ok: boolean;
  /** One line for the footer or the dialog. */
  message: string;
  /** Build ids changed (or that would change in a dry run). */
  changed?: number[];
  targets?: number[];
  /** For confirmations: "in demo:main (2 queued, 1 running)". */
  scope?: string;
  /** The refusal kind when !ok (readonly, permission, …). */
  refusal?: string;
}

export interface Capabilities {
  /** Why every mutation is refused (read-only mode, unknown user), or null. */
  readonly: string | null;
  /** Why machine drain/enable are refused (needs admin), or null. */
  admin: string | null;
  /** Why reproducibility checks are unavailable besides read-only mode (no machine to rebuild on), or null. */
  checks: string | null;
  user: string;
}

/** A log opened for viewing: random access by line, growth for follow mode, search over the file. */
export interface LogHandle {
  path: string;
  /** The step whose log this is. */
  stepnr: number | null;
  /** Lines known so far. */
  lineCount(): number;
  /** Lines [from, from + count). */
  lines(from: number, count: number): Promise<string[]>;
  /** Re-reads the file's growth; resolves to true when lines were added. */
  refresh(): Promise<boolean>;
  /**
   * When each of the lines [from, from + count) arrived: ms since epoch the console first read it, or null for a
   * line that was already in the file when it was opened (its time is not recorded anywhere).
   */
  times(from: number, count: number): (number | null)[];
  /** ms since epoch the log was opened: lines without a time were there by then. */
  readonly openedAt: number;
  /** First line ≥ from (≤ from when backwards) containing `needle` (case-insensitive), or -1. */
  search(needle: string, from: number, backwards: boolean): Promise<number>;
  close(): Promise<void>;
}

/** A read of the database, by name (so that a test source can answer it) and its SQL. */
export interface Read<A, T> {
  name: string;
  run(db: Queryable, args: A): Promise<T>;
}

export type ChangeKind = 'queue' | 'steps' | 'runner' | 'audit' | 'checks' | 'all';

export interface ConsoleData {
  /** Database description for the help screen. */
  describe(): string;
  capabilities(): Promise<Capabilities>;
  header(): Promise<HeaderData>;
  overview(): Promise<OverviewData>;
  /**
   * Runs one of the database reads the views table names (a window's page or count, a list's rows): its SQL is in
   * db/queries/; a test source answers it by name.
   */
  query<A, T>(read: Read<A, T>, args: A): Promise<T>;
  /** Busy steps, by machine, oldest first (a bounded set: at most the farm's job slots). */
  runningSteps(filter: string | null): Promise<RunningStep[]>;
  machines(filter: string | null): Promise<MachineRow[]>;
  jobsets(): Promise<JobsetShare[]>;
  buildDetail(id: number): Promise<BuildDetail | null>;
  /** The latest reproducibility check of a build (`d`), or null when it has none. */
  lastCheck(build: number): Promise<CheckEntry | null>;
  /** The runner's internals for the Runner view (null: no runner data). */
  runnerStats(): Promise<RunnerStats | null>;
  /** The log of a build's step (the running or last step when stepnr is omitted). */
  openLog(build: number, stepnr?: number): Promise<LogHandle>;
  /** Any text file shown in the log view (a reproducibility check's diff). */
  openFile(path: string): Promise<LogHandle>;
  act(req: ActionRequest): Promise<ActionOutcome>;
  /** Live updates: calls back with what changed; returns the unsubscribe function. */
  subscribe(onChange: (what: ChangeKind) => void): () => void;
  close(): Promise<void>;
}

export function buildKey(row: BuildListRow, order: BuildOrder): number[] {
  return buildSortKey(row, order);
}
