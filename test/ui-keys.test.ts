// The console's key and view tables, without a terminal, a database or Nix: every key in the key
// table reaches its action (or its refusal, or what it says elsewhere) in every view, the footer and
// the help are derived from the table, and the views table is complete and consistent.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {initialState, reduce, type State} from '../source/ui/state/reducer.js';
import {bindingFor, helpSections, keyHints, KEYS, pressKey} from '../source/ui/state/keys.js';
import {FILTER_VIEWS, LIST_NAMES, TOP_VIEWS, VIEW_NAMES, VIEWS, WINDOW_NAMES} from '../source/ui/state/views.js';
import {cursorOf, loadView} from '../source/ui/state/selection.js';
import {VIEW_COMMANDS} from '../source/ui/state/input.js';
import {newDetail} from '../source/ui/state/detail-tabs.js';
import type {Capabilities, ViewName} from '../source/ui/state/types.js';
import {SAMPLE_ROWS, sampleBuild} from './support/ui-fake.js';

const FULL: Capabilities = {readonly: null, admin: null, checks: null, user: 'alice'};
const NONE: Capabilities = {readonly: 'read-only mode (--readonly)', admin: 'needs the admin role', checks: 'checks are off', user: 'bob'};

function loadedWindow<T>(rows: T[]) {
  return {rows, offset: 0, selected: 1, top: 0, total: rows.length, atStart: true, atEnd: true, pending: null, loaded: true, error: null, gen: 1, want: null};
}

function loadedList<T>(rows: T[]) {
  return {rows, selected: 1, top: 0, loaded: true, error: null};
}

/** A state in `view` with rows everywhere, a back stack and the given capabilities. */
function populated(view: ViewName, caps: Capabilities = FULL): State {
  const s = initialState({size: {columns: 100, rows: 30}});
  const detailStep = (n: number) => ({stepnr: n, drvpath: null, busy: 0, status: 0, machine: 'ssh://m1', starttime: 1, stoptime: 2, errormsg: null});
  return {
    ...s,
    view,
    back: ['overview'],
    caps,
    // Every window and list view: the fake's sample rows (a view without them does not type-check there).
    ...Object.fromEntries(WINDOW_NAMES.map((v) => [v, loadedWindow(SAMPLE_ROWS[v] as unknown[])])),
    ...Object.fromEntries(LIST_NAMES.map((v) => [v, loadedList(SAMPLE_ROWS[v] as unknown[])])),
    overview: {systems: [], jobsets: SAMPLE_ROWS.jobsets, throughput: [], queueHistory: []},
    overviewSelected: 1,
    detail: {
      ...newDetail(2),
      data: {build: {...sampleBuild(2), nixname: null, description: null, timeout: null, maxsilent: null, releasename: null}, steps: [detailStep(1), detailStep(2)], outputs: [], products: [], why: [], deps: [], depsNote: null, history: [], latest: null},
      selected: 1,
      loading: false,
    },
    log: {build: 2, stepnr: 1, path: '/tmp/log', total: 500, top: 100, lines: [], times: [], openedAt: 1, timestamps: false, follow: false, wrap: false, search: 'x', match: 120, error: null, loading: false},
  };
}

const actsIn = (spec: (typeof KEYS)[number], view: ViewName) => !spec.views || spec.views.includes(view);

test('no key is bound twice in one view', () => {
  for (const view of VIEW_NAMES) {
    const seen = new Map<string, string>();
    for (const spec of KEYS) {
      if (!actsIn(spec, view)) continue;
      for (const key of spec.keys) {
        assert.ok(!seen.has(key), `${key} in ${view}: both "${seen.get(key)}" and "${spec.help}"`);
        seen.set(key, spec.help);
      }
    }
  }
});

