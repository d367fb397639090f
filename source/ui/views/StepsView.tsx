// Running steps (`3`): busy steps grouped by machine, oldest first, coloured by phase; transfer
// phases turn orange after 5 min and red after 1 h, building past 80 % of the timeout.
import React from 'react';
import type {Column, Row} from '../components/Table.js';
import type {RunningStep} from '../state/types.js';
import {ViewTable} from './ViewTable.js';
import {drvName, formatDuration} from '../format.js';
import {ageColor, phaseStyle} from '../theme.js';
import type {ViewProps} from './common.js';
import {ageSec} from './common.js';
import {ErrorLines} from './ErrorLines.js';

export const STEP_COLUMNS: Column[] = [
  {title: 'machine', width: 14, flex: false},
  {title: 'build', width: 8, align: 'right'},
  {title: 'step', width: 4, align: 'right', drop: 4},
  {title: 'job', width: 14, flex: true, min: 8},
  {title: 'drv', width: 18, drop: 3},
  {title: 'phase', width: 12},
  {title: 'in phase', width: 8, align: 'right', drop: 1},
  {title: 'total', width: 7, align: 'right', drop: 2},
];

export function StepsView(p: ViewProps): React.ReactElement {
  const l = p.state.steps;
  if (l.error) {
    return <ErrorLines error={l.error} theme={p.theme} height={p.height} />;
  }
  const row = (s: RunningStep, k: number): Row => {
    // Grouped by machine: the name only where it changes.
    const prev = l.rows[k - 1];
    const ph = phaseStyle(p.theme, s.busy);
    const phaseAge = s.phaseSince !== null ? Math.max(0, (p.now - s.phaseSince) / 1000) : null;
    const total = ageSec(p.now, s.starttime);
    const aged = ageColor(s.busy, phaseAge, s.timeout, total);
    return {
      key: `${s.build}/${s.stepnr}`,
      cells: [
        {text: prev && prev.machine === s.machine ? '' : s.machine, bold: true},
        String(s.build),
        String(s.stepnr),
        s.job,
        drvName(s.drvpath),
        {text: `${ph.glyph} ${ph.label}`, color: aged ?? ph.color},
        {text: phaseAge === null ? '?' : formatDuration(phaseAge), color: aged},
        formatDuration(total),
      ],
    };
  };
  const empty = !l.loaded ? 'loading…' : p.state.filters.steps ? 'no running step matches the filter' : 'no step is running';
  return <ViewTable view={p} columns={STEP_COLUMNS} rows={l.rows} top={l.top} selected={l.selected} row={row} empty={empty} />;
}
