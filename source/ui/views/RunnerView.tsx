// Runner (`:runner`): the scheduler's internals — dispatch rounds and time, ingestion, queue
// wake-ups, the database pool, retries, unsupported steps — from whichever runner the header names
// (in-process scheduler, a hydra-ops daemon's or the Rust runner's REST `/status`, or the C++
// runner's SystemStatus dump). A counter the runner does not publish shows as "—".
import React from 'react';
import {Box} from 'ink';
import {Text} from '../components/Text.js';
import {formatCount, formatDuration, pad} from '../format.js';
import type {RunnerStats} from '../state/types.js';
import type {ViewProps} from './common.js';

const dash = '—';

function n(v: number | null | undefined, u: boolean): string {
  return v === null || v === undefined ? dash : formatCount(Math.round(v), u);
}

function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return dash;
  return v >= 10_000 ? formatDuration(v / 1000) : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`;
}

/** The view's lines as label/value pairs (also what the tests read). */
export function runnerLines(r: RunnerStats, u: boolean, now: number): [string, string][] {
  const d = r.dispatch;
  const i = r.ingest;
  const pool = r.dbPool;
  return [
    ['source', `${r.source}${r.at ? ` · data ${formatDuration(Math.max(0, (now - r.at) / 1000))} old` : ''}`],
    ['uptime', r.uptimeSec === null ? dash : formatDuration(r.uptimeSec)],
    ['dispatch rounds', `${n(d.rounds, u)} · total ${ms(d.totalMs)} · avg ${ms(d.avgMs)} · last ${ms(d.lastMs)}`],
    ['dispatcher busy', d.busyShare === null ? dash : `${Math.round(d.busyShare * 100)} % of the time running`],
    [
      'ingestion',
      `${n(i.buildsRead, u)} builds read${i.readMs !== null && i.buildsRead ? ` · ${ms(i.readMs / i.buildsRead)} per build` : ''}${i.perSec !== null ? ` · ${i.perSec.toFixed(1)}/s now` : ''}`,
    ],
    ['backlog', i.backlog && i.backlog.total > 0 ? `loaded ${n(i.backlog.done, u)} / ${n(i.backlog.total, u)} builds` : dash],
    ['queue wake-ups', n(r.queueWakeups, u)],
    ['DB pool', pool ? `${pool.total} open · ${pool.idle} idle · ${pool.total - pool.idle} in use${pool.waiting !== null ? ` · ${pool.waiting} waiting` : ''}` : dash],
    ['retries', `${n(r.retries.count, u)} · most for one step ${n(r.retries.max, u)}`],
    ['unsupported', `${n(r.unsupported.steps, u)} steps without a capable machine · ${n(r.unsupported.aborted, u)} failed as unsupported`],
    ['steps', `${n(r.steps.active, u)} active · ${n(r.steps.runnable, u)} runnable · ${n(r.steps.unfinished, u)} unfinished · ${n(r.steps.started, u)} started · ${n(r.steps.done, u)} done`],
  ];
}

export function RunnerView(p: ViewProps): React.ReactElement {
  const r = p.state.runnerStats;
  if (!r.loaded) return <Text dimColor>loading…</Text>;
  if (r.error) return <Text color={p.theme.color ? 'red' : undefined}>runner: {r.error}</Text>;
  if (!r.data) {
    return (
      <Box flexDirection="column">
        <Text>no runner data: no queue runner is running or publishing its status.</Text>
        <Text dimColor>start one with `hydra-ops --daemon`, or open the console with --scheduler</Text>
      </Box>
    );
  }
  const lines = runnerLines(r.data, p.theme.unicode, p.now).slice(0, Math.max(1, p.height));
  return (
    <Box flexDirection="column" height={p.height}>
      {lines.map(([k, v]) => (
        <Text key={k} wrap="truncate">
          <Text bold>{pad(k, 16)}</Text> {v}
        </Text>
      ))}
    </Box>
  );
}
