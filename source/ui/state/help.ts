// The `?` help: every key of the key table by section, then the `:` commands; searchable (`/` then type: only the
// lines containing the text stay) and contextual (keys that do not act in the view the help was opened from are
// dim). Any other key closes it, as before.
import {KEYS, SECTIONS} from './keys.js';
import {commandHelp} from './input.js';
import {pad} from '../format.js';
import type {Result, State} from './model.js';
import type {ViewName} from './types.js';

export interface HelpLine {
  text: string;
  /** A section title. */
  heading?: boolean;
  /** The key does not act in the current view. */
  elsewhere?: boolean;
}

/** The help's lines for `view`, only those containing `query` (case-insensitive; a section keeps its title). */
export function helpLines(view: ViewName, query: string | null): HelpLine[] {
  const q = query?.trim().toLowerCase() ?? '';
  const match = (keys: string, what: string) => q === '' || keys.toLowerCase().includes(q) || what.toLowerCase().includes(q);
  const out: HelpLine[] = [];
  const section = (title: string, entries: {keys: string; what: string; elsewhere?: boolean}[], width: number) => {
    const shown = entries.filter((e) => match(e.keys, e.what));
    if (shown.length === 0) return;
    out.push({text: title, heading: true});
    for (const e of shown) out.push({text: `  ${pad(e.keys, width)} ${e.what}`, elsewhere: e.elsewhere});
  };
  for (const name of SECTIONS) {
    const entries = KEYS.filter((k) => k.section === name).map((k) => ({keys: k.label, what: k.help, elsewhere: k.views !== undefined && !k.views.includes(view)}));
    section(name, entries, 14);
  }
  section('Commands', commandHelp(), 20);
  return out;
}

/** Keys while the help is shown: `/` searches it (type, backspace, enter keeps the result, esc ends the search). */
export function helpKey(state: State, key: string): Result {
  const search = state.helpSearch;
  const close: State = {...state, mode: 'normal', helpSearch: null};
  if (search?.typing) {
    if (key === 'esc') return {state: {...state, helpSearch: null}, effects: []};
    if (key === 'enter') return {state: {...state, helpSearch: {...search, typing: false}}, effects: []};
    if (key === 'backspace') return {state: {...state, helpSearch: {...search, query: search.query.slice(0, -1)}}, effects: []};
    if (key === 'space') return {state: {...state, helpSearch: {...search, query: search.query + ' '}}, effects: []};
    if (key.length === 1) return {state: {...state, helpSearch: {...search, query: search.query + key}}, effects: []};
    return {state, effects: []};
  }
  if (key === '/') return {state: {...state, helpSearch: {query: '', typing: true}}, effects: []};
  return {state: close, effects: []};
}
