// What the console reads about the runner and the queue, with its samples of the last hour: the runner's snapshot
// (runner-source.ts; cached ~1 s so the reads of one refresh share it, each new one a utilisation sample of every
// machine), queued builds per system (SQL, re-read at most every 10 s, each read a queue sample), this console's
// pings, and the per-system rows of the header and the Overview.
import type pg from 'pg';
import {queuedBySystem} from '../../db/queries/queue.js';
import {HourSeries} from './hour-series.js';
import type {RunnerSnapshot, RunnerSource} from './runner-source.js';
import type {MachineRow, SystemQueue} from './types.js';

export interface ReadingsOptions {
  pool: pg.Pool;
  runner: RunnerSource | null;
  log?: (line: string) => void;
  /** Clock of the samples (tests move it); default Date.now. */
  now?: () => number;
}

function systemOf(systemType: string): string {
  const i = systemType.indexOf(':');
  return i < 0 ? systemType : systemType.slice(0, i);
}

export class RunnerReadings {
  private snapshotCache: {at: number; value: Promise<RunnerSnapshot | null>} | null = null;
  private dbSystems: {at: number; rows: {system: string; queued: number}[]} | null = null;
  /** The last hour, by minute (hour-series.ts): queued builds in all (key '') and per system; jobs/maxJobs per machine. */
  private queueSeries = new HourSeries();
  private usageSeries = new HourSeries();
  /** This console's `i` pings: machine URI → when, and whether it was usable. */
  private pings = new Map<string, {at: number; ok: boolean}>();

  constructor(private readonly o: ReadingsOptions) {}

  now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** The next snapshot is read afresh (after a drain or enable). */
  invalidate(): void {
    this.snapshotCache = null;
  }

  /** The runner snapshot, shared by the calls of one refresh (cached ~1 s); each new one is a utilisation sample. */
  snapshot(): Promise<RunnerSnapshot | null> {
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
    // A system with nothing queued gets its 0 only while it had builds queued in the last hour; otherwise its
    // samples age out and prune() drops it.
    const recent = this.queueSeries.keys().filter((k) => k !== '' && this.queueSeries.get(k, now).some((v) => v !== null && v > 0));
    for (const system of new Set([...queued.keys(), ...recent])) this.queueSeries.add(system, queued.get(system) ?? 0, now);
    this.queueSeries.prune(now);
  }

  async systemQueues(): Promise<{system: string; queued: number}[]> {
    const now = this.now();
    if (this.dbSystems && now - this.dbSystems.at < 10_000) return this.dbSystems.rows;
    const rows = await queuedBySystem(this.o.pool);
    this.dbSystems = {at: now, rows};
    this.sampleQueues(rows, now);
    return rows;
  }

  systems(snap: RunnerSnapshot | null, dbQueued: {system: string; queued: number}[]): SystemQueue[] {
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

  /** The total of queued builds, one sample (the header's count). */
  sampleQueued(queued: number): void {
    this.queueSeries.add('', queued, this.now());
  }

  /** The queue's length over the last hour, by minute: in all (system null) or of one system. */
  queueHistory(system: string | null): (number | null)[] {
    return this.queueSeries.get(system ?? '', this.now());
  }

  recordPing(uri: string, ok: boolean): void {
    this.pings.set(uri, {at: this.now(), ok});
  }

  /** A machine row with its strip of the last hour and its last ping (the runner's or this console's, the newer). */
  withHistory(m: MachineRow): MachineRow {
    const mine = this.pings.get(m.uri);
    const lastPing = mine && (!m.lastPing || mine.at >= m.lastPing.at) ? mine : m.lastPing;
    return {...m, ...(this.usageSeries.has(m.uri) ? {usage: this.usageSeries.get(m.uri, this.now())} : {}), ...(lastPing ? {lastPing} : {})};
  }
}
