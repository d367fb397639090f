// Audit log (`7`, `:audit`): every action taken or refused, newest first.
import React from 'react';
import type {Column, Row} from '../components/Table.js';
import type {AuditEntry} from '../state/types.js';
import type {ViewProps} from './common.js';
import {ViewTable} from './ViewTable.js';

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

/** An audit row: time, who, what, scope, counts, outcome, message. */
function auditRow(a: AuditEntry): Row {
  return {
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
  };
}

export function AuditView(p: ViewProps): React.ReactElement {
  const w = p.state.audit;
  return <ViewTable view={p} columns={COLUMNS} rows={w.rows} offset={w.offset} top={w.top} selected={w.selected} row={auditRow} empty={w.error ?? (w.loaded ? 'no actions recorded yet' : 'loading…')} />;
}
