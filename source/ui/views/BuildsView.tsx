// Builds (`2`, `:builds`, `:queue`): a window onto the Builds table, keyset-paged from SQL.
import React from 'react';
import type {Column, Row} from '../components/Table.js';
import {ViewTable} from './ViewTable.js';
import {formatDuration} from '../format.js';
import {glyphs, statusStyle} from '../theme.js';
import type {BuildListRow} from '../state/types.js';
import {ageSec, type ViewProps} from './common.js';
import {ErrorLines} from './ErrorLines.js';

export const BUILD_COLUMNS: Column[] = [
  {title: 'id', width: 8, align: 'right'},
  {title: 'project:jobset', width: 18, drop: 3},
  {title: 'job', width: 16, flex: true, min: 8},
  {title: 'system', width: 13, drop: 5},
  {title: 'status', width: 13},
  {title: 'prio', width: 5, align: 'right', drop: 6},
  {title: 'age', width: 7, align: 'right', drop: 2},
  {title: 'duration', width: 8, align: 'right', drop: 4},
  {title: 'machine', width: 12, drop: 7},
];

export function buildRow(b: BuildListRow, p: ViewProps, marked: boolean): Row {
  const st = statusStyle(p.theme, {finished: b.finished === 1, buildstatus: b.buildstatus, busy: b.busy, cached: b.iscachedbuild === 1});
  const up = glyphs(p.theme).up;
  const duration = b.starttime && b.stoptime ? b.stoptime - b.starttime : b.starttime && b.finished === 0 ? ageSec(p.now, b.starttime) : null;
  return {
    key: b.id,
    marked,
    cells: [
      String(b.id),
      `${b.project}:${b.jobset}`,
      b.job,
      b.system,
      {text: `${st.glyph} ${st.label}`, color: st.color, dim: st.dim},
      {text: `${b.globalpriority > 0 ? up : ''}${b.priority}`, bold: b.globalpriority > 0},
      formatDuration(ageSec(p.now, b.timestamp)),
      formatDuration(duration),
      b.machine ?? '',
    ],
  };
}

export function BuildsView(p: ViewProps): React.ReactElement {
  const w = p.state.builds;
  const marks = new Set(p.state.marks);
  if (w.error) {
    return <ErrorLines error={w.error} theme={p.theme} height={p.height} hint="/ edits the filter · esc clears it" />;
  }
  const empty = !w.loaded ? 'loading…' : p.state.filters.builds ? 'no builds match the filter' : p.state.order === 'queue' ? 'the queue is empty' : p.state.order === 'stoptime' ? 'no finished builds' : 'no builds';
  return <ViewTable view={p} columns={BUILD_COLUMNS} rows={w.rows} offset={w.offset} top={w.top} selected={w.selected} row={(b) => buildRow(b, p, p.state.markAll !== null || marks.has(b.id))} empty={empty} marks />;
}
