// `?`: the key bindings, by section (from the key table), then the `:` commands (from the views table and the
// command table), in as many columns as fit.
import React from 'react';
import {Box, Text} from 'ink';
import {helpSections} from '../state/keys.js';
import {commandHelp} from '../state/input.js';
import {pad} from '../format.js';

export function HelpOverlay(p: {width: number; height: number; database: string}): React.ReactElement {
  const lines: {text: string; bold?: boolean}[] = [];
  for (const s of helpSections()) {
    lines.push({text: s.section, bold: true});
    for (const e of s.entries) lines.push({text: `  ${pad(e.keys, 14)} ${e.what}`});
  }
  lines.push({text: 'Commands', bold: true});
  for (const e of commandHelp()) lines.push({text: `  ${pad(e.keys, 20)} ${e.what}`});
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
              <Text key={j} bold={l.bold} wrap="truncate">
                {l.text}
              </Text>
            ))}
          </Box>
        ))}
      </Box>
      {lines.length > shown.length ? <Text dimColor>(enlarge the terminal for the full help)</Text> : null}
    </Box>
  );
}