test('every key in the table reaches its action in every view where it acts', () => {
  for (const spec of KEYS) {
    for (const view of VIEW_NAMES.filter((v) => actsIn(spec, v))) {
      for (const key of spec.keys) {
        const s = populated(view);
        assert.equal(bindingFor(view, key)?.spec, spec, `${key} in ${view}`);
        if (key === VIEWS[view].key) continue; // a view's own number key keeps it as it is
        const r = reduce(s, {type: 'key', key});
        assert.ok(r.state !== s || r.effects.length > 0, `${key} in ${view} did nothing`);
        assert.ok(!r.state.message?.error, `${key} in ${view} was refused: ${r.state.message?.text}`);
      }
    }
  }
});

test('a disabled key is refused with its reason and runs nothing', () => {
  for (const spec of KEYS.filter((k) => k.disabled)) {
    for (const view of VIEW_NAMES.filter((v) => actsIn(spec, v))) {
      for (const key of spec.keys) {
        const s = populated(view, NONE);
        const why = spec.disabled!(s, key);
        assert.ok(why, `${key} in ${view} should be disabled without rights`);
        const r = reduce(s, {type: 'key', key});
        assert.deepEqual(r.effects, [], `${key} in ${view}`);
        assert.deepEqual(r.state.message, {text: why.text, error: true});
        assert.equal(r.state.mode, 'normal');
      }
    }
  }
});

test('a key pressed where it does not act says where it does, or does nothing', () => {
  for (const spec of KEYS.filter((k) => k.views)) {
    for (const view of VIEW_NAMES.filter((v) => !actsIn(spec, v))) {
      for (const key of spec.keys) {
        const b = bindingFor(view, key);
        if (b?.acts) continue; // another entry binds the key here (e.g. the log's own `/`)
        const s = populated(view);
        const r = pressKey(s, key);
        assert.deepEqual(r.effects, [], `${key} in ${view}`);
        if (b) assert.deepEqual(r.state.message, b.spec.elsewhere!(key), `${key} in ${view}`);
        else assert.equal(r.state, s, `${key} in ${view}`);
      }
    }
  }
});

test('actions become requests as data: restart acts at once, cancel previews the scope, B bumps to the front', () => {
  const s = populated('builds');
  assert.deepEqual(reduce(s, {type: 'key', key: 'r'}).effects, [{type: 'act', req: {kind: 'restart', ids: [2]}}]);
  assert.deepEqual(reduce(s, {type: 'key', key: 'ctrl-d'}).effects, [{type: 'preview', req: {kind: 'cancel', ids: [2], dryRun: true}}]);
  assert.deepEqual(reduce(s, {type: 'key', key: 'B'}).effects, [{type: 'act', req: {kind: 'bump', ids: [2], toFront: true}}]);
  assert.deepEqual(reduce(populated('machines'), {type: 'key', key: 'i'}).effects, [{type: 'act', req: {kind: 'ping', machine: 'ssh://m2'}}]);
});

test('the footer is derived from the table: B shows where it acts, disabled keys say why', () => {
  const builds = keyHints(populated('builds'));
  assert.ok(builds.some((h) => h.key === 'b/B' && !h.disabled), JSON.stringify(builds));
  const ro = keyHints(populated('detail', NONE));
  assert.equal(ro.find((h) => h.key === 'b/B')?.disabled, 'read-only');
  assert.equal(keyHints(populated('machines', {...FULL, admin: 'needs the admin role'})).find((h) => h.key === 'E')?.disabled, 'needs admin');
  for (const view of VIEW_NAMES) {
    const hints = keyHints(populated(view));
    assert.ok(hints.some((h) => h.key === '?'), `${view} footer has help`);
    // Every hint belongs to a key that acts in this view.
    for (const h of hints) assert.ok(KEYS.some((k) => actsIn(k, view) && k.hints?.length), `${view}: ${h.key}`);
    // At 80 columns, the first hints fit (the footer truncates the rest).
    assert.ok(hints.length > 0);
  }
  assert.ok(!keyHints(populated('overview')).some((h) => h.key === 'enter'), 'enter does nothing on the overview, so no hint');
});

