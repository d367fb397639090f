// The table of console keys. Each entry is one line of the `?` help: the key names it binds, how
// help and the footer write them, the views where it acts (and what pressing it elsewhere says),
// when it is disabled and why, its footer hints, and its action, which returns the next state and
// effects as data. The reducer, the help overlay and the footer are all derived from KEYS.
// Adding a key: docs/architecture.md ("Adding a key").
import {clearMarks, refuse, say, stay, type Menu, type Result, type State} from './model.js';
import {clockTime} from '../format.js';
import {buildAction, evalAction, machineAction, markAllSelection, pingAction} from './acting.js';
import {applyFilter, COMMAND_LIST} from './input.js';
import {DETAIL_TABS, switchTab} from './detail-tabs.js';
import {go, goBack, openLog, scrollLog, switchView} from './navigation.js';
import type {ViewName} from './types.js';
import {FILTER_VIEWS, selectedEval, sortLabel, TOP_VIEWS, VIEW_NAMES, VIEWS, whereText} from './views.js';
import {BUILD_SORT_CYCLE} from '../../db/queries/windows.js';
import {currentIndex, cursorOf, jumpEdge, moveTo, reloadWindow, withEnsure} from './selection.js';

export type Section = 'Global' | 'Lists' | 'Actions' | 'Detail' | 'Log';
/** Help sections in display order. */
export const SECTIONS: readonly Section[] = ['Global', 'Lists', 'Actions', 'Detail', 'Log'];

export interface KeyHint {
  /** How the footer writes the key (default: the entry's label). */
  key?: string;
  /** What it does, in a word or two; null: no hint in this state. */
  what: string | ((s: State) => string | null);
  /** Only in these views (default: every view where the key acts). */
  in?: readonly ViewName[];
}

/** Why a key cannot act now: the footer's dim note and the refusal message. */
export interface Refusal {
  hint: string;
  text: string;
}

export interface KeySpec {
  /** Key names as toKeys() produces them (`j`, `ctrl-d`, `enter`, `space`, …). */
  keys: readonly string[];
  /** How the help writes the keys. */
  label: string;
  section: Section;
  help: string;
  /** Views where the key acts; absent: every view. */
  views?: readonly ViewName[];
  /** What pressing it in another view says (absent: nothing happens). */
  elsewhere?(key: string): {text: string; error: boolean};
  /** Why it cannot act now (read-only, missing role, …), or null. */
  disabled?(s: State, key: string): Refusal | null;
  hints?: readonly KeyHint[];
  /**
   * Its lines in the `x` menu (default: one per footer hint, pressing the hint's key, or the
   * entry's first key); false: not in the menu (moving, paging).
   */
  menu?: readonly {key: string; what: string}[] | false;
  run(s: State, key: string): Result;
}

/** Views that can move a selection (the log scrolls with its own keys). */
const CURSOR_VIEWS = VIEW_NAMES.filter((v) => cursorOf(v) !== null);
/** Views where a build is selected (actions act on it). */
const BUILD_VIEWS = VIEW_NAMES.filter((v) => VIEWS[v].selected !== undefined);
const ENTER_VIEWS = VIEW_NAMES.filter((v) => VIEWS[v].enter !== undefined);
const MARK_VIEWS = VIEW_NAMES.filter((v) => VIEWS[v].marks === true);
/** Top-level views with few keys of their own: their footer lists the navigation keys. */
const BROWSE_VIEWS = TOP_VIEWS.filter((v) => !VIEWS[v].filter);
/** Where the build actions' footer hints are shown. */
const BUILD_HINTS: readonly ViewName[] = ['builds', 'steps', 'detail'];

function viewName(v: ViewName): string {
  return `the ${VIEWS[v].title} view (${VIEWS[v].key})`;
}

const readonly =
  (verb: string) =>
  (s: State): Refusal | null =>
    s.caps?.readonly ? {hint: 'read-only', text: `${verb}: ${s.caps.readonly}`} : null;

const noBuild = (verb: string) => () => ({text: `${verb}: no build selected here`, error: true});
const machineKind = (key: string): 'enable' | 'drain' => (key === 'E' ? 'drain' : 'enable');

