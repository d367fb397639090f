// hydra.conf, read twice over the same lines:
//
// 1. The way Hydra's Perl side reads it (Config::General with Apache-style includes): `key = value`
//    or `key value`, `#` comments (`\#` is a literal hash), `/* … */` comments, `\` line
//    continuation, `key <<EOT` here-documents, `<block>`/`<block name>` … `</block>` nesting,
//    `Include path` / `include path` / `<<include path>>` relative to the including file.
//    Values enclosed in double quotes lose the quotes. This view is for display (`values`,
//    `entries`).
// 2. The way Hydra's C++ queue runner reads it: every physical line containing `=` is
//    `key = value` after cutting at the first `#` and trimming; blocks do not exist (their lines
//    leak into the flat namespace) and the last occurrence wins. The runner settings are computed
//    from this view. One deliberate difference: lines of included files are honoured (the C++
//    runner never saw them), in place of the Include line.
//
// Warnings explain every place where the two views disagree about a runner key (inside a block,
// from an include, written without `=`, quoted, inside a comment) and flag deprecated keys.
// Includes may use `*`, `?` and `[…]` in their last path component (with a warning: Hydra's Perl
// side does not expand globs). Include cycles and missing included files are errors.

import {readFileSync, readdirSync, realpathSync, statSync} from 'node:fs';
import {availableParallelism} from 'node:os';
import {basename, dirname, isAbsolute, join, resolve} from 'node:path';
import {ConfigError, quote} from './errors.js';
import type {Env} from './dbi.js';

export interface JobsetRepeat {
  project: string;
  jobset: string;
  repeats: number;
}

export interface RunnerSettings {
  /** `store_uri`: destination store; '' = the local store. */
  storeUri: string;
  /** `max_db_connections` (128). */
  maxDbConnections: number;
  /** `max_output_size` in bytes (2 GiB): sum of a step's output NAR sizes. */
  maxOutputSize: number;
  /** `max_log_size` in bytes (64 MiB). */
  maxLogSize: number;
  /** `max_local_worker_threads`: min(1024, max(4, nproc) − 2). */
  maxLocalWorkerThreads: number;
  /** `max_unsupported_time` in seconds. hydra-ops default 120 (the C++ runner's is 0). */
  maxUnsupportedTime: number;
  /** `upload_logs_to_binary_cache` (false). */
  uploadLogsToBinaryCache: boolean;
  /** `gc_roots_dir` ($NIX_STATE_DIR/gcroots/per-user/$LOGNAME/hydra-roots). */
  gcRootsDir: string;
  /** `queue_runner_metrics_address` ('127.0.0.1:9198'). */
  queueRunnerMetricsAddress: string;
  /** `use-substitutes` (false). */
  useSubstitutes: boolean;
  /** `xxx-jobset-repeats`: `project:jobset:N …`. */
  jobsetRepeats: JobsetRepeat[];
  /** `queue_runner_endpoint` (Perl side, top level): REST base URL of the runner, if set. */
  queueRunnerEndpoint?: string;
  /** `compress_build_logs` (Perl side; hydra-notify compresses only when the value is exactly "1"; default "1"). */
  compressBuildLogs: boolean;
  /** `compress_build_logs_compression` (Perl side): 'bzip2' (default) or 'zstd'. */
  compressBuildLogsCompression: string;
  /** `compress_build_logs_silent` (Perl side, "1" = true). */
  compressBuildLogsSilent: boolean;
}

export type RunnerField = keyof RunnerSettings;

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

export interface HydraConf {
  /** Perl view, flattened by `ConfEntry.path`; for repeated keys the last value. */
  values: Record<string, string>;
  /** Every Perl-side pair in file order (repeated keys keep all occurrences). */
  entries: ConfEntry[];
  /** Runner settings with C++ semantics, typed and defaulted. */
  runner: RunnerSettings;
  /** Where each runner field came from: `file:line`, or `default`. */
  runnerSources: Record<RunnerField, string>;
  warnings: string[];
  /** Every file read, the main file first, as resolved absolute paths. */
  files: string[];
}

export interface HydraConfOptions {
  /** Environment for defaults (NIX_STATE_DIR, LOGNAME). Defaults to none. */
  env?: Env;
  /** Processor count for max_local_worker_threads; defaults to the machine's. */
  nproc?: number;
}

