// The footer hint bar (lazygit options line): the keys valid here, disabled ones dim with the
// reason; a status message replaces it; in filter/command/search mode it is the input line.
import React from 'react';
import {Text} from 'ink';
import {paint, type Theme} from '../theme.js';
import type {State} from '../state/reducer.js';

export interface Hint {
  key: string;
  what: string;
  /** Why it is disabled here. */
  disabled?: string | null;
}

export function hintsFor(state: State): Hint[] {
  const ro = state.caps?.readonly ? 'read-only' : null;
  const admin = ro ?? (state.caps?.admin ? 'needs admin' : null);
  const checks = state.caps?.checks ? 'not available' : null;
  const common: Hint[] = [{key: '?', what: 'help'}];
  switch (state.mode) {
    case 'help':
      return [{key: 'any key', what: 'close help'}];
    case 'dialog':
      return state.dialog?.typed !== null ? [{key: 'digits enter', what: 'confirm'}, {key: 'esc', what: 'cancel'}] : [{key: 'y', what: 'confirm'}, {key: 'n esc', what: 'cancel'}];
    default:
      break;
  }
  switch (state.view) {
    case 'builds':
      return [
        {key: 'enter', what: 'detail'},
        {key: 'l', what: 'log'},
        {key: '/', what: 'filter'},
        {key: 'space', what: 'mark'},
        {key: 'r', what: 'restart', disabled: ro},
        {key: '^d', what: 'cancel', disabled: ro},
        {key: 'b', what: 'bump', disabled: ro},
        {key: 'c', what: 'check', disabled: checks},
        {key: 's', what: state.order === 'queue' ? 'newest' : 'queue order'},
        ...common,
      ];
    case 'steps':
      return [{key: 'enter', what: 'build'}, {key: 'l', what: 'log'}, {key: '/', what: 'filter'}, {key: 'r', what: 'restart', disabled: ro}, {key: '^d', what: 'cancel', disabled: ro}, ...common];
    case 'machines':
      return [{key: 'enter', what: 'steps'}, {key: '/', what: 'filter'}, {key: 'e', what: 'enable', disabled: admin}, {key: 'E', what: 'drain', disabled: admin}, {key: 'i', what: 'ping'}, ...common];
    case 'detail':
      return [{key: 'j/k', what: 'step'}, {key: 'enter l', what: 'log'}, {key: 'r', what: 'restart', disabled: ro}, {key: '^d', what: 'cancel', disabled: ro}, {key: 'b', what: 'bump', disabled: ro}, {key: 'esc', what: 'back'}, ...common];
    case 'log':
      return [
        {key: 'f', what: state.log?.follow ? 'unfollow' : 'follow'},
        {key: 'w', what: 'wrap'},
        {key: '/', what: 'search'},
        {key: 'n/N', what: 'next/prev'},
        {key: 'g/G', what: 'top/bottom'},
        {key: 'esc', what: 'back'},
        ...common,
      ];
    case 'jobsets':
      return [{key: 'enter', what: 'builds'}, {key: '1-7', what: 'views'}, {key: ':', what: 'command'}, ...common, {key: 'q', what: 'quit'}];
    default:
      return [{key: '1-7', what: 'views'}, {key: ':', what: 'command'}, {key: 'enter', what: 'open'}, {key: 'p', what: state.paused ? 'resume' : 'pause'}, ...common, {key: 'q', what: 'quit'}];
  }
}

export function Footer(p: {state: State; theme: Theme; width: number}): React.ReactElement {
  const {state, theme} = p;
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
