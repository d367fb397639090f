// `hydra-ops --daemon`: the queue runner, headless (README.md, "The queue runner"): one log line per event,
// SIGTERM/SIGINT → graceful stop, SIGHUP → reload the machines file and hydra.conf.
import {resolveConfig, type ResolvedConfig} from '../config/resolve.js';
import {openDatabase, type Database, type DatabaseTarget} from '../db/connection.js';
import {stopEmbedded} from '../db/embedded.js';
import type {StepExecutor} from '../fleet/step-api.js';
import type {SchedulerOptions} from '../scheduler/scheduler.js';
import {createLogger, type Level} from './logger.js';
import {startRunner, type RunningRunner} from './runner.js';

export interface DaemonOptions {
  config: ResolvedConfig;
  target: DatabaseTarget;
  env: NodeJS.ProcessEnv;
  logLevel?: Level;
  /** Seconds running steps may take to finish on SIGTERM before they are aborted. */
  graceSeconds?: number;
  buildOne?: number;
  statusAddress?: string;
  schedulerOverrides?: Partial<SchedulerOptions>;
  executor?: StepExecutor;
}

/** Runs until SIGTERM/SIGINT (or, with buildOne, until that build is done); returns the exit code. */
export async function runDaemon(o: DaemonOptions): Promise<number> {
  const config = o.config;
  const log = createLogger({format: config.logFormat.value, level: o.logLevel ?? 'info'});
  let db: Database | null = null;
  let runner: RunningRunner | null = null;
  const handlers: Array<[NodeJS.Signals, () => void]> = [];
  const grace = (o.graceSeconds ?? 30) * 1000;
  try {
    db = await openDatabase(o.target, {poolSize: Math.min(config.runner.maxDbConnections, 32), applicationName: 'hydra-ops daemon'});
    log('info', `database: ${db.describe()}`);
    runner = await startRunner({
      config,
      db,
      env: o.env,
      log,
      buildOne: o.buildOne,
      statusAddress: o.statusAddress,
      schedulerOverrides: o.schedulerOverrides,
      executor: o.executor,
    });
    const r = runner;
    log('info', `queue runner started (pid ${process.pid}, data ${config.dataDir.dir})`);
    const signalled = new Promise<string>((resolve) => {
      for (const sig of ['SIGTERM', 'SIGINT'] as NodeJS.Signals[]) {
        const h = () => resolve(sig);
        process.on(sig, h);
        handlers.push([sig, h]);
      }
      const hup = () => {
        log('info', 'SIGHUP: reloading the machines file and configuration');
        r.reload();
        try {
          Object.assign(config.runner, resolveConfig({env: o.env, flags: {}}).runner);
        } catch (e) {
          log('error', `configuration reload failed: ${(e as Error).message}`);
        }
      };
      process.on('SIGHUP', hup);
      handlers.push(['SIGHUP', hup]);
    });
    if (o.buildOne !== undefined) return await Promise.race([r.scheduler.buildOneDone(), signalled.then(() => 1)]);
    const why = await signalled;
    log('info', `${why}: stopping (grace period ${grace / 1000} s)`);
    return 0;
  } catch (e) {
    log('error', e instanceof Error ? e.message : String(e));
    return 1;
  } finally {
    await runner?.stop(grace);
    for (const [sig, h] of handlers) process.off(sig, h);
    await db?.close().catch(() => {});
    if (db?.embedded?.startedHere && o.target.kind === 'embedded') await stopEmbedded(o.target.dir).catch(() => null);
    log.flush();
  }
}
