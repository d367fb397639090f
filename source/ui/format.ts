// Small text helpers for the console: compact durations, ages, truncation, padding.
import {escapeControl} from '../config/escape.js';

/** `42s`, `3m05s`, `3h12m`, `2d04h`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

/** The wall-clock time of `ms` (since epoch) as `HH:MM:SS`, in the console's time zone. */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** Thousands separators (a thin space with Unicode, a comma without). */
export function formatCount(n: number | null | undefined, unicode = true): string {
  if (n === null || n === undefined) return '?';
  const s = String(Math.round(n));
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, unicode ? '\u2009' : ',');
}

/** Cuts `text` to `width` columns, ending with the ellipsis when cut. */
export function truncate(text: string, width: number, ellipsis = '…'): string {
  if (width <= 0) return '';
  if (text.length <= width) return text;
  if (width <= ellipsis.length) return text.slice(0, width);
  return text.slice(0, width - ellipsis.length) + ellipsis;
}

/** `text` broken into lines of at most `width` columns, at spaces where it can; `indent` starts the lines after the first. */
export function wrapText(text: string, width: number, indent = ''): string[] {
  const out: string[] = [];
  let rest = text;
  let prefix = '';
  while (rest.length > 0) {
    const room = Math.max(1, width - prefix.length);
    if (rest.length <= room) {
      out.push(prefix + rest);
      break;
    }
    const cut = rest.lastIndexOf(' ', room);
    const at = cut > room / 3 ? cut : room;
    out.push(prefix + rest.slice(0, at));
    rest = rest.slice(at).replace(/^ +/, '');
    prefix = indent;
  }
  return out;
}

/** `text` fitted to `width` columns; control characters (terminal escapes from names, messages) shown escaped. */
export function pad(text: string, width: number, align: 'left' | 'right' = 'left', ellipsis = '…'): string {
  const t = truncate(escapeControl(text), width, ellipsis);
  return align === 'right' ? t.padStart(width) : t.padEnd(width);
}

/** The derivation name of a drv path: `/nix/store/<hash>-hello-2.12.drv` → `hello-2.12`. */
export function drvName(drvPath: string | null | undefined): string {
  if (!drvPath) return '';
  const base = drvPath.slice(drvPath.lastIndexOf('/') + 1);
  const dash = base.indexOf('-');
  return (dash >= 0 ? base.slice(dash + 1) : base).replace(/\.drv$/, '');
}

/** Replaces control characters (tabs become spaces, ANSI escapes are removed). */
export function sanitize(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/\u001B\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/\t/g, '    ').replace(/[\u0000-\u001F\u007F]/g, '');
}
