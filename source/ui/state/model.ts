// The console's state and the messages in and out of the reducer, as plain data: State, the Actions
// the controller feeds in (keys, data arrivals) and the Effects (queries, actions, log reads) the
// reducer hands back for the controller to run.
import type {Size} from './layout.js';
import type {
  ActionOutcome,
  ActionRequest,
  Anchor,
  BuildDetail,
  BuildOrder,
  Capabilities,
  CheckEntry,
  FilterView,
  HeaderData,
  ListName,
  ListRows,
  OverviewData,
  RunnerStats,
  ViewName,
  WindowName,
  WindowRows,
} from './types.js';

/** A window onto a long SQL-backed list: only these rows are in memory. */
export interface Window<T> {
  rows: T[];
  /** Absolute index of rows[0]. */
  offset: number;
  /** Absolute index of the selected row. */
  selected: number;
  /** Absolute index of the first visible row. */
  top: number;
  total: number | null;
  atStart: boolean;
  atEnd: boolean;
  /** A fetch is under way ('replace' | 'append' | 'prepend'). */
  pending: 'replace' | 'append' | 'prepend' | null;
  loaded: boolean;
  error: string | null;
  /** Generation: responses to an older generation are dropped. */
  gen: number;
  /** Where a move beyond the loaded rows wanted to go; applied when the rows arrive. */
  want: number | null;
}

/** A bounded list loaded whole. */
export interface List<T> {
  rows: T[];
  selected: number;
  top: number;
  loaded: boolean;
  error: string | null;
}

export interface LogState {
  build: number;
  stepnr: number | null;
  path: string | null;
  total: number;
  /** First visible line. */
  top: number;
  lines: string[];
  /** When each of `lines` arrived (ms since epoch), or null: it was in the file when the log was opened. */
  times: (number | null)[];
  /** ms since epoch the log was opened (lines without a time were there by then); null until it is open. */
  openedAt: number | null;
  follow: boolean;
  wrap: boolean;
  search: string | null;
  match: number | null;
  error: string | null;
  loading: boolean;
  /** `t`: show each line's time of arrival (lines read while the log is open; earlier ones have none). */
  timestamps: boolean;
}

export interface Dialog {
  title: string;
  lines: string[];
  req: ActionRequest;
  /** The count the operator must type (large or admin-wide actions), else y/N. */
  typed: number | null;
  input: string;
  /** A problem with what was typed. */
  error: string | null;
}

export type Mode = 'normal' | 'filter' | 'command' | 'search' | 'help' | 'dialog' | 'menu';

/** `x`: the actions of the current view, generated from the key table. */
export interface Menu {
  items: {key: string; what: string; disabled: string | null}[];
  selected: number;
}

/** The build detail's tabs, in `[` / `]` order (detail-tabs.ts). */
export type DetailTab = 'summary' | 'steps' | 'log' | 'deps' | 'history';

export interface DetailState {
  id: number;
  data: BuildDetail | null;
  /** Selected step (Summary, Steps and Log tabs). */
  selected: number;
  tab: DetailTab;
  /** Selected row of the Deps and History tabs. */
  depSelected: number;
  historySelected: number;
  /** The Log tab's tail of the selected step's log. */
  logTail: {stepnr: number | null; path: string | null; lines: string[]; total: number; error: string | null; loading: boolean} | null;
  loading: boolean;
  error: string | null;
}

interface BaseState {
  view: ViewName;
  back: ViewName[];
  size: Size;
  mode: Mode;
  input: string;
  inputError: string | null;
  filters: Record<FilterView, string | null>;
  /** The Builds view's sort column (`s`) and whether it is reversed (`S`). */
  order: BuildOrder;
  reverse: boolean;
  overview: OverviewData | null;
  overviewSelected: number;
  /** The Runner view's numbers (null until loaded, or when no runner publishes them). */
  runnerStats: {data: RunnerStats | null; loaded: boolean; error: string | null};
  detail: DetailState | null;
  log: LogState | null;
  /** Marked build ids (Builds view). */
  marks: number[];
  /** The build last marked with space: ctrl-space marks the rows from it to the cursor. */
  markAnchor: number | null;
  /**
   * `a`: every build matching the filter is marked, not only the loaded rows — the selection is the
   * filter itself (`selection`: the filter plus the sort's scope, as the action will run it), its
   * count read from SQL (null until it arrives).
   */
  markAll: {selection: string; count: number | null} | null;
  dialog: Dialog | null;
  menu: Menu | null;
  /** The help's search (`/` in the help): the text, and whether it is still being typed; null: none. */
  helpSearch: {query: string; typing: boolean} | null;
  message: {text: string; error: boolean} | null;
  paused: boolean;
  header: HeaderData | null;
  caps: Capabilities | null;
  busyAction: boolean;
  quit: boolean;
}

