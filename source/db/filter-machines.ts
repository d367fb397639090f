// Compiles a parsed filter to a predicate over in-memory machine records (machines come from the
// machines file and the runner's state, not from SQL rows). Fields: system, feature, machine, state;
// free text matches the machine's name or URI. Regexes use JavaScript semantics here.
import {filterError, type FieldTerm, type FilterAst, type FilterItem, type StringPattern, type TextTerm} from './filter-ast.js';
import {parseFilter} from './filter-syntax.js';

export interface MachineFilterRecord {
  /** Display name (usually the host name). */
  name: string;
  /** Store URI as written in the machines file, e.g. `ssh://root@builder1`. */
  uri?: string;
  systems: readonly string[];
  supportedFeatures?: readonly string[];
  mandatoryFeatures?: readonly string[];
  /** One of idle, busy, full, backoff, drained, stale, removed. */
  state: string;
}

export type MachinePredicate = (machine: MachineFilterRecord) => boolean;

function globRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\*?]/g, (c) => (c === '*' ? '.*' : c === '?' ? '.' : `\\${c}`));
  return new RegExp(`^${body}$`);
}

function patternTest(pattern: StringPattern, exact: boolean): (value: string) => boolean {
  if (pattern.kind === 'glob' && !exact) {
    const re = globRegExp(pattern.value);
    return (v) => re.test(v);
  }
  return (v) => v === pattern.value;
}

/** `ssh://user@host:22` → `host`. */
function hostOf(uri: string): string {
  return /^(?:[a-z][a-z0-9+.-]*:\/\/)?(?:[^@/]*@)?([^:/]*)/.exec(uri)?.[1] ?? uri;
}

function candidates(term: FieldTerm, m: MachineFilterRecord): string[] {
  switch (term.field) {
    case 'system':
      return [...m.systems];
    case 'feature':
      return [...(m.supportedFeatures ?? []), ...(m.mandatoryFeatures ?? [])];
    case 'machine': {
      const values = [m.name];
      if (m.uri) values.push(m.uri, hostOf(m.uri));
      return values;
    }
    default:
      return [m.state];
  }
}

function fieldPredicate(term: FieldTerm): MachinePredicate {
  const applies = ['system', 'feature', 'machine', 'state'];
  if (!applies.includes(term.field)) {
    throw filterError(`field "${term.field}" does not apply to machines`, term.fieldSpan.position, term.fieldSpan.text, ' (use system, feature, machine or state)');
  }
  let test: (value: string) => boolean;
  if (term.regex) {
    const re = new RegExp(term.regex.source, term.regex.ignoreCase ? 'i' : '');
    test = (v) => re.test(v);
  } else {
    const tests = term.items.map((item: FilterItem) => {
      if (item.type === 'state') return (v: string) => v === item.name;
      if (item.type === 'string') return patternTest(item.pattern, term.op === '=');
      throw new Error('unreachable');
    });
    test = (v) => tests.some((t) => t(v));
  }
  return (m) => candidates(term, m).some(test);
}

function textPredicate(term: TextTerm): MachinePredicate {
  let test: (value: string) => boolean;
  if (term.regex) {
    const re = new RegExp(term.regex.source, term.regex.ignoreCase ? 'i' : '');
    test = (v) => re.test(v);
  } else {
    const needle = term.value.toLowerCase();
    test = (v) => v.toLowerCase().includes(needle);
  }
  return (m) => test(m.name) || (m.uri !== undefined && test(m.uri));
}

/** Compiles a filter (text or parsed) to a machine predicate; throws FilterError for other fields. */
export function compileMachineFilter(filter: FilterAst | string): MachinePredicate {
  const ast = typeof filter === 'string' ? parseFilter(filter) : filter;
  const preds = ast.terms.map((term) => {
    const pred = term.kind === 'field' ? fieldPredicate(term) : textPredicate(term);
    const negated = term.negated !== (term.kind === 'field' && term.op === '!=');
    return negated ? (m: MachineFilterRecord) => !pred(m) : pred;
  });
  return (m) => preds.every((p) => p(m));
}
