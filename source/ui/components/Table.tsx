// A minimal table for Ink: fixed column widths fitted to the terminal (columns dropped by priority
// when narrow, the flexible column takes the slack), `…` truncation, right-aligned numbers, the
// selected row in inverse video. It renders only the rows it is given: virtualisation is the caller's.
import React from 'react';
import {Box} from 'ink';
import {Text} from './Text.js';
import {pad} from '../format.js';
import {paint, type Theme} from '../theme.js';

export interface Column {
  title: string;
  width: number;
  align?: 'left' | 'right';
  /** Takes the spare width (at most one column should). */
  flex?: boolean;
  /** Higher numbers are dropped first on narrow terminals; undefined = never dropped. */
  drop?: number;
  /** Narrowest a flexible column may become. */
  min?: number;
}

export interface Cell {
  text: string;
  /** Drawn to the column's fitted width instead of `text` (pictures: a sparkline fills its column). */
  fit?: (width: number) => string;
  color?: string;
  dim?: boolean;
  bold?: boolean;
}

export type Row = {key: string | number; cells: (Cell | string)[]; marked?: boolean; dim?: boolean; color?: string};

/** Column indexes to show and their widths for `total` columns of terminal. */
export function fitColumns(columns: readonly Column[], total: number): {index: number; width: number}[] {
  let shown = columns.map((c, index) => ({index, width: c.width}));
  const need = () => shown.reduce((n, c) => n + c.width, 0) + Math.max(0, shown.length - 1);
  while (need() > total) {
    let worst = -1;
    for (const c of shown) {
      const d = columns[c.index]!.drop;
      if (d !== undefined && (worst < 0 || d > columns[shown[worst]!.index]!.drop!)) worst = shown.indexOf(c);
    }
    if (worst < 0) break;
    shown = shown.filter((_, i) => i !== worst);
  }
  const flex = shown.find((c) => columns[c.index]!.flex);
  const spare = total - need();
  if (flex) flex.width = Math.max(columns[flex.index]!.min ?? 4, flex.width + spare);
  // Still too wide (no droppable columns left): squeeze the last columns.
  let over = need() - total;
  for (let i = shown.length - 1; i >= 0 && over > 0; i--) {
    const c = shown[i]!;
    const cut = Math.min(over, Math.max(0, c.width - 3));
    c.width -= cut;
    over -= cut;
  }
  return shown;
}

export interface TableProps {
  columns: readonly Column[];
  rows: readonly Row[];
  /** Index into rows of the selected row, or -1. */
  selected: number;
  width: number;
  /** Lines available including the column header line. */
  height: number;
  theme: Theme;
  ellipsis?: string;
  markGlyph?: string;
  empty?: string;
}

export function Table(p: TableProps): React.ReactElement {
  const fitted = fitColumns(p.columns, p.width - 2);
  const ell = p.ellipsis ?? '…';
  const headerText = fitted.map((f) => pad(p.columns[f.index]!.title, f.width, p.columns[f.index]!.align, ell)).join(' ');
  const visible = p.rows.slice(0, Math.max(0, p.height - 1));
  return (
    <Box flexDirection="column" width={p.width} height={p.height}>
      <Text bold wrap="truncate">
        {'  ' + headerText}
      </Text>
      {visible.length === 0 && p.empty ? (
        <Text dimColor wrap="truncate">
          {'  ' + p.empty}
        </Text>
      ) : null}
      {visible.map((row, i) => {
        const isSel = i === p.selected;
        const mark = row.marked ? (p.markGlyph ?? '◆') : ' ';
        return (
          <Text key={row.key} inverse={isSel} wrap="truncate" dimColor={row.dim} color={paint(p.theme, row.color)}>
            {(isSel ? '>' : ' ') + mark}
            {fitted.map((f, j) => {
              const raw = row.cells[f.index];
              const cell: Cell = typeof raw === 'string' ? {text: raw} : (raw ?? {text: ''});
              const text = pad(cell.fit ? cell.fit(f.width) : cell.text, f.width, p.columns[f.index]!.align, ell) + (j < fitted.length - 1 ? ' ' : '');
              if (!cell.color && !cell.dim && !cell.bold) return text;
              return (
                <Text key={j} color={paint(p.theme, cell.color)} dimColor={cell.dim} bold={cell.bold}>
                  {text}
                </Text>
              );
            })}
          </Text>
        );
      })}
    </Box>
  );
}
