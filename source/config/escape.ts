// Text from the database, a jobset or a builder shown to an operator or written into a script: control
// characters (C0, DEL, C1 — newlines, terminal escape sequences) and the Unicode line/paragraph separators are
// shown escaped (`\n`, `\x1b`, `\u2028`), so such text can neither start a new line of a script nor drive the
// terminal.

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const NAMED: Record<string, string> = {'\n': '\\n', '\r': '\\r', '\t': '\\t'};

export function hasControl(text: string): boolean {
  CONTROL.lastIndex = 0;
  return CONTROL.test(text);
}

/** `text` with every control character escaped; unchanged when it has none. */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => {
    const named = NAMED[c];
    if (named) return named;
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Like escapeControl, but keeps newlines and tabs (multi-line messages stay readable). */
export function escapeControlKeepLines(text: string): string {
  return text
    .split('\n')
    .map((line) => escapeControl(line).replace(/\\t/g, '\t'))
    .join('\n');
}
