// hydra.conf as Hydra reads it. The file reader (hydra-conf-reader.ts) gives two views of the same lines: the Perl
// side's (Config::General: blocks, here-documents, quoting, includes — for display, `values` and `entries`) and the
// C++ queue runner's (flat `key = value` lines). This module holds the runner-key table and its C++ semantics: the
// settings are computed from the flat view, typed and defaulted, and the last occurrence of a key wins.
//
// Warnings explain every place where the two views disagree about a runner key (inside a block,
// from an include, written without `=`, quoted, inside a comment) and flag deprecated keys.

import {availableParallelism} from 'node:os';
import {resolve} from 'node:path';
import {quote} from './errors.js';
import type {Env} from './dbi.js';
import {loginName} from './login-name.js';
import {fail, readFile, where, type ConfEntry, type FlatLine, type State} from './hydra-conf-reader.js';

export type {ConfEntry};

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
