// Filter grammar: tokeniser and parser. The result is a target-independent AST whose values are
// already checked and decoded (numbers, ranges, durations, status names, regexes); compiling it to
// SQL (filter-sql.ts) or to a machine predicate (filter-machines.ts) only has to decide whether a
// field applies to the target and how to spell the condition.
//
//   filter     := term ( WS term )*                 terms are ANDed
//   term       := [ "!" ] ( field-term | text )      "!" negates the term
//   field-term := field op value
//   op         := ":" | "=" | "!=" | ">" | ">=" | "<" | "<=" | "~"
//   value      := item ( "," item )*                 a comma list means OR ("~" takes one regex)
//   item       := bare-word | '"' quoted '"'         "*" and "?" are globs in unquoted ":" values
//   text       := bare-word | '"' quoted '"' | "/" regex "/" [ "i" ]
//
// Positions are 0-based offsets into the filter text; messages speak of 1-based columns.
//
// The AST and its errors are filter-ast.ts; the fields, names and value checks are filter-fields.ts.
import {
  filterError,
  type FieldName,
  type FieldTerm,
  type FilterAst,
  type FilterItem,
  type FilterOp,
  type FilterTerm,
  type SourceSpan,
  type StringPattern,
  type TextTerm,
} from './filter-ast.js';
import {
  BOOLS,
  FIELD_KINDS,
  INT_MAX,
  MACHINE_STATES,
  OPS_BY_KIND,
  PHASES,
  STATUS_CODES,
  checkRegex,
  parseDuration,
  suggestion,
  type FieldKind,
} from './filter-fields.js';

// ---------------------------------------------------------------------------------------------
// Parser

const WS = /\s/;
const OP_START = new Set([':', '=', '!', '>', '<', '~']);
const FIELD_RE = /[A-Za-z_][A-Za-z0-9_-]*/y;

function isWs(c: string | undefined): boolean {
  return c !== undefined && WS.test(c);
}

interface RawItem {
  text: string;
  quoted: boolean;
  position: number;
  length: number;
}

class Parser {
  private i = 0;
  constructor(private readonly text: string) {}

  parse(): FilterAst {
    const terms: FilterTerm[] = [];
    for (;;) {
      while (isWs(this.text[this.i])) this.i++;
      if (this.i >= this.text.length) break;
      terms.push(this.term());
    }
    return {text: this.text, terms};
  }

  private peekOp(at: number): FilterOp | null {
    const t = this.text;
    const two = t.slice(at, at + 2);
    if (two === '!=' || two === '>=' || two === '<=') return two;
    const one = t[at];
    if (one === ':' || one === '=' || one === '>' || one === '<' || one === '~') return one;
    return null;
  }

  private term(): FilterTerm {
    const t = this.text;
    const start = this.i;
    let negated = false;
    if (t[this.i] === '!') {
      negated = true;
      this.i++;
      const next = t[this.i];
      if (next === undefined || isWs(next)) throw filterError('"!" must be followed by a term', start, '!');
      if (next === '!') throw filterError('unexpected "!"', this.i, '!', ' (write a single "!" to negate a term)');
      if (next === '=') throw filterError('unexpected "!="', start, '!=', ' (write field!=value)');
    }
    FIELD_RE.lastIndex = this.i;
    const m = FIELD_RE.exec(t);
    if (m && this.peekOp(this.i + m[0].length)) return this.fieldTerm(start, negated, m[0]);
    return this.textTerm(start, negated);
  }

