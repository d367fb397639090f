// The key table's entries for actions: on the selected (or marked) builds — restart, cancel, bump, check, the diff
// of the last check —, on an evaluation, on a machine (enable, drain, ping), and copying or opening the selection.
import {refuse, say} from './model.js';
import {buildAction, evalAction, machineAction, pingAction} from './acting.js';
import {VIEW_NAMES, VIEWS} from './views.js';
import {BUILD_HINTS, BUILD_VIEWS, machineKind, noBuild, readonly, viewName, type KeySpec} from './key-spec.js';

/** Views where `y` copies and `o` opens (their entries in the views table say what). */
const COPY_VIEWS = VIEW_NAMES.filter((v) => VIEWS[v].copy !== null);
const WEB_VIEWS = VIEW_NAMES.filter((v) => VIEWS[v].web !== null);

/** Actions on builds, evaluations and machines. */
export const ACTION_KEYS: readonly KeySpec[] = [
  {
    keys: ['r'],
    label: 'r',
    section: 'Actions',
    help: 'restart (marked or current)',
    views: BUILD_VIEWS,
    elsewhere: noBuild('restart'),
    disabled: readonly('restart'),
    hints: [{what: 'restart', in: BUILD_HINTS}],
    run: (s) => buildAction(s, 'restart'),
  },
  {
    keys: ['ctrl-d'],
    label: 'ctrl-d',
    section: 'Actions',
    help: 'cancel (always confirmed, shows the exact scope)',
    views: BUILD_VIEWS,
    elsewhere: noBuild('cancel'),
    disabled: readonly('cancel'),
    hints: [{key: '^d', what: 'cancel', in: BUILD_HINTS}],
    run: (s) => buildAction(s, 'cancel'),
  },
  {
    keys: ['b', 'B'],
    label: 'b B',
    section: 'Actions',
    help: 'bump (Hydra) / bump above every existing bump',
    views: BUILD_VIEWS,
    elsewhere: noBuild('bump'),
    disabled: readonly('bump'),
    hints: [{key: 'b/B', what: 'bump/top', in: BUILD_HINTS}],
    menu: [
      {key: 'b', what: 'bump (Hydra)'},
      {key: 'B', what: 'bump above every existing bump'},
    ],
    run: (s, key) => buildAction(s, 'bump', key === 'B'),
  },
  {
    keys: ['c'],
    label: 'c',
    section: 'Actions',
    help: 'reproducibility check',
    views: BUILD_VIEWS,
    elsewhere: noBuild('check'),
    disabled: (s) => readonly('check')(s) ?? (s.caps?.checks ? {hint: 'not available', text: `check: ${s.caps.checks}`} : null),
    hints: [{what: 'check', in: ['builds']}],
    run: (s) => buildAction(s, 'check'),
  },
  {
    keys: ['d'],
    label: 'd',
    section: 'Actions',
    help: "diff of the build's last reproducibility check (in the log viewer)",
    views: BUILD_VIEWS,
    elsewhere: noBuild('diff'),
    hints: [{what: 'diff', in: ['checks']}],
    run: (s) => {
      const sel = VIEWS[s.view].selected?.(s);
      if (!sel) return refuse(s, 'diff', 'no build selected here');
      return {state: {...s, message: {text: `diff: looking up the last check of build ${sel.build}…`, error: false}}, effects: [{type: 'lastCheck', build: sel.build}]};
    },
  },
  {
    keys: ['r', 'ctrl-d'],
    label: 'r ctrl-d',
    section: 'Actions',
    help: 'evals: restart failed / cancel queued builds (confirmed, exact scope)',
    views: ['evals'],
    disabled: readonly('eval action'),
    hints: [
      {key: 'r', what: 'restart failed'},
      {key: '^d', what: 'cancel eval'},
    ],
    menu: [
      {key: 'r', what: "restart the eval's failed builds"},
      {key: 'ctrl-d', what: "cancel the eval's queued builds"},
    ],
    run: (s, key) => evalAction(s, key === 'r' ? 'restart-failed' : 'cancel-eval'),
  },
  {
    keys: ['e', 'E'],
    label: 'e E',
    section: 'Actions',
    help: 'machines: enable / drain',
    views: ['machines'],
    elsewhere: (key) => ({text: `${machineKind(key)}: select a machine in ${viewName('machines')}`, error: true}),
    disabled: (s, key) => {
      const why = s.caps?.readonly ?? s.caps?.admin;
      return why ? {hint: s.caps?.readonly ? 'read-only' : 'needs admin', text: `${machineKind(key)}: ${why}`} : null;
    },
    hints: [
      {key: 'e', what: 'enable'},
      {key: 'E', what: 'drain'},
    ],
    run: (s, key) => machineAction(s, machineKind(key)),
  },
  {
    keys: ['i'],
    label: 'i',
    section: 'Actions',
    help: 'machines: ping (connect, handshake, trust, systems, free space)',
    views: ['machines'],
    elsewhere: () => ({text: `ping: select a machine in ${viewName('machines')}`, error: true}),
    hints: [{what: 'ping'}],
    run: pingAction,
  },
];

/** `y` and `o`: the selection to the clipboard, or in Hydra's web UI. */
export const COPY_KEYS: readonly KeySpec[] = [
  {
    keys: ['y'],
    label: 'y',
    section: 'Actions',
    help: 'copy the drv path (build id where there is none) to the clipboard (OSC 52)',
    views: COPY_VIEWS,
    elsewhere: () => ({text: 'copy: nothing to copy here (select a build, step or eval)', error: false}),
    run: (s) => {
      const c = VIEWS[s.view].copy?.(s);
      return c ? {state: s, effects: [{type: 'copy', text: c.text, what: c.what}]} : say(s, 'copy: nothing selected');
    },
  },
  {
    keys: ['o'],
    label: 'o',
    section: 'Actions',
    help: "open in Hydra's web UI (hydraUrl setting; shows the URL without a browser)",
    views: WEB_VIEWS,
    elsewhere: () => ({text: 'open: nothing to open here', error: false}),
    run: (s) => {
      const path = VIEWS[s.view].web?.(s);
      return path ? {state: s, effects: [{type: 'open', path}]} : say(s, 'open: nothing selected');
    },
  },
];