/** Keys Hydra's C++ queue runner reads (all flat, `key = value`). */
export const RUNNER_KEYS = [
  'store_uri',
  'max_db_connections',
  'max_output_size',
  'max_log_size',
  'max_local_worker_threads',
  'max_unsupported_time',
  'upload_logs_to_binary_cache',
  'gc_roots_dir',
  'queue_runner_metrics_address',
  'use-substitutes',
  'xxx-jobset-repeats',
  'store_mode',
  'binary_cache_dir',
  'binary_cache_s3_bucket',
  'binary_cache_secret_key_file',
] as const;
type RunnerKey = (typeof RUNNER_KEYS)[number];
const DEPRECATED_KEYS = new Set<string>(['binary_cache_dir', 'binary_cache_s3_bucket', 'binary_cache_secret_key_file']);

export const DEFAULT_MAX_UNSUPPORTED_TIME = 120;

// ---------------------------------------------------------------------------------------
// Defaults

function loginName(env: Env): string {
  return env.LOGNAME || env.USER || 'root';
}

/** Runner settings when hydra.conf sets nothing. */
export function defaultRunnerSettings(opts: HydraConfOptions = {}): RunnerSettings {
  const env = opts.env ?? {};
  const nproc = opts.nproc ?? availableParallelism();
  const stateDir = env.NIX_STATE_DIR || '/nix/var/nix';
  return {
    storeUri: '',
    maxDbConnections: 128,
    maxOutputSize: 2 * 2 ** 30,
    maxLogSize: 64 * 2 ** 20,
    maxLocalWorkerThreads: Math.min(1024, Math.max(4, nproc) - 2),
    maxUnsupportedTime: DEFAULT_MAX_UNSUPPORTED_TIME,
    uploadLogsToBinaryCache: false,
    gcRootsDir: `${stateDir}/gcroots/per-user/${loginName(env)}/hydra-roots`,
    queueRunnerMetricsAddress: '127.0.0.1:9198',
    useSubstitutes: false,
    jobsetRepeats: [],
    compressBuildLogs: true,
    compressBuildLogsCompression: 'bzip2',
    compressBuildLogsSilent: false,
  };
}

// ---------------------------------------------------------------------------------------
// Reading

interface FlatLine {
  key: string;
  value: string;
  file: string;
  line: number;
  blocks: string[];
  included: boolean;
  /** Why the Perl side does not see this line as a setting, if it does not. */
  hidden?: 'comment' | 'here-document';
}

interface State {
  blocks: Array<{name: string; segments: string[]; file: string; line: number}>;
  entries: ConfEntry[];
  flat: FlatLine[];
  warnings: string[];
  files: string[];
  stack: string[];
}

const where = (file: string, line: number) => `${file}:${line}`;

