// The filter's AST and its errors: what parseFilter (filter-syntax.ts) produces and what the compilers (filter-sql.ts,
// filter-machines.ts) consume. Values in the AST are already checked and decoded; positions are 0-based offsets
// into the filter text, and messages speak of 1-based columns.

export type FilterOp = ':' | '=' | '!=' | '>' | '>=' | '<' | '<=' | '~';
export type FilterTargetName = 'builds' | 'steps' | 'evals' | 'machines';

export class FilterError extends Error {
  /** 0-based offset of the offending token in the filter text. */
  readonly position: number;
  /** Length of the offending token (at least 1). */
  readonly length: number;
  /** The offending token as written. */
  readonly token: string;

  constructor(message: string, position: number, length: number, token: string) {
    super(message);
    this.name = 'FilterError';
    this.position = position;
    this.length = Math.max(1, length);
    this.token = token;
  }

  /** 1-based column, as used in the message. */
  get column(): number {
    return this.position + 1;
  }
}

/** Throws a FilterError whose message is `<what> at column N<suffix>`. */
export function filterError(what: string, position: number, token: string, suffix = '', length = token.length): FilterError {
  return new FilterError(`${what} at column ${position + 1}${suffix}`, position, length, token);
}

/** The expression, a caret line under the offending token, and the message. */
export function formatFilterError(text: string, err: FilterError): string {
  const shown = text.replace(/[\t\r\n]/g, ' ');
  const start = Math.min(Math.max(0, err.position), shown.length);
  const carets = '^'.repeat(Math.max(1, Math.min(err.length, Math.max(1, shown.length - start))));
  return `filter error: ${err.message}\n  ${shown}\n  ${' '.repeat(start)}${carets}`;
}

// ---------------------------------------------------------------------------------------------
// AST

/** A string pattern: literal (exact), glob (LIKE / wildcard) or a regex (PostgreSQL `~`). */
export interface StringPattern {
  kind: 'literal' | 'glob';
  value: string;
}

export type FilterItem =
  | {type: 'number'; value: number}
  | {type: 'range'; low: number | null; high: number | null}
  | {type: 'string'; pattern: StringPattern}
  | {type: 'jobset'; project: StringPattern | null; jobset: StringPattern}
  | {type: 'status'; name: string; code: number | null}
  | {type: 'phase'; name: string; busy: number}
  | {type: 'state'; name: string}
  | {type: 'bool'; value: boolean};

export interface RegexValue {
  /** The pattern as written. */
  source: string;
  /** The pattern as sent to PostgreSQL (`\b` and `\B` translated to `\y` and `\Y`). */
  sql: string;
  ignoreCase: boolean;
}

export interface SourceSpan {
  position: number;
  length: number;
  text: string;
}

export interface FieldTerm {
  kind: 'field';
  negated: boolean;
  field: FieldName;
  op: FilterOp;
  /** Decoded items (empty for "~", which carries `regex`). Several items mean OR. */
  items: FilterItem[];
  regex: RegexValue | null;
  /** Span of the whole term (including a leading "!"). */
  span: SourceSpan;
  fieldSpan: SourceSpan;
  opSpan: SourceSpan;
  /** One span per item (or one for the regex). */
  valueSpans: SourceSpan[];
}

export interface TextTerm {
  kind: 'text';
  negated: boolean;
  form: 'word' | 'quoted' | 'regex';
  /** Word or quoted text (substring, case-insensitive); unused for regex. */
  value: string;
  regex: RegexValue | null;
  span: SourceSpan;
}

export type FilterTerm = FieldTerm | TextTerm;

export interface FilterAst {
  text: string;
  terms: FilterTerm[];
}

export type FieldName =
  | 'id' | 'project' | 'jobset' | 'job' | 'drv' | 'system' | 'feature' | 'status' | 'phase' | 'machine'
  | 'state' | 'eval' | 'age' | 'duration' | 'bumped' | 'cached';
