// `hydra-ops watch`: live events as NDJSON, one JSON object per line, from the runner's NOTIFY channels
// (docs/hydra-compat.md, "NOTIFY channels") plus polled busy-phase changes (phase updates send no NOTIFY). Runs until
// interrupted (SIGINT/SIGTERM → exit 0). After a lost database connection it reconnects, prints a
// `resync` event (notifications sent meanwhile are lost) and carries on.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {printNdjson} from '../output.js';
import {PgListener, type Notification} from '../../db/listener.js';
import type {Queryable} from '../../db/queryable.js';
import {parseId} from '../acting.js';
import {parseLimit} from './audit.js';
import {phaseName} from './read.js';

const RUNNER_CHANNELS = ['build_started', 'step_started', 'step_finished', 'build_finished'] as const;
const QUEUE_CHANNELS = ['builds_added', 'builds_restarted', 'builds_cancelled', 'builds_deleted', 'builds_bumped'] as const;

export type WatchEvent =
  | {event: 'build_started'; time: number; build: number}
  | {event: 'step_started'; time: number; build: number; stepnr: number}
  | {event: 'step_phase'; time: number; build: number; stepnr: number; busy: number; phase: string}
  | {event: 'step_finished'; time: number; build: number; stepnr: number; logPath: string | null; status: number | null}
  | {event: 'build_finished'; time: number; build: number; dependents: number[]; buildstatus: number | null}
  | {event: 'queue_changed'; time: number; channel: string; payload: string | null}
  | {event: 'resync'; time: number};

const nowS = () => Math.floor(Date.now() / 1000);
const int = (s: string | undefined): number | null => (s !== undefined && /^[0-9]+$/.test(s) ? Number(s) : null);

/** Turns one notification into an event (null when the payload is malformed). */
export async function eventOf(db: Queryable, n: Notification): Promise<WatchEvent | null> {
  const f = n.payload.split('\t');
  const time = nowS();
  switch (n.channel) {
    case 'build_started': {
      const build = int(f[0]);
      return build === null ? null : {event: 'build_started', time, build};
    }
    case 'step_started': {
      const build = int(f[0]);
      const stepnr = int(f[1]);
      return build === null || stepnr === null ? null : {event: 'step_started', time, build, stepnr};
    }
    case 'step_finished': {
      const build = int(f[0]);
      const stepnr = int(f[1]);
      if (build === null || stepnr === null) return null;
      const log = f[2];
      const {rows} = await db.query<{status: number | null}>('SELECT status FROM BuildSteps WHERE build = $1 AND stepnr = $2', [build, stepnr]);
      return {event: 'step_finished', time, build, stepnr, logPath: log && log !== '-' ? log : null, status: rows[0]?.status ?? null};
    }
    case 'build_finished': {
      const ids = f.map(int);
      if (ids.length === 0 || ids.some((x) => x === null)) return null;
      const [build, ...dependents] = ids as number[];
      const {rows} = await db.query<{buildstatus: number | null}>('SELECT buildstatus FROM Builds WHERE id = $1', [build]);
      return {event: 'build_finished', time, build: build!, dependents, buildstatus: rows[0]?.buildstatus ?? null};
    }
    default:
      return {event: 'queue_changed', time, channel: n.channel, payload: n.payload === '' ? null : n.payload};
  }
}

function concerns(e: WatchEvent, build: number | null): boolean {
  if (build === null) return true;
  if (e.event === 'queue_changed' || e.event === 'resync') return true;
  if (e.event === 'build_finished') return e.build === build || e.dependents.includes(build);
  return e.build === build;
}

export function registerWatchCommands(program: Command, ctx: AppContext): void {
  program
    .command('watch')
    .description('stream live events as NDJSON: builds and steps started/finished, step phase changes, queue changes')
    .option('--build <id>', 'only events of this build (queue events are always shown)')
    .option('--poll-ms <ms>', 'how often running steps are polled for phase changes (default 1000)')
    .addHelpText(
      'after',
      '\nOne JSON object per line; "event" is one of build_started, step_started, step_phase, step_finished,\n' +
        'build_finished, queue_changed, resync. Runs until interrupted.\n\nExamples:\n  hydra-ops watch\n  hydra-ops watch --build 123 | jq -c \'select(.event == "step_phase")\'\n',
    )
    .action(async (opts: {build?: string; pollMs?: string}) => {
      const build = opts.build === undefined ? null : parseId(opts.build, 'build id');
      const pollMs = opts.pollMs === undefined ? 1000 : parseLimit(opts.pollMs, 1000, 60_000);
      const db = await ctx.database();
      const emit = (e: WatchEvent | null) => {
        if (e && concerns(e, build)) printNdjson(e);
      };
      // Events are printed in arrival order: each notification is enriched in turn.
      let chain: Promise<void> = Promise.resolve();
      const phases = new Map<string, number>();
      let baseline = false;
      const poll = async () => {
        const {rows} = await db.pool.query<{build: number; stepnr: number; busy: number}>('SELECT build, stepnr, busy FROM BuildSteps WHERE busy != 0');
        const seen = new Set<string>();
        for (const r of rows) {
          const key = `${r.build}/${r.stepnr}`;
          seen.add(key);
          if (phases.get(key) !== r.busy) {
            phases.set(key, r.busy);
            if (baseline) emit({event: 'step_phase', time: nowS(), build: r.build, stepnr: r.stepnr, busy: r.busy, phase: phaseName(r.busy)});
          }
        }
        for (const key of phases.keys()) if (!seen.has(key)) phases.delete(key);
        baseline = true;
      };
      const listener = new PgListener({
        connection: db.connection,
        channels: [...RUNNER_CHANNELS, ...QUEUE_CHANNELS],
        onResync: (reconnect) => {
          if (reconnect) emit({event: 'resync', time: nowS()});
        },
      });
      listener.on('notification', (n: Notification) => {
        chain = chain.then(async () => emit(await eventOf(db.pool, n))).catch((e) => {
          process.stderr.write(`hydra-ops: watch: ${e instanceof Error ? e.message : String(e)}\n`);
        });
      });
      listener.on('disconnected', (e: Error) => process.stderr.write(`hydra-ops: watch: connection lost (${e.message}); reconnecting\n`));
      await listener.start();
      await poll();
      process.stderr.write('hydra-ops: watching (Ctrl-C to stop)\n');
      await new Promise<void>((resolve) => {
        let polling = false;
        const timer = setInterval(() => {
          if (polling) return;
          polling = true;
          chain = chain
            .then(poll)
            .catch((e) => {
              process.stderr.write(`hydra-ops: watch: ${e instanceof Error ? e.message : String(e)}\n`);
            })
            .finally(() => {
              polling = false;
            });
        }, pollMs);
        const stop = () => {
          clearInterval(timer);
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await listener.stop();
      await chain;
    });
}
