// Post-build commands (hydra.conf <runcommand> blocks), run by the daemon after a matching build finishes.
//
// Off the dispatch path: the scheduler only tells us a build finished; everything else happens here, with
// bounded concurrency, a timeout per command (SIGTERM, then SIGKILL, to its whole process group) and the
// output and exit status stored in hydra_ops.post_build_runs.
//
// Delivery is at-least-once, exactly once when nothing is interrupted:
// - discovery: the scheduler's build-finished events, plus a scan at start-up and every `scanIntervalMs` of
//   builds that stopped since the last scan (a persisted cursor, minus a safety margin) or that hydra-notify has
//   not handled yet (notificationPendingSince set). Runs are inserted idempotently, keyed by
//   (build, command, the build's stopTime): rediscovering a build adds nothing;
// - pending → running (claimed, attempts + 1) → done | failed | timed-out. Final states are never run again;
//   a run left 'running' by a daemon that died is set back to 'pending' at the next start (the runner lock
//   guarantees no other daemon is running it), and the command dies with the daemon (parent-death signal), so an
//   interrupted command runs again in full.
// notificationPendingSince is only read, never cleared: it belongs to hydra-notify.
//
// What runs comes from the current hydra.conf only. A run row holds the command's identity (id, block, SHA-256
// of its text), never text to execute: a row whose identity matches no configured command (edited, removed, or
// inserted by someone with database access) is marked 'skipped' and logged, never run; so is a row whose command
// is configured but whose build that command's job pattern does not match. Commands get a minimal
// environment (config/child-env.ts): no database URL or password unless the commandEnv setting names it.
import {spawn, type ChildProcess} from 'node:child_process';
import {existsSync} from 'node:fs';
import {mkdtemp, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import type pg from 'pg';
import {configuredCommand, matchesJob, type PostBuildCommand} from '../config/run-commands.js';
import {childEnv} from '../config/child-env.js';
import {escapeControl} from '../config/escape.js';
import {BUILD_STATUS} from '../db/status.js';
import {
  buildPayload,
  claimRun,
  finishRun,
  finishedBuild,
  finishedBuildsSince,
  pendingRuns,
  queueRuns,
  requeueInterrupted,
  scanCursor,
  setScanCursor,
  type FinishedBuild,
  type RunRow,
} from '../db/queries/post-build.js';

export interface PostBuildOptions {
  pool: pg.Pool;
  commands: readonly PostBuildCommand[];
  log: (level: 'error' | 'warn' | 'info' | 'debug', message: string) => void;
  /** Commands running at once (default 4). */
  concurrency?: number;
  /** Period of the safety-net scan (default 30 s). */
  scanIntervalMs?: number;
  /** Builds that stopped this long before the scan cursor are rescanned (default 300 s). */
  marginSeconds?: number;
  /** Pending hydra-notify work older than this is not picked up (default 1 day). */
  lookbackSeconds?: number;
  /** Bytes of output kept per run (the tail; default 64 KiB). */
  outputLimit?: number;
  /** Grace between SIGTERM and SIGKILL when a command times out (default 5 s). */
  killGraceMs?: number;
  statusName?: (code: number | null) => string;
  /** Environment the minimal command environment is taken from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Further variables passed to commands (the commandEnv setting). */
  passEnv?: readonly string[];
}

const defaultStatusName = (code: number | null) => (code === null ? 'unknown' : (BUILD_STATUS[code]?.event ?? `status-${code}`));

const now = () => Math.floor(Date.now() / 1000);

/** `setpriv --pdeathsig KILL` makes the command's shell die with the daemon, however the daemon dies. */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export class PostBuildRunner {
  private readonly o: Required<Omit<PostBuildOptions, 'commands'>> & {commands: readonly PostBuildCommand[]};
  private running = new Map<number, {child: ChildProcess | null; done: Promise<void>}>();
  private scanTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private killedByStop = false;
  private pumping = false;
  private repump = false;
  private discoveries: Promise<unknown> = Promise.resolve();

  constructor(options: PostBuildOptions) {
    this.o = {
      concurrency: 4,
      scanIntervalMs: 30_000,
      marginSeconds: 300,
      lookbackSeconds: 86_400,
      outputLimit: 64 * 1024,
      killGraceMs: 5000,
      statusName: defaultStatusName,
      env: process.env,
      passEnv: [],
      ...options,
    };
  }

  get commands(): readonly PostBuildCommand[] {
    return this.o.commands;
  }

  /** Re-queues interrupted runs, scans, and starts running what is pending. */
  async start(): Promise<void> {
    const requeued = await requeueInterrupted(this.o.pool);
    if (requeued > 0) this.o.log('warn', `post-build: ${requeued} command run(s) interrupted by a previous stop will run again`);
    if (this.o.commands.length > 0) await this.scan();
    this.pump();
    this.scanTimer = setInterval(() => {
      if (this.o.commands.length > 0) void this.scan().then(() => this.pump(), (e) => this.o.log('error', `post-build scan: ${(e as Error).message}`));
    }, this.o.scanIntervalMs);
    this.scanTimer.unref();
  }

  /** A build finished (the scheduler's build-finished event). */
  buildFinished(id: number): void {
    if (this.stopped || this.o.commands.length === 0) return;
    this.discoveries = this.discoveries
      .then(async () => {
        const b = await finishedBuild(this.o.pool, id);
        if (b) await this.queue(b);
        this.pump();
      })
      .catch((e) => this.o.log('error', `post-build: build ${id}: ${(e as Error).message}`));
  }

  private async queue(b: FinishedBuild): Promise<number> {
    const matching = this.o.commands.filter((c) => matchesJob(c.matcher, b.project, b.jobset, b.job));
    return matching.length === 0 ? 0 : queueRuns(this.o.pool, b, matching);
  }

  /** Finds finished builds since the cursor (and pending hydra-notify work) and queues their runs. */
  async scan(): Promise<number> {
    const startedAt = now();
    const cursor = await scanCursor(this.o.pool);
    // The first start ever begins now: commands are not run for the farm's history.
    const since = (cursor ?? startedAt) - this.o.marginSeconds;
    const builds = await finishedBuildsSince(this.o.pool, since, startedAt - this.o.lookbackSeconds);
    let queued = 0;
    for (const b of builds) queued += await this.queue(b);
    await setScanCursor(this.o.pool, startedAt);
    if (queued > 0) this.o.log('info', `post-build: ${queued} command run(s) queued by the scan`);
    return queued;
  }

  /** Starts pending runs up to the concurrency limit. */
  pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.repump = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        do {
          this.repump = false;
          const free = this.o.concurrency - this.running.size;
          if (free <= 0) break;
          const rows = (await pendingRuns(this.o.pool, free + this.running.size)).filter((r) => !this.running.has(r.id)).slice(0, free);
          for (const row of rows) {
            if (this.stopped) break;
            if (!(await claimRun(this.o.pool, row.id))) continue;
            const entry = {child: null as ChildProcess | null, done: Promise.resolve()};
            this.running.set(row.id, entry);
            entry.done = this.execute(row, entry)
              .catch((e) => this.o.log('error', `post-build: run ${row.id}: ${(e as Error).message}`))
              .finally(() => {
                this.running.delete(row.id);
                this.pump();
              });
          }
        } while (this.repump && !this.stopped);
      } catch (e) {
        this.o.log('error', `post-build: ${(e as Error).message}`);
      } finally {
        this.pumping = false;
      }
    })();
  }

  private async execute(row: RunRow, entry: {child: ChildProcess | null}): Promise<void> {
    const configured = configuredCommand(this.o.commands, row);
    if (!configured) {
      const error =
        `not run: no command in the current hydra.conf matches this run (id ${row.command_id}, ` +
        `sha256 ${row.command_sha256 ?? 'none'}${row.command_source ? `, queued for ${row.command_source}` : ''})`;
      await finishRun(this.o.pool, row.id, {status: 'skipped', exitCode: null, signal: null, output: '', outputBytes: 0, error});
      this.o.log('warn', `post-build: run ${row.id} for build ${row.build} skipped: ${error}`);
      return;
    }
    const payload = await buildPayload(this.o.pool, row.build, this.o.statusName);
    if (!payload) {
      await finishRun(this.o.pool, row.id, {status: 'failed', exitCode: null, signal: null, output: '', outputBytes: 0, error: `build ${row.build} no longer exists`});
      return;
    }
    // The row names the build as well as the command: a configured command runs only for a build its job pattern
    // matches, whoever queued the row.
    const [project, jobset, job] = [payload.project, payload.jobset, payload.job].map(String) as [string, string, string];
    if (!matchesJob(configured.matcher, project, jobset, job)) {
      const error =
        `not run: ${configured.source}'s job pattern "${configured.matcher}" does not match build ${row.build} ` +
        `(${project}:${jobset}:${job})`;
      await finishRun(this.o.pool, row.id, {status: 'skipped', exitCode: null, signal: null, output: '', outputBytes: 0, error});
      this.o.log('warn', `post-build: run ${row.id} for build ${row.build} skipped: ${escapeControl(error)}`);
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'hydra-ops-post-build-'));
    try {
      const jsonFile = join(dir, `build-${row.build}.json`);
      await writeFile(jsonFile, JSON.stringify(payload) + '\n');
      const text = configured.command;
      const argv = SETPRIV ? [SETPRIV, '--pdeathsig', 'KILL', '--', '/bin/sh', '-c', text] : ['/bin/sh', '-c', text];
      const child = spawn(argv[0]!, argv.slice(1), {
        detached: true, // own process group: a timeout kills everything it started
        stdio: ['ignore', 'pipe', 'pipe'],
        env: childEnv(this.o.env, this.o.passEnv, {HYDRA_JSON: jsonFile}),
      });
      entry.child = child;
      const chunks: Buffer[] = [];
      let kept = 0;
      let total = 0;
      const collect = (c: Buffer) => {
        total += c.length;
        chunks.push(c);
        kept += c.length;
        while (kept - chunks[0]!.length >= this.o.outputLimit) kept -= chunks.shift()!.length;
      };
      child.stdout!.on('data', collect);
      child.stderr!.on('data', collect);
      let timedOut = false;
      const killGroup = (sig: NodeJS.Signals) => {
        try {
          if (child.pid) process.kill(-child.pid, sig);
        } catch {
          // gone
        }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup('SIGTERM');
        setTimeout(() => killGroup('SIGKILL'), this.o.killGraceMs).unref();
      }, configured.timeoutSeconds * 1000);
      const {code, signal, spawnError} = await new Promise<{code: number | null; signal: string | null; spawnError?: Error}>((resolve) => {
        child.once('error', (e) => resolve({code: null, signal: null, spawnError: e}));
        child.once('close', (c, s) => resolve({code: c, signal: s}));
      });
      clearTimeout(timer);
      if (timedOut) killGroup('SIGKILL'); // stragglers that ignored SIGTERM
      if (this.killedByStop && !timedOut) return; // killed by stop(): stays 'running', runs again at the next start
      let output = Buffer.concat(chunks).toString('utf8');
      if (total > kept) output = `[… ${total - kept} earlier bytes not kept]\n` + output.slice(-this.o.outputLimit);
      const status = timedOut ? 'timed-out' : code === 0 ? 'done' : 'failed';
      const error = spawnError
        ? `cannot start: ${spawnError.message}`
        : timedOut
          ? `killed after the timeout of ${configured.timeoutSeconds} s`
          : code !== 0
            ? signal
              ? `killed by ${signal}`
              : `exit status ${code}`
            : null;
      await finishRun(this.o.pool, row.id, {status, exitCode: code, signal, output, outputBytes: total, error});
      if (status !== 'done') this.o.log('warn', `post-build: ${configured.source} for build ${row.build}: ${error}`);
    } finally {
      await rm(dir, {recursive: true, force: true});
    }
  }

  /**
   * Stops: no new runs; running commands get `graceMs` to finish, then their process groups are killed and
   * their runs stay 'running' (they run again at the next start).
   */
  async stop(graceMs = 5000): Promise<void> {
    this.stopped = true;
    if (this.scanTimer) clearInterval(this.scanTimer);
    await this.discoveries.catch(() => {});
    const all = Promise.all([...this.running.values()].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([all.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
    clearTimeout(timer);
    if (timedOut) {
      this.killedByStop = true;
      for (const r of this.running.values()) {
        try {
          if (r.child?.pid) process.kill(-r.child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await all;
    }
  }
}
