// Evals (`8`, `:evals`): evaluations newest first, keyset-paged from JobsetEvals, with their member
// counts (builds · new · succeeded · failed · queued) and the evaluation error, if any.
import React from 'react';
import type {Column, Row} from '../components/Table.js';
import type {EvalEntry} from '../state/types.js';
import {ViewTable} from './ViewTable.js';
import {formatCount, formatDuration} from '../format.js';
import {ageSec, type ViewProps} from './common.js';
import {ErrorLines} from './ErrorLines.js';

export const EVAL_COLUMNS: Column[] = [
  {title: 'id', width: 7, align: 'right'},
  {title: 'project:jobset', width: 18, flex: true, min: 10},
  {title: 'time', width: 6, align: 'right'},
  {title: 'builds', width: 6, align: 'right'},
  {title: 'new', width: 5, align: 'right', drop: 2},
  {title: 'succeeded', width: 9, align: 'right', drop: 3},
  {title: 'failed', width: 6, align: 'right'},
  {title: 'queued', width: 6, align: 'right'},
  {title: 'error', width: 20, drop: 5},
];

export function EvalsView(p: ViewProps): React.ReactElement {
  const w = p.state.evals;
  const u = p.theme.unicode;
  if (w.error) {
    return <ErrorLines error={w.error} theme={p.theme} height={p.height} hint="/ edits the filter · esc clears it" />;
  }
  const row = (e: EvalEntry): Row => ({
    key: e.id,
    cells: [
      String(e.id),
      `${e.project}:${e.jobset}`,
      formatDuration(ageSec(p.now, e.timestamp)),
      formatCount(e.builds, u),
      formatCount(e.new, u),
      {text: formatCount(e.succeeded, u), color: e.succeeded > 0 ? 'green' : undefined},
      {text: formatCount(e.failed, u), color: e.failed > 0 ? 'red' : undefined},
      {text: formatCount(e.queued, u), color: e.queued > 0 ? 'blue' : undefined},
      {text: e.error ?? (e.hasnewbuilds === 0 ? '(no changes)' : ''), color: e.error ? 'red' : undefined, dim: !e.error},
    ],
  });
  const empty = !w.loaded ? 'loading…' : p.state.filters.evals ? 'no evaluation matches the filter' : 'no evaluations yet';
  return <ViewTable view={p} columns={EVAL_COLUMNS} rows={w.rows} offset={w.offset} top={w.top} selected={w.selected} row={row} empty={empty} />;
}
