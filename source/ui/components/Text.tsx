// The console's only way to put text on the screen: Ink's Text, with every string it is given shown escaped.
// Names, messages and errors come from the database, a jobset or a builder; a control character in them (a
// terminal escape sequence, a bell, a carriage return) is shown as `\x1b`, `\x07`, `\r`, … instead of driving the
// terminal. Newlines are kept only where the text is meant to wrap over lines (wrap="wrap"). Every component
// imports Text from here, never from ink (test/security-small-holes.test.tsx checks that).
import React from 'react';
import {Text as InkText, type TextProps} from 'ink';
import {escapeControl} from '../../config/escape.js';

function escaped(text: string, keepNewlines: boolean): string {
  return keepNewlines ? text.split('\n').map(escapeControl).join('\n') : escapeControl(text);
}

export function Text(p: TextProps): React.ReactElement {
  const keep = p.wrap === 'wrap';
  const children = React.Children.map(p.children, (c) => (typeof c === 'string' ? escaped(c, keep) : c));
  return <InkText {...p}>{children}</InkText>;
}