function move(s: State, key: string): Result {
  const idx = currentIndex(s);
  const page = cursorOf(s.view)?.page(s) ?? 1;
  const delta: Record<string, number> = {j: 1, down: 1, k: -1, up: -1, 'ctrl-f': page, pgdn: page, 'ctrl-b': -page, pgup: -page};
  if (key in delta) return withEnsure(moveTo(s, idx + delta[key]!));
  return jumpEdge(s, key === 'g' || key === 'home' ? 'start' : 'end');
}

const VIEW_KEYS = TOP_VIEWS.map((v) => VIEWS[v].key!);

export const KEYS: readonly KeySpec[] = [
  // Lists: moving and opening. (Table order is the footer's order.)
  {
    keys: ['j', 'k', 'down', 'up', 'g', 'G', 'home', 'end'],
    label: 'j k ↑ ↓ g G',
    section: 'Lists',
    help: 'move; top / bottom',
    views: CURSOR_VIEWS,
    hints: [{key: 'j/k', what: (s) => (s.detail ? DETAIL_TABS[s.detail.tab].rowName : null), in: ['detail']}],
    menu: false,
    run: move,
  },
  {
    keys: ['ctrl-f', 'ctrl-b', 'pgdn', 'pgup'],
    label: 'ctrl-f ctrl-b PgDn PgUp',
    section: 'Lists',
    help: 'page',
    views: CURSOR_VIEWS,
    menu: false,
    run: move,
  },
  {
    keys: ['enter'],
    label: 'enter',
    section: 'Lists',
    help: 'drill down (build detail; in checks: the diff)',
    views: ENTER_VIEWS,
    hints: [
      {
        what: (s) => {
          const what = VIEWS[s.view].enter?.what ?? null;
          return typeof what === 'function' ? what(s) : what;
        },
      },
    ],
    run: (s) => {
      const to = VIEWS[s.view].enter?.go(s);
      return to ? go(s, to) : stay(s);
    },
  },
  {
    keys: ['l'],
    label: 'l',
    section: 'Lists',
    help: 'log of the selected build or step',
    hints: [{what: 'log', in: ['builds', 'steps']}],
    run: (s) => {
      const sel = VIEWS[s.view].selected?.(s);
      return sel ? openLog(s, sel.build, sel.stepnr) : say(s, 'l: select a build or a step first');
    },
  },
  {
    keys: ['/'],
    label: '/',
    section: 'Lists',
    help: 'filter (system:x86_64-linux status:queued age>2h …)',
    views: FILTER_VIEWS,
    elsewhere: () => ({text: `no filter in this view (filters: ${whereText(FILTER_VIEWS)})`, error: false}),
    hints: [{what: 'filter'}],
    run: (s) => ({state: {...s, mode: 'filter', input: s.filters[s.view as (typeof FILTER_VIEWS)[number]] ?? '', inputError: null}, effects: []}),
  },
  {
    keys: ['space', 'ctrl-space', 'a'],
    label: 'space ^space a',
    section: 'Lists',
    help: 'mark a build / from the last mark to here / all matching the filter (SQL)',
    views: MARK_VIEWS,
    elsewhere: () => ({text: `marking works in ${MARK_VIEWS.map(viewName).join(', ')}`, error: false}),
    hints: [
      {key: 'space', what: 'mark'},
      {key: 'a', what: (s) => (s.markAll ? null : 'mark all')},
    ],
    menu: [
      {key: 'space', what: 'mark / unmark this build'},
      {key: 'ctrl-space', what: 'mark from the last mark to here'},
      {key: 'a', what: 'mark every build matching the filter'},
    ],
    run: (s, key) => (key === 'a' ? markAll(s) : key === 'ctrl-space' ? markRange(s) : markOne(s)),
  },
  {
    keys: ['[', ']'],
    label: '[ ]',
    section: 'Detail',
    help: 'previous / next tab: Summary, Steps, Log, Deps, History',
    views: ['detail'],
    elsewhere: () => ({text: 'tabs: open a build first (enter on a build or a step)', error: false}),
    hints: [{key: '[/]', what: 'tabs'}],
    run: (s, key) => switchTab(s, key === ']' ? 1 : -1),
  },
  // Actions on the selected (or marked) builds, and on machines.
  {
    keys: ['r'],
    label: 'r',
    section: 'Actions',
    help: 'restart (marked or current)',
    views: BUILD_VIEWS,
    elsewhere: noBuild('restart'),
    disabled: readonly('restart'),
    hints: [{what: 'restart', in: BUILD_HINTS}],
    run: (s) => buildAction(s, 'restart'),
  },
  {
    keys: ['ctrl-d'],
    label: 'ctrl-d',
    section: 'Actions',
    help: 'cancel (always confirmed, shows the exact scope)',
    views: BUILD_VIEWS,
    elsewhere: noBuild('cancel'),
    disabled: readonly('cancel'),
    hints: [{key: '^d', what: 'cancel', in: BUILD_HINTS}],
    run: (s) => buildAction(s, 'cancel'),
  },
  {
    keys: ['b', 'B'],
    label: 'b B',
    section: 'Actions',
    help: 'bump (Hydra) / bump above every existing bump',
    views: BUILD_VIEWS,
    elsewhere: noBuild('bump'),
    disabled: readonly('bump'),
    hints: [{key: 'b/B', what: 'bump/top', in: BUILD_HINTS}],
    menu: [
      {key: 'b', what: 'bump (Hydra)'},
      {key: 'B', what: 'bump above every existing bump'},
    ],
    run: (s, key) => buildAction(s, 'bump', key === 'B'),
  },
  {
    keys: ['c'],
    label: 'c',
    section: 'Actions',
    help: 'reproducibility check',
    views: BUILD_VIEWS,
    elsewhere: noBuild('check'),
    disabled: (s) => (s.caps?.checks ? {hint: 'not available', text: `check: ${s.caps.checks}`} : null),
    hints: [{what: 'check', in: ['builds']}],
    run: (s) => buildAction(s, 'check'),
  },
  {
    keys: ['d'],
    label: 'd',
    section: 'Actions',
    help: "diff of the build's last reproducibility check (in the log viewer)",
    views: BUILD_VIEWS,
    elsewhere: noBuild('diff'),
    hints: [{what: 'diff', in: ['checks']}],
    run: (s) => {
      const sel = VIEWS[s.view].selected?.(s);
      if (!sel) return refuse(s, 'diff', 'no build selected here');
      return {state: {...s, message: {text: `diff: looking up the last check of build ${sel.build}…`, error: false}}, effects: [{type: 'lastCheck', build: sel.build}]};
    },
  },
  {
    keys: ['r', 'ctrl-d'],
    label: 'r ctrl-d',
    section: 'Actions',
    help: 'evals: restart failed / cancel queued builds (confirmed, exact scope)',
    views: ['evals'],
    disabled: readonly('eval action'),
    hints: [
      {key: 'r', what: 'restart failed'},
      {key: '^d', what: 'cancel eval'},
    ],
    menu: [
      {key: 'r', what: "restart the eval's failed builds"},
      {key: 'ctrl-d', what: "cancel the eval's queued builds"},
    ],
    run: (s, key) => evalAction(s, key === 'r' ? 'restart-failed' : 'cancel-eval'),
  },
  {
    keys: ['e', 'E'],
    label: 'e E',
    section: 'Actions',
    help: 'machines: enable / drain',
    views: ['machines'],
    elsewhere: (key) => ({text: `${machineKind(key)}: select a machine in ${viewName('machines')}`, error: true}),
    disabled: (s, key) => {
      const why = s.caps?.readonly ?? s.caps?.admin;
      return why ? {hint: s.caps?.readonly ? 'read-only' : 'needs admin', text: `${machineKind(key)}: ${why}`} : null;
    },
    hints: [
      {key: 'e', what: 'enable'},
      {key: 'E', what: 'drain'},
    ],
    run: (s, key) => machineAction(s, machineKind(key)),
  },
  {
    keys: ['i'],
    label: 'i',
    section: 'Actions',
    help: 'machines: ping (connect, handshake, trust, systems, free space)',
    views: ['machines'],
    elsewhere: () => ({text: `ping: select a machine in ${viewName('machines')}`, error: true}),
    hints: [{what: 'ping'}],
    run: pingAction,
  },
  {
    keys: ['s', 'S'],
    label: 's S',
    section: 'Lists',
    help: 'builds: sort newest first → queue order → latest finished (in SQL) / reverse it',
    views: ['builds'],
    elsewhere: () => ({text: 'sorting works in the Builds view (2); other lists keep their fixed order', error: false}),
    hints: [{key: 's/S', what: 'sort/rev'}],
    menu: [
      {key: 's', what: 'next sort column (newest, queue order, latest finished)'},
      {key: 'S', what: 'reverse the sort'},
    ],
    run: (s, key) => {
      const next: State =
        key === 'S' ? {...s, reverse: !s.reverse} : {...s, order: BUILD_SORT_CYCLE[(BUILD_SORT_CYCLE.indexOf(s.order) + 1) % BUILD_SORT_CYCLE.length]!, reverse: false};
      const r = reloadWindow(clearMarks(next), 'builds');
      return {state: {...r.state, message: {text: `sorted: ${sortLabel(next)}`, error: false}}, effects: r.effects};
    },
  },
  {
    keys: ['x'],
    label: 'x',
    section: 'Actions',
    help: 'action menu: every action of this view (from this table)',
    hints: [{what: 'actions', in: [...BUILD_HINTS, 'evals', 'machines']}],
    menu: false,
    run: (s) => openMenu(s),
  },
  {
    keys: ['y'],
    label: 'y',
    section: 'Actions',
    help: 'copy the drv path (build id where there is none) to the clipboard (OSC 52)',
    views: [...BUILD_VIEWS, 'evals'],
    elsewhere: () => ({text: 'copy: nothing to copy here (select a build, step or eval)', error: false}),
    run: copySelection,
  },
  {
    keys: ['o'],
    label: 'o',
    section: 'Actions',
    help: "open in Hydra's web UI (hydraUrl setting; shows the URL without a browser)",
    views: [...BUILD_VIEWS, 'evals', 'machines', 'jobsets'],
    elsewhere: () => ({text: 'open: nothing to open here', error: false}),
    run: openWeb,
  },
  // The log viewer.
  {
    keys: ['f'],
    label: 'f',
    section: 'Log',
    help: 'follow on/off',
    views: ['log'],
    hints: [{what: (s) => (s.log?.follow ? 'unfollow' : 'follow')}],
    run: (s) => (s.log?.follow ? {state: {...s, log: {...s.log, follow: false}}, effects: []} : scrollLog(s, 'follow')),
  },
  {
    keys: ['w'],
    label: 'w',
    section: 'Log',
    help: 'wrap long lines',
    views: ['log'],
    hints: [{what: 'wrap'}],
    run: (s) => (s.log ? {state: {...s, log: {...s.log, wrap: !s.log.wrap}}, effects: []} : stay(s)),
  },
  {
    keys: ['t'],
    label: 't',
    section: 'Log',
    help: 'timestamps: when each line arrived (lines already there when the log was opened have none)',
    views: ['log'],
    hints: [{what: (s) => (s.log?.timestamps ? 'no times' : 'times')}],
    run: (s) => (s.log ? toggleTimestamps(s) : stay(s)),
  },
  {
    keys: ['/', 'n', 'N'],
    label: '/ n N',
    section: 'Log',
    help: 'search, next, previous',
    views: ['log'],
    hints: [
      {key: '/', what: 'search'},
      {key: 'n/N', what: 'next/prev'},
    ],
    menu: [
      {key: '/', what: 'search'},
      {key: 'n', what: 'next match'},
      {key: 'N', what: 'previous match'},
    ],
    run: (s, key) => {
      const log = s.log;
      if (key === '/') return {state: {...s, mode: 'search', input: ''}, effects: []};
      if (!log?.search) return say(s, 'no search yet: / to search');
      return {
        state: {...s, log: {...log, follow: false}},
        effects: [{type: 'searchLog', needle: log.search, from: key === 'n' ? (log.match ?? log.top - 1) + 1 : (log.match ?? log.top) - 1, backwards: key === 'N'}],
      };
    },
  },
  {
    keys: ['j', 'k', 'down', 'up', 'pgdn', 'pgup', 'ctrl-f', 'ctrl-b', 'space', 'g', 'G', 'home', 'end'],
    label: 'j k PgDn PgUp g G',
    section: 'Log',
    help: 'scroll (space: a page); top / bottom',
    views: ['log'],
    hints: [{key: 'g/G', what: 'top/bottom'}],
    menu: false,
    run: scrollLog,
  },
  // Everywhere.
  {
    keys: [...VIEW_KEYS, 'tab', 'shift-tab'],
    label: `1…${VIEW_KEYS.length} tab`,
    section: 'Global',
    help: TOP_VIEWS.map((v) => VIEWS[v].commands[0]).join(', '),
    hints: [{key: `1-${VIEW_KEYS.length}`, what: 'views', in: BROWSE_VIEWS}],
    run: (s, key) => {
      if (key !== 'tab' && key !== 'shift-tab') return switchView(s, TOP_VIEWS[VIEW_KEYS.indexOf(key)]!);
      const i = Math.max(0, TOP_VIEWS.indexOf(s.view));
      return switchView(s, TOP_VIEWS[(i + (key === 'tab' ? 1 : TOP_VIEWS.length - 1)) % TOP_VIEWS.length]!);
    },
  },
  {
    keys: [':'],
    label: ':',
    section: 'Global',
    help: `command: ${COMMAND_LIST.slice(0, 3).join(' ')} … (every one under Commands)`,
    hints: [{what: 'command', in: BROWSE_VIEWS}],
    run: (s) => ({state: {...s, mode: 'command', input: '', inputError: null}, effects: []}),
  },
  {
    keys: ['p'],
    label: 'p',
    section: 'Global',
    help: 'pause live updates',
    hints: [{what: (s) => (s.paused ? 'resume' : 'pause'), in: BROWSE_VIEWS}],
    run: (s) => ({state: {...s, paused: !s.paused}, effects: [{type: 'pause', paused: !s.paused}]}),
  },
  {
    keys: ['esc'],
    label: 'esc',
    section: 'Global',
    help: 'back / clear filter / clear marks',
    hints: [{what: 'back', in: ['detail', 'log']}],
    run: (s) => {
      const v = s.view;
      if (VIEWS[v].filter && s.filters[v as (typeof FILTER_VIEWS)[number]] !== null) return applyFilter({...s, mode: 'filter'}, '');
      if (VIEWS[v].marks && (s.marks.length > 0 || s.markAll)) return {state: clearMarks(s), effects: []};
      return goBack(s);
    },
  },
  {
    keys: ['?'],
    label: '?',
    section: 'Global',
    help: 'this help',
    hints: [{what: 'help'}],
    run: (s) => ({state: {...s, mode: 'help'}, effects: []}),
  },
  {
    keys: ['q', 'ctrl-c'],
    label: 'q ctrl-c',
    section: 'Global',
    help: 'quit (q in a sub-view: back; ctrl-c from anywhere, dialogs and text lines too)',
    hints: [{key: 'q', what: 'quit', in: BROWSE_VIEWS}],
    run: (s, key) => (key === 'q' && s.back.length > 0 ? goBack(s) : {state: {...s, quit: true}, effects: [{type: 'quit'}]}),
  },
];

