// The key table's entries for the log viewer (follow, wrap, timestamps, search, scrolling) and those that act
// everywhere (views, command line, pause, back, help, quit).
import {clearMarks, say, stay, type Result, type State} from './model.js';
import {clockTime} from '../format.js';
import {applyFilter, COMMAND_LIST} from './input.js';
import {goBack, scrollLog, switchView} from './navigation.js';
import {FILTER_VIEWS, TOP_VIEWS, VIEWS} from './views.js';
import {BROWSE_VIEWS, type KeySpec} from './key-spec.js';

const VIEW_KEYS = TOP_VIEWS.map((v) => VIEWS[v].key!);

/** The log viewer. */
export const LOG_KEYS: readonly KeySpec[] = [
  {
    keys: ['f'],
    label: 'f',
    section: 'Log',
    help: 'follow on/off',
    views: ['log'],
    hints: [{what: (s) => (s.log?.follow ? 'unfollow' : 'follow')}],
    run: (s) => (s.log?.follow ? {state: {...s, log: {...s.log, follow: false}}, effects: []} : scrollLog(s, 'follow')),
  },
  {
    keys: ['w'],
    label: 'w',
    section: 'Log',
    help: 'wrap long lines',
    views: ['log'],
    hints: [{what: 'wrap'}],
    run: (s) => (s.log ? {state: {...s, log: {...s.log, wrap: !s.log.wrap}}, effects: []} : stay(s)),
  },
  {
    keys: ['t'],
    label: 't',
    section: 'Log',
    help: 'timestamps: when each line arrived (lines already there when the log was opened have none)',
    views: ['log'],
    hints: [{what: (s) => (s.log?.timestamps ? 'no times' : 'times')}],
    run: (s) => (s.log ? toggleTimestamps(s) : stay(s)),
  },
  {
    keys: ['/', 'n', 'N'],
    label: '/ n N',
    section: 'Log',
    help: 'search, next, previous',
    views: ['log'],
    hints: [
      {key: '/', what: 'search'},
      {key: 'n/N', what: 'next/prev'},
    ],
    menu: [
      {key: '/', what: 'search'},
      {key: 'n', what: 'next match'},
      {key: 'N', what: 'previous match'},
    ],
    run: (s, key) => {
      const log = s.log;
      if (key === '/') return {state: {...s, mode: 'search', input: ''}, effects: []};
      if (!log?.search) return say(s, 'no search yet: / to search');
      return {
        state: {...s, log: {...log, follow: false}},
        effects: [{type: 'searchLog', needle: log.search, from: key === 'n' ? (log.match ?? log.top - 1) + 1 : (log.match ?? log.top) - 1, backwards: key === 'N'}],
      };
    },
  },
  {
    keys: ['j', 'k', 'down', 'up', 'pgdn', 'pgup', 'ctrl-f', 'ctrl-b', 'space', 'g', 'G', 'home', 'end'],
    label: 'j k PgDn PgUp g G',
    section: 'Log',
    help: 'scroll (space: a page); top / bottom',
    views: ['log'],
    hints: [{key: 'g/G', what: 'top/bottom'}],
    menu: false,
    run: scrollLog,
  },
];

/** Everywhere. */
export const GLOBAL_KEYS: readonly KeySpec[] = [
  {
    keys: [...VIEW_KEYS, 'tab', 'shift-tab'],
    label: `1…${VIEW_KEYS.length} tab`,
    section: 'Global',
    help: TOP_VIEWS.map((v) => VIEWS[v].commands[0]).join(', '),
    hints: [{key: `1-${VIEW_KEYS.length}`, what: 'views', in: BROWSE_VIEWS}],
    run: (s, key) => {
      if (key !== 'tab' && key !== 'shift-tab') return switchView(s, TOP_VIEWS[VIEW_KEYS.indexOf(key)]!);
      const i = Math.max(0, TOP_VIEWS.indexOf(s.view));
      return switchView(s, TOP_VIEWS[(i + (key === 'tab' ? 1 : TOP_VIEWS.length - 1)) % TOP_VIEWS.length]!);
    },
  },
  {
    keys: [':'],
    label: ':',
    section: 'Global',
    help: `command: ${COMMAND_LIST.slice(0, 3).join(' ')} … (every one under Commands)`,
    hints: [{what: 'command', in: BROWSE_VIEWS}],
    run: (s) => ({state: {...s, mode: 'command', input: '', inputError: null}, effects: []}),
  },
  {
    keys: ['p'],
    label: 'p',
    section: 'Global',
    help: 'pause live updates',
    hints: [{what: (s) => (s.paused ? 'resume' : 'pause'), in: BROWSE_VIEWS}],
    run: (s) => ({state: {...s, paused: !s.paused}, effects: [{type: 'pause', paused: !s.paused}]}),
  },
  {
    keys: ['esc'],
    label: 'esc',
    section: 'Global',
    help: 'back / clear filter / clear marks',
    hints: [{what: 'back', in: ['detail', 'log']}],
    run: (s) => {
      const v = s.view;
      if (VIEWS[v].filter && s.filters[v as (typeof FILTER_VIEWS)[number]] !== null) return applyFilter({...s, mode: 'filter'}, '');
      if (VIEWS[v].marks && (s.marks.length > 0 || s.markAll)) return {state: clearMarks(s), effects: []};
      return goBack(s);
    },
  },
  {
    keys: ['?'],
    label: '?',
    section: 'Global',
    help: 'this help',
    hints: [{what: 'help'}],
    run: (s) => ({state: {...s, mode: 'help'}, effects: []}),
  },
  {
    keys: ['q', 'ctrl-c'],
    label: 'q ctrl-c',
    section: 'Global',
    help: 'quit (q in a sub-view: back; ctrl-c from anywhere, dialogs and text lines too)',
    hints: [{key: 'q', what: 'quit', in: BROWSE_VIEWS}],
    run: (s, key) => (key === 'q' && s.back.length > 0 ? goBack(s) : {state: {...s, quit: true}, effects: [{type: 'quit'}]}),
  },
];

/** `t`: the arrival time of each line on or off; says what the times mean and which lines have none. */
function toggleTimestamps(s: State): Result {
  const log = s.log!;
  const on = !log.timestamps;
  const since = log.openedAt !== null ? clockTime(log.openedAt) : null;
  const text = on ? `timestamps on${since ? ` (--:--:--: already there when opened at ${since})` : ''}` : 'timestamps off';
  return {state: {...s, log: {...log, timestamps: on}, message: {text, error: false}}, effects: []};
}
