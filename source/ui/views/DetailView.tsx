// Build detail (`enter`), a pane of tabs switched with `[` / `]` (state/detail-tabs.ts): Summary (the build, why it
// is not building yet, steps, outputs, products, the job's latest successful build), Steps (every step with its
// timings), Log (the tail of the selected step's log), Deps (the steps below the build: what it waits for and
// where that runs) and History (the job's last builds with a duration sparkline). On wide terminals app.tsx shows
// it beside the table it was opened from.
import React from 'react';
import {Box} from 'ink';
import {Text} from '../components/Text.js';
import {Table, type Column, type Row} from '../components/Table.js';
import {sparkline} from '../components/Sparkline.js';
import {drvName, formatDuration, sanitize, truncate} from '../format.js';
import {glyphs, paint, phaseStyle, statusStyle, type Theme} from '../theme.js';
import {DETAIL_TABS, TAB_ORDER} from '../state/detail-tabs.js';
import type {DetailState} from '../state/model.js';
import type {BuildDetail} from '../state/types.js';
import {ageSec, type ViewProps} from './common.js';

const STEP_COLUMNS: Column[] = [
  {title: 'step', width: 4, align: 'right'},
  {title: 'drv', width: 20, flex: true, min: 10},
  {title: 'status', width: 13},
  {title: 'machine', width: 14, drop: 2},
  {title: 'duration', width: 8, align: 'right', drop: 1},
  {title: 'error', width: 20, drop: 3},
];

const FULL_STEP_COLUMNS: Column[] = [
  {title: 'step', width: 4, align: 'right'},
  {title: 'drv', width: 22, flex: true, min: 10},
  {title: 'status', width: 13},
  {title: 'machine', width: 16, drop: 3},
  {title: 'started', width: 11, align: 'right', drop: 2},
  {title: 'duration', width: 8, align: 'right', drop: 1},
  {title: 'error', width: 24, drop: 4},
];

const DEP_COLUMNS: Column[] = [
  {title: 'step', width: 4, align: 'right'},
  {title: 'drv', width: 16, flex: true, min: 10},
  {title: 'state', width: 12},
  {title: 'machine', width: 14, drop: 1},
  {title: 'why', width: 24, drop: 2},
];

const HISTORY_COLUMNS: Column[] = [
  {title: 'build', width: 9, align: 'right'},
  {title: 'status', width: 13},
  {title: 'duration', width: 8, align: 'right'},
  {title: 'machine', width: 16, flex: true, min: 8, drop: 2},
  {title: 'finished', width: 11, align: 'right', drop: 1},
];

/** The tab line: `Summary │ Steps │ [Log] │ Deps │ History`. */
function tabLine(d: DetailState, theme: Theme): string {
  const sep = theme.unicode ? ' │ ' : ' | ';
  return TAB_ORDER.map((t) => (t === d.tab ? `[${DETAIL_TABS[t].title}]` : DETAIL_TABS[t].title)).join(sep);
}

/** Rows of a list with `visible` lines, scrolled so `selected` shows. */
function windowOf<T>(rows: readonly T[], selected: number, visible: number): {top: number; slice: readonly T[]} {
  const top = Math.max(0, Math.min(selected - visible + 1, rows.length - visible));
  const t = Math.max(0, Math.min(top, selected));
  return {top: t, slice: rows.slice(t, t + visible)};
}

/** The job's "latest" link: the latest successful build's id and the command that prints it. */
function latestLine(data: BuildDetail): string {
  const b = data.build;
  const which = data.latest === null ? 'none yet' : data.latest === b.id ? `build ${b.id} (this one)` : `build ${data.latest}`;
  return `latest ok: ${which} · hydra-ops latest ${b.project}/${b.jobset}/${b.job}`;
}

export function DetailView(p: ViewProps): React.ReactElement {
  const d = p.state.detail;
  if (!d) return <Text dimColor>no build selected</Text>;
  if (d.error) return <Text color={paint(p.theme, 'red')}>{d.error}</Text>;
  if (!d.data) return <Text dimColor>loading build {d.id}…</Text>;
  const b = d.data.build;
  const st = statusStyle(p.theme, {finished: b.finished === 1, buildstatus: b.buildstatus, busy: b.busy, cached: b.iscachedbuild === 1});
  const height = Math.max(1, p.height - 2);
  const inner: ViewProps = {...p, height};
  let body: React.ReactElement;
  switch (d.tab) {
    case 'summary':
      body = <SummaryTab {...inner} d={d} data={d.data} />;
      break;
    case 'steps':
      body = <StepsTab {...inner} d={d} data={d.data} />;
      break;
    case 'log':
      body = <LogTab {...inner} d={d} />;
      break;
    case 'deps':
      body = <DepsTab {...inner} d={d} data={d.data} />;
      break;
    case 'history':
      body = <HistoryTab {...inner} d={d} data={d.data} />;
      break;
  }
  return (
    <Box flexDirection="column" height={p.height}>
      <Text wrap="truncate" bold>
        {`build ${b.id} `}
        <Text color={paint(p.theme, st.color)} dimColor={st.dim}>
          {st.glyph} {st.label}
        </Text>
        {b.nixname ? ` · ${b.nixname}` : ''}
      </Text>
      <Text wrap="truncate" color={paint(p.theme, 'cyan')}>
        {truncate(tabLine(d, p.theme), p.width, glyphs(p.theme).ellipsis)}
      </Text>
      {body}
    </Box>
  );
}

