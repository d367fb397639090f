// The filter grammar shared by the TUI's "/" and script mode's --filter (README.md, "Filter expressions"):
// parseFilter() → AST with positions, compileFilter() → parameterised SQL over Hydra's tables,
// compileMachineFilter() → predicate over in-memory machine records, formatFilterError() → caret report.
export {parseFilter} from './filter-syntax.js';
export {parseDuration, STATUS_CODES, PHASES, MACHINE_STATES} from './filter-fields.js';
export {
  FilterError,
  formatFilterError,
  type FilterAst,
  type FilterTerm,
  type FieldTerm,
  type TextTerm,
  type FilterItem,
  type FilterOp,
  type FieldName,
  type RegexValue,
  type SourceSpan,
  type StringPattern,
} from './filter-ast.js';
export {
  compileFilter,
  filterRegexes,
  escapeLike,
  globToLike,
  FILTER_FROM,
  type FilterTarget,
  type CompileOptions,
  type CompiledFilter,
} from './filter-sql.js';
export {compileMachineFilter, type MachineFilterRecord, type MachinePredicate} from './filter-machines.js';
