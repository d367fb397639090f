// Machines (`4`): state, jobs/maxJobs and its strip over the last hour (one column a minute, ▁ idle … █ full,
// blank: not sampled), last ping, speed factor, score, systems, features, load, failures, back-off countdown,
// drain, last error; below the table the selected machine in full, its whole last error and the fixes included.
import React from 'react';
import type {Cell, Column, Row} from '../components/Table.js';
import {ViewTable} from './ViewTable.js';
import {sparkline} from '../components/Sparkline.js';
import {Box} from 'ink';
import {Text} from '../components/Text.js';
import {formatDuration, truncate, wrapText} from '../format.js';
import {glyphs, paint} from '../theme.js';
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

/** The selected machine in full, below the table: its strip, its last ping, and its whole last error (a
 * `localhost` that cannot build: the problem and each command that fixes it), wrapped to the width. */
export function machineDetailLines(m: MachineRow, p: ViewProps): {text: string; color?: string; dim?: boolean}[] {
  const u = p.theme.unicode;
  const sep = u ? ' · ' : ' | ';
  const features = [...m.supportedFeatures, ...m.mandatoryFeatures.map((f) => `${f} (mandatory)`)];
  const head = [`${m.name} (${m.uri})`, m.state, `jobs ${m.currentJobs ?? '?'}/${m.maxJobs}`, `systems ${m.systems.join(', ') || 'none'}`, features.length ? `features ${features.join(', ')}` : ''];
  const ping = m.lastPing ? `last ping ${formatDuration(Math.max(0, (p.now - m.lastPing.at) / 1000))} ago${m.lastPing.ok === null ? '' : m.lastPing.ok ? ', usable' : ', UNUSABLE'}` : 'not pinged (i pings it)';
  const strip = m.usage ? `jobs/maxJobs, last hour ${sparkline(m.usage, Math.min(60, Math.max(10, p.width - 50)), p.theme, {max: 1})}` : 'jobs/maxJobs, last hour: no sample yet';
  const out: {text: string; color?: string; dim?: boolean}[] = [
    ...wrapText(head.filter(Boolean).join(sep), p.width, '  ').map((text) => ({text})),
    ...wrapText(`${strip}${sep}${ping}`, p.width, '  ').map((text) => ({text, dim: true})),
  ];
  if (m.lastError) {
    const [first = '', ...rest] = m.lastError.split('\n');
    for (const text of wrapText(`last error: ${first}`, p.width, '  ')) out.push({text, color: 'red'});
    for (const l of rest) for (const text of wrapText(`  ${l.trim()}`, p.width, '       ')) out.push({text, color: /^\s*fix:/.test(l) ? 'yellow' : 'red'});
  }
  return out;
}

export function MachinesView(p: ViewProps): React.ReactElement {
  const l = p.state.machines;
  if (l.error) {
    return <ErrorLines error={l.error} theme={p.theme} height={p.height} />;
  }
  const selected = l.rows[l.selected];
  // Below the table: the selected machine in full. The table keeps its rows up to half the view (at least three
  // lines); the detail has the rest.
  const all = selected ? machineDetailLines(selected, p) : [];
  const tableWants = Math.max(3, Math.min(l.rows.length + 1, Math.floor(p.height / 2)));
  const detailHeight = all.length ? Math.min(all.length + 1, Math.max(0, p.height - tableWants)) : 0;
  const detail = all.slice(0, Math.max(0, detailHeight - 1));
  const tableHeight = p.height - detailHeight;
  const visible = Math.max(1, tableHeight - 1);
  // The list scrolls for the whole body; with the detail below, keep the selection in the rows shown.
  const top = Math.max(0, Math.min(l.top, l.selected), l.selected - visible + 1);
  const row = (m: MachineRow): Row => {
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
        // The first line; the whole text is below the table.
        (m.lastError ?? '').split('\n')[0]!,
      ],
    };
  };
  const ell = glyphs(p.theme).ellipsis;
  const empty = !l.loaded ? 'loading…' : p.state.filters.machines ? 'no machine matches the filter' : 'no machines are configured';
  return (
    <Box flexDirection="column" height={p.height}>
      <ViewTable view={p} columns={MACHINE_COLUMNS} rows={l.rows} top={top} selected={l.selected} row={row} height={tableHeight} empty={empty} />
      {detail.length ? <Text dimColor>{(p.theme.unicode ? '─' : '-').repeat(Math.max(0, p.width - 1))}</Text> : null}
      {detail.map((d, i) => (
        <Text key={i} wrap="truncate" color={paint(p.theme, d.color)} dimColor={d.dim}>
          {truncate(d.text, p.width, ell)}
        </Text>
      ))}
    </Box>
  );
}
