// The table of console views: for each view its title, number key, `:` names, where its rows come
// from and how it loads, how its selection moves, which build (and step) is selected, what `enter`
// opens, which live changes refresh it and what the crumb line adds. VIEWS is a mapped type over
// ViewName, so a view without an entry, or an entry of the wrong kind, does not type-check.
// Adding a view: docs/architecture.md ("Adding a console view").
import {BUILD_SORTS, countAuditLog, countBuildWindow, countEvals, countReproChecks, pageAuditLog, pageBuilds, pageEvals, pageReproChecks} from '../../db/queries/windows.js';
import {OverviewView} from '../views/OverviewView.js';
import {BuildsView} from '../views/BuildsView.js';
import {StepsView} from '../views/StepsView.js';
import {MachinesView} from '../views/MachinesView.js';
import {JobsetsView} from '../views/JobsetsView.js';
import {ChecksView} from '../views/ChecksView.js';
import {AuditView} from '../views/AuditView.js';
import {EvalsView} from '../views/EvalsView.js';
import {RunnerView} from '../views/RunnerView.js';
import {DetailView} from '../views/DetailView.js';
import {LogView} from '../views/LogView.js';
import {bodyLines, tableRows} from './layout.js';
import {DETAIL_TABS, detailCursor, loadDetail} from './detail-tabs.js';
import type {State} from './model.js';
import {buildKey, type CheckEntry, type FilterView, type ListName, type ViewName, type WindowName} from './types.js';
import {buildPage, copyDrv, filterTail, idKey, listRow, selectedRow, type Go, type ListSource, type Selection, type ViewSpec, type WindowSource} from './view-spec.js';

export type {Copy, CrumbText, Cursor, Go, ListSource, Screen, Selection, ViewSpec, WindowSource} from './view-spec.js';