/** `t`: the arrival time of each line on or off; says what the times mean and which lines have none. */
function toggleTimestamps(s: State): Result {
  const log = s.log!;
  const on = !log.timestamps;
  const since = log.openedAt !== null ? clockTime(log.openedAt) : null;
  const text = on ? `timestamps on${since ? ` (--:--:--: already there when opened at ${since})` : ''}` : 'timestamps off';
  return {state: {...s, log: {...log, timestamps: on}, message: {text, error: false}}, effects: []};
}

function markAllNote(s: State): string {
  const n = s.markAll?.count;
  return `every build matching the filter is marked (${n === null || n === undefined ? 'counting…' : n}); esc clears the marks`;
}

/** space: marks (or unmarks) the selected build and moves down; a marked row starts the next range. */
function markOne(s: State): Result {
  if (s.markAll) return say(s, markAllNote(s));
  const id = VIEWS[s.view].selected?.(s)?.build;
  if (id === undefined) return stay(s);
  const marking = !s.marks.includes(id);
  const marks = marking ? [...s.marks, id] : s.marks.filter((m) => m !== id);
  return withEnsure(moveTo({...s, marks, markAnchor: marking ? id : s.markAnchor}, currentIndex(s) + 1));
}

/** a: the selection becomes the filter itself (every matching build, not only the loaded rows), counted in SQL. */
function markAll(s: State): Result {
  if (s.markAll) return say(s, markAllNote(s));
  const selection = markAllSelection(s);
  const next: State = {...s, marks: [], markAnchor: null, markAll: {selection, count: null}};
  return {state: {...next, message: {text: `marked every build matching ${selection || 'no filter (all builds)'}: counting…`, error: false}}, effects: [{type: 'countMarked', selection}]};
}

