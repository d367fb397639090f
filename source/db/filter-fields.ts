// The filter's vocabulary: the fields and their kinds, the operators each kind takes, the status, phase and machine
// state names (db/status.ts), and the checks of values that are more than a word — durations, regular expressions
// (checked as JavaScript, made safe for PostgreSQL) and did-you-mean suggestions. The parser is filter-syntax.ts.
import {BUILD_STATUS, BUSY_PHASES} from './status.js';
import {FilterError, filterError, type FieldName, type FilterOp, type RegexValue} from './filter-ast.js';
import {closestWord} from '../config/edit-distance.js';

export type FieldKind = 'int' | 'string' | 'jobset' | 'status' | 'phase' | 'state' | 'duration' | 'bool';

export const FIELD_KINDS: Record<FieldName, FieldKind> = {
  id: 'int',
  project: 'string',
  jobset: 'jobset',
  job: 'string',
  drv: 'string',
  system: 'string',
  feature: 'string',
  status: 'status',
  phase: 'phase',
  machine: 'string',
  state: 'state',
  eval: 'int',
  age: 'duration',
  duration: 'duration',
  bumped: 'bool',
  cached: 'bool',
};

/** Build / step status names for `status:` (db/status.ts). `null` codes are states, not stored codes. */
export const STATUS_CODES: Record<string, number | null> = {
  queued: null,
  running: null,
  finished: null,
  succeeded: 0,
  ...Object.fromEntries(Object.entries(BUILD_STATUS).map(([code, s]) => [s.name, Number(code)])),
};

/** Busy phases for `phase:` (db/status.ts). */
export const PHASES: Record<string, number> = Object.fromEntries(Object.entries(BUSY_PHASES).map(([busy, p]) => [p.name, Number(busy)]));

export const MACHINE_STATES = ['idle', 'busy', 'full', 'backoff', 'drained', 'stale', 'removed'] as const;

export const BOOLS: Record<string, boolean> = {yes: true, true: true, '1': true, no: false, false: false, '0': false};

export const OPS_BY_KIND: Record<FieldKind, readonly FilterOp[]> = {
  int: [':', '=', '!=', '>', '>=', '<', '<='],
  string: [':', '=', '!=', '~'],
  jobset: [':', '=', '!=', '~'],
  status: [':', '=', '!='],
  phase: [':', '=', '!='],
  state: [':', '=', '!='],
  duration: [':', '=', '>', '>=', '<', '<='],
  bool: [':', '=', '!='],
};

export const INT_MAX = 2147483647;

// ---------------------------------------------------------------------------------------------
// Helpers

/** ` (did you mean "x"?)` for the closest candidate within a small edit distance, else ''. */
export function suggestion(word: string, candidates: readonly string[]): string {
  const w = word.toLowerCase();
  const best = closestWord(w, candidates, Math.max(1, Math.min(2, Math.floor(w.length / 3))));
  return best === null ? '' : ` (did you mean "${best}"?)`;
}

const DURATION_UNITS: Record<string, number> = {s: 1, m: 60, h: 3600, d: 86400, w: 604800};

/** Parses `90`, `30s`, `5m`, `2h`, `3d`, `1w`, `1h30m`; null when malformed. */
export function parseDuration(text: string): number | null {
  if (/^\d+$/.test(text)) return Number(text);
  if (!/^(\d+[smhdw])+$/.test(text)) return null;
  let total = 0;
  for (const m of text.matchAll(/(\d+)([smhdw])/g)) total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
  return Number.isSafeInteger(total) ? total : null;
}

/**
 * Checks a regex against both engines' common ground and returns the PostgreSQL spelling.
 * JavaScript must accept it (syntax check with positions we control), and constructs PostgreSQL's
 * ARE engine rejects or reads differently are refused or translated:
 *  - named groups `(?<name>…)`, `\k<name>`, `\p{…}` / `\P{…}`, and empty classes `[]` / `[^]` are refused;
 *  - `\b` / `\B` (word boundary in JavaScript, backspace in PostgreSQL) become `\y` / `\Y`.
 * Lookahead and lookbehind are accepted: PostgreSQL (9.6+) supports both.
 */
export function checkRegex(source: string, position: number, ignoreCase = false): RegexValue {
  const token = source;
  if (source === '') throw filterError('empty regular expression ""', position, token, '', 1);
  try {
    new RegExp(source, ignoreCase ? 'i' : '');
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).replace(/^Invalid regular expression: \/.*\/[a-z]*: /, '');
    throw filterError(`invalid regular expression "${source}"`, position, token, `: ${why}`);
  }
  let sql = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    const unsupported = (what: string, len: number): FilterError =>
      filterError(`unsupported regular expression construct "${source.slice(i, i + len)}"`, position + i, source.slice(i, i + len), ` (${what})`);
    if (c === '\\') {
      const n = source[i + 1] ?? '';
      if (n === 'k' && source[i + 2] === '<') throw unsupported('named back-references are not supported by PostgreSQL', 3);
      if ((n === 'p' || n === 'P') && source[i + 2] === '{') throw unsupported('Unicode property escapes are not supported by PostgreSQL', 3);
      if (!inClass && n === 'b') sql += '\\y';
      else if (!inClass && n === 'B') sql += '\\Y';
      else sql += c + n;
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      sql += c;
      continue;
    }
    if (c === '[') {
      if (source.startsWith('[]', i) || source.startsWith('[^]', i)) {
        throw unsupported('an empty character class is not valid in PostgreSQL', source[i + 1] === '^' ? 3 : 2);
      }
      inClass = true;
      sql += c;
      continue;
    }
    if (c === '(' && source.startsWith('(?<', i) && source[i + 3] !== '=' && source[i + 3] !== '!') {
      throw unsupported('named groups are not supported by PostgreSQL', 3);
    }
    sql += c;
  }
  return {source, sql, ignoreCase};
}
