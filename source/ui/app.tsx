// The console's root component: header strip, crumb line, the active view (or help / a dialog),
// footer. All keys go to the controller's reducer; the component only renders its state.
import React, {useEffect, useState, useSyncExternalStore} from 'react';
import {Box, useInput, useStdin, useStdout} from 'ink';
import {Text} from './components/Text.js';
import type {ConsoleController} from './state/controller.js';
import type {State} from './state/model.js';
import {besideWidths, bodyLines, headerLines, MIN_COLUMNS, MIN_ROWS, tooSmall, type Size} from './state/layout.js';
import {VIEWS} from './state/views.js';
import type {ViewName} from './state/types.js';
import {formatCount} from './format.js';
import {glyphs, paint, type Theme} from './theme.js';
import {Header} from './components/Header.js';
import {Footer} from './components/Footer.js';
import {Dialog} from './components/Dialog.js';
import {HelpOverlay} from './components/HelpOverlay.js';
import {ActionMenu} from './components/ActionMenu.js';
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
  const spec = VIEWS[state.view];
  const parts: string[] = [...state.back.map((v) => VIEWS[v].title), spec.crumbTitle?.(state) ?? spec.title];
  const text = parts.join(` ${g.sep} `);
  return text + (spec.crumbTail?.(state, {count: (n) => formatCount(n, theme.unicode), sep: g.sep}) ?? '');
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
  if (state.mode === 'help') main = <HelpOverlay width={width} height={body} database={c.data.describe()} view={state.view} query={state.helpSearch?.query ?? null} />;
  else if (state.mode === 'menu' && state.menu) main = <ActionMenu menu={state.menu} width={width} height={body} />;
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

/** Views the detail pane can sit beside (the table it was opened from). */
const TABLE_VIEWS: readonly ViewName[] = ['builds', 'steps'];

function renderView(p: ViewProps): React.ReactElement {
  const s = p.state;
  const from = s.back[s.back.length - 1];
  const split = s.view === 'detail' && from !== undefined && TABLE_VIEWS.includes(from) ? besideWidths(s.size) : null;
  if (split && from) {
    // Wide terminal: the table stays on the left (its selection is the build shown), the detail pane on the right.
    const Detail = VIEWS.detail.component;
    const Table = VIEWS[from].component;
    return (
      <Box flexDirection="row" height={p.height}>
        <Box width={split.table} flexDirection="column" overflow="hidden">
          <Table {...p} state={{...s, view: from}} width={split.table} />
        </Box>
        <Box width={1} />
        <Box width={split.detail} flexDirection="column" overflow="hidden">
          <Detail {...p} width={split.detail} />
        </Box>
      </Box>
    );
  }
  const View = VIEWS[s.view].component;
  return <View {...p} />;
}