test('the help lists every key table entry, and at 80×24 the Actions section starts on the first screen', () => {
  const sections = helpSections();
  const entries = sections.flatMap((s) => s.entries);
  assert.equal(entries.length, KEYS.length);
  const lines = sections.flatMap((s) => [s.section, ...s.entries.map((e) => e.keys)]);
  // The overlay shows 18 lines at 80×24.
  assert.ok(lines.indexOf('ctrl-d') < 18, lines.join(' | '));
});

test('views table: number keys 1…n in tab order, unique `:` names, every view loads and has its state', () => {
  assert.deepEqual(TOP_VIEWS.map((v) => VIEWS[v].key), TOP_VIEWS.map((_, i) => String(i + 1)));
  const names = VIEW_NAMES.flatMap((v) => VIEWS[v].commands);
  assert.equal(new Set(names).size, names.length, 'a `:` name is used twice');
  for (const reserved of ['log', 'build', 'queue', 'q', 'quit']) assert.ok(!VIEW_COMMANDS.has(reserved), reserved);
  assert.deepEqual([...FILTER_VIEWS].sort(), ['builds', 'evals', 'machines', 'steps']);
  const init = initialState({size: {columns: 80, rows: 24}});
  for (const v of WINDOW_NAMES) assert.equal(init[v].loaded, false, v);
  for (const v of LIST_NAMES) assert.deepEqual(init[v].rows, [], v);
  for (const v of VIEW_NAMES) {
    const spec = VIEWS[v];
    assert.ok(spec.title, v);
    assert.ok(spec.kind !== 'screen' || spec.screen, v);
    const s = populated(v);
    assert.doesNotThrow(() => loadView(s, true), v);
    if (cursorOf(v)) assert.ok(cursorOf(v)!.bounds(s), `${v}: nothing selectable in a populated state`);
  }
  for (const v of TOP_VIEWS) {
    const s = populated('log');
    assert.equal(reduce(s, {type: 'key', key: VIEWS[v].key!}).state.view, v);
    const typed = [...VIEWS[v].commands[0]!].reduce((st, ch) => reduce(st, {type: 'key', key: ch}).state, reduce(populated('overview'), {type: 'key', key: ':'}).state);
    assert.equal(reduce(typed, {type: 'key', key: 'enter'}).state.view, v);
  }
  let s = populated(TOP_VIEWS[0]!);
  for (const v of [...TOP_VIEWS.slice(1), TOP_VIEWS[0]]) {
    s = reduce(s, {type: 'key', key: 'tab'}).state;
    assert.equal(s.view, v);
  }
});

test('enter drills down where the views table says', () => {
  assert.equal(reduce(populated('builds'), {type: 'key', key: 'enter'}).state.view, 'detail');
  const js = reduce(populated('jobsets'), {type: 'key', key: 'enter'});
  assert.equal(js.state.view, 'builds');
  assert.equal(js.state.filters.builds, 'jobset:p:b');
  const m = reduce(populated('machines'), {type: 'key', key: 'enter'});
  assert.equal(m.state.filters.steps, 'machine:"ssh://m2"');
  assert.deepEqual(m.effects, [{type: 'load', what: 'steps'}]);
  assert.deepEqual(reduce(populated('checks'), {type: 'key', key: 'enter'}).effects, [{type: 'openLog', build: 1, file: '/tmp/1.diff'}]);
});

test('a window refreshed in place that comes back empty is read again from its start', () => {
  const s = populated('builds');
  const w = {...s.builds, offset: 40, selected: 41, top: 40, atStart: false, pending: 'replace' as const};
  const r = reduce({...s, builds: w}, {type: 'page', list: 'builds', gen: w.gen, merge: 'replace', anchor: {kind: 'from', key: [3]}, limit: 50, rows: []});
  assert.deepEqual(r.effects.find((e) => e.type === 'fetch'), {type: 'fetch', list: 'builds', anchor: {kind: 'start'}, merge: 'replace', limit: 50, gen: w.gen});
});

