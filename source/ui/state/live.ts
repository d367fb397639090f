// Live updates for the console: LISTEN on Hydra's channels (queue membership, steps, builds), polling of busy
// steps (phase changes update BuildSteps.busy without a NOTIFY) and a runner tick, as change kinds for the
// controller to coalesce. Started by the first subscriber; a reconnect means "re-read everything visible".
import type pg from 'pg';
import {PgListener} from '../../db/listener.js';
import {busyStepsSignature} from '../../db/queries/steps.js';
import type {ChangeKind} from './types.js';

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

export interface LiveOptions {
  pool: pg.Pool;
  /** Settings for the dedicated LISTEN connection (null: no LISTEN, polling only). */
  connection: pg.ClientConfig | null;
  /** Busy-steps poll period (default 1500 ms). */
  stepsPollMs?: number;
  /** Runner tick (default 2000 ms). */
  runnerPollMs?: number;
  log?: (line: string) => void;
}

export class LiveUpdates {
  private listener: PgListener | null = null;
  private subscribers = new Set<(what: ChangeKind) => void>();
  private timers: NodeJS.Timeout[] = [];
  private stepsSignature = '';
  private closed = false;

  constructor(private readonly o: LiveOptions) {}

  /** Tells every subscriber that `what` changed (also used by actions that know what they changed). */
  emit(what: ChangeKind): void {
    for (const fn of this.subscribers) fn(what);
  }

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
      const sig = await busyStepsSignature(this.o.pool);
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
