// The table of console keys. Each entry is one line of the `?` help: the key names it binds, how help and the
// footer write them, the views where it acts (and what pressing it elsewhere says), when it is disabled and why,
// its footer hints, and its action, which returns the next state and effects as data (the entries by concern in
// keys-lists.ts, keys-actions.ts and keys-log.ts; their shape in key-spec.ts). The reducer (pressKey), the footer
// (keyHints), the help (helpSections) and the `x` menu (menuItems) are all derived from KEYS here.
// Adding a key: docs/architecture.md ("Adding a key").
import {say, stay, type Menu, type Result, type State} from './model.js';
import type {ViewName} from './types.js';
import {BUILD_HINTS, SECTIONS, type KeySpec, type Section} from './key-spec.js';
import {LIST_KEYS, SORT_KEYS} from './keys-lists.js';
import {ACTION_KEYS, COPY_KEYS} from './keys-actions.js';
import {GLOBAL_KEYS, LOG_KEYS} from './keys-log.js';

export {SECTIONS, type KeySpec, type Section} from './key-spec.js';

const MENU_KEY: KeySpec = {
  keys: ['x'],
  label: 'x',
  section: 'Actions',
  help: 'action menu: every action of this view (from this table)',
  hints: [{what: 'actions', in: [...BUILD_HINTS, 'evals', 'machines']}],
  menu: false,
  run: (s) => openMenu(s),
};

/** Every key, in table order (the footer's order too). */
export const KEYS: readonly KeySpec[] = [...LIST_KEYS, ...ACTION_KEYS, ...SORT_KEYS, MENU_KEY, ...COPY_KEYS, ...LOG_KEYS, ...GLOBAL_KEYS];

/** The `x` menu's lines in this view: every key-table entry acting here, disabled ones with why. */
export function menuItems(s: State): Menu['items'] {
  const out: Menu['items'] = [];
  for (const spec of KEYS) {
    if (spec.section === 'Global' || spec.menu === false) continue;
    if (spec.views && !spec.views.includes(s.view)) continue;
    const lines =
      spec.menu ??
      (spec.hints ?? [])
        .filter((h) => !h.in || h.in.includes(s.view))
        .map((h) => ({key: h.key && spec.keys.includes(h.key) ? h.key : spec.keys[0]!, what: typeof h.what === 'function' ? h.what(s) : h.what}))
        .filter((l): l is {key: string; what: string} => l.what !== null);
    const items = lines.length > 0 ? lines : [{key: spec.keys[0]!, what: spec.help}];
    for (const l of items) if (!out.some((o) => o.key === l.key)) out.push({key: l.key, what: l.what, disabled: spec.disabled?.(s, l.key)?.hint ?? null});
  }
  return out;
}

function openMenu(s: State): Result {
  const items = menuItems(s);
  if (items.length === 0) return say(s, 'no actions in this view');
  return {state: {...s, mode: 'menu', menu: {items, selected: 0}}, effects: []};
}

/** Keys while the `x` menu is open: move, enter runs the line, its own key runs it, esc closes. */
export function menuKey(s: State, key: string): Result {
  const m = s.menu;
  const close: State = {...s, mode: 'normal', menu: null};
  if (!m || key === 'esc' || key === 'q' || key === 'x') return stay(close);
  if (key === 'j' || key === 'down') return stay({...s, menu: {...m, selected: Math.min(m.items.length - 1, m.selected + 1)}});
  if (key === 'k' || key === 'up') return stay({...s, menu: {...m, selected: Math.max(0, m.selected - 1)}});
  const item = key === 'enter' ? m.items[m.selected] : m.items.find((i) => i.key === key);
  if (!item) return stay(s);
  return pressKey(close, item.key);
}

/** The entry a key resolves to in a view: the one that acts there, else one that explains where it does. */
export function bindingFor(view: ViewName, key: string): {spec: KeySpec; acts: boolean} | null {
  let elsewhere: KeySpec | null = null;
  for (const spec of KEYS) {
    if (!spec.keys.includes(key)) continue;
    if (!spec.views || spec.views.includes(view)) return {spec, acts: true};
    if (spec.elsewhere) elsewhere ??= spec;
  }
  return elsewhere ? {spec: elsewhere, acts: false} : null;
}

/** A key pressed in normal mode. */
export function pressKey(state: State, key: string): Result {
  const b = bindingFor(state.view, key);
  if (!b) return stay(state);
  if (!b.acts) {
    const m = b.spec.elsewhere?.(key);
    return m ? {state: {...state, message: m}, effects: []} : stay(state);
  }
  const no = b.spec.disabled?.(state, key);
  if (no) return {state: {...state, message: {text: no.text, error: true}}, effects: []};
  return b.spec.run(state.message ? {...state, message: null} : state, key);
}

export interface Hint {
  key: string;
  what: string;
  /** Why it is disabled here. */
  disabled?: string | null;
}

/** The footer's hints in normal mode: the keys acting in this view, in table order. */
export function keyHints(state: State): Hint[] {
  const out: Hint[] = [];
  for (const spec of KEYS) {
    if (spec.views && !spec.views.includes(state.view)) continue;
    for (const h of spec.hints ?? []) {
      if (h.in && !h.in.includes(state.view)) continue;
      const what = typeof h.what === 'function' ? h.what(state) : h.what;
      if (what === null) continue;
      out.push({key: h.key ?? spec.label, what, disabled: spec.disabled?.(state, spec.keys[0]!)?.hint ?? null});
    }
  }
  return out;
}

export interface HelpEntry {
  keys: string;
  what: string;
}

/** The `?` help, by section. */
export function helpSections(): {section: Section; entries: HelpEntry[]}[] {
  return SECTIONS.map((section) => ({section, entries: KEYS.filter((k) => k.section === section).map((k) => ({keys: k.label, what: k.help}))}));
}

