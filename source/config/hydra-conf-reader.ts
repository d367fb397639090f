// The hydra.conf file reader: every line of the file and of what it includes, read twice over:
//
// 1. The way Hydra's Perl side reads it (Config::General with Apache-style includes): `key = value`
//    or `key value`, `#` comments (`\#` is a literal hash), `/* … */` comments, `\` line
//    continuation, `key <<EOT` here-documents, `<block>`/`<block name>` … `</block>` nesting,
//    `Include path` / `include path` / `<<include path>>` relative to the including file.
//    Values enclosed in double quotes lose the quotes. This view is for display (`values`,
//    `entries`).
// 2. The way Hydra's C++ queue runner reads it: every physical line containing `=` is
//    `key = value` after cutting at the first `#` and trimming (a "flat line"); blocks do not exist
//    (their lines leak into the flat namespace). One deliberate difference: lines of included files
//    are honoured (the C++ runner never saw them), in place of the Include line. What the runner
//    makes of the flat lines is hydra-conf.ts.
//
// Includes may use `*`, `?` and `[…]` in their last path component (with a warning: Hydra's Perl
// side does not expand globs). Include cycles and missing included files are errors.

import {readFileSync, readdirSync, realpathSync, statSync} from 'node:fs';
import {basename, dirname, isAbsolute, join, resolve} from 'node:path';
import {ConfigError, quote} from './errors.js';

/** One key/value pair as the Perl side sees it. */
export interface ConfEntry {
  /** Block path and key joined with `.`: `max_db_connections`, `hydra_notify.prometheus.port`. */
  path: string;
  key: string;
  value: string;
  /** Enclosing blocks, outermost first; a named block `<git-input foo>` contributes `git-input`, `foo`. */
  blocks: string[];
  file: string;
  line: number;
  /** True when the pair came from an included file. */
  included: boolean;
}

export interface FlatLine {
  key: string;
  value: string;
  file: string;
  line: number;
  blocks: string[];
  included: boolean;
  /** Why the Perl side does not see this line as a setting, if it does not. */
  hidden?: 'comment' | 'here-document';
}

export interface State {
  blocks: Array<{name: string; segments: string[]; file: string; line: number}>;
  entries: ConfEntry[];
  flat: FlatLine[];
  warnings: string[];
  files: string[];
  stack: string[];
}

export const where = (file: string, line: number) => `${file}:${line}`;

export function fail(file: string, line: number, message: string, field?: string): never {
  throw new ConfigError(`${where(file, line)}: ${message}`, {file, line, ...(field !== undefined ? {field} : {})});
}

function isGlob(text: string): boolean {
  return /[*?[]/.test(text);
}

function globToRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) source += '\\[';
      else {
        let body = pattern.slice(i + 1, end);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        source += `[${body.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else source += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

function expandInclude(target: string, file: string, line: number, state: State): string[] {
  const path = isAbsolute(target) ? target : resolve(dirname(file), target);
  if (!isGlob(path)) {
    let isFile = false;
    try {
      isFile = statSync(path).isFile();
    } catch {
      fail(file, line, `included file ${quote(target)} does not exist (looked for ${path})`);
    }
    if (!isFile) fail(file, line, `included path ${quote(target)} is not a regular file (${path})`);
    return [path];
  }
  const directory = dirname(path);
  if (isGlob(directory)) fail(file, line, `wildcards are only supported in the last component of an include: ${quote(target)}`);
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch {
    fail(file, line, `directory of included pattern ${quote(target)} does not exist (${directory})`);
  }
  const pattern = globToRegExp(basename(path));
  const matches = names
    .filter((name) => pattern.test(name))
    .map((name) => join(directory, name))
    .filter((p) => statSync(p).isFile())
    .sort();
  state.warnings.push(
    `${where(file, line)}: include pattern ${quote(target)} matched ${matches.length} file(s); ` +
      `Hydra's own Perl side does not expand wildcards in includes`,
  );
  return matches;
}

function readText(path: string, from?: {file: string; line: number}): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    if (from) fail(from.file, from.line, `cannot read included file ${path}: ${reason}`);
    throw new ConfigError(`cannot read hydra.conf ${path}: ${reason}`, {file: path});
  }
}

/** Cuts a `#` comment (not `\#`) and turns `\#` into `#`: the Perl side's comment rule. */
function stripPerlComment(line: string): string {
  let out = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && line[i + 1] === '#') {
      out += '#';
      i++;
    } else if (c === '#') break;
    else out += c;
  }
  return out;
}

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

function addEntry(state: State, key: string, value: string, file: string, line: number): void {
  const blocks = state.blocks.flatMap((b) => b.segments);
  state.entries.push({
    path: [...blocks, key].join('.'),
    key,
    value,
    blocks,
    file,
    line,
    included: state.stack.length > 1,
  });
}

