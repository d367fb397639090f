// Audit log (`7`, `:audit`): every action taken or refused, newest first.
import React from 'react';
import {Table, type Column, type Row} from '../components/Table.js';
import {glyphs} from '../theme.js';
import type {ViewProps} from './common.js';

const COLUMNS: Column[] = [
  {title: 'time', width: 19, drop: 3},
  {title: 'who', width: 12},
  {title: 'action', width: 13},
  {title: 'scope', width: 16, flex: true, min: 8},
  {title: 'targets', width: 7, align: 'right', drop: 2},
  {title: 'changed', width: 7, align: 'right'},
  {title: 'outcome', width: 8},
  {title: 'message', width: 24, drop: 1},
];

export function AuditView(p: ViewProps): React.ReactElement {
  const w = p.state.audit;
  const visible = Math.max(0, p.height - 1);
  const rows: Row[] = w.rows.slice(Math.max(0, w.top - w.offset), Math.max(0, w.top - w.offset) + visible).map((a) => ({
    key: a.id,
    cells: [
      a.at.replace('T', ' ').slice(0, 19),
      a.hydraUser,
      a.action,
      a.scope,
      String(a.targetCount),
      a.resultCount === null ? '' : String(a.resultCount),
      {text: a.outcome, color: a.outcome === 'ok' ? 'green' : a.outcome === 'refused' || a.outcome === 'failed' ? 'red' : undefined},
      a.message ?? '',
    ],
  }));
  return (
    <Table
      columns={COLUMNS}
      rows={rows}
      selected={w.selected - w.top}
      width={p.width}
      height={p.height}
      theme={p.theme}
      ellipsis={glyphs(p.theme).ellipsis}
      empty={w.error ?? (w.loaded ? 'no actions recorded yet' : 'loading…')}
    />
  );
}
