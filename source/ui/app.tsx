// The console's root component: header strip, crumb line, the active view (or help / a dialog),
// footer. All keys go to the controller's reducer; the component only renders its state.
import React, {useEffect, useState, useSyncExternalStore} from 'react';
import {Box, Text, useInput, useStdin, useStdout} from 'ink';
import type {ConsoleController} from './state/controller.js';
import type {State} from './state/reducer.js';
import {bodyLines, headerLines, MIN_COLUMNS, MIN_ROWS, tooSmall, type Size} from './state/layout.js';
import {VIEW_TITLES} from './state/keymap.js';
import {formatCount} from './format.js';
import {glyphs, paint, type Theme} from './theme.js';
import {Header} from './components/Header.js';
import {Footer} from './components/Footer.js';
import {Dialog} from './components/Dialog.js';
import {HelpOverlay} from './components/HelpOverlay.js';
import {OverviewView} from './views/OverviewView.js';
import {BuildsView} from './views/BuildsView.js';
import {StepsView} from './views/StepsView.js';
import {MachinesView} from './views/MachinesView.js';
import {JobsetsView} from './views/JobsetsView.js';
import {DetailView} from './views/DetailView.js';
import {LogView} from './views/LogView.js';
import {ChecksView} from './views/ChecksView.js';
import {AuditView} from './views/AuditView.js';
import type {ViewProps} from './views/common.js';

export interface AppProps {
  controller: ConsoleController;
  theme: Theme;
  /** Fixed terminal size (tests); otherwise read from stdout and followed on resize. */
  size?: Size;
  /** Clock (tests freeze it). */
  now?: () => number;
  /** How often ages and the data age are redrawn (ms, default 1000; 0 = never). */
  clockMs?: number;
}

export function crumb(state: State, theme: Theme): string {
  const g = glyphs(theme);
  const parts: string[] = [...state.back.map((v) => VIEW_TITLES[v]), VIEW_TITLES[state.view]];
  if (state.view === 'detail' && state.detail) parts[parts.length - 1] = `build ${state.detail.id}`;
  if (state.view === 'log' && state.log) parts[parts.length - 1] = `log ${state.log.build}${state.log.stepnr !== null ? `/${state.log.stepnr}` : ''}`;
  let text = parts.join(` ${g.sep} `);
  const u = theme.unicode;
  if (state.view === 'builds') {
    const w = state.builds;
    text += state.order === 'queue' ? ' (queue order)' : ' (newest first)';
    if (state.filters.builds) text += ` ${g.sep} filter: ${state.filters.builds}`;
    const pos = w.rows.length ? `${formatCount(w.selected + 1, u)} of ${w.total === null ? '…' : formatCount(w.total, u)}` : w.total !== null ? `0 of ${formatCount(w.total, u)}` : '';
    if (pos) text += ` — ${pos}`;
    if (state.marks.length) text += ` · ${state.marks.length} marked`;
  } else if (state.view === 'steps' || state.view === 'machines') {
    const l = state[state.view];
    if (state.filters[state.view]) text += ` ${g.sep} filter: ${state.filters[state.view]}`;
    text += ` — ${formatCount(l.rows.length, u)}`;
  } else if (state.view === 'audit' || state.view === 'checks') {
    const w = state[state.view];
    if (w.total !== null) text += ` — ${formatCount(w.total, u)}`;
  }
  return text;
}

function useTerminalSize(fixed?: Size): Size {
  const {stdout} = useStdout();
  const read = (): Size => ({columns: stdout.columns || 80, rows: stdout.rows || 24});
  const [size, setSize] = useState<Size>(fixed ?? read());
  useEffect(() => {
    if (fixed) return;
    const onResize = () => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [fixed, stdout]);
  return fixed ?? size;
}

export function App(p: AppProps): React.ReactElement {
  const c = p.controller;
  const state = useSyncExternalStore(c.subscribe, c.getState);
  const {isRawModeSupported} = useStdin();
  useInput((input, key) => c.input(input, key), {isActive: isRawModeSupported === true});
  const size = useTerminalSize(p.size);
  useEffect(() => c.resize(size), [size.columns, size.rows]);
  const clock = p.now ?? Date.now;
  const [now, setNow] = useState(clock());
  useEffect(() => {
    const ms = p.clockMs ?? 1000;
    if (ms <= 0) return;
    const t = setInterval(() => {
      if (!c.getState().paused) setNow(clock());
    }, ms);
    return () => clearInterval(t);
  }, [p.clockMs]);
  const t = p.now ? p.now() : now;
  const theme = p.theme;

  if (tooSmall(size)) {
    return (
      <Text wrap="truncate">
        terminal too small (need {MIN_COLUMNS}×{MIN_ROWS}, have {size.columns}×{size.rows}) — q quits
      </Text>
    );
  }
  const width = size.columns;
  const hLines = headerLines(size);
  let body = bodyLines(size);
  const errLines = state.inputError && state.mode !== 'normal' ? state.inputError.split('\n') : [];
  body = Math.max(1, body - errLines.length);
  const vp: ViewProps = {state, theme, width, height: body, now: t};
  let main: React.ReactElement;
  if (state.mode === 'help') main = <HelpOverlay width={width} height={body} database={c.data.describe()} />;
  else if (state.mode === 'dialog' && state.dialog) main = <Dialog dialog={state.dialog} width={width} height={body} theme={theme} />;
  else main = renderView(vp);
  return (
    <Box flexDirection="column" width={width} height={size.rows}>
      <Header header={state.header} lines={hLines} width={width} theme={theme} paused={state.paused} readonly={state.caps?.readonly ?? null} now={t} />
      <Text wrap="truncate" color={paint(theme, 'cyan')} bold>
        {crumb(state, theme)}
      </Text>
      <Box height={body} flexDirection="column" overflow="hidden">
        {main}
      </Box>
      {errLines.map((l, i) => (
        <Text key={i} wrap="truncate" color={paint(theme, 'red')}>
          {l}
        </Text>
      ))}
      <Footer state={state} theme={theme} width={width} />
    </Box>
  );
}

function renderView(p: ViewProps): React.ReactElement {
  switch (p.state.view) {
    case 'overview':
      return <OverviewView {...p} />;
    case 'builds':
      return <BuildsView {...p} />;
    case 'steps':
      return <StepsView {...p} />;
    case 'machines':
      return <MachinesView {...p} />;
    case 'jobsets':
      return <JobsetsView {...p} />;
    case 'detail':
      return <DetailView {...p} />;
    case 'log':
      return <LogView {...p} />;
    case 'checks':
      return <ChecksView {...p} />;
    case 'audit':
      return <AuditView {...p} />;
  }
}
