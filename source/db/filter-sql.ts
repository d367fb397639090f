// Compiles a parsed filter to a parameterised SQL condition over Hydra's tables. Every value the
// user typed travels as a bind parameter; only column names and constant SQL are spelled inline.
//
// Table aliases the condition refers to (join them as FILTER_FROM does):
//   builds: Builds b JOIN Jobsets j ON j.id = b.jobset_id
//   steps:  BuildSteps s JOIN Builds b ON b.id = s.build JOIN Jobsets j ON j.id = b.jobset_id
//   evals:  JobsetEvals e JOIN Jobsets j ON j.id = e.jobset_id
// Sub-queries use the aliases em (JobsetEvalMembers), rs and ms (BuildSteps).
import {
  filterError,
  type FieldName,
  type FieldTerm,
  type FilterAst,
  type FilterItem,
  type RegexValue,
  type StringPattern,
  type TextTerm,
} from './filter-ast.js';
import {parseFilter} from './filter-syntax.js';

export type FilterTarget = 'builds' | 'steps' | 'evals';

export const FILTER_FROM: Record<FilterTarget, string> = {
  builds: 'Builds b JOIN Jobsets j ON j.id = b.jobset_id',
  steps: 'BuildSteps s JOIN Builds b ON b.id = s.build JOIN Jobsets j ON j.id = b.jobset_id',
  evals: 'JobsetEvals e JOIN Jobsets j ON j.id = e.jobset_id',
};

export interface CompileOptions {
  /** Current time in Unix seconds for `age` and running-step `duration` (default: the clock). */
  now?: number;
  /** Number of bind parameters already used by the surrounding query: the first one becomes $offset+1. */
  paramOffset?: number;
}

export interface CompiledFilter {
  /** A condition to AND into a WHERE clause; '' when the filter is empty (no condition). */
  where: string;
  params: unknown[];
}

const APPLIES: Record<FieldName, readonly FilterTarget[]> = {
  id: ['builds', 'steps', 'evals'],
  project: ['builds', 'steps', 'evals'],
  jobset: ['builds', 'steps', 'evals'],
  job: ['builds', 'steps'],
  drv: ['builds', 'steps'],
  system: ['builds', 'steps'],
  feature: [],
  status: ['builds', 'steps'],
  phase: ['steps'],
  machine: ['builds', 'steps'],
  state: [],
  eval: ['builds', 'steps', 'evals'],
  age: ['builds', 'steps', 'evals'],
  duration: ['builds', 'steps'],
  bumped: ['builds'],
  cached: ['builds'],
};

const NOT_APPLICABLE_HINT: Partial<Record<FieldName, string>> = {
  feature: ' (required features are not stored in the database; it applies to machines)',
  state: ' (it applies to machines)',
  phase: ' (it applies to steps)',
};

/** Escapes LIKE metacharacters (backslash is PostgreSQL's default LIKE escape). */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Converts a glob (`*`, `?`) to a LIKE pattern, escaping literal `%`, `_` and `\`. */
export function globToLike(glob: string): string {
  return escapeLike(glob).replace(/[*?]/g, (c) => (c === '*' ? '%' : '_'));
}

/** The derivation name inside a .drv path: store directory, hash and `.drv` removed. */
function drvName(col: string): string {
  return `regexp_replace(${col}, '^.*/[^/-]*-|\\.drv$', '', 'g')`;
}

/** Host part of a machine column: `ssh://user@host:22` → `host`. */
function machineHost(col: string): string {
  return `substring(${col} from '^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/]*@)?([^:/]*)')`;
}

