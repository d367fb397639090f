// The console's text-entry modes: the `/` filter line, the `:` command line and the log search,
// and the confirmation dialog (y/N, or the count typed for large actions).
import {compileFilter, compileMachineFilter, formatFilterError, parseFilter, FilterError} from '../../db/filter.js';
import {clearMarks, type Result, type State} from './model.js';
import type {BuildOrder, ViewName} from './types.js';
import {openDetail, openLog, switchView} from './navigation.js';
import {isFilterView, TOP_VIEWS, VIEW_NAMES, VIEWS} from './views.js';
import {reloadFiltered, reloadWindow} from './selection.js';

/** `:` names → views (from the views table). */
export const VIEW_COMMANDS: ReadonlyMap<string, ViewName> = new Map(VIEW_NAMES.flatMap((v) => VIEWS[v].commands.map((c) => [c, v] as const)));

/** The `:` commands that are not a view's name: how help writes them, what they do. */
interface OtherCommand {
  names: readonly string[];
  usage: string;
  help: string;
  run(base: State, state: State, args: string[]): Result;
}

function buildArg(cmd: string, arg: string | undefined): {build: number; stepnr?: number} | string {
  const m = /^(\d+)(?:\/(\d+))?$/.exec(arg ?? '');
  if (!m) return `:${cmd} needs a build id${cmd === 'log' ? ' (and optionally /step): :log 1234/5' : ': :build 1234'}`;
  return {build: Number(m[1]), ...(m[2] !== undefined ? {stepnr: Number(m[2])} : {})};
}

const OTHER_COMMANDS: readonly OtherCommand[] = [
  {
    names: ['queue'],
    usage: ':queue',
    help: 'the Builds view in queue order',
    run: (base, state) => {
      const s = {...base, order: 'queue' as BuildOrder, reverse: false};
      if (state.view === 'builds' && state.order === 'queue' && !state.reverse) return {state: s, effects: []};
      return reloadWindow({...s, view: 'builds', back: []}, 'builds');
    },
  },
  {
    names: ['log'],
    usage: ':log 12/3',
    help: 'the log of build 12, step 3 (the last step without /3)',
    run: (base, _state, args) => {
      const a = buildArg('log', args[0]);
      return typeof a === 'string' ? commandError(base, a) : openLog(base, a.build, a.stepnr);
    },
  },
  {
    names: ['build'],
    usage: ':build 12',
    help: 'the detail of build 12',
    run: (base, _state, args) => {
      const a = buildArg('build', args[0]);
      return typeof a === 'string' ? commandError(base, a) : openDetail(base, a.build);
    },
  },
  {names: ['q', 'quit'], usage: ':q', help: 'quit', run: (base) => ({state: {...base, quit: true}, effects: [{type: 'quit'}]})},
];

/** Views with `:` names: the top-level ones in number-key order, then the others in table order. */
const COMMAND_VIEWS = [...TOP_VIEWS, ...VIEW_NAMES.filter((v) => !TOP_VIEWS.includes(v))].filter((v) => VIEWS[v].commands.length > 0);

/** Every `:` command, canonical names only: each view's (from the views table), then the others. */
export const COMMAND_LIST: readonly string[] = [...COMMAND_VIEWS.map((v) => `:${VIEWS[v].commands[0]}`), ...OTHER_COMMANDS.map((c) => c.usage)];

/** The help's Commands section: every `:` command with its aliases and what it opens. */
export function commandHelp(): {keys: string; what: string}[] {
  return [
    ...COMMAND_VIEWS.map((v) => ({keys: VIEWS[v].commands.map((c) => `:${c}`).join(' '), what: `the ${VIEWS[v].title} view${VIEWS[v].key ? ` (${VIEWS[v].key})` : ''}`})),
    ...OTHER_COMMANDS.map((c) => ({keys: [c.usage, ...c.names.slice(1).map((n) => `:${n}`)].join(' '), what: c.help})),
  ];
}

function commandError(state: State, text: string): Result {
  return {state: {...state, message: {text, error: true}}, effects: []};
}

export function applyFilter(state: State, text: string): Result {
  const view = state.view;
  if (!isFilterView(view)) return {state: {...state, mode: 'normal', input: ''}, effects: []};
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
  return reloadFiltered(VIEWS[view].marks ? clearMarks(next) : next, view);
}

export function runCommand(state: State, text: string): Result {
  const base: State = {...state, mode: 'normal', input: '', inputError: null};
  const [cmd = '', ...args] = text.trim().split(/\s+/);
  if (cmd === '') return {state: base, effects: []};
  const other = OTHER_COMMANDS.find((c) => c.names.includes(cmd));
  if (other) return other.run(base, state, args);
  const target = VIEW_COMMANDS.get(cmd);
  if (!target) return commandError(base, `unknown command :${cmd} (try ${COMMAND_LIST.join(' ')})`);
  return switchView(base, target);
}

export function inputKey(state: State, key: string): Result {
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

/** Footer hints of the dialog: how to confirm, how to back out. */
export function dialogHints(state: State): {key: string; what: string}[] {
  return state.dialog?.typed !== null ? [{key: 'digits enter', what: 'confirm'}, {key: 'esc', what: 'cancel'}] : [{key: 'y', what: 'confirm'}, {key: 'n esc', what: 'cancel'}];
}

export function dialogKey(state: State, key: string): Result {
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
