// Overview (`1`): queues per system (queued with its sparkline over the last hour, runnable, running, capacity,
// wait) and per jobset (queued, running, share used, oldest), with sparklines of the whole queue's length and of
// throughput over the last hour.
import React from 'react';
import {Box} from 'ink';
import {Text} from '../components/Text.js';
import {Table, type Column, type Row} from '../components/Table.js';
import {sparkline} from '../components/Sparkline.js';
import {formatCount, formatDuration} from '../format.js';
import {glyphs, paint} from '../theme.js';
import {jobsetRow, JOBSET_COLUMNS} from './JobsetsView.js';
import type {ViewProps} from './common.js';

const SYSTEM_COLUMNS: Column[] = [
  {title: 'system', width: 18, flex: true, min: 10},
  {title: 'queued', width: 8, align: 'right'},
  {title: 'last hour', width: 12, drop: 2},
  {title: 'runnable', width: 8, align: 'right'},
  {title: 'running', width: 7, align: 'right'},
  {title: 'capacity', width: 8, align: 'right'},
  {title: 'avg wait', width: 8, align: 'right', drop: 1},
];

export function OverviewView(p: ViewProps): React.ReactElement {
  const o = p.state.overview;
  if (!o) return <Text dimColor>loading…</Text>;
  const u = p.theme.unicode;
  const half = Math.floor((p.width - 4) / 2);
  const labelW = 22;
  const sparkW = Math.max(8, half - labelW);
  const q = o.queueHistory;
  const lastQ = q.length ? q[q.length - 1]! : 0;
  const lastT = o.throughput.length ? o.throughput[o.throughput.length - 1]! : 0;
  const totalT = o.throughput.reduce((a, b) => a + b, 0);
  const sysRows: Row[] = o.systems.map((s) => ({
    key: s.system,
    cells: [
      s.system,
      formatCount(s.queued, u),
      s.history ? {text: '', color: 'blue', fit: (w: number) => sparkline(s.history!, w, p.theme)} : '',
      formatCount(s.runnable, u),
      formatCount(s.running, u),
      {text: String(s.capacity), color: s.capacity === 0 && (s.runnable > 0 || s.queued > 0) ? 'red' : undefined},
      formatDuration(s.avgWait),
    ],
  }));
  const sparkLines = p.width >= 2 * (labelW + 8) ? 1 : 2;
  const rest = Math.max(2, p.height - sparkLines - 1);
  const sysHeight = Math.min(sysRows.length + 1, Math.max(2, Math.floor(rest / 2)));
  const jsHeight = Math.max(2, rest - sysHeight);
  const sel = p.state.overviewSelected;
  const jsTop = Math.max(0, sel - (jsHeight - 2));
  const ql = (
    <Text>
      {'queue '}
      <Text color={paint(p.theme, 'blue')}>{sparkline(q, sparkW, p.theme)}</Text>
      {` ${formatCount(lastQ, u)}`.padEnd(8)}
    </Text>
  );
  const tl = (
    <Text>
      {'built/min '}
      <Text color={paint(p.theme, 'green')}>{sparkline(o.throughput, sparkW, p.theme)}</Text>
      {` ${lastT} (${formatCount(totalT, u)}/h)`}
    </Text>
  );
  return (
    <Box flexDirection="column" height={p.height}>
      {sparkLines === 1 ? (
        <Text wrap="truncate">
          {ql}
          {'  '}
          {tl}
        </Text>
      ) : (
        <>
          <Text wrap="truncate">{ql}</Text>
          <Text wrap="truncate">{tl}</Text>
        </>
      )}
      <Table columns={SYSTEM_COLUMNS} rows={sysRows} selected={-1} width={p.width} height={sysHeight} theme={p.theme} ellipsis={glyphs(p.theme).ellipsis} empty="nothing queued" />
      <Table
        columns={JOBSET_COLUMNS}
        rows={o.jobsets.slice(jsTop, jsTop + jsHeight - 1).map((j) => jobsetRow(j, p))}
        selected={sel - jsTop}
        width={p.width}
        height={jsHeight}
        theme={p.theme}
        ellipsis={glyphs(p.theme).ellipsis}
        empty="no jobset has queued builds"
      />
    </Box>
  );
}
