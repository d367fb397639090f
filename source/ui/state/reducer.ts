// The console's single reducer: every key and every data arrival goes through reduce(state, action),
// which returns the next state and the effects (queries, actions, log reads) the controller should
// run. Handlers never close over state, so fast typing always acts on the current row. Keys are
// resolved through the key table (keys.ts), views through the views table (views.ts).
import {bodyLines, scrollTop, tableRows, type Size} from './layout.js';
import {clearMarks, emptyList, emptyWindow, listOf, windowOf, type Action, type Result, type State} from './model.js';
import {previewed} from './acting.js';
import {dialogKey, inputKey} from './input.js';
import {menuKey, pressKey} from './keys.js';
import {helpKey} from './help.js';
import {checkDiff, FILTER_VIEWS, LIST_NAMES, WINDOW_NAMES} from './views.js';
import {go} from './navigation.js';
import {currentIndex, loadView, moveTo, rowKey, withEnsure} from './selection.js';
import {mergePage} from './windows.js';
import {loadDetail} from './detail-tabs.js';
import type {FilterView, ViewName} from './types.js';

export type {Action, Dialog, Effect, List, LogState, Mode, Result, State, Window} from './model.js';
export {WINDOW_MAX} from './model.js';
export {loadView} from './selection.js';

export interface InitOptions {
  size: Size;
  view?: ViewName;
  filters?: Partial<Record<FilterView, string | null>>;
}

export function initialState(o: InitOptions): State {
  const slots = Object.fromEntries([...WINDOW_NAMES.map((v) => [v, emptyWindow()]), ...LIST_NAMES.map((v) => [v, emptyList()])]);
  return {
    view: o.view ?? 'overview',
    back: [],
    size: o.size,
    mode: 'normal',
    input: '',
    inputError: null,
    filters: {...(Object.fromEntries(FILTER_VIEWS.map((v) => [v, null])) as Record<FilterView, null>), ...o.filters},
    order: 'id-desc',
    reverse: false,
    overview: null,
    overviewSelected: 0,
    runnerStats: {data: null, loaded: false, error: null},
    detail: null,
    log: null,
    marks: [],
    markAnchor: null,
    markAll: null,
    dialog: null,
    menu: null,
    helpSearch: null,
    message: null,
    paused: false,
    header: null,
    caps: null,
    busyAction: false,
    quit: false,
    ...slots,
  } as State;
}