test('evals: enter opens the Builds view filtered to the eval; r / ctrl-d preview the eval-wide action, then confirm with the exact scope', () => {
  const s = populated('evals');
  const e = reduce(s, {type: 'key', key: 'enter'});
  assert.equal(e.state.view, 'builds');
  assert.equal(e.state.filters.builds, 'eval:2');
  assert.deepEqual(e.state.back, ['overview', 'evals']);
  const r = reduce(s, {type: 'key', key: 'r'});
  assert.deepEqual(r.effects, [{type: 'preview', req: {kind: 'restart-failed', eval: 2, dryRun: true}}]);
  const c = reduce(s, {type: 'key', key: 'ctrl-d'});
  assert.deepEqual(c.effects, [{type: 'preview', req: {kind: 'cancel-eval', eval: 2, dryRun: true}}]);
  // The preview's answer: the dialog names the count, the eval and its scope; above 100 the count is typed.
  const ids = Array.from({length: 150}, (_, i) => i + 1);
  const d = reduce(c.state, {type: 'previewed', req: {kind: 'cancel-eval', eval: 2, dryRun: true}, outcome: {ok: true, message: '', changed: ids, targets: ids, scope: 'in p:j (150 not running, 0 running)'}});
  assert.equal(d.state.mode, 'dialog');
  assert.equal(d.state.dialog?.title, 'Cancel 150 queued builds of eval 2 in p:j (150 not running, 0 running)?');
  assert.equal(d.state.dialog?.typed, 150);
  assert.deepEqual(d.state.dialog?.req, {kind: 'cancel-eval', eval: 2, dryRun: false});
  // y does not confirm a typed dialog; the exact count does.
  assert.deepEqual(reduce(d.state, {type: 'key', key: 'y'}).effects, []);
  const typed = ['1', '5', '0'].reduce((st, k) => reduce(st, {type: 'key', key: k}).state, d.state);
  assert.deepEqual(reduce(typed, {type: 'key', key: 'enter'}).effects, [{type: 'act', req: {kind: 'cancel-eval', eval: 2, dryRun: false}}]);
  // Nothing to do: a message, no dialog.
  const none = reduce(r.state, {type: 'previewed', req: {kind: 'restart-failed', eval: 2, dryRun: true}, outcome: {ok: true, message: '', changed: [], targets: []}});
  assert.equal(none.state.mode, 'normal');
  assert.match(none.state.message!.text, /restart-failed eval 2: nothing to do — no failed builds/);
  // The build actions' r is not the eval's: in Builds r still restarts the selected build.
  assert.deepEqual(reduce(populated('builds'), {type: 'key', key: 'r'}).effects, [{type: 'act', req: {kind: 'restart', ids: [2]}}]);
});

test('runner: :runner opens the Runner view and loads the runner internals', () => {
  const s = populated('overview');
  const typed = [...'runner'].reduce((st, ch) => reduce(st, {type: 'key', key: ch}).state, reduce(s, {type: 'key', key: ':'}).state);
  const r = reduce(typed, {type: 'key', key: 'enter'});
  assert.equal(r.state.view, 'runner');
  assert.deepEqual(r.effects, [{type: 'load', what: 'runner'}]);
});

