// The console's single reducer: every key and every data arrival goes through reduce(state, action),
// which returns the next state and the effects (queries, actions, log reads) the controller should
// run. Handlers never close over state, so fast typing always acts on the current row.
import {compileFilter, compileMachineFilter, formatFilterError, parseFilter, FilterError} from '../../db/filter.js';
import {bodyLines, scrollTop, tableRows, type Size} from './layout.js';
import {COMMANDS, TOP_VIEWS, VIEW_KEYS} from './keymap.js';
import {
  buildKey,
  type ActionOutcome,
  type ActionRequest,
  type Anchor,
  type AuditEntry,
  type BuildDetail,
  type BuildListRow,
  type BuildOrder,
  type Capabilities,
  type CheckEntry,
  type HeaderData,
  type JobsetShare,
  type MachineRow,
  type OverviewData,
  type RunningStep,
  type ViewName,
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
  follow: boolean;
  wrap: boolean;
  search: string | null;
  match: number | null;
  error: string | null;
  loading: boolean;
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

export type Mode = 'normal' | 'filter' | 'command' | 'search' | 'help' | 'dialog';
export type WindowName = 'builds' | 'audit' | 'checks';
export type ListName = 'steps' | 'machines' | 'jobsets';
export type FilterView = 'builds' | 'steps' | 'machines';

export interface State {
  view: ViewName;
  back: ViewName[];
  size: Size;
  mode: Mode;
  input: string;
  inputError: string | null;
  filters: Record<FilterView, string | null>;
  order: BuildOrder;
  builds: Window<BuildListRow>;
  audit: Window<AuditEntry>;
  checks: Window<CheckEntry>;
  steps: List<RunningStep>;
  machines: List<MachineRow>;
  jobsets: List<JobsetShare>;
  overview: OverviewData | null;
  overviewSelected: number;
  detail: {id: number; data: BuildDetail | null; selected: number; loading: boolean; error: string | null} | null;
  log: LogState | null;
  marks: number[];
  dialog: Dialog | null;
  message: {text: string; error: boolean} | null;
  paused: boolean;
  header: HeaderData | null;
  caps: Capabilities | null;
  busyAction: boolean;
  quit: boolean;
}

export type Effect =
  | {type: 'fetch'; list: WindowName; anchor: Anchor; merge: 'replace' | 'append' | 'prepend'; limit: number; gen: number; jump?: boolean}
  | {type: 'count'; list: WindowName; gen: number}
  | {type: 'load'; what: ListName | 'overview'}
  | {type: 'detail'; id: number}
  | {type: 'openLog'; build: number; stepnr?: number; file?: string}
  | {type: 'readLog'; top: number; count: number}
  | {type: 'searchLog'; needle: string; from: number; backwards: boolean}
  | {type: 'closeLog'}
  | {type: 'preview'; req: ActionRequest}
  | {type: 'act'; req: ActionRequest}
  | {type: 'pause'; paused: boolean}
  | {type: 'quit'};

export type Action =
  | {type: 'key'; key: string}
  | {type: 'resize'; size: Size}
  | {type: 'header'; header: HeaderData}
  | {type: 'caps'; caps: Capabilities}
  | {type: 'page'; list: WindowName; gen: number; merge: 'replace' | 'append' | 'prepend'; anchor: Anchor; limit: number; rows: unknown[]; jump?: boolean}
  | {type: 'count'; list: WindowName; gen: number; total: number}
  | {type: 'pageError'; list: WindowName; gen: number; error: string}
  | {type: 'list'; list: ListName; rows: unknown[]}
  | {type: 'listError'; list: ListName | 'overview'; error: string}
  | {type: 'overview'; data: OverviewData}
  | {type: 'detail'; id: number; data: BuildDetail | null; error?: string}
  | {type: 'logOpened'; build: number; stepnr: number | null; path: string; total: number}
  | {type: 'logError'; build: number; error: string}
  | {type: 'logLines'; top: number; total: number; lines: string[]}
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
/** Above this many targets the confirmation asks for the count to be typed (operator-ux §10). */
export const TYPED_CONFIRM_THRESHOLD = 100;

function emptyWindow<T>(): Window<T> {
  return {rows: [], offset: 0, selected: 0, top: 0, total: null, atStart: true, atEnd: false, pending: null, loaded: false, error: null, gen: 0, want: null};
}

function emptyList<T>(): List<T> {
  return {rows: [], selected: 0, top: 0, loaded: false, error: null};
}

export interface InitOptions {
  size: Size;
  view?: ViewName;
  filters?: Partial<Record<FilterView, string | null>>;
}

export function initialState(o: InitOptions): State {
  return {
    view: o.view ?? 'overview',
    back: [],
    size: o.size,
    mode: 'normal',
    input: '',
    inputError: null,
    filters: {builds: null, steps: null, machines: null, ...o.filters},
    order: 'id-desc',
    builds: emptyWindow(),
    audit: emptyWindow(),
    checks: emptyWindow(),
    steps: emptyList(),
    machines: emptyList(),
    jobsets: emptyList(),
    overview: null,
    overviewSelected: 0,
    detail: null,
    log: null,
    marks: [],
    dialog: null,
    message: null,
    paused: false,
    header: null,
    caps: null,
    busyAction: false,
    quit: false,
  };
}

/** Effects that load what the current view shows (on start, on view switch, on refresh). */
export function loadView(state: State, fresh: boolean): Result {
  switch (state.view) {
    case 'builds':
    case 'audit':
    case 'checks':
      return refreshWindow(state, state.view, fresh);
    case 'steps':
    case 'machines':
    case 'jobsets':
    case 'overview':
      return {state, effects: [{type: 'load', what: state.view}]};
    case 'detail':
      return {state, effects: state.detail ? [{type: 'detail', id: state.detail.id}] : []};
    case 'log':
      return {state, effects: []};
  }
}

function pageLimit(state: State): number {
  return Math.max(50, tableRows(state.size) * 2);
}

function keyOf(state: State, list: WindowName, row: unknown): number[] {
  if (list === 'builds') return buildKey(row as BuildListRow, state.order);
  return [(row as {id: number}).id];
}

/** Re-reads a window: from the start (fresh) or in place from its first row. */
function refreshWindow(state: State, list: WindowName, fresh: boolean): Result {
  const w = state[list] as Window<unknown>;
  if (!fresh && w.pending === 'replace') return {state, effects: []};
  const gen = fresh ? w.gen + 1 : w.gen;
  let anchor: Anchor = {kind: 'start'};
  if (!fresh && w.loaded && !w.atStart && w.rows.length > 0) anchor = {kind: 'from', key: keyOf(state, list, w.rows[0])};
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
function ensureWindow(state: State, list: WindowName): Result {
  const w = state[list] as Window<unknown>;
  if (!w.loaded || w.pending || w.rows.length === 0) return {state, effects: []};
  const visible = tableRows(state.size);
  const limit = pageLimit(state);
  const last = w.offset + w.rows.length - 1;
  if (!w.atEnd && w.top + visible * 2 > last) {
    return {
      state: {...state, [list]: {...w, pending: 'append'}},
      effects: [{type: 'fetch', list, anchor: {kind: 'after', key: keyOf(state, list, w.rows[w.rows.length - 1])}, merge: 'append', limit, gen: w.gen}],
    };
  }
  if (!w.atStart && w.top - visible < w.offset) {
    return {
      state: {...state, [list]: {...w, pending: 'prepend'}},
      effects: [{type: 'fetch', list, anchor: {kind: 'before', key: keyOf(state, list, w.rows[0])}, merge: 'prepend', limit, gen: w.gen}],
    };
  }
  return {state, effects: []};
}

function mergePage(state: State, a: Extract<Action, {type: 'page'}>): State {
  const list = a.list;
  const w = state[list] as Window<unknown>;
  if (a.gen !== w.gen) return state;
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
      const selected = Math.max(w.offset, Math.min(w.selected, w.offset + a.rows.length - 1));
      next = {...next, rows: a.rows, atEnd: !full, selected, top: scrollTop(w.top, selected, visible)};
      if (a.rows.length === 0) return reduce(state, {type: 'refresh', what: 'visible'}).state;
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
  return {...state, [list]: next};
}

// ------------------------------------------------------------------ selection helpers

export function selectedBuild(state: State): BuildListRow | null {
  const w = state.builds;
  return (w.rows[w.selected - w.offset] as BuildListRow | undefined) ?? null;
}

/** The build the current view is about, for actions and drill-down. */
export function currentBuildId(state: State): number | null {
  switch (state.view) {
    case 'builds':
      return selectedBuild(state)?.id ?? null;
    case 'steps':
      return state.steps.rows[state.steps.selected]?.build ?? null;
    case 'detail':
      return state.detail?.id ?? null;
    case 'log':
      return state.log?.build ?? null;
    case 'checks': {
      const c = state.checks.rows[state.checks.selected - state.checks.offset];
      return c?.build ?? null;
    }
    default:
      return null;
  }
}

function targets(state: State): number[] {
  if (state.view === 'builds' && state.marks.length > 0) return [...state.marks].sort((a, b) => a - b);
  const id = currentBuildId(state);
  return id === null ? [] : [id];
}

function listLength(state: State): {length: number; min: number} | null {
  switch (state.view) {
    case 'builds':
    case 'audit':
    case 'checks': {
      const w = state[state.view] as Window<unknown>;
      return {length: w.offset + w.rows.length, min: w.offset};
    }
    case 'steps':
    case 'machines':
    case 'jobsets':
      return {length: state[state.view].rows.length, min: 0};
    case 'overview':
      return state.overview ? {length: state.overview.jobsets.length, min: 0} : null;
    case 'detail':
      return state.detail?.data ? {length: state.detail.data.steps.length, min: 0} : null;
    default:
      return null;
  }
}

function visibleRowsOf(state: State): number {
  if (state.view === 'detail') return Math.max(1, Math.floor(bodyLines(state.size) / 2) - 1);
  return tableRows(state.size);
}

/** Moves the selection of the current view to `target` (absolute), clamped to what is loaded. */
function moveTo(state: State, target: number): State {
  const len = listLength(state);
  if (!len || len.length === 0) return state;
  const selected = Math.max(len.min, Math.min(len.length - 1, target));
  const visible = visibleRowsOf(state);
  switch (state.view) {
    case 'builds':
    case 'audit':
    case 'checks': {
      const w = state[state.view] as Window<unknown>;
      // A move past the loaded rows is remembered and completed when the next page arrives.
      const want = (target > selected && !w.atEnd) || (target < selected && !w.atStart) ? target : null;
      return {...state, [state.view]: {...w, selected, want, top: scrollTop(w.top, selected, visible)}};
    }
    case 'steps':
    case 'machines':
    case 'jobsets': {
      const l = state[state.view] as List<unknown>;
      return {...state, [state.view]: {...l, selected, top: scrollTop(l.top, selected, visible)}};
    }
    case 'overview':
      return {...state, overviewSelected: selected};
    case 'detail':
      return state.detail ? {...state, detail: {...state.detail, selected}} : state;
    default:
      return state;
  }
}

function currentIndex(state: State): number {
  switch (state.view) {
    case 'builds':
    case 'audit':
    case 'checks': {
      // Keys typed while a page is on its way continue from where the earlier ones were heading.
      const w = state[state.view] as Window<unknown>;
      return w.want ?? w.selected;
    }
    case 'steps':
    case 'machines':
    case 'jobsets':
      return state[state.view].selected;
    case 'detail':
      return state.detail?.selected ?? 0;
    case 'overview':
      return state.overviewSelected;
    default:
      return 0;
  }
}

// ------------------------------------------------------------------ view switching

function switchView(state: State, view: ViewName, push = false): Result {
  if (view === state.view && !push) return {state, effects: []};
  const back = push ? [...state.back, state.view] : [];
  const next: State = {...state, view, back, message: null, mode: 'normal'};
  const w = view === 'builds' || view === 'audit' || view === 'checks' ? (next[view] as Window<unknown>) : null;
  return loadView(next, w ? !w.loaded : false);
}

function goBack(state: State): Result {
  const back = [...state.back];
  const prev = back.pop();
  if (!prev) return {state, effects: []};
  const effects: Effect[] = state.view === 'log' ? [{type: 'closeLog'}] : [];
  const next: State = {...state, view: prev, back, log: state.view === 'log' ? null : state.log, mode: 'normal'};
  const r = loadView(next, false);
  return {state: r.state, effects: [...effects, ...r.effects]};
}

function openDetail(state: State, id: number): Result {
  const r = switchView({...state, detail: {id, data: null, selected: 0, loading: true, error: null}}, 'detail', true);
  return r;
}

function openLog(state: State, build: number, stepnr?: number, file?: string): Result {
  const next: State = {
    ...state,
    back: [...state.back, state.view],
    view: 'log',
    log: {build, stepnr: stepnr ?? null, path: null, total: 0, top: 0, lines: [], follow: true, wrap: false, search: null, match: null, error: null, loading: true},
  };
  return {state: next, effects: [{type: 'openLog', build, ...(stepnr !== undefined ? {stepnr} : {}), ...(file !== undefined ? {file} : {})}]};
}

// ------------------------------------------------------------------ input modes

function applyFilter(state: State, text: string): Result {
  const view = state.view as FilterView;
  const trimmed = text.trim();
  if (trimmed !== '') {
    try {
      const ast = parseFilter(trimmed);
      if (view === 'machines') compileMachineFilter(ast);
      else compileFilter(ast, view);
    } catch (e) {
      if (e instanceof FilterError) return {state: {...state, inputError: formatFilterError(trimmed, e)}, effects: []};
      throw e;
    }
  }
  const next: State = {...state, mode: 'normal', input: '', inputError: null, filters: {...state.filters, [view]: trimmed === '' ? null : trimmed}};
  if (view === 'builds') return refreshWindow({...next, marks: []}, 'builds', true);
  return {state: {...next, [view]: {...next[view], selected: 0, top: 0}}, effects: [{type: 'load', what: view}]};
}

function runCommand(state: State, text: string): Result {
  const base: State = {...state, mode: 'normal', input: '', inputError: null};
  const [cmd = '', ...args] = text.trim().split(/\s+/);
  if (cmd === '') return {state: base, effects: []};
  if (cmd === 'log' || cmd === 'build') {
    const m = /^(\d+)(?:\/(\d+))?$/.exec(args[0] ?? '');
    if (!m) return {state: {...base, message: {text: `:${cmd} needs a build id${cmd === 'log' ? ' (and optionally /step): :log 1234/5' : ': :build 1234'}`, error: true}}, effects: []};
    if (cmd === 'build') return openDetail(base, Number(m[1]));
    return openLog(base, Number(m[1]), m[2] !== undefined ? Number(m[2]) : undefined);
  }
  const target = COMMANDS[cmd];
  if (!target) return {state: {...base, message: {text: `unknown command :${cmd} (try :builds :queue :steps :machines :jobsets :checks :audit :log ID :build ID :q)`, error: true}}, effects: []};
  if (target === 'quit') return {state: {...base, quit: true}, effects: [{type: 'quit'}]};
  if (target === 'queue') {
    const s = {...base, order: 'queue' as BuildOrder};
    if (state.view === 'builds' && state.order === 'queue') return {state: s, effects: []};
    return refreshWindow({...s, view: 'builds', back: []}, 'builds', true);
  }
  return switchView(base, target);
}

function inputKey(state: State, key: string): Result {
  if (key === 'esc') return {state: {...state, mode: 'normal', input: '', inputError: null}, effects: []};
  if (key === 'enter') {
    if (state.mode === 'filter') return applyFilter(state, state.input);
    if (state.mode === 'command') return runCommand(state, state.input);
    // search
    const needle = state.input;
    const log = state.log;
    const next: State = {...state, mode: 'normal', input: ''};
    if (!log || needle === '') return {state: {...next, log: log ? {...log, search: null, match: null} : log}, effects: []};
    return {state: {...next, log: {...log, search: needle, follow: false}}, effects: [{type: 'searchLog', needle, from: log.top, backwards: false}]};
  }
  if (key === 'backspace') return {state: {...state, input: state.input.slice(0, -1), inputError: null}, effects: []};
  if (key === 'space') return {state: {...state, input: state.input + ' '}, effects: []};
  if (key.length === 1) return {state: {...state, input: state.input + key, inputError: null}, effects: []};
  return {state, effects: []};
}

function dialogKey(state: State, key: string): Result {
  const d = state.dialog!;
  const close: State = {...state, dialog: null, mode: 'normal'};
  if (key === 'esc' || key === 'n' || key === 'q') return {state: {...close, message: {text: 'cancelled: nothing changed', error: false}}, effects: []};
  if (d.typed !== null) {
    if (/^[0-9]$/.test(key)) return {state: {...state, dialog: {...d, input: d.input + key, error: null}}, effects: []};
    if (key === 'backspace') return {state: {...state, dialog: {...d, input: d.input.slice(0, -1)}}, effects: []};
    if (key === 'enter') {
      if (d.input.trim() === String(d.typed)) return {state: {...close, busyAction: true}, effects: [{type: 'act', req: {...d.req, dryRun: false}}]};
      return {state: {...state, dialog: {...d, input: '', error: `type ${d.typed} exactly to confirm, or esc`}}, effects: []};
    }
    return {state, effects: []};
  }
  if (key === 'y' || key === 'enter') return {state: {...close, busyAction: true}, effects: [{type: 'act', req: {...d.req, dryRun: false}}]};
  return {state, effects: []};
}

// ------------------------------------------------------------------ actions

const VERB: Record<string, string> = {restart: 'restart', cancel: 'cancel', bump: 'bump', drain: 'drain', enable: 'enable', check: 'check'};

function refuse(state: State, what: string, why: string): Result {
  return {state: {...state, message: {text: `${what}: ${why}`, error: true}}, effects: []};
}

function buildAction(state: State, kind: 'restart' | 'cancel' | 'bump' | 'check', toFront = false): Result {
  if (state.caps?.readonly && kind !== 'check') return refuse(state, VERB[kind]!, state.caps.readonly);
  if (kind === 'check' && state.caps?.checks) return refuse(state, 'check', state.caps.checks);
  const ids = targets(state);
  if (ids.length === 0) return refuse(state, VERB[kind]!, 'no build selected here');
  const req: ActionRequest = {kind, ids, ...(toFront ? {toFront: true} : {})};
  // Cancel is always confirmed; other build actions are confirmed when they touch more than one build.
  if (kind === 'cancel' || ids.length > 1) return {state: {...state, busyAction: true, message: {text: `${kind}: checking the exact scope…`, error: false}}, effects: [{type: 'preview', req: {...req, dryRun: true}}]};
  return {state: {...state, busyAction: true, message: {text: `${toFront ? 'bump to the front' : kind} build ${ids[0]}…`, error: false}}, effects: [{type: 'act', req}]};
}

/** `i` on the Machines view: ping the selected machine (read-only, so allowed in read-only mode). */
function pingAction(state: State): Result {
  if (state.view !== 'machines') return refuse(state, 'ping', 'select a machine in the Machines view (4)');
  const m = state.machines.rows[state.machines.selected];
  if (!m) return refuse(state, 'ping', 'no machine selected');
  return {state: {...state, busyAction: true, message: {text: `pinging ${m.name}…`, error: false}}, effects: [{type: 'act', req: {kind: 'ping', machine: m.uri}}]};
}

function machineAction(state: State, kind: 'drain' | 'enable'): Result {
  if (state.view !== 'machines') return refuse(state, kind, 'select a machine in the Machines view (4)');
  if (state.caps?.readonly) return refuse(state, kind, state.caps.readonly);
  if (state.caps?.admin) return refuse(state, kind, state.caps.admin);
  const m = state.machines.rows[state.machines.selected];
  if (!m) return refuse(state, kind, 'no machine selected');
  const req: ActionRequest = {kind, machine: m.uri};
  if (kind === 'drain') {
    return {
      state: {
        ...state,
        mode: 'dialog',
        dialog: {
          title: `Drain ${m.name}?`,
          lines: [`No new steps will be sent to ${m.uri}; its ${m.currentJobs ?? 0} running step(s) finish.`, 'e enables it again.'],
          req,
          typed: null,
          input: '',
          error: null,
        },
      },
      effects: [],
    };
  }
  return {state: {...state, busyAction: true, message: {text: `enabling ${m.name}…`, error: false}}, effects: [{type: 'act', req}]};
}

function previewed(state: State, req: ActionRequest, o: ActionOutcome): State {
  const base: State = {...state, busyAction: false};
  if (!o.ok) return {...base, message: {text: `${req.kind}: ${o.message}`, error: true}};
  const n = o.changed?.length ?? 0;
  const of = o.targets?.length ?? n;
  if (n === 0) return {...base, message: {text: `${req.kind}: nothing to do — ${of} selected build(s) already in that state`, error: false}};
  const verb = req.kind[0]!.toUpperCase() + req.kind.slice(1);
  const title = `${verb} ${n} build${n === 1 ? '' : 's'}${o.scope ? ` ${o.scope}` : ''}?`;
  const lines: string[] = [];
  const ids = o.changed ?? [];
  lines.push(`builds: ${ids.slice(0, 12).join(', ')}${ids.length > 12 ? ` … and ${ids.length - 12} more` : ''}`);
  if (of > n) lines.push(`${of - n} of the ${of} selected are already in that state and stay as they are.`);
  if (state.view === 'builds' && state.filters.builds) lines.push(`filter: ${state.filters.builds}`);
  const typed = n > TYPED_CONFIRM_THRESHOLD ? n : null;
  return {...base, mode: 'dialog', message: null, dialog: {title, lines, req: {...req, ids: o.changed, dryRun: false}, typed, input: '', error: null}};
}

// ------------------------------------------------------------------ log keys

function logKey(state: State, key: string): Result | null {
  const log = state.log;
  if (!log) return null;
  const page = bodyLines(state.size) - 1;
  const maxTop = Math.max(0, log.total - page);
  const scroll = (top: number, follow = false): Result => {
    const t = Math.max(0, Math.min(maxTop, top));
    return {state: {...state, log: {...log, top: t, follow}}, effects: [{type: 'readLog', top: t, count: page}]};
  };
  switch (key) {
    case 'j':
    case 'down':
      return scroll(log.top + 1);
    case 'k':
    case 'up':
      return scroll(log.top - 1);
    case 'pgdn':
    case 'ctrl-f':
    case 'space':
      return scroll(log.top + page);
    case 'pgup':
    case 'ctrl-b':
      return scroll(log.top - page);
    case 'g':
    case 'home':
      return scroll(0);
    case 'G':
    case 'end':
      return scroll(maxTop, log.follow);
    case 'f':
      return log.follow ? {state: {...state, log: {...log, follow: false}}, effects: []} : scroll(maxTop, true);
    case 'w':
      return {state: {...state, log: {...log, wrap: !log.wrap}}, effects: []};
    case '/':
      return {state: {...state, mode: 'search', input: ''}, effects: []};
    case 'n':
    case 'N':
      if (!log.search) return {state: {...state, message: {text: 'no search yet: / to search', error: false}}, effects: []};
      return {
        state: {...state, log: {...log, follow: false}},
        effects: [{type: 'searchLog', needle: log.search, from: key === 'n' ? (log.match ?? log.top - 1) + 1 : (log.match ?? log.top) - 1, backwards: key === 'N'}],
      };
    default:
      return null;
  }
}

// ------------------------------------------------------------------ keys

function normalKey(state: State, key: string): Result {
  const none = {state, effects: [] as Effect[]};
  if (key === 'ctrl-c') return {state: {...state, quit: true}, effects: [{type: 'quit'}]};
  if (state.view === 'log') {
    const r = logKey(state, key);
    if (r) return r;
  }
  const cleared: State = state.message ? {...state, message: null} : state;
  const visible = visibleRowsOf(state);
  const idx = currentIndex(state);
  switch (key) {
    case 'q':
      if (state.back.length > 0) return goBack(cleared);
      return {state: {...state, quit: true}, effects: [{type: 'quit'}]};
    case 'esc':
      if (state.view === 'builds' || state.view === 'steps' || state.view === 'machines') {
        if (state.filters[state.view] !== null) return applyFilter({...cleared, mode: 'filter'}, '');
      }
      if (state.view === 'builds' && state.marks.length > 0) return {state: {...cleared, marks: []}, effects: []};
      return goBack(cleared);
    case '?':
      return {state: {...state, mode: 'help'}, effects: []};
    case ':':
      return {state: {...cleared, mode: 'command', input: '', inputError: null}, effects: []};
    case '/':
      if (state.view === 'builds' || state.view === 'steps' || state.view === 'machines') {
        return {state: {...cleared, mode: 'filter', input: state.filters[state.view] ?? '', inputError: null}, effects: []};
      }
      return {state: {...state, message: {text: 'no filter in this view (filters: builds 2, steps 3, machines 4)', error: false}}, effects: []};
    case 'p': {
      const paused = !state.paused;
      return {state: {...cleared, paused}, effects: [{type: 'pause', paused}]};
    }
    case 'tab':
    case 'shift-tab': {
      const i = TOP_VIEWS.indexOf(state.view);
      const base = i < 0 ? 0 : i;
      const next = TOP_VIEWS[(base + (key === 'tab' ? 1 : TOP_VIEWS.length - 1)) % TOP_VIEWS.length]!;
      return switchView(cleared, next);
    }
    case 'j':
    case 'down':
      return withEnsure(moveTo(cleared, idx + 1));
    case 'k':
    case 'up':
      return withEnsure(moveTo(cleared, idx - 1));
    case 'ctrl-f':
    case 'pgdn':
      return withEnsure(moveTo(cleared, idx + visible));
    case 'ctrl-b':
    case 'pgup':
      return withEnsure(moveTo(cleared, idx - visible));
    case 'g':
    case 'home':
      return jumpEdge(cleared, 'start');
    case 'G':
    case 'end':
      return jumpEdge(cleared, 'end');
    case 'enter': {
      if (state.view === 'detail') {
        const step = state.detail?.data?.steps[state.detail.selected];
        return step ? openLog(cleared, state.detail!.id, step.stepnr) : none;
      }
      if (state.view === 'checks') {
        // Drill down into a check: its diff log in the log viewer (search, wrap, paging).
        const c = state.checks.rows[state.checks.selected - state.checks.offset];
        if (!c) return none;
        if (!c.diffLogPath) return {state: {...state, message: {text: `check ${c.id}: ${c.verdict} — no diff to show`, error: false}}, effects: []};
        return openLog(cleared, c.build ?? 0, undefined, c.diffLogPath);
      }
      if (state.view === 'jobsets') {
        const j = state.jobsets.rows[state.jobsets.selected];
        if (!j) return none;
        const s = {...cleared, filters: {...cleared.filters, builds: `jobset:${j.project}:${j.name}`}, view: 'builds' as ViewName, back: [...state.back, state.view]};
        return refreshWindow(s, 'builds', true);
      }
      if (state.view === 'machines') {
        const m = state.machines.rows[state.machines.selected];
        if (!m) return none;
        const s = {...cleared, filters: {...cleared.filters, steps: `machine:"${m.uri}"`}, view: 'steps' as ViewName, back: [...state.back, state.view]};
        return {state: {...s, steps: {...s.steps, selected: 0, top: 0}}, effects: [{type: 'load', what: 'steps'}]};
      }
      const id = currentBuildId(state);
      return id === null ? none : openDetail(cleared, id);
    }
    case 'l': {
      if (state.view === 'detail') {
        const step = state.detail?.data?.steps[state.detail.selected];
        return openLog(cleared, state.detail!.id, step?.stepnr);
      }
      if (state.view === 'steps') {
        const s = state.steps.rows[state.steps.selected];
        return s ? openLog(cleared, s.build, s.stepnr) : none;
      }
      const id = currentBuildId(state);
      return id === null ? {state: {...state, message: {text: 'l: select a build or a step first', error: false}}, effects: []} : openLog(cleared, id);
    }
    case 'space': {
      if (state.view !== 'builds') return {state: {...state, message: {text: 'marking works in the Builds view (2)', error: false}}, effects: []};
      const row = selectedBuild(state);
      if (!row) return none;
      const marks = state.marks.includes(row.id) ? state.marks.filter((m) => m !== row.id) : [...state.marks, row.id];
      return withEnsure(moveTo({...cleared, marks}, idx + 1));
    }
    case 's':
      if (state.view !== 'builds') return none;
      return refreshWindow({...cleared, order: state.order === 'queue' ? 'id-desc' : 'queue', marks: []}, 'builds', true);
    case 'r':
      return buildAction(cleared, 'restart');
    case 'ctrl-d':
      return buildAction(cleared, 'cancel');
    case 'b':
      return buildAction(cleared, 'bump');
    case 'B':
      return buildAction(cleared, 'bump', true);
    case 'c':
      return buildAction(cleared, 'check');
    case 'e':
      return machineAction(cleared, 'enable');
    case 'E':
      return machineAction(cleared, 'drain');
    case 'i':
      return pingAction(cleared);
    default: {
      const view = VIEW_KEYS[key];
      if (view) return switchView(cleared, view);
      return none;
    }
  }
}

function withEnsure(state: State): Result {
  if (state.view === 'builds' || state.view === 'audit' || state.view === 'checks') return ensureWindow(state, state.view);
  return {state, effects: []};
}

function jumpEdge(state: State, edge: 'start' | 'end'): Result {
  const v = state.view;
  if (v === 'builds' || v === 'audit' || v === 'checks') {
    const w = state[v] as Window<unknown>;
    if ((edge === 'start' && w.atStart) || (edge === 'end' && w.atEnd)) {
      return withEnsure(moveTo(state, edge === 'start' ? 0 : w.offset + w.rows.length - 1));
    }
    const gen = w.gen + 1;
    return {
      state: {...state, [v]: {...w, gen, pending: 'replace'}},
      effects: [{type: 'fetch', list: v, anchor: {kind: edge}, merge: 'replace', limit: pageLimit(state), gen, jump: true}],
    };
  }
  const len = listLength(state);
  if (!len) return {state, effects: []};
  return {state: moveTo(state, edge === 'start' ? 0 : len.length - 1), effects: []};
}

// ------------------------------------------------------------------ reduce

export function reduce(state: State, action: Action): Result {
  switch (action.type) {
    case 'key': {
      const key = action.key;
      if (state.mode === 'help') return {state: {...state, mode: 'normal'}, effects: key === 'ctrl-c' ? [{type: 'quit'}] : []};
      if (state.mode === 'dialog') return dialogKey(state, key);
      if (state.mode === 'filter' || state.mode === 'command' || state.mode === 'search') return inputKey(state, key);
      return normalKey(state, key);
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
    case 'page': {
      const merged = mergePage(state, action);
      return ensureWindow(merged, action.list);
    }
    case 'count': {
      const w = state[action.list] as Window<unknown>;
      if (action.gen !== w.gen) return {state, effects: []};
      return {state: {...state, [action.list]: {...w, total: w.atEnd ? w.offset + w.rows.length : action.total}}, effects: []};
    }
    case 'pageError': {
      const w = state[action.list] as Window<unknown>;
      if (action.gen !== w.gen) return {state, effects: []};
      return {state: {...state, [action.list]: {...w, pending: null, loaded: true, error: action.error}}, effects: []};
    }
    case 'list': {
      const l = state[action.list] as List<unknown>;
      const selected = Math.max(0, Math.min(l.selected, action.rows.length - 1));
      const visible = tableRows(state.size);
      return {state: {...state, [action.list]: {rows: action.rows, selected, top: scrollTop(Math.min(l.top, selected), selected, visible), loaded: true, error: null}}, effects: []};
    }
    case 'listError':
      if (action.list === 'overview') return {state: {...state, message: {text: `overview: ${action.error}`, error: true}}, effects: []};
      return {state: {...state, [action.list]: {...state[action.list], loaded: true, error: action.error}}, effects: []};
    case 'overview':
      return {state: {...state, overview: action.data}, effects: []};
    case 'detail': {
      if (!state.detail || state.detail.id !== action.id) return {state, effects: []};
      const steps = action.data?.steps.length ?? 0;
      const error = action.error ?? (action.data ? null : `build ${action.id} does not exist`);
      return {state: {...state, detail: {...state.detail, data: action.data, loading: false, error, selected: Math.min(state.detail.selected, Math.max(0, steps - 1))}}, effects: []};
    }
    case 'logOpened': {
      const log = state.log;
      if (!log || log.build !== action.build) return {state, effects: []};
      const page = bodyLines(state.size) - 1;
      const top = log.follow ? Math.max(0, action.total - page) : 0;
      return {state: {...state, log: {...log, path: action.path, stepnr: action.stepnr, total: action.total, top, loading: false}}, effects: [{type: 'readLog', top, count: page}]};
    }
    case 'logError': {
      const log = state.log;
      if (!log || log.build !== action.build) return {state, effects: []};
      return {state: {...state, log: {...log, loading: false, error: action.error}}, effects: []};
    }
    case 'logLines': {
      const log = state.log;
      if (!log) return {state, effects: []};
      return {state: {...state, log: {...log, lines: action.lines, top: action.top, total: action.total}}, effects: []};
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
      const next: State = {...state, busyAction: false, message: {text: o.message, error: !o.ok}, marks: o.ok ? [] : state.marks};
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
