// A view whose rows could not be read: the error's lines in red, and an optional hint below them.
import React from 'react';
import {Box} from 'ink';
import {Text} from '../components/Text.js';
import type {Theme} from '../theme.js';

export function ErrorLines(p: {error: string; theme: Theme; height: number; hint?: string}): React.ReactElement {
  return (
    <Box flexDirection="column" height={p.height}>
      {p.error.split('\n').map((line, i) => (
        <Text key={i} color={p.theme.color ? 'red' : undefined} wrap="truncate">
          {line}
        </Text>
      ))}
      {p.hint ? <Text dimColor>{p.hint}</Text> : null}
    </Box>
  );
}
