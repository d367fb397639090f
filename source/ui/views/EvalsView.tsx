// Evals (`8`, `:evals`): evaluations newest first, keyset-paged from JobsetEvals, with their member
// counts (builds · new · succeeded · failed · queued) and the evaluation error, if any.
import React from 'react';
import {Table, type Column, type Row} from '../components/Table.js';
import {formatCount, formatDuration} from '../format.js';
import {glyphs} from '../theme.js';
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
  const visible = Math.max(0, p.height - 1);
  const start = Math.max(0, w.top - w.offset);
  const rows: Row[] = w.rows.slice(start, start + visible).map((e) => ({
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
  }));
  return (
    <Table
      columns={EVAL_COLUMNS}
      rows={rows}
      selected={w.selected - w.top}
      width={p.width}
      height={p.height}
      theme={p.theme}
      ellipsis={glyphs(p.theme).ellipsis}
      empty={!w.loaded ? 'loading…' : p.state.filters.evals ? 'no evaluation matches the filter' : 'no evaluations yet'}
    />
  );
}
