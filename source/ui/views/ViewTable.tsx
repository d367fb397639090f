// A view's table over the rows it holds in memory — a window's (its rows start at `offset` in the whole list) or a
// bounded list's — showing the rows from `top` that fit, the selected one marked. The views differ in their columns,
// how a row is drawn and what an empty table says; the slicing, the selection and the glyphs are here once.
import React from 'react';
import {Table, type Column, type Row} from '../components/Table.js';
import {glyphs} from '../theme.js';
import type {ViewProps} from './common.js';

export interface ViewTableProps<T> {
  view: ViewProps;
  columns: readonly Column[];
  rows: readonly T[];
  /** Index in the whole list of rows[0] (windows; 0 for lists). */
  offset?: number;
  /** Index in the whole list of the first row shown. */
  top: number;
  /** Index in the whole list of the selected row. */
  selected: number;
  /** Draws a row; `index` is its index in `rows`. */
  row(r: T, index: number): Row;
  empty: string;
  /** Lines for the table (default: the view's height). */
  height?: number;
  /** Marked rows show a mark. */
  marks?: boolean;
}

export function ViewTable<T>(p: ViewTableProps<T>): React.ReactElement {
  const height = p.height ?? p.view.height;
  const start = Math.max(0, p.top - (p.offset ?? 0));
  const shown = p.rows.slice(start, start + Math.max(0, height - 1)).map((r, i) => p.row(r, start + i));
  const g = glyphs(p.view.theme);
  return (
    <Table
      columns={p.columns}
      rows={shown}
      selected={p.selected - p.top}
      width={p.view.width}
      height={height}
      theme={p.view.theme}
      ellipsis={g.ellipsis}
      {...(p.marks ? {markGlyph: g.mark} : {})}
      empty={p.empty}
    />
  );
}