test('x: the menu is generated from the key table — in every view, each line runs exactly what its key runs, disabled lines say why', async () => {
  const {menuItems} = await import('../source/ui/state/keys.js');
  for (const view of VIEW_NAMES) {
    const s = populated(view);
    const opened = reduce(s, {type: 'key', key: 'x'});
    const items = menuItems(s);
    if (items.length === 0) continue;
    assert.equal(opened.state.mode, 'menu', view);
    for (const [i, it] of items.entries()) {
      assert.ok(bindingFor(view, it.key)?.acts, `${view}: menu line ${it.key} does not act here`);
      const direct = reduce(s, {type: 'key', key: it.key});
      const moved = Array.from({length: i}).reduce<State>((st) => reduce(st, {type: 'key', key: 'j'}).state, opened.state);
      const viaMenu = reduce(moved, {type: 'key', key: 'enter'});
      assert.deepEqual(viaMenu.effects, direct.effects, `${view}: ${it.key}`);
      assert.equal(viaMenu.state.view, direct.state.view, `${view}: ${it.key}`);
    }
    assert.equal(reduce(opened.state, {type: 'key', key: 'esc'}).state.mode, 'normal');
  }
  // Every action of the Builds view is in its menu.
  const keys = menuItems(populated('builds')).map((i) => i.key);
  for (const k of ['r', 'ctrl-d', 'b', 'B', 'c', 'y', 'o', 'l', 'enter', '/', 'space']) assert.ok(keys.includes(k), `builds menu lacks ${k}: ${keys.join(' ')}`);
  assert.deepEqual(menuItems(populated('evals')).map((i) => i.key).filter((k) => k === 'r' || k === 'ctrl-d'), ['r', 'ctrl-d']);
  const ro = menuItems(populated('builds', NONE));
  assert.equal(ro.find((i) => i.key === 'r')?.disabled, 'read-only');
  // A disabled line is refused like its key.
  const s = populated('builds', NONE);
  const m = reduce(s, {type: 'key', key: 'x'}).state;
  const r = reduce(m, {type: 'key', key: 'r'});
  assert.deepEqual(r.effects, []);
  assert.equal(r.state.message?.error, true);
});

test('y copies the drv path (the build or eval id where there is none); o asks for the page of the selection', () => {
  assert.deepEqual(reduce(populated('builds'), {type: 'key', key: 'y'}).effects, [{type: 'copy', text: '/nix/store/x-2.drv', what: 'drv path'}]);
  assert.deepEqual(reduce(populated('steps'), {type: 'key', key: 'y'}).effects, [{type: 'copy', text: '2', what: 'build id 2'}]);
  assert.deepEqual(reduce(populated('evals'), {type: 'key', key: 'y'}).effects, [{type: 'copy', text: '2', what: 'eval id 2'}]);
  assert.deepEqual(reduce(populated('builds'), {type: 'key', key: 'o'}).effects, [{type: 'open', path: '/build/2'}]);
  assert.deepEqual(reduce(populated('evals'), {type: 'key', key: 'o'}).effects, [{type: 'open', path: '/eval/2'}]);
  assert.deepEqual(reduce(populated('jobsets'), {type: 'key', key: 'o'}).effects, [{type: 'open', path: '/jobset/p/b'}]);
  assert.deepEqual(reduce(populated('machines'), {type: 'key', key: 'o'}).effects, [{type: 'open', path: '/machines'}]);
  assert.deepEqual(reduce(populated('audit'), {type: 'key', key: 'y'}).state.message, {text: 'copy: nothing to copy here (select a build, step or eval)', error: false});
});

