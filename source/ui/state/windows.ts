// Keyset-paged windows onto long SQL lists (Builds, Audit, Checks): which page to fetch, how an
// arriving page merges into the rows in memory (at most WINDOW_MAX), and moves that run past the
// loaded rows (completed when the next page arrives). Pure: fetches are returned as effects.
import {scrollTop, tableRows} from './layout.js';
import {emptyWindow, windowOf, WINDOW_MAX, type Action, type Result, type State, type Window} from './model.js';
import type {Anchor, WindowName} from './types.js';

/** The keyset key of a row in its list (the sort columns, e.g. [globalpriority, id] in queue order). */
export type RowKey = (row: unknown, state: State) => number[];

export function pageLimit(state: State): number {
  return Math.max(50, tableRows(state.size) * 2);
}

/** Re-reads a window: from the start (fresh) or in place from its first row. */
export function refreshWindow(state: State, list: WindowName, key: RowKey, fresh: boolean): Result {
  const w = windowOf(state, list);
  if (!fresh && w.pending === 'replace') return {state, effects: []};
  const gen = fresh ? w.gen + 1 : w.gen;
  let anchor: Anchor = {kind: 'start'};
  if (!fresh && w.loaded && !w.atStart && w.rows.length > 0) anchor = {kind: 'from', key: key(w.rows[0], state)};
  const limit = fresh ? pageLimit(state) : Math.max(pageLimit(state), w.rows.length);
  const next: Window<unknown> = fresh ? {...emptyWindow(), gen, pending: 'replace', total: w.total} : {...w, pending: 'replace'};
  return {
    state: {...state, [list]: next},
    effects: [
      {type: 'fetch', list, anchor, merge: 'replace', limit, gen},
      {type: 'count', list, gen},
    ],
  };
}

/** Loads more rows when the selection nears either end of the window. */
export function ensureWindow(state: State, list: WindowName, key: RowKey): Result {
  const w = windowOf(state, list);
  if (!w.loaded || w.pending || w.rows.length === 0) return {state, effects: []};
  const visible = tableRows(state.size);
  const limit = pageLimit(state);
  const last = w.offset + w.rows.length - 1;
  if (!w.atEnd && w.top + visible * 2 > last) {
    return {
      state: {...state, [list]: {...w, pending: 'append'}},
      effects: [{type: 'fetch', list, anchor: {kind: 'after', key: key(w.rows[w.rows.length - 1], state)}, merge: 'append', limit, gen: w.gen}],
    };
  }
  if (!w.atStart && w.top - visible < w.offset) {
    return {
      state: {...state, [list]: {...w, pending: 'prepend'}},
      effects: [{type: 'fetch', list, anchor: {kind: 'before', key: key(w.rows[0], state)}, merge: 'prepend', limit, gen: w.gen}],
    };
  }
  return {state, effects: []};
}

/** `g` / `G`: the first or last row, fetching that end of the list unless it is loaded. */
export function jumpWindow(state: State, list: WindowName, edge: 'start' | 'end'): Result | null {
  const w = windowOf(state, list);
  if ((edge === 'start' && w.atStart) || (edge === 'end' && w.atEnd)) return null;
  const gen = w.gen + 1;
  return {
    state: {...state, [list]: {...w, gen, pending: 'replace'}},
    effects: [{type: 'fetch', list, anchor: {kind: edge}, merge: 'replace', limit: pageLimit(state), gen, jump: true}],
  };
}

/** Moves a window's selection to `selected` (already clamped to the loaded rows), remembering a wider target. */
export function moveWindow(state: State, list: WindowName, selected: number, target: number, visible: number): State {
  const w = windowOf(state, list);
  // A move past the loaded rows is remembered and completed when the next page arrives.
  const want = (target > selected && !w.atEnd) || (target < selected && !w.atStart) ? target : null;
  return {...state, [list]: {...w, selected, want, top: scrollTop(w.top, selected, visible)}};
}

/** Merges an arriving page into its window (pages of an older generation are dropped). */
export function mergePage(state: State, a: Extract<Action, {type: 'page'}>, key: RowKey): Result {
  const list = a.list;
  const w = windowOf(state, list);
  if (a.gen !== w.gen) return {state, effects: []};
  const visible = tableRows(state.size);
  let next: Window<unknown> = {...w, pending: null, loaded: true, error: null};
  const full = a.rows.length >= a.limit;
  if (a.merge === 'replace') {
    if (a.anchor.kind === 'end') {
      const total = w.total !== null ? Math.max(w.total, a.rows.length) : a.rows.length;
      const offset = Math.max(0, total - a.rows.length);
      const selected = offset + Math.max(0, a.rows.length - 1);
      next = {...next, rows: a.rows, offset, atEnd: true, atStart: !full, selected, top: Math.max(offset, selected - visible + 1)};
    } else if (a.anchor.kind === 'start') {
      const selected = a.jump ? 0 : Math.min(w.selected, Math.max(0, a.rows.length - 1));
      next = {...next, rows: a.rows, offset: 0, atStart: true, atEnd: !full, selected, top: scrollTop(Math.min(w.top, selected), selected, visible)};
    } else {
      if (a.rows.length === 0) {
        // Everything from the first row on is gone (deleted, or no longer matching): read the list from its start.
        return refreshWindow({...state, [list]: {...w, pending: null, atStart: true}}, list, key, false);
      }
      const selected = Math.max(w.offset, Math.min(w.selected, w.offset + a.rows.length - 1));
      next = {...next, rows: a.rows, atEnd: !full, selected, top: scrollTop(w.top, selected, visible)};
    }
  } else if (a.merge === 'append') {
    let rows = [...w.rows, ...a.rows];
    let offset = w.offset;
    let atStart = w.atStart;
    if (rows.length > WINDOW_MAX) {
      const drop = Math.min(rows.length - WINDOW_MAX, Math.max(0, w.top - visible - offset));
      if (drop > 0) {
        rows = rows.slice(drop);
        offset += drop;
        atStart = false;
      }
    }
    next = {...next, rows, offset, atStart, atEnd: !full};
  } else {
    let rows = [...a.rows, ...w.rows];
    let offset = w.offset - a.rows.length;
    let {selected, top} = w;
    const atStart = !full;
    if (atStart && offset !== 0) {
      const shift = -offset;
      offset = 0;
      selected += shift;
      top += shift;
    }
    let atEnd = w.atEnd;
    if (rows.length > WINDOW_MAX) {
      const keepUntil = Math.max(top + visible * 2 - offset, WINDOW_MAX);
      if (keepUntil < rows.length) {
        rows = rows.slice(0, keepUntil);
        atEnd = false;
      }
    }
    next = {...next, rows, offset, selected, top, atStart, atEnd};
  }
  if (next.atEnd) next.total = next.offset + next.rows.length;
  if (a.merge !== 'replace' && next.want !== null && next.rows.length > 0) {
    const last = next.offset + next.rows.length - 1;
    const selected = Math.max(next.offset, Math.min(last, next.want));
    const reached = selected === next.want || (next.want > last && next.atEnd) || (next.want < next.offset && next.atStart);
    next = {...next, selected, want: reached ? null : next.want, top: scrollTop(next.top, selected, visible)};
  } else if (a.merge === 'replace') {
    next = {...next, want: null};
  }
  return ensureWindow({...state, [list]: next}, list, key);
}
