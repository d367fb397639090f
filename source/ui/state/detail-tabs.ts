// The build detail's tabs (`[` / `]`): Summary · Steps · Log · Deps · History. Each tab says which rows its
// cursor moves over, what `enter` opens, and what it loads when it is shown (the Log tab reads the tail of the
// selected step's log). The detail entry of the views table (views.ts) delegates to this table.
import {drvName} from '../format.js';
import {bodyLines} from './layout.js';
import type {DetailState, DetailTab, Effect, Result, State} from './model.js';
import type {Cursor, Go} from './views.js';

export interface TabSpec {
  title: string;
  /** The footer's word for what j/k select here (null: they do nothing). */
  rowName: string | null;
  /** Rows the cursor moves over in this tab, or null (nothing to select). */
  rows(d: DetailState): number | null;
  index(d: DetailState): number;
  select(d: DetailState, i: number): DetailState;
  /** What `enter` opens here: the footer's word and where it goes. */
  enter: {what: string; go(s: State, d: DetailState): Go | null};
}

const stepRows = (d: DetailState) => d.data?.steps.length ?? null;
const stepIndex = (d: DetailState) => d.selected;
const selectStep = (d: DetailState, i: number): DetailState => ({...d, selected: i});

function stepLog(s: State, d: DetailState): Go | null {
  const step = d.data?.steps[d.selected];
  return step ? {to: 'log', build: d.id, stepnr: step.stepnr} : {to: 'message', text: `build ${d.id} has no steps yet: no log`};
}

export const DETAIL_TABS: {[T in DetailTab]: TabSpec} = {
  summary: {title: 'Summary', rowName: 'step', rows: stepRows, index: stepIndex, select: selectStep, enter: {what: 'log', go: stepLog}},
  steps: {title: 'Steps', rowName: 'step', rows: stepRows, index: stepIndex, select: selectStep, enter: {what: 'log', go: stepLog}},
  log: {
    title: 'Log',
    rowName: null,
    // The step is chosen in Summary or Steps; here the keys leave the tail as it is.
    rows: () => null,
    index: stepIndex,
    select: selectStep,
    enter: {what: 'full log', go: (s, d) => (d.logTail?.stepnr != null ? {to: 'log', build: d.id, stepnr: d.logTail.stepnr} : stepLog(s, d))},
  },
  deps: {
    title: 'Deps',
    rowName: 'step',
    rows: (d) => d.data?.deps.length ?? null,
    index: (d) => d.depSelected,
    select: (d, i) => ({...d, depSelected: i}),
    enter: {
      what: 'log',
      go: (_s, d) => {
        const dep = d.data?.deps[d.depSelected];
        if (!dep) return null;
        if (dep.stepnr === null) return {to: 'message', text: `${drvName(dep.drvpath)} has not started: no log yet`};
        return {to: 'log', build: d.id, stepnr: dep.stepnr};
      },
    },
  },
  history: {
    title: 'History',
    rowName: 'build',
    rows: (d) => d.data?.history.length ?? null,
    index: (d) => d.historySelected,
    select: (d, i) => ({...d, historySelected: i}),
    enter: {
      what: 'open build',
      go: (_s, d) => {
        const h = d.data?.history[d.historySelected];
        if (!h) return null;
        if (h.id === d.id) return {to: 'message', text: `this is build ${h.id}`};
        return {to: 'detail', id: h.id, replace: true};
      },
    },
  },
};

/** Tabs in `[` / `]` order. */
export const TAB_ORDER: readonly DetailTab[] = ['summary', 'steps', 'log', 'deps', 'history'];

export function newDetail(id: number, tab: DetailTab = 'summary'): DetailState {
  return {id, data: null, selected: 0, tab, depSelected: 0, historySelected: 0, logTail: null, loading: true, error: null};
}

/** Lines of log the Log tab shows. */
export function tailLines(s: State): number {
  return Math.max(1, bodyLines(s.size) - 3);
}

/** What the detail loads: the build, and in the Log tab the tail of the selected step's log. */
export function loadDetail(s: State): Result {
  const d = s.detail;
  if (!d) return {state: s, effects: []};
  const effects: Effect[] = [{type: 'detail', id: d.id}];
  if (d.tab === 'log') {
    const step = d.data?.steps[d.selected];
    effects.push({type: 'detailLog', build: d.id, ...(step ? {stepnr: step.stepnr} : {}), count: tailLines(s)});
    return {state: {...s, detail: {...d, logTail: d.logTail ? {...d.logTail, loading: true} : {stepnr: step?.stepnr ?? null, path: null, lines: [], total: 0, error: null, loading: true}}}, effects};
  }
  return {state: s, effects};
}

/** `[` / `]`: the previous / next tab (wrapping), loading what it shows. */
export function switchTab(s: State, delta: number): Result {
  const d = s.detail;
  if (!d) return {state: s, effects: []};
  const i = TAB_ORDER.indexOf(d.tab);
  const tab = TAB_ORDER[(i + delta + TAB_ORDER.length) % TAB_ORDER.length]!;
  const next: State = {...s, detail: {...d, tab}};
  if (tab !== 'log') return {state: next, effects: []};
  const step = d.data?.steps[d.selected];
  return {
    state: {...next, detail: {...next.detail!, logTail: {stepnr: step?.stepnr ?? null, path: null, lines: [], total: 0, error: null, loading: true}}},
    effects: [{type: 'detailLog', build: d.id, ...(step ? {stepnr: step.stepnr} : {}), count: tailLines(s)}],
  };
}

export function detailCursor(page: (s: State) => number): Cursor {
  return {
    index: (s) => (s.detail ? DETAIL_TABS[s.detail.tab].index(s.detail) : 0),
    bounds: (s) => {
      const d = s.detail;
      const n = d?.data ? DETAIL_TABS[d.tab].rows(d) : null;
      return n === null ? null : {min: 0, length: n};
    },
    select: (s, selected) => (s.detail ? {...s, detail: DETAIL_TABS[s.detail.tab].select(s.detail, selected)} : s),
    page,
  };
}
