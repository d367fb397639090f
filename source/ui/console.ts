// `hydra-ops` with no subcommand: the console. Checks the terminal, looks for a runner alive on the
// database (scheduler/runner-presence.ts) and attaches to it; with none it runs the queue runner
// in-process — by default on the embedded database, with --scheduler on a configured server —
// renders the Ink app on the alternate screen, and tears everything down on quit or a signal.
import {createWriteStream, mkdirSync, type WriteStream} from 'node:fs';
import {join} from 'node:path';
import React from 'react';
import {render} from 'ink';
import type {AppContext} from '../cli/context.js';
import {actorOf} from '../cli/acting.js';
import {CliError, EXIT} from '../cli/exit-codes.js';
import {onStdoutGone} from '../cli/output.js';
import {inspectSchema} from '../db/schema.js';
import {createLogger, type Logger} from '../daemon/logger.js';
import {machinesFiles, startRunner, type RunningRunner} from '../daemon/runner.js';
import {loadMachinesFiles, implicitLocalhost, type MachineSpec} from '../fleet/machines-file.js';
import {RunnerLockBusyError} from '../scheduler/runner-lock.js';
import {RunnerDbLockBusyError, describeLockSession} from '../db/runner-advisory-lock.js';
import {decideConsoleRunner, observeRunners, type ObserveOptions} from '../scheduler/runner-presence.js';
import {App} from './app.js';
import {ConsoleController} from './state/controller.js';
import {SqlConsoleData} from './state/sql-data.js';
import {externalSource, inProcessSource, type RunnerSource} from './state/runner-source.js';
import {themeFromEnv, type Theme} from './theme.js';
import type {RunnerMode, ViewName} from './state/types.js';

export interface ConsoleOptions {
  /**
   * Run the scheduler in-process when no other runner is alive: true (--scheduler), false
   * (--no-scheduler), or unset (the global flags decide; then only on the embedded database).
   */
  scheduler?: boolean;
  /** A project (`demo`) or `project:jobset` to preselect as the builds filter. */
  focus?: string;
  /** Glyphs: force the ASCII fallback. */
  ascii?: boolean;
  color?: 'auto' | 'always' | 'never';
  /** Start in this view. */
  view?: ViewName;
  stdin?: NodeJS.ReadStream;
  stdout?: NodeJS.WriteStream;
}

/** Why the console cannot start on these streams, or null. */
export function terminalProblem(stdin: {isTTY?: boolean}, stdout: {isTTY?: boolean}): string | null {
  if (stdout.isTTY !== true) {
    return (
      'the console needs a terminal, but standard output is not one (piped or redirected). ' +
      'For scripts use a subcommand: hydra-ops status, builds, queue, steps, machines, log … (add --json for JSON)'
    );
  }
  if (stdin.isTTY !== true) {
    return (
      'the console needs a terminal for keyboard input, but standard input is not one (cron, CI or </dev/null). ' +
      'Run it from an interactive terminal, or use a subcommand such as hydra-ops status --json'
    );
  }
  return null;
}

function focusFilter(focus: string | undefined): string | null {
  if (!focus) return null;
  return /[:/]/.test(focus) ? `jobset:${focus}` : `project:${focus}`;
}

function fileLogger(dataDir: string): {log: Logger; stream: WriteStream | null; path: string} {
  const dir = join(dataDir, 'logs');
  const path = join(dir, 'console.log');
  try {
    mkdirSync(dir, {recursive: true});
    const stream = createWriteStream(path, {flags: 'a'});
    stream.on('error', () => {});
    const log = createLogger({format: 'text', level: 'info', write: (line) => stream.write(`${new Date().toISOString()} ${line}\n`)});
    return {log, stream, path};
  } catch {
    return {log: createLogger({format: 'text', level: 'error', write: () => {}}), stream: null, path};
  }
}

/** Opens the console; resolves when the operator quits. Same as runConsole (used by `demo`). */
export async function openConsole(ctx: AppContext, opts: {scheduler?: boolean; focus?: string}): Promise<number> {
  return runConsole(ctx, {scheduler: opts.scheduler, focus: opts.focus});
}

