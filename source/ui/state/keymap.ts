// Keyboard input → key names. Ink delivers a multi-character chunk (paste, fast typing over SSH) as
// one input string; it is split here so every key reaches the reducer on its own.
import type {ViewName} from './types.js';

/** The subset of Ink's Key object the console looks at. */
export interface InkKey {
  upArrow?: boolean;
  downArrow?: boolean;
  leftArrow?: boolean;
  rightArrow?: boolean;
  pageUp?: boolean;
  pageDown?: boolean;
  home?: boolean;
  end?: boolean;
  return?: boolean;
  escape?: boolean;
  ctrl?: boolean;
  shift?: boolean;
  tab?: boolean;
  backspace?: boolean;
  delete?: boolean;
  meta?: boolean;
}

/** Key names: printable characters as themselves, plus `up down left right pgup pgdn home end enter esc tab shift-tab backspace space ctrl-x`. */
export function toKeys(input: string, key: InkKey): string[] {
  if (key.upArrow) return ['up'];
  if (key.downArrow) return ['down'];
  if (key.leftArrow) return ['left'];
  if (key.rightArrow) return ['right'];
  if (key.pageUp) return ['pgup'];
  if (key.pageDown) return ['pgdn'];
  if (key.home) return ['home'];
  if (key.end) return ['end'];
  if (key.return) return ['enter'];
  if (key.tab) return [key.shift ? 'shift-tab' : 'tab'];
  if (key.backspace || key.delete) return ['backspace'];
  if (key.escape && input === '') return ['esc'];
  if (key.ctrl && input.length === 1) return [`ctrl-${input.toLowerCase()}`];
  if (input === '') return [];
  const out: string[] = [];
  for (const ch of input) {
    if (ch === '\r' || ch === '\n') out.push('enter');
    else if (ch === ' ') out.push('space');
    else if (ch === '\u007F' || ch === '\b') out.push('backspace');
    else if (ch === '\u0004') out.push('ctrl-d');
    else if (ch === '\u0003') out.push('ctrl-c');
    else if (ch === '\u001B') out.push('esc');
    else if (ch >= ' ') out.push(ch);
  }
  return out;
}

export const VIEW_KEYS: Record<string, ViewName> = {
  '1': 'overview',
  '2': 'builds',
  '3': 'steps',
  '4': 'machines',
  '5': 'jobsets',
  '6': 'checks',
  '7': 'audit',
};

/** Top-level views in tab order. */
export const TOP_VIEWS: ViewName[] = ['overview', 'builds', 'steps', 'machines', 'jobsets', 'checks', 'audit'];

export const VIEW_TITLES: Record<ViewName, string> = {
  overview: 'Overview',
  builds: 'Builds',
  steps: 'Running steps',
  machines: 'Machines',
  jobsets: 'Jobsets',
  detail: 'Build',
  log: 'Log',
  checks: 'Checks',
  audit: 'Audit',
};

/** `:` command names and aliases. */
export const COMMANDS: Record<string, ViewName | 'queue' | 'quit'> = {
  overview: 'overview',
  o: 'overview',
  builds: 'builds',
  b: 'builds',
  queue: 'queue',
  steps: 'steps',
  running: 'steps',
  machines: 'machines',
  m: 'machines',
  jobsets: 'jobsets',
  js: 'jobsets',
  checks: 'checks',
  audit: 'audit',
  quit: 'quit',
  q: 'quit',
};

export interface HelpEntry {
  keys: string;
  what: string;
}

export const HELP: {section: string; entries: HelpEntry[]}[] = [
  {
    section: 'Global',
    entries: [
      {keys: '1…7 tab', what: 'overview, builds, steps, machines, jobsets, checks, audit'},
      {keys: ':', what: 'command: :builds :queue :steps :machines :log 12/3 :build 12 :q'},
      {keys: '/', what: 'filter (system:x86_64-linux status:queued age>2h …)'},
      {keys: 'esc', what: 'back / clear filter / close dialog'},
      {keys: 'p', what: 'pause live updates'},
      {keys: 'q ctrl-c', what: 'quit (q in a sub-view: back)'},
    ],
  },
  {
    section: 'Lists',
    entries: [
      {keys: 'j k ↑ ↓', what: 'move'},
      {keys: 'g G', what: 'top / bottom'},
      {keys: 'ctrl-f ctrl-b PgDn PgUp', what: 'page'},
      {keys: 'enter', what: 'drill down (build detail; in checks: the diff)'},
      {keys: 'l', what: 'log of the selected build or step'},
      {keys: 'space', what: 'mark / unmark a build'},
      {keys: 's', what: 'builds: newest first ↔ queue order'},
    ],
  },
  {
    section: 'Actions',
    entries: [
      {keys: 'r', what: 'restart (marked or current)'},
      {keys: 'ctrl-d', what: 'cancel (always confirmed, shows the exact scope)'},
      {keys: 'b B', what: 'bump (Hydra) / bump above every existing bump'},
      {keys: 'c', what: 'reproducibility check'},
      {keys: 'e E', what: 'machines: enable / drain'},
      {keys: 'i', what: 'machines: ping (connect, handshake, trust, systems, free space)'},
    ],
  },
  {
    section: 'Log',
    entries: [
      {keys: 'f', what: 'follow on/off'},
      {keys: 'w', what: 'wrap long lines'},
      {keys: '/ n N', what: 'search, next, previous'},
      {keys: 'g G', what: 'top / bottom'},
    ],
  },
];