/** ctrl-space: marks the loaded rows between the last mark and the cursor (both ends included). */
function markRange(s: State): Result {
  if (s.markAll) return say(s, markAllNote(s));
  const w = s.builds;
  const cur = w.rows[w.selected - w.offset];
  if (!cur) return stay(s);
  // No earlier mark: this row is marked and starts the range.
  if (s.markAnchor === null) return {state: {...s, marks: s.marks.includes(cur.id) ? s.marks : [...s.marks, cur.id], markAnchor: cur.id, message: {text: 'range starts here: ctrl-space on its other end', error: false}}, effects: []};
  const from = w.rows.findIndex((r) => r.id === s.markAnchor);
  if (from < 0) return refuse(s, 'mark range', `the last mark (build ${s.markAnchor}) is no longer loaded; mark a row near here with space first`);
  const to = w.selected - w.offset;
  const [lo, hi] = from <= to ? [from, to] : [to, from];
  const have = new Set(s.marks);
  const added = w.rows.slice(lo, hi + 1).map((r) => r.id).filter((id) => !have.has(id));
  const marks = [...s.marks, ...added];
  return {state: {...s, marks, markAnchor: cur.id, message: {text: `marked ${hi - lo + 1} rows (${marks.length} marked)`, error: false}}, effects: []};
}