type TabProps = ViewProps & {d: DetailState; data: BuildDetail};

function stepRow(p: ViewProps, s: BuildDetail['steps'][number], full: boolean): Row {
  const ss = statusStyle(p.theme, {finished: s.busy === 0 && s.status !== null, buildstatus: s.status, busy: s.busy});
  const dur = s.starttime && s.stoptime ? s.stoptime - s.starttime : s.starttime && s.busy ? ageSec(p.now, s.starttime) : null;
  const status = {text: `${ss.glyph} ${ss.label}`, color: ss.color, dim: ss.dim};
  const error = s.errormsg?.split('\n')[0] ?? '';
  if (!full) return {key: s.stepnr, cells: [String(s.stepnr), drvName(s.drvpath), status, s.machine, formatDuration(dur), error]};
  const started = s.starttime ? `${formatDuration(ageSec(p.now, s.starttime))} ago` : '';
  return {key: s.stepnr, cells: [String(s.stepnr), drvName(s.drvpath), status, s.machine, started, formatDuration(dur), error]};
}

function SummaryTab(p: TabProps): React.ReactElement {
  const {d, data} = p;
  const {build: b, steps, outputs, products, why} = data;
  const ell = glyphs(p.theme).ellipsis;
  const duration = b.starttime && b.stoptime ? b.stoptime - b.starttime : b.starttime ? ageSec(p.now, b.starttime) : null;
  const summary = [
    `${b.project}:${b.jobset} › ${b.job} · ${b.system} · prio ${b.priority}${b.globalpriority > 0 ? ` (bumped ${b.globalpriority})` : ''}`,
    `drv ${b.drvpath}`,
    `queued ${formatDuration(ageSec(p.now, b.timestamp))} ago${duration !== null ? ` · ${b.finished ? 'took' : 'running'} ${formatDuration(duration)}` : ''}${b.machine ? ` on ${b.machine}` : ''}`,
    latestLine(data),
  ];
  const whyLines = why.slice(0, 3);
  const fixed = summary.length + whyLines.length + (whyLines.length ? 1 : 0);
  const rest = Math.max(2, p.height - fixed);
  const outLines = [
    ...outputs.map((o) => `out ${o.name}: ${o.path ?? '(not built yet)'}`),
    ...products.map((x) => `product ${x.productnr} ${x.type}/${x.subtype} ${x.name}${x.path ? ` ${x.path}` : ''}`),
  ];
  const outHeight = Math.min(outLines.length, Math.max(0, Math.floor(rest / 3)));
  const stepHeight = Math.max(2, rest - outHeight);
  const {top, slice} = windowOf(steps, d.selected, stepHeight - 1);
  return (
    <Box flexDirection="column">
      {summary.map((l, i) => (
        <Text key={i} wrap="truncate">
          {truncate(l, p.width, ell)}
        </Text>
      ))}
      {whyLines.length ? (
        <Text bold color={paint(p.theme, 'yellow')} wrap="truncate">
          Why it is not building yet:
        </Text>
      ) : null}
      {whyLines.map((l, i) => (
        <Text key={`w${i}`} wrap="truncate" color={paint(p.theme, 'yellow')}>
          {'  ' + l}
        </Text>
      ))}
      <Table columns={STEP_COLUMNS} rows={slice.map((s) => stepRow(p, s, false))} selected={d.selected - top} width={p.width} height={stepHeight} theme={p.theme} ellipsis={ell} empty="no steps recorded yet" />
      {outLines.slice(0, outHeight).map((l, i) => (
        <Text key={`o${i}`} wrap="truncate" dimColor>
          {l}
        </Text>
      ))}
    </Box>
  );
}

function StepsTab(p: TabProps): React.ReactElement {
  const {d, data} = p;
  const {top, slice} = windowOf(data.steps, d.selected, p.height - 1);
  return (
    <Table
      columns={FULL_STEP_COLUMNS}
      rows={slice.map((s) => stepRow(p, s, true))}
      selected={d.selected - top}
      width={p.width}
      height={p.height}
      theme={p.theme}
      ellipsis={glyphs(p.theme).ellipsis}
      empty="no steps recorded yet (a build gets step rows when its first step starts)"
    />
  );
}

function LogTab(p: ViewProps & {d: DetailState}): React.ReactElement {
  const t = p.d.logTail;
  const ell = glyphs(p.theme).ellipsis;
  if (!t || (t.loading && t.lines.length === 0)) return <Text dimColor>reading the log…</Text>;
  if (t.error) return <Text color={paint(p.theme, 'yellow')}>{truncate(t.error, p.width, ell)}</Text>;
  const head = `step ${t.stepnr ?? '?'} · last ${t.lines.length} of ${t.total} lines · enter: full log (follow, search)`;
  return (
    <Box flexDirection="column">
      <Text wrap="truncate" dimColor>
        {truncate(head, p.width, ell)}
      </Text>
      {t.lines.slice(-(p.height - 1)).map((l, i) => (
        <Text key={i} wrap="truncate">
          {truncate(sanitize(l), p.width, ell)}
        </Text>
      ))}
    </Box>
  );
}