  private fieldTerm(start: number, negated: boolean, name: string): FieldTerm {
    const t = this.text;
    const fieldPos = this.i;
    this.i += name.length;
    const lower = name.toLowerCase();
    if (!(lower in FIELD_KINDS)) {
      throw filterError(`unknown field "${name}"`, fieldPos, name, suggestion(lower, Object.keys(FIELD_KINDS)));
    }
    const field = lower as FieldName;
    const kind = FIELD_KINDS[field];
    const op = this.peekOp(this.i)!;
    const opPos = this.i;
    this.i += op.length;
    if (!OPS_BY_KIND[kind].includes(op)) {
      const allowed = OPS_BY_KIND[kind].map((o) => `"${o}"`).join(' ');
      throw filterError(`operator "${op}" does not apply to field "${field}"`, opPos, op, ` (use one of ${allowed})`);
    }
    const fieldSpan = {position: fieldPos, length: name.length, text: name};
    const opSpan = {position: opPos, length: op.length, text: op};
    const next = t[this.i];
    if (next === undefined || isWs(next)) {
      throw filterError(`missing value after "${name}${op}"`, fieldPos, name + op);
    }
    if (op === '~') {
      const raw = this.regexItem();
      const regex = checkRegex(raw.text, raw.quoted ? raw.position + 1 : raw.position);
      return {
        kind: 'field', negated, field, op, items: [], regex,
        span: this.spanFrom(start), fieldSpan, opSpan,
        valueSpans: [{position: raw.position, length: raw.length, text: t.slice(raw.position, raw.position + raw.length)}],
      };
    }
    if (OP_START.has(next) && next !== '!') {
      throw filterError(`unexpected "${next}" after operator "${op}"`, this.i, next);
    }
    const raws = this.items(name + op, fieldPos);
    const comparison = op === '>' || op === '>=' || op === '<' || op === '<=';
    if (comparison && raws.length > 1) {
      const second = raws[1]!;
      throw filterError(`unexpected list item "${second.text}"`, second.position, second.text, ` (operator "${op}" takes a single value)`, second.length);
    }
    const items = raws.map((raw) => decodeItem(field, kind, op, raw));
    if (kind === 'duration' && !comparison) {
      const bad = raws.find((_, k) => items[k]!.type !== 'range');
      if (bad) {
        throw filterError(`field "${field}" needs a comparison or a range, got "${bad.text}"`, bad.position, bad.text, ` (e.g. ${field}>${bad.text} or ${field}:${bad.text}..)`, bad.length);
      }
    }
    return {
      kind: 'field', negated, field, op, items, regex: null,
      span: this.spanFrom(start), fieldSpan, opSpan,
      valueSpans: raws.map((r) => ({position: r.position, length: r.length, text: t.slice(r.position, r.position + r.length)})),
    };
  }

  private spanFrom(start: number): SourceSpan {
    return {position: start, length: this.i - start, text: this.text.slice(start, this.i)};
  }

  /** Reads a double-quoted string starting at this.i (on the quote). */
  private quoted(): RawItem {
    const t = this.text;
    const start = this.i;
    let out = '';
    this.i++;
    for (;;) {
      const c = t[this.i];
      if (c === undefined) throw filterError('unterminated quote', start, t.slice(start), '', 1);
      if (c === '\\' && this.i + 1 < t.length) {
        out += t[this.i + 1];
        this.i += 2;
        continue;
      }
      this.i++;
      if (c === '"') break;
      out += c;
    }
    const after = t[this.i];
    if (after !== undefined && !isWs(after) && after !== ',') {
      throw filterError(`unexpected "${after}" after closing quote`, this.i, after);
    }
    return {text: out, quoted: true, position: start, length: this.i - start};
  }

  private items(prefix: string, fieldPos: number): RawItem[] {
    const t = this.text;
    const items: RawItem[] = [];
    for (;;) {
      const c = t[this.i];
      if (c === undefined || isWs(c) || c === ',') {
        const where = items.length === 0 ? fieldPos : this.i - 1;
        const token = items.length === 0 ? prefix : ',';
        throw filterError(items.length === 0 ? `missing value after "${prefix}"` : 'missing value after ","', where, token);
      }
      if (c === '"') {
        items.push(this.quoted());
      } else {
        const start = this.i;
        while (this.i < t.length && !isWs(t[this.i]) && t[this.i] !== ',') {
          if (t[this.i] === '"') throw filterError('unexpected quote inside a value', this.i, '"', ' (quote the whole value)');
          this.i++;
        }
        items.push({text: t.slice(start, this.i), quoted: false, position: start, length: this.i - start});
      }
      if (t[this.i] === ',') {
        this.i++;
        continue;
      }
      return items;
    }
  }

