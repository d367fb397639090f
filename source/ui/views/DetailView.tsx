// Build detail (`enter`): summary, why it is not building yet, steps (select one for its log),
// outputs and products.
import React from 'react';
import {Box, Text} from 'ink';
import {Table, type Column, type Row} from '../components/Table.js';
import {drvName, formatDuration, truncate} from '../format.js';
import {glyphs, paint, statusStyle} from '../theme.js';
import {ageSec, type ViewProps} from './common.js';

const STEP_COLUMNS: Column[] = [
  {title: 'step', width: 4, align: 'right'},
  {title: 'drv', width: 20, flex: true, min: 10},
  {title: 'status', width: 13},
  {title: 'machine', width: 14, drop: 2},
  {title: 'duration', width: 8, align: 'right', drop: 1},
  {title: 'error', width: 20, drop: 3},
];

export function DetailView(p: ViewProps): React.ReactElement {
  const d = p.state.detail;
  if (!d) return <Text dimColor>no build selected</Text>;
  if (d.error) return <Text color={paint(p.theme, 'red')}>{d.error}</Text>;
  if (!d.data) return <Text dimColor>loading build {d.id}…</Text>;
  const {build: b, steps, outputs, products, why} = d.data;
  const st = statusStyle(p.theme, {finished: b.finished === 1, buildstatus: b.buildstatus, busy: b.busy, cached: b.iscachedbuild === 1});
  const ell = glyphs(p.theme).ellipsis;
  const duration = b.starttime && b.stoptime ? b.stoptime - b.starttime : b.starttime ? ageSec(p.now, b.starttime) : null;
  const summary = [
    `${b.project}:${b.jobset} › ${b.job} · ${b.system} · prio ${b.priority}${b.globalpriority > 0 ? ` (bumped ${b.globalpriority})` : ''}`,
    `drv ${b.drvpath}`,
    `queued ${formatDuration(ageSec(p.now, b.timestamp))} ago${duration !== null ? ` · ${b.finished ? 'took' : 'running'} ${formatDuration(duration)}` : ''}${b.machine ? ` on ${b.machine}` : ''}`,
  ];
  const whyLines = why.slice(0, 3);
  const fixed = 1 + summary.length + whyLines.length + (whyLines.length ? 1 : 0);
  const rest = Math.max(2, p.height - fixed);
  const outLines = [
    ...outputs.map((o) => `out ${o.name}: ${o.path ?? '(not built yet)'}`),
    ...products.map((x) => `product ${x.productnr} ${x.type}/${x.subtype} ${x.name}${x.path ? ` ${x.path}` : ''}`),
  ];
  const outHeight = Math.min(outLines.length, Math.max(0, Math.floor(rest / 3)));
  const stepHeight = Math.max(2, rest - outHeight);
  const visible = stepHeight - 1;
  const top = Math.max(0, d.selected - visible + 1);
  const rows: Row[] = steps.slice(top, top + visible).map((s) => {
    const ss = statusStyle(p.theme, {finished: s.busy === 0 && s.status !== null, buildstatus: s.status, busy: s.busy});
    const dur = s.starttime && s.stoptime ? s.stoptime - s.starttime : s.starttime && s.busy ? ageSec(p.now, s.starttime) : null;
    return {
      key: s.stepnr,
      cells: [String(s.stepnr), drvName(s.drvpath), {text: `${ss.glyph} ${ss.label}`, color: ss.color, dim: ss.dim}, s.machine, formatDuration(dur), s.errormsg?.split('\n')[0] ?? ''],
    };
  });
  return (
    <Box flexDirection="column" height={p.height}>
      <Text wrap="truncate" bold>
        {`build ${b.id} `}
        <Text color={paint(p.theme, st.color)} dimColor={st.dim}>
          {st.glyph} {st.label}
        </Text>
        {b.nixname ? ` · ${b.nixname}` : ''}
      </Text>
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
      <Table columns={STEP_COLUMNS} rows={rows} selected={d.selected - top} width={p.width} height={stepHeight} theme={p.theme} ellipsis={ell} empty="no steps recorded yet" />
      {outLines.slice(0, outHeight).map((l, i) => (
        <Text key={`o${i}`} wrap="truncate" dimColor>
          {l}
        </Text>
      ))}
    </Box>
  );
}