function DepsTab(p: TabProps): React.ReactElement {
  const {d, data} = p;
  const ell = glyphs(p.theme).ellipsis;
  const deps = data.deps;
  const below = deps.filter((x) => !x.toplevel && x.state !== 'done');
  const running = below.filter((x) => x.state === 'running');
  let headline: string;
  if (data.build.finished === 1) headline = `finished: ${deps.length} step(s) recorded`;
  else if (deps.length === 0) headline = 'no steps known yet';
  else if (running.length) headline = `waiting for ${running.map((x) => `${drvName(x.drvpath)} on ${x.machine ?? '?'}`).join(', ')}`;
  else if (below.length) headline = `waiting for ${below.length} dependenc${below.length === 1 ? 'y' : 'ies'}, none running: ${below[0]!.note ?? below[0]!.state}`;
  else headline = 'no dependency left to build';
  const lines = [headline, ...(data.depsNote ? [data.depsNote] : [])];
  const tableHeight = Math.max(2, p.height - lines.length);
  const {top, slice} = windowOf(deps, d.depSelected, tableHeight - 1);
  const rows: Row[] = slice.map((x) => {
    const s =
      x.state === 'running'
        ? phaseStyle(p.theme, x.busy || 30)
        : x.state === 'done'
          ? statusStyle(p.theme, {finished: true, buildstatus: 0})
          : x.state === 'failed'
            ? statusStyle(p.theme, {finished: true, buildstatus: 1})
            : {glyph: p.theme.unicode ? '⏸' : '-', label: x.state, color: 'blue', dim: false};
    return {
      key: x.drvpath,
      cells: [x.stepnr !== null ? String(x.stepnr) : '', drvName(x.drvpath) + (x.toplevel ? ' (this build)' : ''), {text: `${s.glyph} ${x.state === 'running' ? s.label : x.state}`, color: s.color, dim: s.dim}, x.machine ?? '', x.note ?? ''],
    };
  });
  return (
    <Box flexDirection="column">
      {lines.map((l, i) => (
        <Text key={i} wrap="truncate" color={i === 0 ? paint(p.theme, 'yellow') : undefined} dimColor={i > 0}>
          {truncate(l, p.width, ell)}
        </Text>
      ))}
      <Table columns={DEP_COLUMNS} rows={rows} selected={d.depSelected - top} width={p.width} height={tableHeight} theme={p.theme} ellipsis={ell} empty="no steps" />
    </Box>
  );
}

function HistoryTab(p: TabProps): React.ReactElement {
  const {d, data} = p;
  const ell = glyphs(p.theme).ellipsis;
  const h = data.history;
  if (h.length === 0) return <Text dimColor>no finished build of {data.build.job} yet</Text>;
  const durations = h.filter((x) => x.starttime && x.stoptime).map((x) => x.stoptime! - x.starttime!);
  const oldestFirst = [...durations].reverse();
  const failed = h.filter((x) => x.buildstatus !== 0).length;
  const mean = durations.length ? durations.reduce((a, b) => a + b, 0) / durations.length : null;
  const sparkWidth = Math.max(1, Math.min(oldestFirst.length, p.width - 28));
  const summary = `last ${h.length}: ${h.length - failed} ok, ${failed} failed · ${p.theme.unicode ? '∅' : 'avg'} ${formatDuration(mean)} · latest ${data.latest ?? 'none'}`;
  const tableHeight = Math.max(2, p.height - 2);
  const {top, slice} = windowOf(h, d.historySelected, tableHeight - 1);
  const rows: Row[] = slice.map((x) => {
    const s = statusStyle(p.theme, {finished: true, buildstatus: x.buildstatus, cached: x.iscachedbuild === 1});
    const took = x.starttime && x.stoptime ? x.stoptime - x.starttime : null;
    return {
      key: x.id,
      cells: [String(x.id) + (x.id === data.build.id ? '*' : ''), {text: `${s.glyph} ${s.label}`, color: s.color, dim: s.dim}, formatDuration(took), x.machine || '-', x.stoptime ? `${formatDuration(ageSec(p.now, x.stoptime))} ago` : ''],
    };
  });
  return (
    <Box flexDirection="column">
      <Text wrap="truncate">{truncate(`duration (oldest → newest) ${sparkline(oldestFirst, sparkWidth, p.theme)}`, p.width, ell)}</Text>
      <Text wrap="truncate" dimColor>
        {truncate(summary, p.width, ell)}
      </Text>
      <Table columns={HISTORY_COLUMNS} rows={rows} selected={d.historySelected - top} width={p.width} height={tableHeight} theme={p.theme} ellipsis={ell} />
    </Box>
  );
}
