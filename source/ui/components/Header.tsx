// The header strip (htop / k9s style): runner up/down, mode (embedded scheduler or attached), uptime,
// data age, queue counts, builders, dispatcher health, per-system mini bars — and the progress
// indicator, which turns the first line red when runnable work has not moved for N minutes.
import React from 'react';
import {Box} from 'ink';
import {Text} from './Text.js';
import {formatCount, formatDuration} from '../format.js';
import {glyphs, paint, type Theme} from '../theme.js';
import {miniBar} from './Sparkline.js';
import type {HeaderData} from '../state/types.js';

export interface HeaderProps {
  header: HeaderData | null;
  lines: number;
  width: number;
  theme: Theme;
  paused: boolean;
  readonly: string | null;
  now: number;
  /** A runner snapshot older than this is marked stale (ms). */
  staleMs?: number;
}

export function modeText(h: HeaderData): string {
  if (h.mode === 'embedded') return 'scheduler in-process';
  if (h.mode === 'attached') return `attached${h.modeNote ? ` to ${h.modeNote}` : ''}`;
  return `no runner${h.modeNote ? `: ${h.modeNote}` : ''}`;
}

/** Memoised: a keypress re-renders the header only when its data, the clock or the flags changed. */
export const Header = React.memo(HeaderStrip);

function HeaderStrip(p: HeaderProps): React.ReactElement {
  const {header: h, theme} = p;
  const g = glyphs(theme);
  const u = theme.unicode;
  if (!h) {
    return (
      <Box flexDirection="column" height={p.lines}>
        <Text bold wrap="truncate">
          hydra-ops {g.sep} loading…
        </Text>
      </Box>
    );
  }
  const age = h.runnerDataAt !== null ? Math.max(0, (p.now - h.runnerDataAt) / 1000) : null;
  const stale = age !== null && age * 1000 > (p.staleMs ?? 6000);
  const stalled = h.progress?.stalled === true;
  const runner = h.runnerUp ? `runner up ${formatDuration(h.uptimeSec)}` : 'runner DOWN';
  const parts1: string[] = [runner, modeText(h)];
  if (age !== null) parts1.push(`data ${formatDuration(age)}${stale ? ' STALE' : ''}`);
  if (p.paused) parts1.push('PAUSED (p)');
  if (p.readonly) parts1.push('READ-ONLY');
  let progress = '';
  if (stalled) progress = `STALLED: no progress for ${formatDuration(h.progress!.stalledSeconds)} with ${h.runnable ?? '?'} runnable`;
  else if (h.progress) progress = 'progress ok';
  const line1Color = stalled ? 'red' : !h.runnerUp ? 'yellow' : undefined;

  const b = h.builders;
  const parts2 = [
    `queued ${formatCount(h.queued, u)}`,
    `runnable ${h.runnable === null ? '?' : formatCount(h.runnable, u)}`,
    `running ${formatCount(h.running, u)}`,
    `builders ${b.online}/${b.total} online${b.backingOff ? `, ${b.backingOff} backing off` : ''}${b.drained ? `, ${b.drained} drained` : ''}`,
  ];
  if (h.dispatcherBusy !== null) parts2.push(`dispatcher ${Math.round(h.dispatcherBusy * 100)}% busy`);
  if (h.ingest && h.ingest.total > 0 && h.ingest.done < h.ingest.total) parts2.push(`loading ${formatCount(h.ingest.done, u)}/${formatCount(h.ingest.total, u)}`);

  const bars: React.ReactElement[] = [];
  let used = 0;
  for (const s of h.systems) {
    const label = `${s.system} [${miniBar(s.running, s.runnable, s.capacity, 8, theme)}] ${s.running}/${s.runnable}/${s.capacity}`;
    if (used + label.length + 2 > p.width) break;
    used += label.length + 2;
    bars.push(
      <Text key={s.system} color={paint(theme, s.runnable > 0 && s.capacity === 0 ? 'red' : undefined)}>
        {label + '  '}
      </Text>,
    );
  }
  return (
    <Box flexDirection="column" height={p.lines}>
      <Text wrap="truncate" bold color={paint(theme, line1Color)} inverse={stalled && theme.color}>
        {'hydra-ops ' + g.sep + ' ' + (stalled ? progress + ' · ' : '') + parts1.join(' · ')}
        {progress && !stalled ? ' · ' + progress : ''}
      </Text>
      {h.alert ? (
        <Text wrap="truncate" bold color={paint(theme, 'red')}>
          {h.alert}
        </Text>
      ) : (
        <Text wrap="truncate">{parts2.join(' · ')}</Text>
      )}
      {p.lines >= 3 ? (
        <Text wrap="truncate">
          {bars.length > 0 ? bars : <Text dimColor>{h.systems.length ? 'systems: widen the terminal to see the bars' : 'no queued or running work per system'}</Text>}
          {bars.length > 0 ? <Text dimColor>(running/runnable/capacity)</Text> : null}
        </Text>
      ) : null}
    </Box>
  );
}
