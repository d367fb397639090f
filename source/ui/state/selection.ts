// What the views table means for the current view: its cursor (moving the selection, paging,
// jumping to either end), the selected build, and the effects that load or reload its rows.
import {scrollTop, tableRows} from './layout.js';
import {listOf, windowOf, type Result, type State} from './model.js';
import {ensureWindow, jumpWindow, moveWindow, refreshWindow, type RowKey} from './windows.js';
import type {FilterView, ListName, ViewName, WindowName, WindowRows} from './types.js';
import {isWindow, windowSource, VIEWS, type Cursor, type ViewSpec} from './views.js';

export function rowKey(list: WindowName): RowKey {
  const source = windowSource(list);
  return (row, state) => source.key(row as never, state);
}

// ------------------------------------------------------------------ selection, by the table

function windowCursor(list: WindowName): Cursor {
  return {
    index: (s) => {
      // Keys typed while a page is on its way continue from where the earlier ones were heading.
      const w = windowOf(s, list);
      return w.want ?? w.selected;
    },
    bounds: (s) => {
      const w = windowOf(s, list);
      return {min: w.offset, length: w.offset + w.rows.length};
    },
    select: (s, selected, target) => moveWindow(s, list, selected, target, tableRows(s.size)),
    page: (s) => tableRows(s.size),
  };
}

function listCursor(list: ListName): Cursor {
  return {
    index: (s) => listOf(s, list).selected,
    bounds: (s) => ({min: 0, length: listOf(s, list).rows.length}),
    select: (s, selected) => {
      const l = listOf(s, list);
      return {...s, [list]: {...l, selected, top: scrollTop(l.top, selected, tableRows(s.size))}};
    },
    page: (s) => tableRows(s.size),
  };
}

export function cursorOf(v: ViewName): Cursor | null {
  const spec = VIEWS[v] as ViewSpec;
  switch (spec.kind) {
    case 'window':
      return windowCursor(v as WindowName);
    case 'list':
      return listCursor(v as ListName);
    case 'screen':
      return spec.screen.cursor;
  }
}

export function currentIndex(state: State): number {
  return cursorOf(state.view)?.index(state) ?? 0;
}

/** Moves the selection of the current view to `target` (absolute), clamped to what is loaded. */
export function moveTo(state: State, target: number): State {
  const c = cursorOf(state.view);
  const len = c?.bounds(state);
  if (!c || !len || len.length === 0) return state;
  const selected = Math.max(len.min, Math.min(len.length - 1, target));
  return c.select(state, selected, target);
}

/** After a move: fetch more rows when a window's selection nears the end of what is loaded. */
export function withEnsure(state: State): Result {
  const v = state.view;
  if (isWindow(v)) return ensureWindow(state, v, rowKey(v));
  return {state, effects: []};
}

export function jumpEdge(state: State, edge: 'start' | 'end'): Result {
  const v = state.view;
  if (isWindow(v)) {
    const r = jumpWindow(state, v, edge);
    if (r) return r;
  }
  const len = cursorOf(v)?.bounds(state);
  if (!len) return {state, effects: []};
  return withEnsure(moveTo(state, edge === 'start' ? len.min : len.length - 1));
}

/** The build the current view is about, for actions and drill-down. */
export function currentBuildId(state: State): number | null {
  return VIEWS[state.view].selected?.(state)?.build ?? null;
}

export function selectedBuild(state: State): WindowRows['builds'] | null {
  const w = state.builds;
  return (w.rows[w.selected - w.offset] as WindowRows['builds'] | undefined) ?? null;
}

// ------------------------------------------------------------------ loading, by the table

/** Effects that load what the current view shows (on start, on view switch, on refresh). */
export function loadView(state: State, fresh: boolean): Result {
  const v = state.view;
  const spec = VIEWS[v] as ViewSpec;
  switch (spec.kind) {
    case 'window':
      return refreshWindow(state, v as WindowName, rowKey(v as WindowName), fresh);
    case 'list':
      return {state, effects: [{type: 'load', what: v as ListName}]};
    case 'screen':
      return spec.screen.load(state, fresh);
  }
}

/** Re-reads a filterable view from its start after its filter changed. */
export function reloadFiltered(state: State, view: FilterView): Result {
  if (isWindow(view)) return reloadWindow(state, view);
  const l = listOf(state, view);
  return {state: {...state, [view]: {...l, selected: 0, top: 0}}, effects: [{type: 'load', what: view}]};
}

/** Re-reads a window from its start (a new order or filter). */
export function reloadWindow(state: State, list: WindowName): Result {
  return refreshWindow(state, list, rowKey(list), true);
}