/** What `y` copies: the selected step's or build's drv path, else the build or eval id. */
function copySelection(s: State): Result {
  if (s.view === 'evals') {
    const e = selectedEval(s);
    return e ? {state: s, effects: [{type: 'copy', text: String(e.id), what: `eval id ${e.id}`}]} : say(s, 'copy: no eval selected');
  }
  const sel = VIEWS[s.view].selected?.(s);
  if (!sel) return say(s, 'copy: nothing selected');
  const drv = drvPathOf(s, sel.build, sel.stepnr);
  return {state: s, effects: [drv ? {type: 'copy', text: drv, what: 'drv path'} : {type: 'copy', text: String(sel.build), what: `build id ${sel.build}`}]};
}

function drvPathOf(s: State, build: number, stepnr?: number): string | null {
  if (s.view === 'steps') return s.steps.rows.find((r) => r.build === build && r.stepnr === stepnr)?.drvpath ?? null;
  if (s.view === 'detail' && s.detail?.data) {
    const step = stepnr !== undefined ? s.detail.data.steps.find((x) => x.stepnr === stepnr) : undefined;
    return step?.drvpath ?? s.detail.data.build.drvpath;
  }
  if (s.view === 'checks') return s.checks.rows.find((c) => c.build === build)?.drvPath ?? null;
  return s.builds.rows.find((b) => b.id === build)?.drvpath ?? null;
}

