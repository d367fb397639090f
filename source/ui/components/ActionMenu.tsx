// `x`: the current view's actions as a list (generated from the key table, so it always agrees
// with the footer and the help); disabled lines are dim with the reason.
import React from 'react';
import {Box} from 'ink';
import {Text} from './Text.js';
import {pad} from '../format.js';
import type {Menu} from '../state/model.js';

export function ActionMenu(p: {menu: Menu; width: number; height: number}): React.ReactElement {
  const visible = Math.max(1, p.height - 1);
  const top = Math.max(0, Math.min(p.menu.selected - visible + 1, p.menu.items.length - visible));
  return (
    <Box flexDirection="column" height={p.height}>
      <Text bold wrap="truncate">
        Actions — enter runs, or press the key
      </Text>
      {p.menu.items.slice(top, top + visible).map((it, i) => (
        <Text key={it.key} inverse={top + i === p.menu.selected} dimColor={!!it.disabled} wrap="truncate">
          {`${top + i === p.menu.selected ? '>' : ' '} ${pad(it.key, 7)} ${it.what}${it.disabled ? ` (${it.disabled})` : ''}`}
        </Text>
      ))}
    </Box>
  );
}