/** One slot per windowed view and per list view, named after the view (state.builds, state.steps, …). */
export type State = BaseState & {[K in WindowName]: Window<WindowRows[K]>} & {[K in ListName]: List<ListRows[K]>};

export type Merge = 'replace' | 'append' | 'prepend';

export type Effect =
  | {type: 'fetch'; list: WindowName; anchor: Anchor; merge: Merge; limit: number; gen: number; jump?: boolean}
  | {type: 'count'; list: WindowName; gen: number}
  | {type: 'load'; what: ListName | 'overview' | 'runner'}
  | {type: 'detail'; id: number}
  | {type: 'detailLog'; build: number; stepnr?: number; count: number}
  | {type: 'openLog'; build: number; stepnr?: number; file?: string}
  | {type: 'readLog'; top: number; count: number}
  | {type: 'searchLog'; needle: string; from: number; backwards: boolean}
  | {type: 'closeLog'}
  | {type: 'preview'; req: ActionRequest}
  | {type: 'act'; req: ActionRequest}
  | {type: 'pause'; paused: boolean}
  /** `d`: find the build's latest reproducibility check and open its diff. */
  | {type: 'lastCheck'; build: number}
  /** `a`: count the builds a filter selection names (the exact count bulk actions confirm). */
  | {type: 'countMarked'; selection: string}
  /** `y`: put text on the terminal's clipboard (OSC 52); `what` names it in the message. */
  | {type: 'copy'; text: string; what: string}
  /** `o`: open a page of Hydra's web UI (a path below the hydraUrl setting). */
  | {type: 'open'; path: string}
  | {type: 'quit'};

export type Action =
  | {type: 'key'; key: string}
  | {type: 'resize'; size: Size}
  | {type: 'header'; header: HeaderData}
  | {type: 'caps'; caps: Capabilities}
  | {type: 'page'; list: WindowName; gen: number; merge: Merge; anchor: Anchor; limit: number; rows: unknown[]; jump?: boolean}
  | {type: 'count'; list: WindowName; gen: number; total: number}
  | {type: 'lastCheck'; build: number; check: CheckEntry | null}
  | {type: 'markCount'; selection: string; count: number}
  | {type: 'pageError'; list: WindowName; gen: number; error: string}
  | {type: 'list'; list: ListName; rows: unknown[]}
  | {type: 'listError'; list: ListName | 'overview' | 'runner'; error: string}
  | {type: 'overview'; data: OverviewData}
  | {type: 'runnerStats'; data: RunnerStats | null}
  | {type: 'detail'; id: number; data: BuildDetail | null; error?: string}
  | {type: 'detailLog'; build: number; stepnr: number | null; path: string | null; lines: string[]; total: number; error: string | null}
  | {type: 'logOpened'; build: number; stepnr: number | null; path: string; total: number; openedAt: number}
  | {type: 'logError'; build: number; error: string}
  | {type: 'logLines'; top: number; total: number; lines: string[]; times: (number | null)[]}
  | {type: 'logGrew'; total: number}
  | {type: 'searchResult'; needle: string; line: number}
  | {type: 'previewed'; req: ActionRequest; outcome: ActionOutcome}
  | {type: 'acted'; req: ActionRequest; outcome: ActionOutcome}
  | {type: 'refresh'; what: 'visible' | 'all'}
  | {type: 'message'; text: string; error?: boolean};

export interface Result {
  state: State;
  effects: Effect[];
}

/** Rows kept in memory per window (a few screens). */
export const WINDOW_MAX = 400;

export function emptyWindow<T>(): Window<T> {
  return {rows: [], offset: 0, selected: 0, top: 0, total: null, atStart: true, atEnd: false, pending: null, loaded: false, error: null, gen: 0, want: null};
}

export function emptyList<T>(): List<T> {
  return {rows: [], selected: 0, top: 0, loaded: false, error: null};
}

/** No marks: none marked, no range start, no mark-all. */
export function clearMarks(state: State): State {
  return state.marks.length === 0 && state.markAnchor === null && state.markAll === null ? state : {...state, marks: [], markAnchor: null, markAll: null};
}

/** The state as it is, nothing to run. */
export function stay(state: State): Result {
  return {state, effects: []};
}

/** A footer message (not an error). */
export function say(state: State, text: string): Result {
  return {state: {...state, message: {text, error: false}}, effects: []};
}

/** A refusal: `what: why`, shown as an error, nothing run. */
export function refuse(state: State, what: string, why: string): Result {
  return {state: {...state, message: {text: `${what}: ${why}`, error: true}}, effects: []};
}

export function windowOf(state: State, list: WindowName): Window<unknown> {
  return state[list] as Window<unknown>;
}

export function listOf(state: State, list: ListName): List<unknown> {
  return state[list] as List<unknown>;
}