export const VIEWS: {[V in ViewName]: ViewSpec<V>} = {
  overview: {
    kind: 'screen',
    title: 'Overview',
    component: OverviewView,
    key: '1',
    commands: ['overview', 'o'],
    filter: false,
    refreshOn: ['queue', 'runner'],
    copy: null,
    web: null,
    screen: {
      cursor: {
        index: (s) => s.overviewSelected,
        bounds: (s) => (s.overview ? {min: 0, length: s.overview.jobsets.length} : null),
        select: (s, selected) => ({...s, overviewSelected: selected}),
        page: (s) => tableRows(s.size),
      },
      load: (s) => ({state: s, effects: [{type: 'load', what: 'overview'}]}),
    },
  },
  builds: {
    kind: 'window',
    title: 'Builds',
    component: BuildsView,
    key: '2',
    commands: ['builds', 'b'],
    filter: true,
    marks: true,
    refreshOn: ['queue', 'steps'],
    copy: (s) => {
      const b = selectedRow(s, 'builds');
      return b ? copyDrv(b.drvpath, b.id) : null;
    },
    web: (s) => buildPage(VIEWS.builds.selected!(s)),
    source: {
      page: {name: 'builds.page', run: pageBuilds},
      count: {name: 'builds.count', run: (db, q) => countBuildWindow(db, q.filter, q.order)},
      countKey: (s) => `${s.order}\0${s.filters.builds ?? ''}`,
      key: (row, s) => buildKey(row, s.order),
    },
    selected: (s) => {
      const b = selectedRow(s, 'builds');
      return b ? {build: b.id} : null;
    },
    enter: {what: 'detail', go: (s) => goDetail(VIEWS.builds.selected!(s))},
    crumbTail: (s, c) => {
      const w = s.builds;
      let text = ` (${sortLabel(s)})`;
      text += filterTail(s, 'builds', c);
      const pos = w.rows.length ? `${c.count(w.selected + 1)} of ${w.total === null ? '…' : c.count(w.total)}` : w.total !== null ? `0 of ${c.count(w.total)}` : '';
      if (pos) text += ` — ${pos}`;
      if (s.markAll) text += ` · all ${s.markAll.count === null ? '…' : c.count(s.markAll.count)} matching marked`;
      else if (s.marks.length) text += ` · ${s.marks.length} marked`;
      return text;
    },
  },
  steps: {
    kind: 'list',
    title: 'Running steps',
    component: StepsView,
    key: '3',
    commands: ['steps', 'running'],
    filter: true,
    refreshOn: ['steps', 'runner'],
    copy: (s) => {
      const r = listRow(s, 'steps');
      return r ? copyDrv(r.drvpath, r.build) : null;
    },
    web: (s) => buildPage(VIEWS.steps.selected!(s)),
    source: {fetch: (d, s) => d.runningSteps(s.filters.steps)},
    selected: (s) => {
      const r = listRow(s, 'steps');
      return r ? {build: r.build, stepnr: r.stepnr} : null;
    },
    enter: {what: 'build', go: (s) => goDetail(VIEWS.steps.selected!(s))},
    crumbTail: (s, c) => `${filterTail(s, 'steps', c)} — ${c.count(s.steps.rows.length)}`,
  },
  machines: {
    kind: 'list',
    title: 'Machines',
    component: MachinesView,
    key: '4',
    commands: ['machines', 'm'],
    filter: true,
    refreshOn: ['steps', 'runner'],
    copy: null,
    web: () => '/machines',
    source: {fetch: (d, s) => d.machines(s.filters.machines)},
    enter: {
      what: 'steps',
      go: (s) => {
        const m = listRow(s, 'machines');
        return m ? {to: 'filtered', view: 'steps', filter: `machine:"${m.uri}"`} : null;
      },
    },
    crumbTail: (s, c) => `${filterTail(s, 'machines', c)} — ${c.count(s.machines.rows.length)}`,
  },
  jobsets: {
    kind: 'list',
    title: 'Jobsets',
    component: JobsetsView,
    key: '5',
    commands: ['jobsets', 'js'],
    filter: false,
    refreshOn: ['queue', 'runner'],
    copy: null,
    web: (s) => {
      const j = listRow(s, 'jobsets');
      return j ? `/jobset/${encodeURIComponent(j.project)}/${encodeURIComponent(j.name)}` : null;
    },
    source: {fetch: (d) => d.jobsets()},
    enter: {
      what: 'builds',
      go: (s) => {
        const j = listRow(s, 'jobsets');
        return j ? {to: 'filtered', view: 'builds', filter: `jobset:${j.project}:${j.name}`} : null;
      },
    },
  },
  checks: {
    kind: 'window',
    title: 'Checks',
    component: ChecksView,
    key: '6',
    commands: ['checks'],
    filter: false,
    refreshOn: ['checks'],
    copy: (s) => {
      const c = selectedRow(s, 'checks');
      return c ? {text: c.drvPath, what: 'drv path'} : null;
    },
    web: (s) => buildPage(VIEWS.checks.selected!(s)),
    source: {
      page: {name: 'checks.page', run: (db, q) => pageReproChecks(db, q.anchor, q.limit)},
      count: {name: 'checks.count', run: (db) => countReproChecks(db)},
      countKey: () => '',
      key: idKey,
    },
    selected: (s) => {
      const c = selectedRow(s, 'checks');
      return c && c.build !== null ? {build: c.build} : null;
    },
    // Drill down into a check: its diff log in the log viewer (search, wrap, paging).
    enter: {
      what: 'diff',
      go: (s) => {
        const c = selectedRow(s, 'checks');
        return c ? checkDiff(c) : null;
      },
    },
    crumbTail: (s, c) => (s.checks.total !== null ? ` — ${c.count(s.checks.total)}` : ''),
  },
  audit: {
    kind: 'window',
    title: 'Audit',
    component: AuditView,
    key: '7',
    commands: ['audit'],
    filter: false,
    refreshOn: ['audit'],
    copy: null,
    web: null,
    source: {
      page: {name: 'audit.page', run: (db, q) => pageAuditLog(db, q.anchor, q.limit)},
      count: {name: 'audit.count', run: (db) => countAuditLog(db)},
      countKey: () => '',
      key: idKey,
    },
    crumbTail: (s, c) => (s.audit.total !== null ? ` — ${c.count(s.audit.total)}` : ''),
  },
  evals: {
    kind: 'window',
    title: 'Evals',
    component: EvalsView,
    key: '8',
    commands: ['evals', 'ev'],
    filter: true,
    refreshOn: ['queue'],
    copy: (s) => {
      const e = selectedRow(s, 'evals');
      return e ? {text: String(e.id), what: `eval id ${e.id}`} : null;
    },
    web: (s) => {
      const e = selectedRow(s, 'evals');
      return e ? `/eval/${e.id}` : null;
    },
    source: {
      page: {name: 'evals.page', run: (db, q) => pageEvals(db, {filter: q.filter, anchor: q.anchor, limit: q.limit})},
      count: {name: 'evals.count', run: (db, q) => countEvals(db, q.filter)},
      countKey: (s) => s.filters.evals ?? '',
      key: idKey,
    },
    // Drill down: the Builds view filtered to the eval's members.
    enter: {
      what: 'builds',
      go: (s) => {
        const e = selectedRow(s, 'evals');
        return e ? {to: 'filtered', view: 'builds', filter: `eval:${e.id}`} : null;
      },
    },
    crumbTail: (s, c) => `${filterTail(s, 'evals', c)}${s.evals.total !== null ? ` — ${c.count(s.evals.total)}` : ''}`,
  },
  runner: {
    kind: 'screen',
    title: 'Runner',
    component: RunnerView,
    key: null,
    commands: ['runner', 'scheduler'],
    filter: false,
    refreshOn: ['runner'],
    copy: null,
    web: null,
    screen: {cursor: null, load: (s) => ({state: s, effects: [{type: 'load', what: 'runner'}]})},
  },
  detail: {
    kind: 'screen',
    title: 'Build',
    component: DetailView,
    key: null,
    commands: [],
    filter: false,
    refreshOn: ['queue', 'steps'],
    // The selected step's drv path, else the build's.
    copy: (s) => {
      const d = s.detail;
      if (!d?.data) return d ? copyDrv(null, d.id) : null;
      return copyDrv(d.data.steps[d.selected]?.drvpath ?? d.data.build.drvpath, d.id);
    },
    web: (s) => buildPage(VIEWS.detail.selected!(s)),
    // The tabs (detail-tabs.ts) bring their own rows and `enter`.
    screen: {
      cursor: detailCursor((s) => Math.max(1, Math.floor(bodyLines(s.size) / 2) - 1)),
      load: (s) => loadDetail(s),
    },
    selected: (s) => {
      if (!s.detail) return null;
      const step = s.detail.data?.steps[s.detail.selected];
      return step ? {build: s.detail.id, stepnr: step.stepnr} : {build: s.detail.id};
    },
    enter: {
      what: (s) => (s.detail ? DETAIL_TABS[s.detail.tab].enter.what : null),
      go: (s) => (s.detail ? DETAIL_TABS[s.detail.tab].enter.go(s, s.detail) : null),
    },
    crumbTitle: (s) => (s.detail ? `build ${s.detail.id}` : 'Build'),
    // The way back (the crumb), the tab, then where the build is: project:jobset › job › step (Summary and Steps).
    crumbTail: (s, c) => {
      const d = s.detail;
      if (!d) return '';
      const b = d.data?.build;
      const step = d.tab === 'summary' || d.tab === 'steps' ? d.data?.steps[d.selected] : undefined;
      const place = b ? ` · ${b.project}:${b.jobset} ${c.sep} ${b.job}${step ? ` ${c.sep} step ${step.stepnr}` : ''}` : '';
      return ` · ${DETAIL_TABS[d.tab].title}${place}`;
    },
  },
  log: {
    kind: 'screen',
    title: 'Log',
    component: LogView,
    key: null,
    commands: [],
    filter: false,
    refreshOn: [],
    copy: (s) => (s.log ? copyDrv(null, s.log.build) : null),
    web: (s) => buildPage(VIEWS.log.selected!(s)),
    // The log scrolls with its own keys (keys.ts, section Log).
    screen: {cursor: null, load: (s) => ({state: s, effects: []})},
    selected: (s) => (s.log ? {build: s.log.build} : null),
    enter: {what: null, go: (s) => (s.log ? {to: 'detail', id: s.log.build} : null)},
    crumbTitle: (s) => (s.log ? `log ${s.log.build}${s.log.stepnr !== null ? `/${s.log.stepnr}` : ''}` : 'Log'),
  },
};

