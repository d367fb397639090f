// Confirmation dialog: states exactly what will happen, to how many, where; large actions need the
// count typed.
import React from 'react';
import {Box} from 'ink';
import {Text} from './Text.js';
import {paint, type Theme} from '../theme.js';
import type {Dialog as DialogState} from '../state/model.js';

export function Dialog(p: {dialog: DialogState; width: number; height: number; theme: Theme}): React.ReactElement {
  const d = p.dialog;
  const w = Math.max(30, Math.min(p.width - 2, 90));
  return (
    <Box flexDirection="column" height={p.height}>
      <Box flexDirection="column" borderStyle={p.theme.unicode ? 'round' : 'classic'} borderColor={paint(p.theme, 'yellow')} width={w} paddingX={1}>
        <Text bold wrap="wrap">
          {d.title}
        </Text>
        {d.lines.slice(0, Math.max(0, p.height - 6)).map((l, i) => (
          <Text key={i} wrap="truncate">
            {l}
          </Text>
        ))}
        {d.error ? (
          <Text color={paint(p.theme, 'red')} wrap="truncate">
            {d.error}
          </Text>
        ) : null}
        {d.typed !== null ? (
          <Text wrap="truncate">
            Type <Text bold>{d.typed}</Text> to confirm: {d.input}
            <Text inverse> </Text> <Text dimColor>(esc cancels)</Text>
          </Text>
        ) : (
          <Text wrap="truncate">
            <Text bold>y</Text> confirm · <Text bold>n</Text>/<Text bold>esc</Text> cancel
          </Text>
        )}
      </Box>
    </Box>
  );
}
