// The shape of a key-table entry (KeySpec) and what the entries share: the views where a kind of key acts (derived
// from the views table), the read-only refusal, the "no build here" note. The entries are in keys-lists.ts,
// keys-actions.ts and keys-log.ts; keys.ts assembles them into KEYS and derives the keymap, footer, help and menu.
import type {Result, State} from './model.js';
import type {ViewName} from './types.js';
import {TOP_VIEWS, VIEW_NAMES, VIEWS} from './views.js';
import {cursorOf} from './selection.js';

export type Section = 'Global' | 'Lists' | 'Actions' | 'Detail' | 'Log';
/** Help sections in display order. */
export const SECTIONS: readonly Section[] = ['Global', 'Lists', 'Actions', 'Detail', 'Log'];

export interface KeyHint {
  /** How the footer writes the key (default: the entry's label). */
  key?: string;
  /** What it does, in a word or two; null: no hint in this state. */
  what: string | ((s: State) => string | null);
  /** Only in these views (default: every view where the key acts). */
  in?: readonly ViewName[];
}

/** Why a key cannot act now: the footer's dim note and the refusal message. */
export interface Refusal {
  hint: string;
  text: string;
}

export interface KeySpec {
  /** Key names as toKeys() produces them (`j`, `ctrl-d`, `enter`, `space`, …). */
  keys: readonly string[];
  /** How the help writes the keys. */
  label: string;
  section: Section;
  help: string;
  /** Views where the key acts; absent: every view. */
  views?: readonly ViewName[];
  /** What pressing it in another view says (absent: nothing happens). */
  elsewhere?(key: string): {text: string; error: boolean};
  /** Why it cannot act now (read-only, missing role, …), or null. */
  disabled?(s: State, key: string): Refusal | null;
  hints?: readonly KeyHint[];
  /**
   * Its lines in the `x` menu (default: one per footer hint, pressing the hint's key, or the
   * entry's first key); false: not in the menu (moving, paging).
   */
  menu?: readonly {key: string; what: string}[] | false;
  run(s: State, key: string): Result;
}

/** Views that can move a selection (the log scrolls with its own keys). */
export const CURSOR_VIEWS = VIEW_NAMES.filter((v) => cursorOf(v) !== null);
/** Views where a build is selected (actions act on it). */
export const BUILD_VIEWS = VIEW_NAMES.filter((v) => VIEWS[v].selected !== undefined);
export const ENTER_VIEWS = VIEW_NAMES.filter((v) => VIEWS[v].enter !== undefined);
export const MARK_VIEWS = VIEW_NAMES.filter((v) => VIEWS[v].marks === true);
/** Top-level views with few keys of their own: their footer lists the navigation keys. */
export const BROWSE_VIEWS = TOP_VIEWS.filter((v) => !VIEWS[v].filter);
/** Where the build actions' footer hints are shown. */
export const BUILD_HINTS: readonly ViewName[] = ['builds', 'steps', 'detail'];

export function viewName(v: ViewName): string {
  return `the ${VIEWS[v].title} view (${VIEWS[v].key})`;
}

export const readonly =
  (verb: string) =>
  (s: State): Refusal | null =>
    s.caps?.readonly ? {hint: 'read-only', text: `${verb}: ${s.caps.readonly}`} : null;

export const noBuild = (verb: string) => () => ({text: `${verb}: no build selected here`, error: true});
export const machineKind = (key: string): 'enable' | 'drain' => (key === 'E' ? 'drain' : 'enable');