export function reduce(state: State, action: Action): Result {
  switch (action.type) {
    case 'key': {
      const key = action.key;
      // ctrl-c quits whatever is open (a dialog, the menu, a text line, the help): raw mode turns it into a key.
      if (key === 'ctrl-c') return pressKey({...state, mode: 'normal', dialog: null, menu: null, helpSearch: null, input: ''}, key);
      if (state.mode === 'help') return helpKey(state, key);
      if (state.mode === 'dialog') return dialogKey(state, key);
      if (state.mode === 'menu') return menuKey(state, key);
      if (state.mode === 'filter' || state.mode === 'command' || state.mode === 'search') return inputKey(state, key);
      return pressKey(state, key);
    }
    case 'resize': {
      const next = {...state, size: action.size};
      const r = withEnsure(moveTo(next, currentIndex(next)));
      if (state.view === 'log' && state.log) {
        const page = bodyLines(action.size) - 1;
        return {state: r.state, effects: [...r.effects, {type: 'readLog', top: state.log.top, count: page}]};
      }
      return r;
    }
    case 'header':
      return {state: {...state, header: action.header}, effects: []};
    case 'caps':
      return {state: {...state, caps: action.caps}, effects: []};
    case 'page':
      return mergePage(state, action, rowKey(action.list));
    case 'count': {
      const w = windowOf(state, action.list);
      if (action.gen !== w.gen) return {state, effects: []};
      return {state: {...state, [action.list]: {...w, total: w.atEnd ? w.offset + w.rows.length : action.total}}, effects: []};
    }
    case 'lastCheck': {
      // Only while the operator is still where `d` was pressed.
      if (state.view === 'log') return {state, effects: []};
      if (!action.check) return {state: {...state, message: {text: `diff: build ${action.build} has no reproducibility check (c starts one)`, error: true}}, effects: []};
      return go(state, checkDiff(action.check));
    }
    case 'markCount': {
      const all = state.markAll;
      if (!all || all.selection !== action.selection) return {state, effects: []};
      return {state: {...state, markAll: {...all, count: action.count}}, effects: []};
    }
    case 'pageError': {
      const w = windowOf(state, action.list);
      if (action.gen !== w.gen) return {state, effects: []};
      return {state: {...state, [action.list]: {...w, pending: null, loaded: true, error: action.error}}, effects: []};
    }
    case 'list': {
      const l = listOf(state, action.list);
      const selected = Math.max(0, Math.min(l.selected, action.rows.length - 1));
      const visible = tableRows(state.size);
      return {state: {...state, [action.list]: {rows: action.rows, selected, top: scrollTop(Math.min(l.top, selected), selected, visible), loaded: true, error: null}}, effects: []};
    }
    case 'listError':
      if (action.list === 'overview') return {state: {...state, message: {text: `overview: ${action.error}`, error: true}}, effects: []};
      if (action.list === 'runner') return {state: {...state, runnerStats: {...state.runnerStats, loaded: true, error: action.error}}, effects: []};
      return {state: {...state, [action.list]: {...listOf(state, action.list), loaded: true, error: action.error}}, effects: []};
    case 'overview':
      return {state: {...state, overview: action.data}, effects: []};
    case 'runnerStats':
      return {state: {...state, runnerStats: {data: action.data, loaded: true, error: null}}, effects: []};
    case 'detail': {
      if (!state.detail || state.detail.id !== action.id) return {state, effects: []};
      const d = state.detail;
      const clamp = (i: number, n: number | undefined) => Math.min(i, Math.max(0, (n ?? 0) - 1));
      const error = action.error ?? (action.data ? null : `build ${action.id} does not exist`);
      const detail = {
        ...d,
        data: action.data,
        loading: false,
        error,
        selected: clamp(d.selected, action.data?.steps.length),
        depSelected: clamp(d.depSelected, action.data?.deps.length),
        historySelected: clamp(d.historySelected, action.data?.history.length),
      };
      // The Log tab opened before the steps were known reads the tail of the last step now.
      if (d.tab === 'log' && d.logTail?.stepnr === null && !d.logTail.loading && action.data?.steps.length) return loadDetail({...state, detail});
      return {state: {...state, detail}, effects: []};
    }
    case 'detailLog': {
      const d = state.detail;
      if (!d || d.id !== action.build) return {state, effects: []};
      return {state: {...state, detail: {...d, logTail: {stepnr: action.stepnr, path: action.path, lines: action.lines, total: action.total, error: action.error, loading: false}}}, effects: []};
    }
    case 'logOpened': {
      const log = state.log;
      if (!log || log.build !== action.build) return {state, effects: []};
      const page = bodyLines(state.size) - 1;
      const top = log.follow ? Math.max(0, action.total - page) : 0;
      return {state: {...state, log: {...log, path: action.path, stepnr: action.stepnr, total: action.total, openedAt: action.openedAt, top, loading: false}}, effects: [{type: 'readLog', top, count: page}]};
    }
    case 'logError': {
      const log = state.log;
      if (!log || log.build !== action.build) return {state, effects: []};
      return {state: {...state, log: {...log, loading: false, error: action.error}}, effects: []};
    }
    case 'logLines': {
      const log = state.log;
      if (!log) return {state, effects: []};
      return {state: {...state, log: {...log, lines: action.lines, times: action.times, top: action.top, total: action.total}}, effects: []};
    }
    case 'logGrew': {
      const log = state.log;
      if (!log) return {state, effects: []};
      const page = bodyLines(state.size) - 1;
      const top = log.follow ? Math.max(0, action.total - page) : log.top;
      return {state: {...state, log: {...log, total: action.total, top}}, effects: [{type: 'readLog', top, count: page}]};
    }
    case 'searchResult': {
      const log = state.log;
      if (!log) return {state, effects: []};
      if (action.line < 0) return {state: {...state, message: {text: `not found: ${action.needle}`, error: true}}, effects: []};
      const page = bodyLines(state.size) - 1;
      const top = Math.max(0, Math.min(Math.max(0, log.total - page), action.line - Math.floor(page / 3)));
      return {
        state: {...state, message: {text: `match at line ${action.line + 1}`, error: false}, log: {...log, match: action.line, top, follow: false}},
        effects: [{type: 'readLog', top, count: page}],
      };
    }
    case 'previewed':
      return {state: previewed(state, action.req, action.outcome), effects: []};
    case 'acted': {
      const o = action.outcome;
      const acted: State = {...state, busyAction: false, message: {text: o.message, error: !o.ok}};
      const next = o.ok ? clearMarks(acted) : acted;
      return o.ok ? reduce(next, {type: 'refresh', what: 'all'}) : {state: next, effects: []};
    }
    case 'refresh': {
      if (state.paused && action.what === 'visible') return {state, effects: []};
      return loadView(state, false);
    }
    case 'message':
      return {state: {...state, message: {text: action.text, error: action.error === true}}, effects: []};
  }
}