/** What `o` opens: the page of Hydra's web UI for the selection (paths as in Hydra's Root/Build/JobsetEval controllers). */
function openWeb(s: State): Result {
  if (s.view === 'evals') {
    const e = selectedEval(s);
    return e ? {state: s, effects: [{type: 'open', path: `/eval/${e.id}`}]} : say(s, 'open: no eval selected');
  }
  if (s.view === 'machines') return {state: s, effects: [{type: 'open', path: '/machines'}]};
  if (s.view === 'jobsets') {
    const j = s.jobsets.rows[s.jobsets.selected];
    return j ? {state: s, effects: [{type: 'open', path: `/jobset/${encodeURIComponent(j.project)}/${encodeURIComponent(j.name)}`}]} : say(s, 'open: no jobset selected');
  }
  const sel = VIEWS[s.view].selected?.(s);
  return sel ? {state: s, effects: [{type: 'open', path: `/build/${sel.build}`}]} : say(s, 'open: nothing selected');
}

/** The `x` menu's lines in this view: every key-table entry acting here, disabled ones with why. */
export function menuItems(s: State): Menu['items'] {
  const out: Menu['items'] = [];
  for (const spec of KEYS) {
    if (spec.section === 'Global' || spec.menu === false) continue;
    if (spec.views && !spec.views.includes(s.view)) continue;
    const lines =
      spec.menu ??
      (spec.hints ?? [])
        .filter((h) => !h.in || h.in.includes(s.view))
        .map((h) => ({key: h.key && spec.keys.includes(h.key) ? h.key : spec.keys[0]!, what: typeof h.what === 'function' ? h.what(s) : h.what}))
        .filter((l): l is {key: string; what: string} => l.what !== null);
    const items = lines.length > 0 ? lines : [{key: spec.keys[0]!, what: spec.help}];
    for (const l of items) if (!out.some((o) => o.key === l.key)) out.push({key: l.key, what: l.what, disabled: spec.disabled?.(s, l.key)?.hint ?? null});
  }
  return out;
}