  /** The single value of a "~" term: quoted, or everything up to the next white space. */
  private regexItem(): RawItem {
    const t = this.text;
    if (t[this.i] === '"') return this.quoted();
    const start = this.i;
    while (this.i < t.length && !isWs(t[this.i])) this.i++;
    return {text: t.slice(start, this.i), quoted: false, position: start, length: this.i - start};
  }

  private textTerm(start: number, negated: boolean): TextTerm {
    const t = this.text;
    const c = t[this.i]!;
    if (c === '"') {
      const raw = this.quoted();
      if (raw.text === '') throw filterError('empty quoted text ""', raw.position, '""');
      return {kind: 'text', negated, form: 'quoted', value: raw.text, regex: null, span: this.spanFrom(start)};
    }
    if (c === '/') {
      const open = this.i;
      let source = '';
      let j = this.i + 1;
      for (;;) {
        const d = t[j];
        if (d === undefined) throw filterError('unterminated regular expression', open, t.slice(open), ' (missing closing "/")', 1);
        if (d === '\\' && t[j + 1] === '/') {
          source += '/';
          j += 2;
          continue;
        }
        if (d === '\\' && j + 1 < t.length) {
          source += d + t[j + 1];
          j += 2;
          continue;
        }
        if (d === '/') break;
        source += d;
        j++;
      }
      j++;
      const flagStart = j;
      while (j < t.length && !isWs(t[j])) j++;
      const flags = t.slice(flagStart, j);
      if (flags !== '' && flags !== 'i') {
        throw filterError(`unknown regular expression flag "${flags}"`, flagStart, flags, ' (only "i" is supported)');
      }
      if (source === '') throw filterError('empty regular expression "//"', open, '//');
      const regex = checkRegex(source, open + 1, flags === 'i');
      this.i = j;
      return {kind: 'text', negated, form: 'regex', value: source, regex, span: this.spanFrom(start)};
    }
    if (OP_START.has(c)) {
      const op = this.peekOp(this.i) ?? c;
      throw filterError(`expected a field name before "${op}"`, this.i, op);
    }
    const wordStart = this.i;
    while (this.i < t.length && !isWs(t[this.i])) {
      if (t[this.i] === '"') throw filterError('unexpected quote inside a word', this.i, '"', ' (quote the whole text)');
      this.i++;
    }
    const word = t.slice(wordStart, this.i);
    return {kind: 'text', negated, form: 'word', value: word, regex: null, span: this.spanFrom(start)};
  }
}

function stringPattern(raw: RawItem, allowGlob: boolean): StringPattern {
  const glob = allowGlob && !raw.quoted && /[*?]/.test(raw.text);
  return {kind: glob ? 'glob' : 'literal', value: raw.text};
}

function parseInt32(field: string, text: string, position: number): number {
  if (!/^\d+$/.test(text)) throw filterError(`bad number "${text}" for field "${field}"`, position, text);
  const n = Number(text);
  if (n > INT_MAX) throw filterError(`number "${text}" out of range for field "${field}"`, position, text);
  return n;
}

function decodeRange(raw: RawItem, parse: (part: string, position: number) => number, field: string): FilterItem | null {
  const dots = raw.text.indexOf('..');
  if (raw.quoted || dots < 0) return null;
  const lowText = raw.text.slice(0, dots);
  const highText = raw.text.slice(dots + 2);
  if (highText.includes('..') || (lowText === '' && highText === '')) {
    throw filterError(`bad range "${raw.text}" for field "${field}"`, raw.position, raw.text, ' (write low..high, low.. or ..high)');
  }
  const low = lowText === '' ? null : parse(lowText, raw.position);
  const high = highText === '' ? null : parse(highText, raw.position + dots + 2);
  if (low !== null && high !== null && low > high) {
    throw filterError(`empty range "${raw.text}" for field "${field}"`, raw.position, raw.text, ' (low end is above high end)');
  }
  return {type: 'range', low, high};
}

