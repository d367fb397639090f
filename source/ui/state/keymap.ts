// Keyboard input → key names. Ink delivers a multi-character chunk (paste, fast typing over SSH) as
// one input string; it is split here so every key reaches the reducer on its own. What each key
// does is the key table's business (keys.ts).

/** The subset of Ink's Key object the console looks at. */
export interface InkKey {
  upArrow?: boolean;
  downArrow?: boolean;
  leftArrow?: boolean;
  rightArrow?: boolean;
  pageUp?: boolean;
  pageDown?: boolean;
  home?: boolean;
  end?: boolean;
  return?: boolean;
  escape?: boolean;
  ctrl?: boolean;
  shift?: boolean;
  tab?: boolean;
  backspace?: boolean;
  delete?: boolean;
  meta?: boolean;
}

/** Key names: printable characters as themselves, plus `up down left right pgup pgdn home end enter esc tab shift-tab backspace space ctrl-space ctrl-x`. */
export function toKeys(input: string, key: InkKey): string[] {
  if (key.upArrow) return ['up'];
  if (key.downArrow) return ['down'];
  if (key.leftArrow) return ['left'];
  if (key.rightArrow) return ['right'];
  if (key.pageUp) return ['pgup'];
  if (key.pageDown) return ['pgdn'];
  if (key.home) return ['home'];
  if (key.end) return ['end'];
  if (key.return) return ['enter'];
  if (key.tab) return [key.shift ? 'shift-tab' : 'tab'];
  if (key.backspace || key.delete) return ['backspace'];
  if (key.escape && input === '') return ['esc'];
  // ctrl-space arrives as NUL, which Ink names ctrl + "`" (NUL + 96); some terminals send ctrl-@ or ctrl + space.
  if (key.ctrl && (input === '`' || input === '@' || input === ' ' || input === '\u0000')) return ['ctrl-space'];
  if (key.ctrl && input.length === 1) return [`ctrl-${input.toLowerCase()}`];
  if (input === '') return [];
  const out: string[] = [];
  for (const ch of input) {
    if (ch === '\r' || ch === '\n') out.push('enter');
    else if (ch === ' ') out.push('space');
    else if (ch === '\u007F' || ch === '\b') out.push('backspace');
    else if (ch === '\u0000') out.push('ctrl-space');
    else if (ch === '\u0004') out.push('ctrl-d');
    else if (ch === '\u0003') out.push('ctrl-c');
    else if (ch === '\u001B') out.push('esc');
    else if (ch >= ' ') out.push(ch);
  }
  return out;
}