function openMenu(s: State): Result {
  const items = menuItems(s);
  if (items.length === 0) return say(s, 'no actions in this view');
  return {state: {...s, mode: 'menu', menu: {items, selected: 0}}, effects: []};
}

/** Keys while the `x` menu is open: move, enter runs the line, its own key runs it, esc closes. */
export function menuKey(s: State, key: string): Result {
  const m = s.menu;
  const close: State = {...s, mode: 'normal', menu: null};
  if (!m || key === 'esc' || key === 'q' || key === 'x') return stay(close);
  if (key === 'j' || key === 'down') return stay({...s, menu: {...m, selected: Math.min(m.items.length - 1, m.selected + 1)}});
  if (key === 'k' || key === 'up') return stay({...s, menu: {...m, selected: Math.max(0, m.selected - 1)}});
  const item = key === 'enter' ? m.items[m.selected] : m.items.find((i) => i.key === key);
  if (!item) return stay(s);
  return pressKey(close, item.key);
}

/** The entry a key resolves to in a view: the one that acts there, else one that explains where it does. */
export function bindingFor(view: ViewName, key: string): {spec: KeySpec; acts: boolean} | null {
  let elsewhere: KeySpec | null = null;
  for (const spec of KEYS) {
    if (!spec.keys.includes(key)) continue;
    if (!spec.views || spec.views.includes(view)) return {spec, acts: true};
    if (spec.elsewhere) elsewhere ??= spec;
  }
  return elsewhere ? {spec: elsewhere, acts: false} : null;
}

/** A key pressed in normal mode. */
export function pressKey(state: State, key: string): Result {
  const b = bindingFor(state.view, key);
  if (!b) return stay(state);
  if (!b.acts) {
    const m = b.spec.elsewhere?.(key);
    return m ? {state: {...state, message: m}, effects: []} : stay(state);
  }
  const no = b.spec.disabled?.(state, key);
  if (no) return {state: {...state, message: {text: no.text, error: true}}, effects: []};
  return b.spec.run(state.message ? {...state, message: null} : state, key);
}

export interface Hint {
  key: string;
  what: string;
  /** Why it is disabled here. */
  disabled?: string | null;
}

/** The footer's hints in normal mode: the keys acting in this view, in table order. */
export function keyHints(state: State): Hint[] {
  const out: Hint[] = [];
  for (const spec of KEYS) {
    if (spec.views && !spec.views.includes(state.view)) continue;
    for (const h of spec.hints ?? []) {
      if (h.in && !h.in.includes(state.view)) continue;
      const what = typeof h.what === 'function' ? h.what(state) : h.what;
      if (what === null) continue;
      out.push({key: h.key ?? spec.label, what, disabled: spec.disabled?.(state, spec.keys[0]!)?.hint ?? null});
    }
  }
  return out;
}

export interface HelpEntry {
  keys: string;
  what: string;
}

/** The `?` help, by section. */
export function helpSections(): {section: Section; entries: HelpEntry[]}[] {
  return SECTIONS.map((section) => ({section, entries: KEYS.filter((k) => k.section === section).map((k) => ({keys: k.label, what: k.help}))}));
}
