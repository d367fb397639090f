// A fake ConsoleData for the console's key-path tests: builds generated in memory and paged exactly
// like the SQL source (keyset anchors in both orders), with every call and action recorded.
import {parseFilter} from '../../source/db/filter.js';
import {BUILD_SORTS} from '../../source/db/queries/windows.js';
import {buildKey} from '../../source/ui/state/types.js';
import type {JobHistoryRow} from '../../source/db/queries/job-history.js';
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
  HeaderData,
  JobsetShare,
  LogHandle,
  MachineRow,
  OverviewData,
  RunnerStats,
  RunningStep,
  ListName,
  ListRows,
  Read,
  WindowName,
  WindowRows,
} from '../../source/ui/state/types.js';
import type {CountQuery, WindowQuery} from '../../source/ui/state/view-spec.js';

export const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const NOW_S = Math.floor(NOW / 1000);

/** A small queued build of project p, jobset j (the sample rows' builds). */
export function sampleBuild(id: number): BuildListRow {
  return {id, project: 'p', jobset: 'j', job: `job${id}`, system: 'x86_64-linux', drvpath: `/nix/store/x-${id}.drv`, finished: 0, buildstatus: null, iscachedbuild: null, priority: 100, globalpriority: 0, timestamp: 1, starttime: null, stoptime: null, busy: 0, machine: null};
}

const sampleMachine = (name: string): MachineRow => ({name, uri: `ssh://${name}`, state: 'idle', systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [], currentJobs: 0, maxJobs: 2, speedFactor: 1, score: null, load1: null, disabledUntil: 0, consecutiveFailures: 0, drained: false, lastError: null});

/**
 * A few rows of every window and list view, for tests that need each view populated (test/ui-keys.test.ts). A
 * mapped type over the views: a new window or list view does not type-check until it has sample rows here.
 */
export const SAMPLE_ROWS: {[V in WindowName]: WindowRows[V][]} & {[V in ListName]: ListRows[V][]} = {
  builds: [sampleBuild(3), sampleBuild(2), sampleBuild(1)],
  audit: [2, 1].map((id) => ({id, at: 'now', hydraUser: 'a', unixUser: 'a', action: 'restart', scope: '', targetCount: 1, resultCount: 1, outcome: 'ok', message: null})),
  checks: [2, 1].map((id) => ({id, build: id, drvPath: '/nix/store/c.drv', originalMachine: null, checkMachine: null, verdict: 'not-reproducible', differing: ['out'], diffLogPath: `/tmp/${id}.diff`, startedAt: null})),
  evals: [3, 2, 1].map((id) => ({id, project: 'p', jobset: 'j', timestamp: 1, evaltime: 1, hasnewbuilds: 1, error: null, builds: 3, new: 1, succeeded: 1, failed: 1, queued: 1})),
  steps: [1, 2].map((b) => ({build: b, stepnr: 1, machine: 'ssh://m1', project: 'p', jobset: 'j', job: 'x', drvpath: null, system: 'x86_64-linux', busy: 30, starttime: 1, phaseSince: null, timeout: null})),
  machines: [sampleMachine('m1'), sampleMachine('m2')],
  jobsets: ['a', 'b'].map((name) => ({project: 'p', name, enabled: 1, shares: 100, shareUsed: null, queued: 1, running: 0, oldest: null})),
};

export function fakeBuild(id: number, over: Partial<BuildListRow> = {}): BuildListRow {
  const project = id % 3 === 0 ? 'beta' : 'alpha';
  return {
    id,
    project,
    jobset: 'main',
    job: `pkg${id}`,
    system: id % 5 === 0 ? 'aarch64-linux' : 'x86_64-linux',
    drvpath: `/nix/store/${String(id).padStart(32, 'a')}-pkg${id}.drv`,
    finished: id % 2,
    buildstatus: id % 2 ? (id % 7 === 0 ? 1 : 0) : null,
    iscachedbuild: 0,
    priority: 100,
    globalpriority: id % 11 === 0 ? NOW_S - 60 : 0,
    timestamp: NOW_S - 3600 + id,
    starttime: id % 2 ? NOW_S - 600 : null,
    stoptime: id % 2 ? NOW_S - 300 : null,
    busy: id % 4 === 0 ? 30 : 0,
    machine: id % 4 === 0 ? 'builder1' : null,
    ...over,
  };
}

