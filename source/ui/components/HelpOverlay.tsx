// `?`: the help (state/help.ts: the key table by section, then the `:` commands), in as many columns as fit;
// keys that do not act in the current view are dim; `/` narrows it to the lines containing a text.
import React from 'react';
import {Box} from 'ink';
import {Text} from './Text.js';
import {helpLines} from '../state/help.js';
import type {ViewName} from '../state/types.js';

export function HelpOverlay(p: {width: number; height: number; database: string; view: ViewName; query?: string | null}): React.ReactElement {
  const lines = helpLines(p.view, p.query ?? null);
  const colWidth = Math.min(p.width, 64);
  const perCol = Math.max(1, p.height - 1);
  const cols = Math.max(1, Math.floor(p.width / colWidth));
  const shown = lines.slice(0, perCol * cols);
  const columns: (typeof lines)[] = [];
  for (let i = 0; i < shown.length; i += perCol) columns.push(shown.slice(i, i + perCol));
  return (
    <Box flexDirection="column" height={p.height}>
      <Box flexDirection="row">
        {columns.map((c, i) => (
          <Box key={i} flexDirection="column" width={colWidth}>
            {c.map((l, j) => (
              <Text key={j} bold={l.heading} dimColor={l.elsewhere} wrap="truncate">
                {l.text}
              </Text>
            ))}
          </Box>
        ))}
      </Box>
      {lines.length === 0 ? <Text dimColor>nothing in the help contains "{p.query}" (esc: the whole help)</Text> : null}
      {lines.length > shown.length ? <Text dimColor>(enlarge the terminal for the full help, or / to search it)</Text> : null}
    </Box>
  );
}