function decodeItem(field: FieldName, kind: FieldKind, op: FilterOp, raw: RawItem): FilterItem {
  const token = raw.text;
  const pos = raw.position;
  const ranged = op === ':' || op === '=' || op === '!=';
  switch (kind) {
    case 'int': {
      const parse = (part: string, position: number): number => parseInt32(field, part, position);
      if (ranged) {
        const range = decodeRange(raw, parse, field);
        if (range) return range;
      }
      return {type: 'number', value: parse(token, pos)};
    }
    case 'duration': {
      const parse = (part: string, position: number): number => {
        const d = parseDuration(part);
        if (d === null) throw filterError(`bad duration "${part}"`, position, part, ' (use e.g. 30s, 5m, 2h, 3d, 1w, 1h30m)');
        return d;
      };
      if (ranged) {
        const range = decodeRange(raw, parse, field);
        if (range) return range;
      }
      return {type: 'number', value: parse(token, pos)};
    }
    case 'string': {
      if (token === '') throw filterError(`empty value for field "${field}"`, pos, '""');
      return {type: 'string', pattern: stringPattern(raw, op === ':' || op === '!=')};
    }
    case 'jobset': {
      if (token === '') throw filterError('empty jobset name', pos, '""');
      if (token.includes(':') && token.includes('/')) {
        throw filterError(`bad jobset "${token}"`, pos, token, ' (write project:jobset, project/jobset or jobset)');
      }
      const sep = token.includes(':') ? ':' : token.includes('/') ? '/' : null;
      if (sep === null) return {type: 'jobset', project: null, jobset: stringPattern(raw, op === ':' || op === '!=')};
      const parts = token.split(sep);
      if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
        throw filterError(`bad jobset "${token}"`, pos, token, ' (write project:jobset, project/jobset or jobset)');
      }
      const glob = op === ':' || op === '!=';
      return {
        type: 'jobset',
        project: stringPattern({...raw, text: parts[0]!}, glob),
        jobset: stringPattern({...raw, text: parts[1]!}, glob),
      };
    }
    case 'status': {
      const lower = token.toLowerCase();
      if (/^\d+$/.test(token)) return {type: 'status', name: token, code: parseInt32(field, token, pos)};
      if (!(lower in STATUS_CODES)) {
        throw filterError(`unknown status "${token}"`, pos, token, suggestion(lower, Object.keys(STATUS_CODES)));
      }
      return {type: 'status', name: lower === 'succeeded' ? 'success' : lower, code: STATUS_CODES[lower]!};
    }
    case 'phase': {
      const lower = token.toLowerCase();
      if (/^\d+$/.test(token)) {
        const busy = parseInt32(field, token, pos);
        if (busy === 0) throw filterError('phase "0" means not running', pos, token, ' (use status:finished)');
        return {type: 'phase', name: token, busy};
      }
      if (!(lower in PHASES)) throw filterError(`unknown phase "${token}"`, pos, token, suggestion(lower, Object.keys(PHASES)));
      return {type: 'phase', name: lower, busy: PHASES[lower]!};
    }
    case 'state': {
      const lower = token.toLowerCase();
      if (!(MACHINE_STATES as readonly string[]).includes(lower)) {
        throw filterError(`unknown machine state "${token}"`, pos, token, suggestion(lower, MACHINE_STATES));
      }
      return {type: 'state', name: lower};
    }
    case 'bool': {
      const lower = token.toLowerCase();
      if (!(lower in BOOLS)) throw filterError(`bad value "${token}" for field "${field}"`, pos, token, ' (use yes or no)');
      return {type: 'bool', value: BOOLS[lower]!};
    }
  }
}

/** Parses a filter expression; throws FilterError with the offending token's position. */
export function parseFilter(text: string): FilterAst {
  // PostgreSQL cannot hold a NUL in a text value: refuse it here, at its column, not as a database error.
  const nul = text.indexOf('\0');
  if (nul >= 0) throw filterError('NUL character (\\0)', nul, '\0', ' (not allowed in a filter)');
  return new Parser(text).parse();
}
