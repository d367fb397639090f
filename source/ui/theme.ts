// Colours and glyphs of the console: nix-output-monitor's vocabulary, an ASCII
// fallback for terminals without UTF-8 (`--ascii`, or a non-UTF-8 locale) and NO_COLOR.
// Status is never conveyed by colour alone: every status has a glyph or a word too.

import {BUILD_STATUS, BUSY_PHASES} from '../db/status.js';

export interface Theme {
  /** Colours on (off with NO_COLOR or --color=never). */
  color: boolean;
  /** Unicode glyphs (off: the ASCII fallback column). */
  unicode: boolean;
}

export interface Styled {
  glyph: string;
  label: string;
  /** Ink colour name, or undefined for the default. */
  color?: string;
  dim?: boolean;
}

export function themeFromEnv(env: NodeJS.ProcessEnv, opts: {ascii?: boolean; color?: 'auto' | 'always' | 'never'} = {}): Theme {
  const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  const color = opts.color === 'always' ? true : opts.color === 'never' ? false : !noColor && env.TERM !== 'dumb';
  const locale = env.LC_ALL || env.LC_CTYPE || env.LANG || '';
  const utf8 = /utf-?8/i.test(locale);
  return {color, unicode: opts.ascii === true ? false : utf8};
}

/** The colour to pass to <Text color>, or undefined when colours are off. */
export function paint(theme: Theme, color: string | undefined): string | undefined {
  return theme.color ? color : undefined;
}

/** The console's names of Hydra's BuildSteps.busy phases. */
export const PHASE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(BUSY_PHASES).map(([k, v]) => [k, v.short]));

export function phaseStyle(theme: Theme, busy: number): Styled {
  const u = theme.unicode;
  const label = PHASE_NAMES[busy] ?? `busy ${busy}`;
  switch (busy) {
    case 30:
      return {glyph: u ? '⏵' : '>', label, color: 'yellow'};
    case 1:
    case 10:
      return {glyph: u ? '⏵' : '>', label, color: 'cyan'};
    case 20:
      return {glyph: u ? '↑' : '^', label, color: 'magenta'};
    case 40:
      return {glyph: u ? '↓' : 'v', label, color: 'magenta'};
    default:
      return {glyph: u ? '⋯' : '.', label, color: 'blue'};
  }
}

/** Style of a build or step status; `busy` > 0 means running in that phase. */
export function statusStyle(theme: Theme, s: {finished: boolean; buildstatus: number | null; busy?: number; cached?: boolean}): Styled {
  const u = theme.unicode;
  if (!s.finished) {
    if (s.busy && s.busy > 0) return phaseStyle(theme, s.busy);
    return {glyph: u ? '⏸' : '-', label: 'queued', color: 'blue'};
  }
  const code = s.buildstatus ?? -1;
  const label = BUILD_STATUS[code]?.short ?? `status ${code}`;
  let st: Styled;
  switch (code) {
    case 0:
      st = {glyph: u ? '✔' : 'ok', label, color: 'green'};
      break;
    case 1:
    case 6:
    case 8:
      st = {glyph: u ? '⚠' : '!!', label, color: 'red'};
      break;
    case 2:
      st = {glyph: u ? '⚠' : '!', label, color: 'red', dim: true};
      break;
    case 3:
    case 9:
      st = {glyph: u ? '✖' : 'x', label, color: 'magenta'};
      break;
    case 4:
      st = {glyph: u ? '⊘' : 'c', label, color: 'gray'};
      break;
    case 7:
      st = {glyph: u ? '⏱' : 'T', label, color: 'red'};
      break;
    case 10:
    case 11:
      st = {glyph: u ? '⚠' : '!', label, color: 'red'};
      break;
    case 12:
      st = {glyph: u ? '≠' : '~', label, color: '#ff8700'};
      break;
    default:
      st = {glyph: '?', label};
  }
  if (s.cached) return {...st, glyph: st.glyph + (u ? '↺' : '*'), dim: true};
  return st;
}

export const ORANGE = '#ff8700';

/**
 * Age shading: a transfer phase (connecting, sending, receiving) turns orange after
 * 5 min and red after 1 h; building turns orange past 80 % of its timeout.
 */
export function ageColor(busy: number, phaseAgeSec: number | null, timeoutSec?: number | null, totalAgeSec?: number | null): string | undefined {
  if (busy === 10 || busy === 20 || busy === 40) {
    if (phaseAgeSec === null) return undefined;
    if (phaseAgeSec >= 3600) return 'red';
    if (phaseAgeSec >= 300) return ORANGE;
    return undefined;
  }
  if (busy === 30 && timeoutSec && totalAgeSec !== null && totalAgeSec !== undefined) {
    if (totalAgeSec >= timeoutSec) return 'red';
    if (totalAgeSec >= 0.8 * timeoutSec) return ORANGE;
  }
  return undefined;
}

export function glyphs(theme: Theme) {
  const u = theme.unicode;
  return {
    ellipsis: u ? '…' : '~',
    bullet: u ? '●' : '*',
    mark: u ? '◆' : '+',
    sep: u ? '›' : '>',
    barFull: u ? '█' : '#',
    barHalf: u ? '▒' : '=',
    barEmpty: u ? '·' : '.',
    follow: u ? '⇣' : 'F',
    up: u ? '▲' : '^',
    down: u ? '▼' : 'v',
    spark: u ? ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'] : ['_', '.', '-', '=', '#'],
  };
}