class Params {
  readonly values: unknown[] = [];
  constructor(private readonly offset: number) {}
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.offset + this.values.length}`;
  }
}

function or(conds: string[]): string {
  return conds.length === 1 ? conds[0]! : `(${conds.join(' OR ')})`;
}

class Compiler {
  constructor(
    private readonly target: FilterTarget,
    private readonly p: Params,
    private readonly now: number,
  ) {}

  term(term: FieldTerm | TextTerm): string {
    const cond = term.kind === 'field' ? this.field(term) : this.text(term);
    const negated = term.negated !== (term.kind === 'field' && term.op === '!=');
    // IS NOT TRUE keeps rows whose column is NULL (e.g. a running step's status) in a negation.
    return negated ? `(${cond}) IS NOT TRUE` : cond;
  }

  private text(term: TextTerm): string {
    if (this.target === 'evals') {
      throw filterError(`free text "${term.span.text}" does not apply to evals`, term.span.position, term.span.text);
    }
    const job = 'b.job';
    const name = drvName(this.target === 'steps' ? 's.drvpath' : 'b.drvpath');
    if (term.regex) {
      const op = term.regex.ignoreCase ? '~*' : '~';
      const r = this.p.add(term.regex.sql);
      return `(${job} ${op} ${r} OR ${name} ${op} ${r})`;
    }
    const like = this.p.add(`%${escapeLike(term.value)}%`);
    return `(${job} ILIKE ${like} OR ${name} ILIKE ${like})`;
  }

  private field(term: FieldTerm): string {
    const {field} = term;
    if (!APPLIES[field].includes(this.target)) {
      throw filterError(`field "${field}" does not apply to ${this.target}`, term.fieldSpan.position, term.fieldSpan.text, NOT_APPLICABLE_HINT[field] ?? '');
    }
    const t = this.target;
    switch (field) {
      case 'id':
        return this.ints(term, t === 'builds' ? 'b.id' : t === 'steps' ? 's.build' : 'e.id');
      case 'project':
        return this.strings(term, 'j.project');
      case 'jobset':
        return this.jobset(term);
      case 'job':
        return this.strings(term, 'b.job');
      case 'drv':
        return this.strings(term, t === 'steps' ? 's.drvpath' : 'b.drvpath', true);
      case 'system':
        return this.strings(term, t === 'steps' ? 's.system' : 'b.system');
      case 'machine':
        if (t === 'builds') return `EXISTS (SELECT 1 FROM BuildSteps ms WHERE ms.build = b.id AND ${this.machine(term, 'ms.machine')})`;
        return this.machine(term, 's.machine');
      case 'status':
        return or(term.items.map((item, k) => this.status(term, item, k)));
      case 'phase':
        return or(term.items.map((item) => `s.busy = ${this.p.add(busyOf(item))}`));
      case 'eval':
        if (t === 'evals') return this.ints(term, 'e.id');
        return `EXISTS (SELECT 1 FROM JobsetEvalMembers em WHERE em.build = ${t === 'steps' ? 's.build' : 'b.id'} AND ${this.ints(term, 'em.eval')})`;
      case 'age':
        return this.age(term, t === 'builds' ? 'b.timestamp' : t === 'steps' ? 's.starttime' : 'e.timestamp');
      case 'duration':
        return this.ints(
          term,
          t === 'builds'
            ? '(CASE WHEN b.finished = 1 THEN b.stoptime - b.starttime END)'
            : `((CASE WHEN s.busy != 0 THEN ${this.p.add(this.now)}::integer ELSE s.stoptime END) - s.starttime)`,
        );
      case 'bumped':
        return or(term.items.map((item) => (item.type === 'bool' && item.value ? 'b.globalpriority > 0' : 'b.globalpriority <= 0')));
      case 'cached':
        return or(term.items.map((item) => (item.type === 'bool' && item.value ? 'b.iscachedbuild = 1' : 'COALESCE(b.iscachedbuild, 0) != 1')));
      case 'feature':
      case 'state':
        throw new Error('unreachable');
    }
  }

  private regex(col: string, regex: RegexValue): string {
    return `${col} ${regex.ignoreCase ? '~*' : '~'} ${this.p.add(regex.sql)}`;
  }

  private pattern(col: string, pattern: StringPattern, substring: boolean): string {
    if (pattern.kind === 'glob') {
      const like = globToLike(pattern.value);
      return `${col} LIKE ${this.p.add(substring ? `%${like}%` : like)}`;
    }
    if (substring) return `${col} LIKE ${this.p.add(`%${escapeLike(pattern.value)}%`)}`;
    return `${col} = ${this.p.add(pattern.value)}`;
  }

  /** ":" and "!=" match globs (substrings for drv); "=" is exact; "~" is a regex. */
  private strings(term: FieldTerm, col: string, substringOnColon = false): string {
    if (term.regex) return this.regex(col, term.regex);
    const substring = substringOnColon && term.op !== '=';
    return or(term.items.map((item) => this.pattern(col, (item as {pattern: StringPattern}).pattern, substring)));
  }

  /** A machine matches by its full value or by the host part of a store URI. */
  private machine(term: FieldTerm, col: string): string {
    if (term.regex) return this.regex(col, term.regex);
    return or(
      term.items.map((item) => {
        const pattern = (item as {pattern: StringPattern}).pattern;
        if (term.op === '=') return this.pattern(col, pattern, false);
        const value = pattern.kind === 'glob' ? globToLike(pattern.value) : pattern.value;
        const p = this.p.add(value);
        const cmp = pattern.kind === 'glob' ? 'LIKE' : '=';
        return `(${col} ${cmp} ${p} OR ${machineHost(col)} ${cmp} ${p})`;
      }),
    );
  }

  private jobset(term: FieldTerm): string {
    if (term.regex) return this.regex(`(j.project || ':' || j.name)`, term.regex);
    return or(
      term.items.map((item) => {
        if (item.type !== 'jobset') throw new Error('unreachable');
        const project = item.project ? this.pattern('j.project', item.project, false) : null;
        const name = this.pattern('j.name', item.jobset, false);
        return project ? `(${project} AND ${name})` : name;
      }),
    );
  }

  private ints(term: FieldTerm, col: string): string {
    const op = term.op;
    if (op === '>' || op === '>=' || op === '<' || op === '<=') {
      return `${col} ${op} ${this.p.add(numberOf(term.items[0]!))}`;
    }
    return or(
      term.items.map((item) => {
        if (item.type === 'range') {
          if (item.low !== null && item.high !== null) return `${col} BETWEEN ${this.p.add(item.low)} AND ${this.p.add(item.high)}`;
          if (item.low !== null) return `${col} >= ${this.p.add(item.low)}`;
          return `${col} <= ${this.p.add(item.high)}`;
        }
        return `${col} = ${this.p.add(numberOf(item))}`;
      }),
    );
  }

  /** age OP d ⇔ the column (a Unix time) compares the other way with now − d. */
  private age(term: FieldTerm, col: string): string {
    const at = (d: number): string => this.p.add(this.now - d);
    switch (term.op) {
      case '>':
        return `${col} < ${at(numberOf(term.items[0]!))}`;
      case '>=':
        return `${col} <= ${at(numberOf(term.items[0]!))}`;
      case '<':
        return `${col} > ${at(numberOf(term.items[0]!))}`;
      case '<=':
        return `${col} >= ${at(numberOf(term.items[0]!))}`;
      default:
        return or(
          term.items.map((item) => {
            if (item.type !== 'range') throw new Error('unreachable');
            if (item.low !== null && item.high !== null) return `${col} BETWEEN ${at(item.high)} AND ${at(item.low)}`;
            if (item.low !== null) return `${col} <= ${at(item.low)}`;
            return `${col} >= ${at(item.high!)}`;
          }),
        );
    }
  }

  private status(term: FieldTerm, item: FilterItem, index: number): string {
    if (item.type !== 'status') throw new Error('unreachable');
    if (this.target === 'steps') {
      if (item.name === 'queued') {
        const span = term.valueSpans[index]!;
        throw filterError('status "queued" does not apply to steps', span.position, span.text, ' (a step row exists only once it started; filter builds instead)');
      }
      if (item.name === 'running') return 's.busy != 0';
      if (item.name === 'finished') return 's.busy = 0';
      return `s.status = ${this.p.add(item.code)}`;
    }
    if (item.name === 'queued') return 'b.finished = 0';
    if (item.name === 'running') return '(b.finished = 0 AND EXISTS (SELECT 1 FROM BuildSteps rs WHERE rs.build = b.id AND rs.busy != 0))';
    if (item.name === 'finished') return 'b.finished = 1';
    // A build that hit a cached failure gets 1 or 2 with isCachedBuild = 1 (docs/hydra-compat.md, "Cached failures").
    if (item.name === 'cachedfailure') return '(b.finished = 1 AND b.iscachedbuild = 1 AND b.buildstatus IN (1, 2))';
    // Restarted builds keep their old buildStatus, so a status only counts once finished again.
    return `(b.finished = 1 AND b.buildstatus = ${this.p.add(item.code)})`;
  }
}

function busyOf(item: FilterItem): number {
  if (item.type !== 'phase') throw new Error('unreachable');
  return item.busy;
}

function numberOf(item: FilterItem): number {
  if (item.type !== 'number') throw new Error('unreachable');
  return item.value;
}

/**
 * Compiles a filter (text or parsed) to a condition over the target's aliases (see FILTER_FROM).
 * Throws FilterError for syntax errors and for fields that do not apply to the target.
 */
export function compileFilter(filter: FilterAst | string, target: FilterTarget, opts: CompileOptions = {}): CompiledFilter {
  const ast = typeof filter === 'string' ? parseFilter(filter) : filter;
  const params = new Params(opts.paramOffset ?? 0);
  const now = Math.floor(opts.now ?? Date.now() / 1000);
  const compiler = new Compiler(target, params, now);
  const conds = ast.terms.map((term) => compiler.term(term));
  return {where: conds.length === 0 ? '' : conds.join(' AND '), params: params.values};
}

/** Every regex in a filter with the span of its term's value (for server-side validation). */
export function filterRegexes(ast: FilterAst): {regex: RegexValue; position: number; length: number}[] {
  const out: {regex: RegexValue; position: number; length: number}[] = [];
  for (const term of ast.terms) {
    if (!term.regex) continue;
    const span = term.kind === 'field' ? term.valueSpans[0]! : term.span;
    out.push({regex: term.regex, position: span.position, length: span.length});
  }
  return out;
}