/** <0: key a sorts before key b in this order (the SQL source's columns and directions, ties by id). */
function keyOrder(order: BuildOrder, reverse: boolean, a: number[], b: number[]): number {
  const desc = BUILD_SORTS[order].cols.map((c) => c.desc !== reverse);
  for (let i = 0; i < desc.length; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return desc[i] ? -d : d;
  }
  return 0;
}

export class FakeLog implements LogHandle {
  /** Arrival times by line index (lines pushed straight onto `all` have none, like those there at opening). */
  arrived = new Map<number, number>();
  readonly openedAt = NOW - 60_000;
  constructor(
    readonly path: string,
    public stepnr: number | null,
    public all: string[],
  ) {}
  /** Lines growing the log at `at` (ms since epoch), as a live log does. */
  append(lines: string[], at: number) {
    for (const l of lines) {
      this.arrived.set(this.all.length, at);
      this.all.push(l);
    }
    this.grown = true;
  }
  times(from: number, count: number) {
    return Array.from({length: Math.max(0, Math.min(count, this.all.length - from))}, (_, i) => this.arrived.get(from + i) ?? null);
  }
  lineCount() {
    return this.all.length;
  }
  async lines(from: number, count: number) {
    return this.all.slice(from, from + count);
  }
  grown = false;
  async refresh() {
    const g = this.grown;
    this.grown = false;
    return g;
  }
  async search(needle: string, from: number, backwards: boolean) {
    const n = needle.toLowerCase();
    if (backwards) {
      for (let i = Math.min(from, this.all.length - 1); i >= 0; i--) if (this.all[i]!.toLowerCase().includes(n)) return i;
      return -1;
    }
    for (let i = Math.max(0, from); i < this.all.length; i++) if (this.all[i]!.toLowerCase().includes(n)) return i;
    return -1;
  }
  async close() {}
}

export interface FakeOptions {
  builds?: number;
  caps?: Partial<Capabilities>;
  header?: Partial<HeaderData>;
  machines?: MachineRow[];
  steps?: RunningStep[];
  /** Outcome of act(); default: success changing every id. */
  act?: (req: ActionRequest) => ActionOutcome;
  logLines?: number;
  checks?: CheckEntry[];
  evals?: number;
  /** The Runner view's numbers (default: a full set; null: no runner data). */
  runner?: RunnerStats | null;
  /** Builds in each job's History tab (default 12, at most 30). */
  history?: number;
}

export function fakeEval(id: number): EvalEntry {
  return {
    id,
    project: id % 2 ? 'alpha' : 'beta',
    jobset: 'main',
    timestamp: NOW_S - 60 * (1000 - id),
    evaltime: 12,
    hasnewbuilds: id % 10 === 0 ? 0 : 1,
    error: id % 7 === 0 ? 'error: attribute missing' : null,
    builds: 20,
    new: 5,
    succeeded: 12,
    failed: 3,
    queued: 5,
  };
}

export const FAKE_RUNNER: RunnerStats = {
  source: 'in-process scheduler',
  at: NOW - 1000,
  uptimeSec: 3700,
  dispatch: {rounds: 4321, totalMs: 8642, avgMs: 2, lastMs: 3, busyShare: 0.12},
  ingest: {buildsRead: 1500, readMs: 3000, perSec: 25, backlog: {total: 2000, done: 1500}},
  queueWakeups: 77,
  dbPool: {total: 6, idle: 4, waiting: 0},
  retries: {count: 9, max: 3},
  unsupported: {steps: 2, aborted: 1},
  steps: {started: 900, done: 880, unfinished: 40, runnable: 12, active: 3},
};

export class FakeData implements ConsoleData {
  builds: BuildListRow[];
  /**
   * How the fake answers the views table's reads (ConsoleData.query; the reads are named `<view>.page` and
   * `<view>.count`): a window view without its answers here does not type-check.
   */
  readonly answers: {[V in WindowName]: {page(q: WindowQuery): Promise<WindowRows[V][]>; count(q: CountQuery): Promise<number>}} = {
    builds: {page: (q) => this.pageBuilds(q), count: (q) => this.countBuilds(q)},
    audit: {page: () => this.pageAudit(), count: () => this.countAudit()},
    checks: {page: () => this.pageChecks(), count: () => this.countChecks()},
    evals: {page: (q) => this.pageEvals(q), count: (q) => this.countEvals(q.filter)},
  };
  calls: string[] = [];
  acts: ActionRequest[] = [];
  subscribers = new Set<(w: ChangeKind) => void>();
  log: FakeLog;
  audit: AuditEntry[] = [];
  closed = false;