test('`:` commands come from the views table: every view with a `:` name is in the list, the help and the unknown-command message, and each one runs', async () => {
  const {COMMAND_LIST, commandHelp} = await import('../source/ui/state/input.js');
  const {HelpOverlay} = await import('../source/ui/components/HelpOverlay.js');
  const {render} = await import('ink-testing-library');
  const React = await import('react');
  const withNames = VIEW_NAMES.filter((v) => VIEWS[v].commands.length > 0);
  assert.ok(withNames.includes('runner'));
  const help = commandHelp();
  for (const v of withNames) {
    assert.ok(COMMAND_LIST.includes(`:${VIEWS[v].commands[0]}`), `${v} missing from ${COMMAND_LIST.join(' ')}`);
    assert.ok(help.some((h) => h.keys.split(' ').includes(`:${VIEWS[v].commands[0]}`) && h.what.includes(VIEWS[v].title)), `${v} missing from the help`);
  }
  // The `:` key's own help line is derived from the same list.
  assert.ok(KEYS.find((k) => k.keys.includes(':'))!.help.includes(COMMAND_LIST[0]!));
  // Every listed command runs (no "unknown command"); the unknown one lists them all, :runner among them.
  for (const c of COMMAND_LIST) {
    const typed = [...c.slice(1)].reduce((st, ch) => reduce(st, {type: 'key', key: ch === ' ' ? 'space' : ch}).state, reduce(populated('overview'), {type: 'key', key: ':'}).state);
    const r = reduce(typed, {type: 'key', key: 'enter'});
    assert.ok(!r.state.message?.error, `${c}: ${r.state.message?.text}`);
  }
  const typed = [...'nonsense'].reduce((st, ch) => reduce(st, {type: 'key', key: ch}).state, reduce(populated('overview'), {type: 'key', key: ':'}).state);
  const unknown = reduce(typed, {type: 'key', key: 'enter'}).state.message!;
  assert.equal(unknown.text, `unknown command :nonsense (try ${COMMAND_LIST.join(' ')})`);
  assert.match(unknown.text, /:runner/);
  // The help overlay shows the Commands section (on a screen tall enough for all of it).
  const r = render(React.createElement(HelpOverlay, {width: 200, height: 80, database: 'test', view: 'overview'}));
  const frame = r.lastFrame() ?? '';
  r.unmount();
  assert.match(frame, /Commands/);
  for (const h of help) assert.ok(frame.includes(h.keys), `help overlay lacks ${h.keys}`);
});

test('y and o act where the views table gives them a copy / web entry, and nowhere else; no view falls back to another view\'s rows', () => {
  for (const view of VIEW_NAMES) {
    const s = populated(view);
    const y = reduce(s, {type: 'key', key: 'y'});
    const o = reduce(s, {type: 'key', key: 'o'});
    if (VIEWS[view].copy) assert.deepEqual(y.effects, [{type: 'copy', ...VIEWS[view].copy!(s)!}], view);
    else assert.deepEqual([y.effects, y.state.message?.text], [[], 'copy: nothing to copy here (select a build, step or eval)'], view);
    if (VIEWS[view].web) assert.deepEqual(o.effects, [{type: 'open', path: VIEWS[view].web!(s)!}], view);
    else assert.deepEqual([o.effects, o.state.message?.text], [[], 'open: nothing to open here'], view);
  }
  // The detail copies its selected step's drv path (the build's where the step has none); the log, its build id;
  // a check, the checked derivation — none of them the Builds view's row of the same id.
  const d = populated('detail');
  const withDrv = {...d, detail: {...d.detail!, data: {...d.detail!.data!, steps: [d.detail!.data!.steps[0]!, {...d.detail!.data!.steps[1]!, drvpath: '/nix/store/s-step2.drv'}]}}};
  assert.deepEqual(reduce(withDrv, {type: 'key', key: 'y'}).effects, [{type: 'copy', text: '/nix/store/s-step2.drv', what: 'drv path'}]);
  assert.deepEqual(reduce(d, {type: 'key', key: 'y'}).effects, [{type: 'copy', text: '/nix/store/x-2.drv', what: 'drv path'}]);
  assert.deepEqual(reduce({...populated('log'), builds: {...populated('log').builds, rows: []}}, {type: 'key', key: 'y'}).effects, [{type: 'copy', text: '2', what: 'build id 2'}]);
  assert.deepEqual(reduce(populated('checks'), {type: 'key', key: 'y'}).effects, [{type: 'copy', text: '/nix/store/c.drv', what: 'drv path'}]);
  // Nothing selected: said, nothing copied or opened.
  const empty = {...populated('evals'), evals: {...populated('evals').evals, rows: []}};
  assert.deepEqual(reduce(empty, {type: 'key', key: 'y'}).state.message, {text: 'copy: nothing selected', error: false});
  assert.deepEqual(reduce(empty, {type: 'key', key: 'o'}).state.message, {text: 'open: nothing selected', error: false});
});
