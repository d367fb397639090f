// An own sparkline: values mapped onto ▁▂▃▄▅▆▇█ (ASCII `_.-=#`), resampled to the width by taking
// the maximum of each bucket so short spikes stay visible. A null (no sample then) is a blank, so
// "nothing known" never looks like "zero". The scale runs from 0 to the largest value, or to a fixed
// `max` (utilisation strips: 1 = every slot busy).
import React from 'react';
import {Text} from './Text.js';
import {glyphs, paint, type Theme} from '../theme.js';

export function sparkline(values: readonly (number | null)[], width: number, theme: Theme, o: {max?: number} = {}): string {
  const chars = glyphs(theme).spark;
  if (width <= 0) return '';
  if (values.length === 0) return ' '.repeat(width);
  const buckets: (number | null)[] = [];
  if (values.length <= width) buckets.push(...values);
  else {
    for (let i = 0; i < width; i++) {
      const from = Math.floor((i * values.length) / width);
      const to = Math.max(from + 1, Math.floor(((i + 1) * values.length) / width));
      let m: number | null = null;
      for (let k = from; k < to; k++) {
        const v = values[k];
        if (v !== null && v !== undefined) m = m === null ? v : Math.max(m, v);
      }
      buckets.push(m);
    }
  }
  const known = buckets.filter((v): v is number => v !== null);
  const max = o.max ?? (known.length ? Math.max(...known) : 0);
  const min = o.max !== undefined ? 0 : Math.min(0, ...known);
  const span = max - min;
  const level = (v: number) => (span <= 0 ? 0 : Math.max(0, Math.min(chars.length - 1, Math.floor(((v - min) / span) * (chars.length - 1) + 0.5))));
  const line = buckets.map((v) => (v === null ? ' ' : chars[level(v)]!)).join('');
  return line.padStart(width, ' ');
}

export function Sparkline(p: {values: readonly number[]; width: number; theme: Theme; color?: string}): React.ReactElement {
  return <Text color={paint(p.theme, p.color)}>{sparkline(p.values, p.width, p.theme)}</Text>;
}

/** A mini bar `[██▒▒····]`: running (full), runnable waiting (half) against capacity. */
export function miniBar(running: number, runnable: number, capacity: number, width: number, theme: Theme): string {
  const g = glyphs(theme);
  const scale = Math.max(capacity, running + runnable, 1);
  const full = Math.min(width, Math.round((running / scale) * width));
  const half = Math.min(width - full, Math.round((runnable / scale) * width));
  return g.barFull.repeat(full) + g.barHalf.repeat(half) + g.barEmpty.repeat(Math.max(0, width - full - half));
}
