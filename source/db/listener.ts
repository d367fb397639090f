// One dedicated connection for LISTEN, separate from the query pool. It reconnects with
// exponential back-off after any loss and re-issues LISTEN. Notifications sent while it was
// disconnected are lost, so after every (re)connect it calls the resync hook: consumers re-read
// the tables they care about instead of trusting the notification stream.
import {EventEmitter} from 'node:events';
import type pg from 'pg';
import {newClient, type ConnectionSettings} from './scram-client.js';

export interface Notification {
  channel: string;
  payload: string;
}

export interface ListenerOptions {
  /** Connection settings for the dedicated client. */
  connection: ConnectionSettings;
  channels: string[];
  /** Called after the first connect and after every reconnect, once LISTEN is active again. */
  onResync?: (reconnect: boolean) => void | Promise<void>;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * Events: 'notification' (Notification), 'ready' (reconnect: boolean), 'disconnected' (Error),
 * 'error' (Error from the resync hook).
 */
export class PgListener extends EventEmitter {
  private client: pg.Client | null = null;
  private stopped = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;
  private everConnected = false;
  private readonly channels: Set<string>;

  constructor(private readonly options: ListenerOptions) {
    super();
    this.channels = new Set(options.channels);
  }

  get connected(): boolean {
    return this.client !== null;
  }

  /** Resolves after the first successful connect (retrying until then). */
  async start(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.once('ready', () => resolve());
      void this.connect();
    });
  }

  async listen(channel: string): Promise<void> {
    this.channels.add(channel);
    if (this.client) await this.client.query(`LISTEN ${quoteIdent(channel)}`);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = newClient(this.options.connection);
    let lost = false;
    const onLost = (err: Error) => {
      if (lost) return;
      lost = true;
      if (this.client === client) this.client = null;
      client.removeAllListeners('notification');
      void client.end().catch(() => {});
      if (this.stopped) return;
      this.emit('disconnected', err);
      this.schedule();
    };
    client.on('error', onLost);
    client.on('end', () => onLost(new Error('connection ended')));
    client.on('notification', (n) => this.emit('notification', {channel: n.channel, payload: n.payload ?? ''}));
    try {
      await client.connect();
      for (const ch of this.channels) await client.query(`LISTEN ${quoteIdent(ch)}`);
    } catch (e) {
      onLost(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (lost) return;
    if (this.stopped) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.attempt = 0;
    const reconnect = this.everConnected;
    this.everConnected = true;
    try {
      await this.options.onResync?.(reconnect);
    } catch (e) {
      this.emit('error', e instanceof Error ? e : new Error(String(e)));
    }
    this.emit('ready', reconnect);
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    const min = this.options.minBackoffMs ?? 250;
    const max = this.options.maxBackoffMs ?? 10000;
    const delay = Math.min(max, min * 2 ** this.attempt);
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const c = this.client;
    this.client = null;
    if (c) await c.end().catch(() => {});
  }

  /** The backend pid of the live LISTEN connection (for diagnostics and tests). */
  async backendPid(): Promise<number | null> {
    if (!this.client) return null;
    const {rows} = await this.client.query('SELECT pg_backend_pid() AS pid');
    return rows[0].pid as number;
  }
}

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}
