// The footer hint bar (lazygit options line): the keys valid here, disabled ones dim with the
// reason; a status message replaces it; in filter/command/search mode it is the input line.
import React from 'react';
import {Text} from './Text.js';
import {paint, type Theme} from '../theme.js';
import type {State} from '../state/model.js';
import {keyHints, type Hint} from '../state/keys.js';
import {dialogHints} from '../state/input.js';

export type {Hint};

/** The hints for the current mode: in normal mode, derived from the key table. */
export function hintsFor(state: State): Hint[] {
  switch (state.mode) {
    case 'help':
      return [{key: '/', what: 'search the help'}, {key: 'any key', what: 'close help'}];
    case 'dialog':
      return dialogHints(state);
    case 'menu':
      return [{key: 'j/k', what: 'choose'}, {key: 'enter', what: 'run'}, {key: 'esc', what: 'close'}];
    default:
      return keyHints(state);
  }
}

export function Footer(p: {state: State; theme: Theme; width: number}): React.ReactElement {
  const {state, theme} = p;
  if (state.mode === 'help' && state.helpSearch?.typing) {
    return (
      <Text wrap="truncate">
        <Text bold>help /</Text>
        {state.helpSearch.query}
        <Text inverse> </Text>
        <Text dimColor>  enter keep · esc whole help</Text>
      </Text>
    );
  }
  if (state.mode === 'filter' || state.mode === 'command' || state.mode === 'search') {
    const prompt = state.mode === 'filter' ? '/' : state.mode === 'command' ? ':' : 'search /';
    return (
      <Text wrap="truncate">
        <Text bold>{prompt}</Text>
        {state.input}
        <Text inverse> </Text>
        <Text dimColor>{state.mode === 'filter' ? '  enter apply · esc cancel · empty clears' : '  enter · esc'}</Text>
      </Text>
    );
  }
  if (state.message && state.mode === 'normal') {
    return (
      <Text wrap="truncate" color={paint(theme, state.message.error ? 'red' : 'green')} bold={state.message.error}>
        {state.message.error ? (theme.unicode ? '⚠ ' : '! ') : ''}
        {state.message.text}
      </Text>
    );
  }
  const hints = hintsFor(state);
  return (
    <Text wrap="truncate">
      {hints.map((h, i) => (
        <Text key={i} dimColor={!!h.disabled}>
          <Text bold={!h.disabled} color={paint(theme, h.disabled ? undefined : 'cyan')}>
            {h.key}
          </Text>
          {` ${h.what}${h.disabled ? ` (${h.disabled})` : ''}  `}
        </Text>
      ))}
    </Text>
  );
}
