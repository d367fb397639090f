// The key table's entries for actions: on the selected (or marked) builds — restart, cancel, bump, check, the diff
// of the last check —, on an evaluation, on a machine (enable, drain, ping), and copying or opening the selection.
import {refuse, say, type Result, type State} from './model.js';
import {buildAction, evalAction, machineAction, pingAction} from './acting.js';
import {selectedEval, VIEWS} from './views.js';
import {BUILD_HINTS, BUILD_VIEWS, machineKind, noBuild, readonly, viewName, type KeySpec} from './key-spec.js';

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
    views: [...BUILD_VIEWS, 'evals'],
    elsewhere: () => ({text: 'copy: nothing to copy here (select a build, step or eval)', error: false}),
    run: copySelection,
  },
  {
    keys: ['o'],
    label: 'o',
    section: 'Actions',
    help: "open in Hydra's web UI (hydraUrl setting; shows the URL without a browser)",
    views: [...BUILD_VIEWS, 'evals', 'machines', 'jobsets'],
    elsewhere: () => ({text: 'open: nothing to open here', error: false}),
    run: openWeb,
  },
];

/** What `y` copies: the selected step's or build's drv path, else the build or eval id. */
function copySelection(s: State): Result {
  if (s.view === 'evals') {
    const e = selectedEval(s);
    return e ? {state: s, effects: [{type: 'copy', text: String(e.id), what: `eval id ${e.id}`}]} : say(s, 'copy: no eval selected');
  }
  const sel = VIEWS[s.view].selected?.(s);
  if (!sel) return say(s, 'copy: nothing selected');
  const drv = drvPathOf(s, sel.build, sel.stepnr);
  return {state: s, effects: [drv ? {type: 'copy', text: drv, what: 'drv path'} : {type: 'copy', text: String(sel.build), what: `build id ${sel.build}`}]};
}

function drvPathOf(s: State, build: number, stepnr?: number): string | null {
  if (s.view === 'steps') return s.steps.rows.find((r) => r.build === build && r.stepnr === stepnr)?.drvpath ?? null;
  if (s.view === 'detail' && s.detail?.data) {
    const step = stepnr !== undefined ? s.detail.data.steps.find((x) => x.stepnr === stepnr) : undefined;
    return step?.drvpath ?? s.detail.data.build.drvpath;
  }
  if (s.view === 'checks') return s.checks.rows.find((c) => c.build === build)?.drvPath ?? null;
  return s.builds.rows.find((b) => b.id === build)?.drvpath ?? null;
}

/** What `o` opens: the page of Hydra's web UI for the selection (paths as in Hydra's Root/Build/JobsetEval controllers). */
function openWeb(s: State): Result {
  if (s.view === 'evals') {
    const e = selectedEval(s);
    return e ? {state: s, effects: [{type: 'open', path: `/eval/${e.id}`}]} : say(s, 'open: no eval selected');
  }
  if (s.view === 'machines') return {state: s, effects: [{type: 'open', path: '/machines'}]};
  if (s.view === 'jobsets') {
    const j = s.jobsets.rows[s.jobsets.selected];
    return j ? {state: s, effects: [{type: 'open', path: `/jobset/${encodeURIComponent(j.project)}/${encodeURIComponent(j.name)}`}]} : say(s, 'open: no jobset selected');
  }
  const sel = VIEWS[s.view].selected?.(s);
  return sel ? {state: s, effects: [{type: 'open', path: `/build/${sel.build}`}]} : say(s, 'open: nothing selected');
}