export function readFile(path: string, state: State, from?: {file: string; line: number}): void {
  const real = (() => {
    try {
      return realpathSync(path);
    } catch {
      return path;
    }
  })();
  if (state.stack.includes(real)) {
    const cycle = [...state.stack.slice(state.stack.indexOf(real)), real].join(' → ');
    fail(from!.file, from!.line, `include cycle: ${cycle}`);
  }
  const text = readText(path, from);
  state.stack.push(real);
  if (!state.files.includes(real)) state.files.push(real);
  const file = path;
  const lines = text.split(/\r?\n/);

  let cComment = false;
  let heredoc: {key: string; end: string; value: string[]; line: number} | undefined;
  let pending = '';
  let pendingLine = 0;

  for (let index = 0; index < lines.length; index++) {
    const raw = lines[index]!;
    const number = index + 1;

    // C++ view: every physical line with '=' after cutting at the first '#'.
    const cut = raw.includes('#') ? raw.slice(0, raw.indexOf('#')) : raw;
    const eq = cut.indexOf('=');
    if (eq >= 0) {
      const key = cut.slice(0, eq).trim();
      if (key !== '') {
        const hidden = cComment ? 'comment' : heredoc ? 'here-document' : undefined;
        state.flat.push({
          key,
          value: cut.slice(eq + 1).trim(),
          file,
          line: number,
          blocks: state.blocks.map((b) => b.name),
          included: state.stack.length > 1,
          ...(hidden ? {hidden} : {}),
        });
      }
    }

    // Perl view.
    if (heredoc) {
      if (raw.trim() === heredoc.end) {
        addEntry(state, heredoc.key, heredoc.value.join('\n'), file, heredoc.line);
        heredoc = undefined;
      } else heredoc.value.push(raw);
      continue;
    }
    if (cComment) {
      if (raw.includes('*/')) cComment = false;
      continue;
    }
    if (/^\s*\/\*/.test(raw)) {
      if (!/\*\/\s*$/.test(raw)) cComment = true;
      continue;
    }
    let text = stripPerlComment(raw);
    if (/(^|[^\\])\\\s*$/.test(text)) {
      const part = text.replace(/\\\s*$/, '');
      if (pending === '') {
        pendingLine = number;
        pending = part;
      } else pending += part.trimStart();
      continue;
    }
    let at = number;
    if (pending !== '') {
      text = pending + text.replace(/^\s*/, '');
      at = pendingLine;
      pending = '';
    }
    text = text.trim();
    if (text === '') continue;

    const include =
      /^include\s+(.+)$/i.exec(text) ?? /^<<\s*include\s+(.+?)\s*>>$/i.exec(text);
    if (include) {
      const target = unquote(include[1]!.trim()).replace(/^'(.*)'$/, '$1');
      for (const included of expandInclude(target, file, at, state)) {
        readFile(included, state, {file, line: at});
      }
      continue;
    }
    const close = /^<\/\s*([^>]*?)\s*>$/.exec(text);
    if (close) {
      const open = state.blocks[state.blocks.length - 1];
      if (!open) fail(file, at, `${quote(text)} closes a block that was never opened`);
      if (open.name !== close[1]) {
        fail(file, at, `${quote(text)} does not match <${open.name}> opened at ${where(open.file, open.line)}`);
      }
      state.blocks.pop();
      continue;
    }
    const block = /^<\s*([^\s/>][^>]*?)\s*>$/.exec(text);
    if (block) {
      const segments = block[1]!.split(/\s+/).map(unquote);
      state.blocks.push({name: segments[0]!, segments, file, line: at});
      continue;
    }
    if (text.startsWith('<') && !/^<</.test(text)) fail(file, at, `malformed block tag ${quote(text)}`);

    const split = /\s*=\s*|\s+/.exec(text);
    const key = split ? text.slice(0, split.index) : text;
    const value = split ? text.slice(split.index + split[0].length) : '';
    if (key === '') fail(file, at, `line ${quote(text)} has no key before "="`);
    const here = /^<<\s*(\S+)$/.exec(value);
    if (here) {
      heredoc = {key, end: here[1]!, value: [], line: at};
      continue;
    }
    addEntry(state, key, unquote(value), file, at);
  }

  if (heredoc) fail(file, heredoc.line, `here-document ${quote(heredoc.end)} for ${quote(heredoc.key)} is never closed`);
  if (cComment) state.warnings.push(`${file}: a /* comment is never closed`);
  if (pending !== '') fail(file, pendingLine, `the last line ends with a continuation backslash`);
  if (state.stack.length === 1 && state.blocks.length > 0) {
    const open = state.blocks[state.blocks.length - 1]!;
    fail(open.file, open.line, `block <${open.name}> is never closed`);
  }
  state.stack.pop();
}
