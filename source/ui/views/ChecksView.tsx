// Reproducibility checks (`6`): hydra_ops.repro_checks, newest first.
import React from 'react';
import {Box} from 'ink';
import {Text} from '../components/Text.js';
import type {Column, Row} from '../components/Table.js';
import type {CheckEntry} from '../state/types.js';
import {ViewTable} from './ViewTable.js';
import {drvName} from '../format.js';
import type {ViewProps} from './common.js';

const COLUMNS: Column[] = [
  {title: 'drv', width: 20, flex: true, min: 10},
  {title: 'build', width: 8, align: 'right', drop: 3},
  {title: 'verdict', width: 16},
  {title: 'machines', width: 20, drop: 2},
  {title: 'differing', width: 14, drop: 1},
  {title: 'started', width: 19, drop: 4},
];

const VERDICT: Record<string, {color?: string; glyph: [string, string]}> = {
  reproducible: {color: 'green', glyph: ['✔', 'ok']},
  'not-reproducible': {color: '#ff8700', glyph: ['≠', '~']},
  'check-failed': {color: 'red', glyph: ['⚠', '!!']},
  unchecked: {glyph: ['?', '?']},
  running: {color: 'yellow', glyph: ['⏵', '>']},
};

export function ChecksView(p: ViewProps): React.ReactElement {
  const w = p.state.checks;
  if (w.loaded && w.rows.length === 0 && !w.error) {
    return (
      <Box flexDirection="column" height={p.height}>
        <Text bold>No reproducibility checks recorded.</Text>
        <Text wrap="wrap">
          A check rebuilds a derivation (on another machine when one is available), keeps both outputs and records a verdict here: reproducible,
          not reproducible (with the differing outputs), or check failed. Builds that were never checked are "unchecked", not "unreproducible".
        </Text>
        <Text dimColor wrap="wrap">
          {p.state.caps?.checks ? `c: ${p.state.caps.checks}` : 'Select a build and press c to request a check.'}
        </Text>
      </Box>
    );
  }
  const row = (c: CheckEntry): Row => {
    const v = VERDICT[c.verdict] ?? {glyph: ['?', '?'] as [string, string]};
    return {
      key: c.id,
      cells: [
        drvName(c.drvPath),
        c.build === null ? '' : String(c.build),
        {text: `${v.glyph[p.theme.unicode ? 0 : 1]} ${c.verdict}`, color: v.color},
        [c.originalMachine, c.checkMachine].filter(Boolean).join(' vs '),
        c.differing.join(','),
        c.startedAt ?? '',
      ],
    };
  };
  return <ViewTable view={p} columns={COLUMNS} rows={w.rows} offset={w.offset} top={w.top} selected={w.selected} row={row} empty={w.error ?? 'loading…'} />;
}
