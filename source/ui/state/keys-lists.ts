// The key table's entries for moving in lists and opening what is selected: j/k and paging, enter, l, the
// filter, marks (one, a range, every build matching the filter), the detail's tabs, and the Builds view's sort.
import {clearMarks, refuse, say, stay, type Result, type State} from './model.js';
import {markAllSelection} from './acting.js';
import {DETAIL_TABS, switchTab} from './detail-tabs.js';
import {go, openLog} from './navigation.js';
import {FILTER_VIEWS, sortLabel, VIEWS, whereText} from './views.js';
import {BUILD_SORT_CYCLE} from '../../db/queries/windows.js';
import {currentIndex, cursorOf, jumpEdge, moveTo, reloadWindow, withEnsure} from './selection.js';
import {CURSOR_VIEWS, ENTER_VIEWS, MARK_VIEWS, viewName, type KeySpec} from './key-spec.js';

function move(s: State, key: string): Result {
  const idx = currentIndex(s);
  const page = cursorOf(s.view)?.page(s) ?? 1;
  const delta: Record<string, number> = {j: 1, down: 1, k: -1, up: -1, 'ctrl-f': page, pgdn: page, 'ctrl-b': -page, pgup: -page};
  if (key in delta) return withEnsure(moveTo(s, idx + delta[key]!));
  return jumpEdge(s, key === 'g' || key === 'home' ? 'start' : 'end');
}


/** Moving, opening, filtering, marking; the detail's tabs. */
export const LIST_KEYS: readonly KeySpec[] = [
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
];

/** The Builds view's sort (in SQL). */
export const SORT_KEYS: readonly KeySpec[] = [
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
];

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
