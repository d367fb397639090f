// Machines (`4`): state, jobs/maxJobs and its strip over the last hour (one column a minute, ▁ idle … █ full,
// blank: not sampled), speed factor, score, systems, features, load, failures, back-off countdown, drain, last error.
import React from 'react';
import {Table, type Cell, type Column, type Row} from '../components/Table.js';
import {sparkline} from '../components/Sparkline.js';
import {formatDuration} from '../format.js';
import {glyphs} from '../theme.js';
import type {MachineRow} from '../state/types.js';
import type {ViewProps} from './common.js';
import {ErrorLines} from './ErrorLines.js';

export const MACHINE_COLUMNS: Column[] = [
  {title: 'machine', width: 16, flex: true, min: 10},
  {title: 'state', width: 8},
  {title: 'jobs', width: 6, align: 'right'},
  {title: 'last hour', width: 12, drop: 3.5},
  {title: 'ping', width: 9, drop: 4.2},
  {title: 'speed', width: 5, align: 'right', drop: 4},
  {title: 'score', width: 6, align: 'right', drop: 5},
  {title: 'systems', width: 14, drop: 3},
  {title: 'features', width: 14, drop: 6},
  {title: 'load', width: 5, align: 'right', drop: 8},
  {title: 'fails', width: 5, align: 'right', drop: 2},
  {title: 'backoff', width: 8, align: 'right', drop: 1},
  {title: 'last error', width: 24, drop: 7},
];

function stateColor(m: MachineRow): {color?: string; dim?: boolean} {
  switch (m.state) {
    case 'drained':
    case 'removed':
      return {color: 'gray', dim: true};
    case 'backoff':
      return {color: 'red'};
    case 'full':
      return {color: 'yellow'};
    case 'busy':
      return {color: 'green'};
    default:
      return {};
  }
}

/** jobs/maxJobs over the last hour on a fixed scale (full = every slot busy), resampled to the column. */
export function usageCell(m: MachineRow, p: ViewProps): Cell {
  const usage = m.usage;
  if (!usage) return {text: '', dim: true};
  return {text: '', color: 'green', fit: (width) => sparkline(usage, width, p.theme, {max: 1})};
}

/** How long ago the machine was last pinged, and its verdict when known (`i` here, or the runner's own pings). */
export function pingCell(m: MachineRow, p: ViewProps): Cell {
  const ping = m.lastPing;
  if (!ping) return {text: ''};
  const u = p.theme.unicode;
  const verdict = ping.ok === null ? '' : ping.ok ? (u ? ' ✔' : ' ok') : u ? ' ✖' : ' x';
  return {text: `${formatDuration(Math.max(0, (p.now - ping.at) / 1000))}${verdict}`, color: ping.ok === false ? 'red' : undefined};
}

export function MachinesView(p: ViewProps): React.ReactElement {
  const l = p.state.machines;
  if (l.error) {
    return <ErrorLines error={l.error} theme={p.theme} height={p.height} />;
  }
  const visible = Math.max(0, p.height - 1);
  const rows: Row[] = l.rows.slice(l.top, l.top + visible).map((m) => {
    const sc = stateColor(m);
    const until = m.disabledUntil > p.now ? formatDuration((m.disabledUntil - p.now) / 1000) : '';
    return {
      key: m.uri,
      color: sc.color,
      dim: sc.dim,
      cells: [
        m.name,
        {text: m.state, color: sc.color},
        `${m.currentJobs ?? '?'}/${m.maxJobs}`,
        usageCell(m, p),
        pingCell(m, p),
        String(m.speedFactor),
        m.score === null ? '' : m.score.toFixed(2),
        m.systems.join(','),
        [...m.supportedFeatures, ...m.mandatoryFeatures.map((f) => `${f}!`)].join(','),
        m.load1 === null ? '' : m.load1.toFixed(1),
        String(m.consecutiveFailures),
        until,
        m.lastError ?? '',
      ],
    };
  });
  return (
    <Table
      columns={MACHINE_COLUMNS}
      rows={rows}
      selected={l.selected - l.top}
      width={p.width}
      height={p.height}
      theme={p.theme}
      ellipsis={glyphs(p.theme).ellipsis}
      empty={!l.loaded ? 'loading…' : p.state.filters.machines ? 'no machine matches the filter' : 'no machines are configured'}
    />
  );
}
