// Jobsets (`5`): scheduling shares, share used (from the runner), queued / running builds.
import React from 'react';
import type {Column, Row} from '../components/Table.js';
import {ViewTable} from './ViewTable.js';
import {formatCount, formatDuration} from '../format.js';
import type {JobsetShare} from '../state/types.js';
import {ageSec, type ViewProps} from './common.js';

export const JOBSET_COLUMNS: Column[] = [
  {title: 'project:jobset', width: 20, flex: true, min: 10},
  {title: 'shares', width: 6, align: 'right'},
  {title: 'used', width: 7, align: 'right', drop: 3},
  {title: 'queued', width: 8, align: 'right'},
  {title: 'running', width: 7, align: 'right'},
  {title: 'oldest', width: 7, align: 'right', drop: 2},
];

export function jobsetRow(j: JobsetShare, p: ViewProps): Row {
  return {
    key: `${j.project}:${j.name}`,
    dim: j.enabled === 0,
    cells: [
      `${j.project}:${j.name}${j.enabled === 0 ? ' (disabled)' : ''}`,
      String(j.shares),
      j.shareUsed === null ? '' : j.shareUsed.toFixed(2),
      formatCount(j.queued, p.theme.unicode),
      formatCount(j.running, p.theme.unicode),
      formatDuration(ageSec(p.now, j.oldest)),
    ],
  };
}

export function JobsetsView(p: ViewProps): React.ReactElement {
  const l = p.state.jobsets;
  return <ViewTable view={p} columns={JOBSET_COLUMNS} rows={l.rows} top={l.top} selected={l.selected} row={(j) => jobsetRow(j, p)} empty={!l.loaded ? 'loading…' : (l.error ?? 'no jobsets')} />;
}
