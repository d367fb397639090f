// Keeps SystemStatus('queue-runner') current (docs/hydra-compat.md, "Status documents and metrics"): the C++-shaped
// document is written on start, on every `NOTIFY dump_status` (each write sends `status_dumped` in
// the same transaction, so `hydra-queue-runner --status` and the C++-era `/queue-runner-status`
// page get their answer well within their 5 s) and periodically; stop() deletes the row.
import type pg from 'pg';
import type {Scheduler} from '../scheduler/scheduler.js';
import {PgListener} from '../db/listener.js';
import type {ConnectionSettings} from '../db/scram-client.js';
import {deleteSystemStatus, writeSystemStatus} from '../db/runner-sql.js';
import {cppStatus} from './status-cpp.js';

export interface SystemStatusOptions {
  /** Query pool (default: the scheduler's). */
  pool?: pg.Pool;
  /** Settings of the dedicated LISTEN connection (default: the scheduler's). */
  connection?: ConnectionSettings;
  /** Periodic refresh (default 10 s; 0 disables). */
  refreshMs?: number;
  log?: (message: string) => void;
}

export class SystemStatusPublisher {
  private readonly pool: pg.Pool;
  private readonly connection: ConnectionSettings;
  private readonly refreshMs: number;
  private readonly log: (message: string) => void;
  private listener: PgListener | null = null;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** Documents written so far (diagnostics and tests). */
  writes = 0;

  constructor(
    private readonly scheduler: Scheduler,
    options: SystemStatusOptions = {},
  ) {
    this.pool = options.pool ?? scheduler.pool;
    this.connection = options.connection ?? scheduler.options.connection;
    this.refreshMs = options.refreshMs ?? 10_000;
    this.log = options.log ?? (() => {});
  }

  /** Writes the first document, then answers `dump_status` and refreshes periodically. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.publish();
    this.listener = new PgListener({
      connection: this.connection,
      channels: ['dump_status'],
      // After a reconnect a request may have been lost: answer it anyway.
      onResync: (reconnect) => {
        if (reconnect) void this.publish();
      },
    });
    this.listener.on('notification', () => void this.publish());
    this.listener.on('disconnected', (e: Error) => this.log(`status: LISTEN dump_status connection lost: ${e.message}`));
    await this.listener.start();
    if (this.refreshMs > 0) {
      this.timer = setInterval(() => void this.publish(), this.refreshMs);
      this.timer.unref();
    }
  }

  /**
   * Rewrites the row now (coalescing: a request while a write is in flight causes exactly one more
   * write, with a fresh document). Never throws; failures are logged.
   */
  publish(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.writing) {
      this.again = true;
      return this.writing;
    }
    this.writing = (async () => {
      do {
        this.again = false;
        try {
          await writeSystemStatus(this.pool, cppStatus(this.scheduler));
          this.writes++;
        } catch (e) {
          this.log(`status: cannot write SystemStatus: ${(e as Error).message}`);
        }
      } while (this.again && !this.stopped);
    })().finally(() => (this.writing = null));
    return this.writing;
  }

  /** Clean stop: no more writes, and the row is deleted (a present row means "up"). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.listener?.stop();
    this.listener = null;
    await this.writing;
    await deleteSystemStatus(this.pool);
  }
}
