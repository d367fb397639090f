// The shape of an entry of the views table (views.ts), and the helpers the entries share. A view is a window
// (keyset-paged from SQL), a list (bounded, loaded whole) or a screen of its own; its entry says how it loads,
// how its selection moves, what is selected, what `enter`, `y` and `o` do there and what the crumb adds.
import type {Result, State} from './model.js';
import type React from 'react';
import type {ViewProps} from '../views/common.js';
import type {Anchor, BuildOrder, ChangeKind, ConsoleData, FilterView, ListName, ListRows, Read, ViewName, WindowName, WindowRows} from './types.js';

/** The build (and step) a view has selected: what actions act on and `l` opens. */
export interface Selection {
  build: number;
  stepnr?: number;
}

/** Where `enter` goes, as data (navigation.ts carries it out). */
export type Go =
  /** `replace`: show another build in the detail that is open (History), not on top of it. */
  | {to: 'detail'; id: number; replace?: boolean}
  | {to: 'log'; build: number; stepnr?: number; file?: string}
  /** Another view with its filter set (drill-down), pushing this view on the back stack. */
  | {to: 'filtered'; view: FilterView; filter: string}
  | {to: 'message'; text: string};

/** How a view's selection moves. */
export interface Cursor {
  /** The selected row; while a page is on its way, where the earlier keys were heading. */
  index(s: State): number;
  /** Selectable rows [min, length); null when there is nothing to select. */
  bounds(s: State): {min: number; length: number} | null;
  /** Selects row `selected` (within bounds); `target` is where the key wanted to go. */
  select(s: State, selected: number, target: number): State;
  /** Rows a page key moves. */
  page(s: State): number;
}

/** What `y` puts on the clipboard: the text and how the message names it ("drv path", "build id 12"). */
export interface Copy {
  text: string;
  what: string;
}

export interface SpecBase<V extends ViewName> {
  title: string;
  /** Draws the view (source/ui/views/); app.tsx shows the current view's. */
  component: (p: ViewProps) => React.ReactElement;
  /** Number key of a top-level view (their tab order too); null for sub-views. */
  key: string | null;
  /** `:` names, the canonical one first. */
  commands: readonly string[];
  /** `/` edits this view's filter (state.filters[view]). */
  filter: V extends FilterView ? true : false;
  /** `space` marks rows (build ids in state.marks), and actions take the marked builds. */
  marks?: boolean;
  /** Live changes that refresh the view while it is shown. */
  refreshOn: readonly ChangeKind[];
  /** The selected build, for actions and `l`; absent when the view has no builds. */
  selected?(s: State): Selection | null;
  /**
   * What `y` copies: the selection's drv path, or its id where it has none (null: nothing selected). null instead
   * of a function: `y` does not act in this view. Required, so a new view decides.
   */
  copy: ((s: State) => Copy | null) | null;
  /**
   * The page of Hydra's web UI `o` opens for the selection, as a path below the hydraUrl setting (Hydra's
   * Root/Build/JobsetEval controllers' paths; null: nothing selected). null instead of a function: `o` does not
   * act in this view.
   */
  web: ((s: State) => string | null) | null;
  /** What `enter` opens: the footer's word for it (null: not shown) and where it goes. */
  enter?: {what: string | null | ((s: State) => string | null); go(s: State): Go | null};
  /** The crumb's last part (default: the title). */
  crumbTitle?(s: State): string;
  /** Appended to the crumb line: order, filter, position. */
  crumbTail?(s: State, c: CrumbText): string;
}

export interface CrumbText {
  count(n: number): string;
  sep: string;
}

/** What a window's reads are given: the view's filter, the sort (the Builds view's; others ignore it), where to start, how many. */
export interface WindowQuery {
  filter: string | null;
  order: BuildOrder;
  reverse: boolean;
  anchor: Anchor;
  limit: number;
}

export type CountQuery = Pick<WindowQuery, 'filter' | 'order'>;

/** A keyset-paged window: the reads of a page and of the count (ConsoleData.query runs them) and how a row is keyed. */
export interface WindowSource<V extends WindowName> {
  page: Read<WindowQuery, WindowRows[V][]>;
  count: Read<CountQuery, number>;
  /** What the count depends on: a cached count is reused while this stays the same. */
  countKey(s: State): string;
  key(row: WindowRows[V], s: State): number[];
}

export interface ListSource<V extends ListName> {
  fetch(d: ConsoleData, s: State): Promise<ListRows[V][]>;
}

/** Views of their own shape (overview, build detail, log): they bring their cursor and loading. */
export interface Screen {
  cursor: Cursor | null;
  load(s: State, fresh: boolean): Result;
}

export type ViewSpec<V extends ViewName = ViewName> = SpecBase<V> &
  (V extends WindowName
    ? {kind: 'window'; source: WindowSource<V>}
    : V extends ListName
      ? {kind: 'list'; source: ListSource<V>}
      : {kind: 'screen'; screen: Screen});

export function selectedRow<V extends WindowName>(s: State, v: V): WindowRows[V] | undefined {
  const w = s[v];
  return w.rows[w.selected - w.offset] as WindowRows[V] | undefined;
}

export function listRow<V extends ListName>(s: State, v: V): ListRows[V] | undefined {
  const l = s[v];
  return l.rows[l.selected] as ListRows[V] | undefined;
}

export const idKey = (row: {id: number}): number[] => [row.id];

export function filterTail(s: State, v: FilterView, c: CrumbText): string {
  return s.filters[v] ? ` ${c.sep} filter: ${s.filters[v]}` : '';
}

/** `y` on a build or step: its drv path, or the build id when it has none. */
export function copyDrv(drv: string | null | undefined, build: number): Copy {
  return drv ? {text: drv, what: 'drv path'} : {text: String(build), what: `build id ${build}`};
}

/** `o` on a build: Hydra's build page. */
export function buildPage(sel: Selection | null): string | null {
  return sel ? `/build/${sel.build}` : null;
}