export async function runConsole(ctx: AppContext, opts: ConsoleOptions = {}): Promise<number> {
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  const problem = terminalProblem(stdin, stdout);
  if (problem) throw new CliError(EXIT.usage, problem);

  const config = ctx.config();
  const db = await ctx.database();
  const dataDir = config.dataDir.dir;
  const schema = await inspectSchema(db.pool);
  const flag = opts.scheduler ?? ctx.globals.scheduler;
  const database = db.target.kind === 'embedded' ? 'embedded' : 'server';
  // Read-only mode: no scheduler (it writes builds, steps and migrations), only views.
  const wantScheduler = (flag === true || (flag === undefined && database === 'embedded')) && !config.readonly.value;
  if (schema.kind !== 'hydra' && !(schema.kind === 'empty' && wantScheduler)) {
    throw new CliError(EXIT.failed, `the database has no usable Hydra schema: ${schema.message} (run \`hydra-ops db init\` or point --database-url at Hydra's database)`);
  }
  const {log, stream, path: logPath} = fileLogger(dataDir);
  log('info', `console started (pid ${process.pid}) on ${db.describe()}`);

  let runner: RunningRunner | null = null;
  let source: RunnerSource | null = null;
  let mode: RunnerMode = 'none';
  let modeNote: string | null = null;
  const statusAddress = config.statusAddress.value === 'off' ? null : config.statusAddress.value;
  const rest: NonNullable<ObserveOptions['rest']> = [];
  const endpoint = config.runner.queueRunnerEndpoint;
  if (endpoint) rest.push({url: endpoint, source: 'queue-runner-endpoint'});
  if (statusAddress && config.statusAddress.source !== 'default') rest.push({url: `http://${statusAddress}`, source: 'hydra-ops'});
  const observations = await observeRunners({pool: db.pool, connection: db.connection, dataDir, rest});
  const decision = decideConsoleRunner({observations, database, scheduler: flag, readonly: config.readonly.value});
  log('info', `runner decision: ${decision.action}${decision.action !== 'run' ? ` (${decision.note})` : ''}`);
  const attach = (note: string) => {
    mode = 'attached';
    modeNote = note;
    source = externalSource({address: statusAddress, db: db.pool});
  };
  if (decision.action === 'run') {
    try {
      runner = await startRunner({config, db, env: ctx.env, log});
      source = inProcessSource(runner.scheduler);
      mode = 'embedded';
      modeNote = runner.statusAddress ? `status on ${runner.statusAddress}` : null;
    } catch (e) {
      if (e instanceof RunnerDbLockBusyError) {
        attach(e.holder ? `${e.holder.runnerPid !== null ? `hydra-ops runner pid ${e.holder.runnerPid} on ${e.holder.runnerHost}` : describeLockSession(e.holder)} (lock holder)` : 'another runner (lock holder)');
      } else if (e instanceof RunnerLockBusyError) {
        attach(`runner pid ${e.holderPid ?? '?'} (holds ${e.file})`);
      } else {
        modeNote = `scheduler not started: ${(e as Error).message} (details in ${logPath})`;
        log('error', `scheduler not started: ${(e as Error).message}`);
        source = externalSource({address: statusAddress, db: db.pool});
      }
    }
  } else if (decision.action === 'attach') {
    attach(decision.note);
  } else {
    modeNote = decision.note;
    source = externalSource({address: statusAddress, db: db.pool});
  }

  let specsCache: Promise<MachineSpec[]> | null = null;
  const machineSpecs = (): Promise<MachineSpec[]> => {
    if (runner) return Promise.resolve(runner.monitor.machines());
    specsCache ??= (async () => {
      const files = machinesFiles(config);
      const loaded = files.length > 0 ? (await loadMachinesFiles(files)).machines : [];
      if (loaded.length > 0 || files.length > 0) return loaded;
      return [await implicitLocalhost(ctx.env)];
    })().catch(() => []);
    return specsCache;
  };

  const data = new SqlConsoleData({
    pool: db.pool,
    connection: db.connection,
    describe: db.describe(),
    dataDir,
    actor: actorOf(ctx),
    runner: source,
    mode,
    modeNote,
    alert: runner?.localNix?.problem ? `localhost cannot build: ${runner.localNix.problem.summary} — fixes: 4 (Machines) or hydra-ops machine ping localhost` : null,
    machineSpecs,
    afterMachineAction: () => void runner?.scheduler.refreshDrained(),
    gcRootsDir: config.runner.gcRootsDir,
    log: (line) => log('warn', line),
  });

  const theme: Theme = themeFromEnv(ctx.env, {ascii: opts.ascii, color: opts.color});
  const filter = focusFilter(opts.focus);
  let quit!: () => void;
  const quitting = new Promise<void>((resolve) => (quit = resolve));
  const controller = new ConsoleController(data, {
    size: {columns: stdout.columns || 80, rows: stdout.rows || 24},
    view: opts.view ?? (filter ? 'builds' : 'overview'),
    filters: filter ? {builds: filter} : undefined,
    onQuit: () => quit(),
    log: (line) => log('warn', line),
    terminal: (sequence) => void stdout.write(sequence),
    hydraUrl: config.hydraUrl.value ?? null,
  });

  const onSignal = () => quit();
  // SIGHUP here means the terminal went away (a dropped SSH session): quit like `q`, so the in-process
  // scheduler stops and releases the runner lock. (The machines file is watched; no reload is needed.)
  const onHup = () => quit();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onHup);
  stdin.once('end', onHup);
  stdin.on('error', onHup);
  onStdoutGone(onHup);
  // The alternate screen keeps the operator's scrollback intact.
  stdout.write('\u001B[?1049h\u001B[H');
  const ink = render(React.createElement(App, {controller, theme}), {
    stdin,
    stdout,
    exitOnCtrlC: false,
    patchConsole: true,
    maxFps: 30,
    incrementalRendering: true,
  });
  controller.start();
  try {
    await Promise.race([quitting, ink.waitUntilExit()]);
  } finally {
    ink.unmount();
    stdout.write('\u001B[?1049l');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // SIGHUP stays handled (quit is idempotent): a vanishing terminal sends it more than once, and the
    // default action would kill the process in the middle of stopping the scheduler.
    stdin.off('end', onHup);
    stdin.off('error', onHup);
    // Writes below (unmount, leaving the alternate screen) fail with EIO once the terminal is gone:
    // keep ignoring that until the process ends, so the scheduler is stopped properly.
    onStdoutGone(() => {});
    await controller.stop();
    await data.close();
    if (runner) {
      process.stderr.write('hydra-ops: stopping the in-process scheduler (running steps get 10 s to finish)…\n');
      await runner.stop(10_000);
    }
    log('info', 'console stopped');
    log.flush();
    await new Promise<void>((resolve) => (stream ? stream.end(resolve) : resolve()));
  }
  return EXIT.ok;
}