/** How the crumb and the footer name the Builds view's sort: "newest first", "queue order, last first", … */
export function sortLabel(s: Pick<State, 'order' | 'reverse'>): string {
  const o = BUILD_SORTS[s.order];
  return s.reverse ? o.reversed : o.label;
}

/** A check's diff log in the log viewer (Checks' `enter`, and `d` for a build's last check), or why there is none. */
export function checkDiff(c: CheckEntry): Go {
  if (!c.diffLogPath) return {to: 'message', text: `check ${c.id}: ${c.verdict} — no diff to show`};
  return {to: 'log', build: c.build ?? 0, file: c.diffLogPath};
}

function goDetail(sel: Selection | null): Go | null {
  return sel ? {to: 'detail', id: sel.build} : null;
}

/** The evaluation the Evals view has selected. */
export function selectedEval(s: State): {id: number; project: string; jobset: string} | null {
  return s.view === 'evals' ? (selectedRow(s, 'evals') ?? null) : null;
}

/** Every view, in table order. */
export const VIEW_NAMES = Object.keys(VIEWS) as ViewName[];
/** Top-level views in number-key (and tab) order. */
export const TOP_VIEWS: ViewName[] = VIEW_NAMES.filter((v) => VIEWS[v].key !== null).sort((a, b) => Number(VIEWS[a].key) - Number(VIEWS[b].key));
export const WINDOW_NAMES = VIEW_NAMES.filter((v): v is WindowName => VIEWS[v].kind === 'window');
export const LIST_NAMES = VIEW_NAMES.filter((v): v is ListName => VIEWS[v].kind === 'list');
export const FILTER_VIEWS = VIEW_NAMES.filter((v): v is FilterView => VIEWS[v].filter);

export function isWindow(v: ViewName): v is WindowName {
  return VIEWS[v].kind === 'window';
}

export function isList(v: ViewName): v is ListName {
  return VIEWS[v].kind === 'list';
}

export function isFilterView(v: ViewName): v is FilterView {
  return VIEWS[v].filter;
}

export function windowSource(list: WindowName): WindowSource<WindowName> {
  return VIEWS[list].source as WindowSource<WindowName>;
}

export function listSource(list: ListName): ListSource<ListName> {
  return VIEWS[list].source as ListSource<ListName>;
}

/** "builds 2, steps 3, machines 4": where a thing can be found, for messages. */
export function whereText(views: readonly ViewName[]): string {
  return views.map((v) => `${VIEWS[v].commands[0] ?? v}${VIEWS[v].key ? ` ${VIEWS[v].key}` : ''}`).join(', ');
}