  constructor(readonly o: FakeOptions = {}) {
    this.builds = Array.from({length: o.builds ?? 500}, (_, i) => fakeBuild(i + 1));
    this.evals = Array.from({length: o.evals ?? 30}, (_, i) => fakeEval(i + 1));
    this.log = new FakeLog('/data/build-logs/aa/bbb-pkg.drv', 1, Array.from({length: o.logLines ?? 200}, (_, i) => `line ${i + 1} of the build output`));
  }

  describe() {
    return 'fake database';
  }
  async query<A, T>(read: Read<A, T>, args: A): Promise<T> {
    const [view, what] = read.name.split('.') as [WindowName, 'page' | 'count'];
    const answer = this.answers[view]?.[what] as ((q: A) => Promise<unknown>) | undefined;
    if (!answer) throw new Error(`the fake data source has no answer to ${read.name} (FakeData.answers in test/support/ui-fake.ts)`);
    return (await answer(args)) as T;
  }
  async capabilities(): Promise<Capabilities> {
    return {readonly: null, admin: null, checks: 'reproducibility checks are not available yet', user: 'alice', ...this.o.caps};
  }
  async header(): Promise<HeaderData> {
    return {
      mode: 'embedded',
      modeNote: null,
      runnerUp: true,
      uptimeSec: 3700,
      runnerDataAt: NOW - 1000,
      queued: this.builds.filter((b) => b.finished === 0).length,
      runnable: 12,
      running: 3,
      systems: [{system: 'x86_64-linux', runnable: 10, running: 3, capacity: 4, queued: 200, avgWait: 30}],
      builders: {online: 2, backingOff: 1, drained: 0, total: 3},
      dispatcherBusy: 0.12,
      lastDispatchMs: 4,
      progress: {stalled: false, stalledSeconds: 0, thresholdSeconds: 300, lastProgressAt: NOW - 5000},
      ingest: null,
      ...this.o.header,
    };
  }
  async overview(): Promise<OverviewData> {
    return {
      systems: [
        // x86_64-linux: sampled for the last 20 minutes, its queue growing; aarch64-linux: a flat queue all hour.
        {system: 'x86_64-linux', runnable: 10, running: 3, capacity: 4, queued: 200, avgWait: 30, history: Array.from({length: 60}, (_, i) => (i < 40 ? null : (i - 39) * 10))},
        {system: 'aarch64-linux', runnable: 2, running: 0, capacity: 0, queued: 50, avgWait: 600, history: Array.from({length: 60}, () => 50)},
      ],
      jobsets: await this.jobsets(),
      throughput: Array.from({length: 60}, (_, i) => i % 7),
      queueHistory: [5, 8, 13, 21, 34],
    };
  }
  matching(filter: string | null, order: BuildOrder, reverse = false): BuildListRow[] {
    let rows = order === 'queue' ? this.builds.filter((b) => b.finished === 0) : order === 'stoptime' ? this.builds.filter((b) => b.finished === 1 && b.stoptime !== null) : [...this.builds];
    if (filter) {
      const ast = parseFilter(filter);
      for (const t of ast.terms) {
        if (t.kind !== 'field') continue;
        const v = t.items.map((i) => (i.type === 'string' ? i.pattern.value : i.type === 'status' ? i.name : '')).join(',');
        if (t.field === 'project') rows = rows.filter((b) => b.project === v);
        if (t.field === 'status' && v === 'queued') rows = rows.filter((b) => b.finished === 0);
        if (t.field === 'status' && v === 'finished') rows = rows.filter((b) => b.finished === 1);
      }
    }
    return rows.sort((a, b) => keyOrder(order, reverse, buildKey(a, order), buildKey(b, order)));
  }
  async pageBuilds(q: {filter: string | null; order: BuildOrder; reverse?: boolean; anchor: Anchor; limit: number}): Promise<BuildListRow[]> {
    this.calls.push(`pageBuilds ${q.anchor.kind} ${q.filter ?? ''}${q.order !== 'id-desc' || q.reverse ? ` [${q.order}${q.reverse ? ' reversed' : ''}]` : ''}`);
    const rev = q.reverse === true;
    const rows = this.matching(q.filter, q.order, rev);
    // >0: the row sorts after the anchor's key.
    const keyCmp = (_o: BuildOrder, r: BuildListRow, key: number[]) => keyOrder(q.order, rev, buildKey(r, q.order), key);
    const a = q.anchor;
    switch (a.kind) {
      case 'start':
        return rows.slice(0, q.limit);
      case 'end':
        return rows.slice(Math.max(0, rows.length - q.limit));
      case 'after':
        return rows.filter((r) => keyCmp(q.order, r, a.key) > 0).slice(0, q.limit);
      case 'from':
        return rows.filter((r) => keyCmp(q.order, r, a.key) >= 0).slice(0, q.limit);
      case 'before': {
        const before = rows.filter((r) => keyCmp(q.order, r, a.key) < 0);
        return before.slice(Math.max(0, before.length - q.limit));
      }
    }
  }
  async countBuilds(q: {filter: string | null; order: BuildOrder}) {
    this.calls.push(`countBuilds ${q.filter ?? ''} [${q.order}]`);
    return this.matching(q.filter, q.order).length;
  }
  async runningSteps(filter: string | null): Promise<RunningStep[]> {
    this.calls.push(`runningSteps ${filter ?? ''}`);
    const steps = this.o.steps ?? [
      {build: 4, stepnr: 1, machine: 'builder1', project: 'alpha', jobset: 'main', job: 'pkg4', drvpath: '/nix/store/x-pkg4.drv', system: 'x86_64-linux', busy: 30, starttime: NOW_S - 120, phaseSince: NOW - 100_000, timeout: 36000},
      {build: 8, stepnr: 2, machine: 'builder1', project: 'alpha', jobset: 'main', job: 'pkg8', drvpath: '/nix/store/x-pkg8.drv', system: 'x86_64-linux', busy: 20, starttime: NOW_S - 7200, phaseSince: NOW - 2 * 3600_000, timeout: 36000},
      {build: 12, stepnr: 1, machine: 'builder2', project: 'beta', jobset: 'main', job: 'pkg12', drvpath: '/nix/store/x-pkg12.drv', system: 'x86_64-linux', busy: 10, starttime: NOW_S - 400, phaseSince: NOW - 400_000, timeout: 36000},
    ];
    return filter ? steps.filter((s) => filter.includes(s.machine)) : steps;
  }
  async machines(): Promise<MachineRow[]> {
    return (
      this.o.machines ?? [
        // Idle for the first half hour, then every slot busy.
        {name: 'builder1', uri: 'ssh://builder1', state: 'busy', systems: ['x86_64-linux'], supportedFeatures: ['kvm'], mandatoryFeatures: [], currentJobs: 2, maxJobs: 4, speedFactor: 2, score: 0.5, load1: null, disabledUntil: 0, consecutiveFailures: 0, drained: false, lastError: null, usage: Array.from({length: 60}, (_, i) => (i < 30 ? 0 : 1)), lastPing: {at: NOW - 120_000, ok: true}},
        {name: 'builder2', uri: 'ssh://builder2', state: 'backoff', systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [], currentJobs: 0, maxJobs: 2, speedFactor: 1, score: 0, load1: null, disabledUntil: NOW + 300_000, consecutiveFailures: 3, drained: false, lastError: 'connection refused'},
      ]
    );
  }
  async jobsets(): Promise<JobsetShare[]> {
    return [
      {project: 'alpha', name: 'main', enabled: 1, shares: 100, shareUsed: 0.4, queued: 167, running: 2, oldest: NOW_S - 3600},
      {project: 'beta', name: 'main', enabled: 1, shares: 50, shareUsed: 0.1, queued: 83, running: 1, oldest: NOW_S - 1800},
    ];
  }
  async buildDetail(id: number): Promise<BuildDetail | null> {
    const b = this.builds.find((x) => x.id === id);
    if (!b) return null;
    return {
      build: {...b, nixname: `pkg${id}-1.0`, description: null, timeout: 36000, maxsilent: 7200, releasename: null},
      steps: [
        {stepnr: 1, drvpath: `/nix/store/${'d'.repeat(32)}-dep-of-${id}.drv`, busy: 0, status: 0, machine: 'builder1', starttime: NOW_S - 900, stoptime: NOW_S - 800, errormsg: null},
        {stepnr: 2, drvpath: b.drvpath, busy: b.busy, status: b.finished ? b.buildstatus : null, machine: 'builder1', starttime: NOW_S - 700, stoptime: b.finished ? NOW_S - 300 : null, errormsg: null},
      ],
      outputs: [{name: 'out', path: `/nix/store/${'o'.repeat(32)}-pkg${id}`}],
      products: [],
      why: b.finished === 0 && b.busy === 0 ? ['no machine with platform aarch64-linux has a free slot (builder3 backing off)'] : [],
      deps:
        b.finished === 0
          ? [
              {drvpath: `/nix/store/${'e'.repeat(32)}-libfoo-for-${id}.drv`, state: 'running', stepnr: 3, busy: 30, machine: 'ssh://builder2', note: null, toplevel: false},
              {drvpath: `/nix/store/${'f'.repeat(32)}-libbar-for-${id}.drv`, state: 'waiting', stepnr: null, busy: 0, machine: null, note: 'waiting for 1 dependency', toplevel: false},
              {drvpath: b.drvpath, state: 'waiting', stepnr: null, busy: 0, machine: null, note: 'waiting for 2 dependencies', toplevel: true},
            ]
          : [],
      depsNote: b.finished === 0 ? 'steps from BuildSteps and the in-process scheduler' : null,
      // The job's finished builds: this one and the ids below it, one failure in four, getting slower.
      history: this.historyOf(b),
      latest: b.finished === 1 && b.buildstatus === 0 ? b.id : id > 2 ? id - 2 : null,
    };
  }
  historyOf(b: BuildListRow): JobHistoryRow[] {
    const n = this.o.history ?? 12;
    return Array.from({length: Math.min(n, 30)}, (_, i) => {
      const id = Math.max(1, b.id - i);
      const took = 60 * (n - i);
      return {id, buildstatus: i % 4 === 1 ? 1 : 0, iscachedbuild: 0, system: b.system, starttime: NOW_S - 86_400 * (i + 1), stoptime: NOW_S - 86_400 * (i + 1) + took, machine: i % 2 ? 'ssh://builder2' : 'ssh://builder1'};
    });
  }
  async pageAudit(): Promise<AuditEntry[]> {
    return this.audit;
  }
  async countAudit() {
    return this.audit.length;
  }
  async pageChecks(): Promise<CheckEntry[]> {
    return this.o.checks ?? [];
  }
  async lastCheck(build: number): Promise<CheckEntry | null> {
    this.calls.push(`lastCheck ${build}`);
    return (this.o.checks ?? []).filter((c) => c.build === build).sort((a, b) => b.id - a.id)[0] ?? null;
  }
  async countChecks() {
    return this.o.checks?.length ?? 0;
  }
  evals: EvalEntry[] = [];
  async pageEvals(q: {filter: string | null; anchor: Anchor; limit: number}): Promise<EvalEntry[]> {
    this.calls.push(`pageEvals ${q.anchor.kind} ${q.filter ?? ''}`);
    const rows = this.evals.filter((e) => !q.filter || q.filter.includes(e.project)).sort((a, b) => b.id - a.id);
    const a = q.anchor;
    switch (a.kind) {
      case 'start':
        return rows.slice(0, q.limit);
      case 'end':
        return rows.slice(Math.max(0, rows.length - q.limit));
      case 'after':
        return rows.filter((r) => r.id < a.key[0]!).slice(0, q.limit);
      case 'from':
        return rows.filter((r) => r.id <= a.key[0]!).slice(0, q.limit);
      case 'before': {
        const before = rows.filter((r) => r.id > a.key[0]!);
        return before.slice(Math.max(0, before.length - q.limit));
      }
    }
  }
  async countEvals(filter: string | null) {
    return this.evals.filter((e) => !filter || filter.includes(e.project)).length;
  }
  async runnerStats(): Promise<RunnerStats | null> {
    this.calls.push('runnerStats');
    return this.o.runner === undefined ? FAKE_RUNNER : this.o.runner;
  }
  async openFile(path: string): Promise<LogHandle> {
    this.calls.push(`openFile ${path}`);
    return this.log;
  }
  async openLog(build: number, stepnr?: number): Promise<LogHandle> {
    this.calls.push(`openLog ${build}/${stepnr ?? ''}`);
    if (build === 999999) throw new Error('build 999999 has not started yet: no log so far');
    this.log.stepnr = stepnr ?? 1;
    return this.log;
  }
  async act(req: ActionRequest): Promise<ActionOutcome> {
    this.acts.push(req);
    if (this.o.act) return this.o.act(req);
    const ids = req.ids ?? (req.filter !== undefined ? this.matching(req.filter || null, 'id-desc').map((b) => b.id).sort((x, y) => x - y) : []);
    return {ok: true, message: `${req.dryRun ? 'would ' : ''}${req.kind} ${ids.length} of ${ids.length} build(s)`, changed: ids, targets: ids, scope: 'in alpha:main (1 not running, 0 running)'};
  }
  subscribe(fn: (w: ChangeKind) => void) {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }
  emit(w: ChangeKind) {
    for (const fn of this.subscribers) fn(w);
  }
  async close() {
    this.closed = true;
  }
}