function fail(file: string, line: number, message: string, field?: string): never {
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

function readFile(path: string, state: State, from?: {file: string; line: number}): void {
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

// ---------------------------------------------------------------------------------------
// Runner settings

function parseCount(line: FlatLine, what: string): number {
  if (!/^[0-9]+$/.test(line.value) || !Number.isSafeInteger(Number(line.value))) {
    fail(line.file, line.line, `${line.key}: bad number ${quote(line.value)} (expected a whole number of ${what})`, line.key);
  }
  return Number(line.value);
}

function parseRunnerBool(line: FlatLine, warnings: string[]): boolean {
  const on = line.value === 'true' || line.value === '1';
  if (!on && line.value !== 'false' && line.value !== '0') {
    warnings.push(
      `${where(line.file, line.line)}: ${line.key} = ${quote(line.value)} counts as false ` +
        `(Hydra's queue runner takes only "true" and "1" as true)`,
    );
  }
  return on;
}

function parseRepeats(line: FlatLine): JobsetRepeat[] {
  const repeats: JobsetRepeat[] = [];
  for (const token of line.value.split(/\s+/).filter((t) => t !== '')) {
    const parts = token.split(':');
    if (parts.length !== 3 || parts[0] === '' || parts[1] === '' || !/^[0-9]+$/.test(parts[2]!)) {
      fail(line.file, line.line, `${line.key}: bad entry ${quote(token)} (expected project:jobset:N)`, line.key);
    }
    repeats.push({project: parts[0]!, jobset: parts[1]!, repeats: Number(parts[2])});
  }
  return repeats;
}

function runnerSettings(state: State, opts: HydraConfOptions): {runner: RunnerSettings; sources: Record<RunnerField, string>} {
  const runner = defaultRunnerSettings(opts);
  const sources = Object.fromEntries(Object.keys(runner).map((k) => [k, 'default'])) as Record<RunnerField, string>;
  sources.queueRunnerEndpoint = 'default';
  const warnings = state.warnings;

  const last = new Map<RunnerKey, FlatLine>();
  for (const line of state.flat) {
    if (!(RUNNER_KEYS as readonly string[]).includes(line.key)) continue;
    const key = line.key as RunnerKey;
    const at = where(line.file, line.line);
    const previous = last.get(key);
    if (previous) {
      warnings.push(`${at}: ${key} is set again (also at ${where(previous.file, previous.line)}); the last one applies`);
    }
    last.set(key, line);
    if (line.hidden) {
      warnings.push(
        `${at}: runner key ${key} inside a ${line.hidden === 'comment' ? '/* */ comment' : 'here-document'}: ` +
          `Hydra's Perl side ignores it, but Hydra's queue runner reads it; hydra-ops applies it like the queue runner`,
      );
    } else if (line.blocks.length > 0) {
      warnings.push(
        `${at}: runner key ${key} inside <${line.blocks.join('><')}>: Hydra's queue runner ignores blocks and ` +
          `applies it anyway; hydra-ops does the same — move it to the top level`,
      );
    }
    if (line.included) {
      warnings.push(
        `${at}: runner key ${key} comes from an included file: Hydra's queue runner ignores Include lines, ` +
          `hydra-ops applies it`,
      );
    }
    if (line.value.length >= 2 && /^(["']).*\1$/.test(line.value)) {
      warnings.push(`${at}: ${key} value ${line.value} is quoted; Hydra's queue runner keeps the quotes as part of the value`);
    }
  }
  // Runner keys the Perl side sees but the C++ runner does not (no '=').
  const flatAt = new Set(state.flat.map((l) => where(l.file, l.line)));
  for (const entry of state.entries) {
    if ((RUNNER_KEYS as readonly string[]).includes(entry.key) && !flatAt.has(where(entry.file, entry.line))) {
      warnings.push(
        `${where(entry.file, entry.line)}: ${entry.key} is written without "=": Hydra's queue runner ignores such ` +
          `lines and so does hydra-ops; write "${entry.key} = ${entry.value}"`,
      );
    }
  }

  for (const [key, line] of last) {
    const at = where(line.file, line.line);
    const field = (name: RunnerField) => {
      sources[name] = at;
    };
    switch (key) {
      case 'store_mode':
        fail(line.file, line.line, `store_mode is no longer supported; use store_uri (e.g. file:///path or s3://bucket)`, key);
      case 'binary_cache_dir':
      case 'binary_cache_s3_bucket':
      case 'binary_cache_secret_key_file':
        warnings.push(`${at}: ${key} is deprecated and ignored; use store_uri (e.g. s3://bucket?secret-key=…)`);
        break;
      case 'store_uri':
        runner.storeUri = line.value;
        field('storeUri');
        break;
      case 'max_db_connections':
        runner.maxDbConnections = parseCount(line, 'connections');
        if (runner.maxDbConnections === 0) fail(line.file, line.line, `${key}: must be at least 1`, key);
        field('maxDbConnections');
        break;
      case 'max_output_size':
        runner.maxOutputSize = parseCount(line, 'bytes');
        field('maxOutputSize');
        break;
      case 'max_log_size':
        runner.maxLogSize = parseCount(line, 'bytes');
        field('maxLogSize');
        break;
      case 'max_local_worker_threads':
        runner.maxLocalWorkerThreads = parseCount(line, 'threads');
        field('maxLocalWorkerThreads');
        break;
      case 'max_unsupported_time':
        runner.maxUnsupportedTime = parseCount(line, 'seconds');
        field('maxUnsupportedTime');
        break;
      case 'upload_logs_to_binary_cache':
        runner.uploadLogsToBinaryCache = parseRunnerBool(line, warnings);
        field('uploadLogsToBinaryCache');
        break;
      case 'gc_roots_dir':
        runner.gcRootsDir = line.value;
        field('gcRootsDir');
        break;
      case 'queue_runner_metrics_address':
        runner.queueRunnerMetricsAddress = line.value;
        field('queueRunnerMetricsAddress');
        break;
      case 'use-substitutes':
        runner.useSubstitutes = parseRunnerBool(line, warnings);
        field('useSubstitutes');
        break;
      case 'xxx-jobset-repeats':
        runner.jobsetRepeats = parseRepeats(line);
        field('jobsetRepeats');
        break;
    }
  }

  // Keys of other Hydra components, read the Perl way (top level, last value).
  const top = new Map<string, ConfEntry>();
  for (const entry of state.entries) if (entry.blocks.length === 0) top.set(entry.key, entry);
  const endpoint = top.get('queue_runner_endpoint');
  if (endpoint && endpoint.value !== '') {
    runner.queueRunnerEndpoint = endpoint.value;
    sources.queueRunnerEndpoint = where(endpoint.file, endpoint.line);
  }
  const compress = top.get('compress_build_logs');
  if (compress) {
    runner.compressBuildLogs = compress.value === '1';
    sources.compressBuildLogs = where(compress.file, compress.line);
    if (compress.value !== '1' && compress.value !== '0') {
      warnings.push(
        `${sources.compressBuildLogs}: compress_build_logs = ${quote(compress.value)} disables compression ` +
          `(hydra-notify compresses only when the value is exactly "1")`,
      );
    }
  }
  const compression = top.get('compress_build_logs_compression');
  if (compression) {
    if (compression.value !== 'bzip2' && compression.value !== 'zstd') {
      fail(compression.file, compression.line, `compress_build_logs_compression: ${quote(compression.value)} is not "bzip2" or "zstd"`, compression.key);
    }
    runner.compressBuildLogsCompression = compression.value;
    sources.compressBuildLogsCompression = where(compression.file, compression.line);
  }
  const silent = top.get('compress_build_logs_silent');
  if (silent) {
    runner.compressBuildLogsSilent = silent.value === '1';
    sources.compressBuildLogsSilent = where(silent.file, silent.line);
  }
  return {runner, sources};
}

// ---------------------------------------------------------------------------------------
// What the runner does with the keys it read

/**
 * Start-up warnings for runner keys hydra-ops reads but does not act on as set, so that none is ignored silently.
 * (`max_local_worker_threads` is not judged here.)
 */
export function runnerKeyWarnings(conf: Pick<HydraConf, 'runner' | 'runnerSources'>): string[] {
  const {runner, runnerSources: at} = conf;
  const warnings: string[] = [];
  if (at.jobsetRepeats !== 'default' && runner.jobsetRepeats.length > 0) {
    warnings.push(
      `${at.jobsetRepeats}: read but not supported: xxx-jobset-repeats (current Nix refuses repeated builds over the serve ` +
        `protocol); steps of ${runner.jobsetRepeats.map((r) => `${r.project}:${r.jobset}`).join(', ')} are built once — ` +
        `use reproducibility sampling (HYDRA_OPS_REPRO_SAMPLE_PERCENT) or \`hydra-ops reproduce\` instead`,
    );
  }
  if (runner.uploadLogsToBinaryCache && !/^(file|s3|https?):\/\//i.test(runner.storeUri)) {
    warnings.push(
      `${at.uploadLogsToBinaryCache}: upload_logs_to_binary_cache has no effect: store_uri ` +
        `${runner.storeUri === '' ? 'is not set (the local store)' : `"${runner.storeUri.replace(/\?.*$/, '')}" is not a binary cache`}`,
    );
  }
  return warnings;
}

// ---------------------------------------------------------------------------------------
// Entry points

/** Reads hydra.conf (and what it includes). Throws ConfigError with file and line. */
export function parseHydraConf(path: string, opts: HydraConfOptions = {}): HydraConf {
  const state: State = {blocks: [], entries: [], flat: [], warnings: [], files: [], stack: []};
  readFile(resolve(path), state);
  const {runner, sources} = runnerSettings(state, opts);
  const values: Record<string, string> = {};
  for (const entry of state.entries) values[entry.path] = entry.value;
  return {values, entries: state.entries, runner, runnerSources: sources, warnings: state.warnings, files: state.files};
}
