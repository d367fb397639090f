// Moving between views: switching, the back stack, opening a build's detail or a log, drilling
// into a filtered view, carrying out where the views table says `enter` goes, and scrolling a log.
import {bodyLines} from './layout.js';
import {stay, type Effect, type Result, type State} from './model.js';
import type {FilterView, ViewName} from './types.js';
import {isWindow, type Go} from './views.js';
import {loadView, reloadFiltered} from './selection.js';
import {newDetail} from './detail-tabs.js';

export function switchView(state: State, view: ViewName, push = false): Result {
  if (view === state.view && !push) return {state, effects: []};
  const back = push ? [...state.back, state.view] : [];
  const next: State = {...state, view, back, message: null, mode: 'normal'};
  return loadView(next, isWindow(view) ? !next[view].loaded : false);
}

export function goBack(state: State): Result {
  const back = [...state.back];
  const prev = back.pop();
  if (!prev) return {state, effects: []};
  const effects: Effect[] = state.view === 'log' ? [{type: 'closeLog'}] : [];
  const next: State = {...state, view: prev, back, log: state.view === 'log' ? null : state.log, mode: 'normal'};
  const r = loadView(next, false);
  return {state: r.state, effects: [...effects, ...r.effects]};
}

export function openDetail(state: State, id: number, replace = false): Result {
  if (replace && state.view === 'detail' && state.detail) {
    // Another build of the job (History): same tab, same place in the back stack.
    const next: State = {...state, detail: newDetail(id, state.detail.tab), message: null};
    return loadView(next, true);
  }
  return switchView({...state, detail: newDetail(id)}, 'detail', true);
}

export function openLog(state: State, build: number, stepnr?: number, file?: string): Result {
  const next: State = {
    ...state,
    back: [...state.back, state.view],
    view: 'log',
    log: {build, stepnr: stepnr ?? null, path: null, total: 0, top: 0, lines: [], times: [], openedAt: null, follow: true, wrap: false, timestamps: false, search: null, match: null, error: null, loading: true},
  };
  return {state: next, effects: [{type: 'openLog', build, ...(stepnr !== undefined ? {stepnr} : {}), ...(file !== undefined ? {file} : {})}]};
}

/** Opens `view` with its filter set to `filter`, this view going on the back stack (drill-down). */
export function showFiltered(state: State, view: FilterView, filter: string): Result {
  const s: State = {...state, filters: {...state.filters, [view]: filter}, view, back: [...state.back, state.view]};
  return reloadFiltered(s, view);
}

export function go(state: State, to: Go): Result {
  switch (to.to) {
    case 'detail':
      return openDetail(state, to.id, to.replace === true);
    case 'log':
      return openLog(state, to.build, to.stepnr, to.file);
    case 'filtered':
      return showFiltered(state, to.view, to.filter);
    case 'message':
      return {state: {...state, message: {text: to.text, error: false}}, effects: []};
  }
}

/** Log scrolling keys; `follow` jumps to the end and follows. */
export function scrollLog(s: State, key: string): Result {
  const log = s.log;
  if (!log) return stay(s);
  const page = bodyLines(s.size) - 1;
  const maxTop = Math.max(0, log.total - page);
  const to = (top: number, follow = false): Result => {
    const t = Math.max(0, Math.min(maxTop, top));
    return {state: {...s, log: {...log, top: t, follow}}, effects: [{type: 'readLog', top: t, count: page}]};
  };
  switch (key) {
    case 'j':
    case 'down':
      return to(log.top + 1);
    case 'k':
    case 'up':
      return to(log.top - 1);
    case 'pgdn':
    case 'ctrl-f':
    case 'space':
      return to(log.top + page);
    case 'pgup':
    case 'ctrl-b':
      return to(log.top - page);
    case 'g':
    case 'home':
      return to(0);
    case 'follow':
      return to(maxTop, true);
    default:
      return to(maxTop, log.follow);
  }
}
