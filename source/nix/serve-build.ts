// The serve protocol's BuildDerivation, apart from the connection: the BasicDerivation it sends, the options, the
// BuildResult it reads back (status names, builtOutputs) and what a result means for the step, as Hydra's runner
// maps it. NixOS/nix src/libstore/serve-protocol.hh, build-result.hh; hydra src/hydra-queue-runner/build-remote.cc.

import {ProtocolError, type WireReader, type WireWriter, sortedSet} from './wire.js';
import {isStorePath} from './store-path.js';
import {escapeControl} from '../config/escape.js';

/** Nix BuildResult status names in wire order (the index is the wire value). */
export const BUILD_STATUS_NAMES = [
  'Built',
  'Substituted',
  'AlreadyValid',
  'PermanentFailure',
  'InputRejected',
  'OutputRejected',
  'TransientFailure',
  'CachedFailure',
  'TimedOut',
  'MiscFailure',
  'DependencyFailed',
  'LogLimitExceeded',
  'NotDeterministic',
  'ResolvesToAlreadyValid',
  'NoSubstituters',
] as const;

export type BuildStatusName = (typeof BUILD_STATUS_NAMES)[number];

/** Wire value of each BuildResult status. */
export const BuildStatus: Readonly<Record<BuildStatusName, number>> = Object.freeze(
  Object.fromEntries(BUILD_STATUS_NAMES.map((name, i) => [name, i])) as Record<BuildStatusName, number>,
);

/** Name of a wire status value ('Unknown' for values this client does not know). */
export function buildStatusName(code: number): BuildStatusName | 'Unknown' {
  return BUILD_STATUS_NAMES[code] ?? 'Unknown';
}

/** A derivation output as sent in a BasicDerivation. */
export interface WireDerivationOutput {
  /** Full store path; '' for floating content-addressed or deferred outputs. */
  path: string;
  /** '' for input-addressed outputs; e.g. 'r:sha256', 'sha256', 'text:sha256'. */
  hashAlgo?: string;
  /** '' or the lower-case base-16 hash of a fixed-output derivation. */
  hash?: string;
}

type MapLike<V> = ReadonlyMap<string, V> | Readonly<Record<string, V>> | readonly (readonly [string, V])[];

/**
 * The BasicDerivation BuildDerivation sends: the derivation with its input derivations replaced by their output
 * paths. Accepts the BasicDerivation of `./drv.js` (outputs as a list of named outputs, env as pairs) as well as
 * Maps or plain objects; this client sorts outputs, input sources and the environment for the wire.
 */
export interface WireBasicDerivation {
  outputs: MapLike<WireDerivationOutput> | readonly (WireDerivationOutput & {name: string})[];
  inputSrcs: Iterable<string>;
  platform: string;
  builder: string;
  args: readonly string[];
  env: MapLike<string>;
}

export interface BuildOptions {
  /** Seconds without log output before the build is killed (0 = no limit). */
  maxSilentTime?: number;
  /** Seconds of total build time (0 = no limit). */
  buildTimeout?: number;
  /** Bytes of build log (0 = no limit). */
  maxLogSize?: number;
  /** Extra rounds (keep 0: current Nix rejects anything else). */
  nrRepeats?: number;
  enforceDeterminism?: boolean;
  /** Only sent at protocol 2.7 and later (never with the 2.6 this client offers). */
  keepFailed?: boolean;
}

export interface BuildResult {
  status: BuildStatusName | 'Unknown';
  /** Wire value of the status. */
  statusCode: number;
  errorMsg: string;
  timesBuilt: number;
  isNonDeterministic: boolean;
  /** Unix seconds, 0 = unknown. */
  startTime: number;
  stopTime: number;
  /** Output name → full store path (empty when the server sent none). */
  builtOutputs: Map<string, string>;
}

function entriesOf<V>(m: MapLike<V>): [string, V][] {
  if (Array.isArray(m)) return (m as readonly (readonly [string, V])[]).map(([k, v]) => [k, v]);
  if (m instanceof Map) return [...(m as ReadonlyMap<string, V>).entries()];
  return Object.entries(m as Record<string, V>);
}

function sortEntries<V>(entries: [string, V][]): [string, V][] {
  return entries
    .map((e) => ({e, k: Buffer.from(e[0], 'utf8')}))
    .sort((a, b) => Buffer.compare(a.k, b.k))
    .map((x) => x.e);
}

/** Append the wire form of a BasicDerivation (outputs, inputSrcs, platform, builder, args, env). */
export function writeBasicDerivation(w: WireWriter, drv: WireBasicDerivation): void {
  const outputs = sortEntries(
    Array.isArray(drv.outputs)
      ? (drv.outputs as readonly (WireDerivationOutput & {name: string})[]).map((o) => [o.name, o] as [string, WireDerivationOutput])
      : entriesOf(drv.outputs as MapLike<WireDerivationOutput>),
  );
  w.u64(outputs.length);
  for (const [name, out] of outputs) {
    w.string(name).string(out.path).string(out.hashAlgo ?? '').string(out.hash ?? '');
  }
  w.strings(sortedSet(drv.inputSrcs));
  w.string(drv.platform).string(drv.builder).strings(drv.args);
  const env = sortEntries(entriesOf(drv.env));
  w.stringMap(env);
}

/**
 * Append BuildDerivation's arguments after its command code: the drv path, the BasicDerivation and the options the
 * protocol minor version `minor` carries.
 */
export function writeBuildArguments(w: WireWriter, minor: number, drvPath: string, drv: WireBasicDerivation, options: BuildOptions): void {
  w.string(drvPath);
  writeBasicDerivation(w, drv);
  w.u64(options.maxSilentTime ?? 0).u64(options.buildTimeout ?? 0);
  if (minor >= 2) w.u64(options.maxLogSize ?? 0);
  if (minor >= 3) w.u64(options.nrRepeats ?? 0).bool(options.enforceDeterminism ?? false);
  if (minor >= 7) w.bool(options.keepFailed ?? false);
}

/** Read BuildDerivation's answer at protocol minor version `minor`; builtOutputs become full paths in `storeDir`. */
export async function readBuildResult(r: WireReader, minor: number, storeDir: string): Promise<BuildResult> {
  const statusCode = await r.readU64('build status');
  const errorMsg = await r.readString({what: 'build error message'});
  const result: BuildResult = {
    status: buildStatusName(statusCode),
    statusCode,
    errorMsg,
    timesBuilt: 0,
    isNonDeterministic: false,
    startTime: 0,
    stopTime: 0,
    builtOutputs: new Map(),
  };
  if (minor >= 3) {
    result.timesBuilt = await r.readU64('timesBuilt');
    result.isNonDeterministic = await r.readBool('isNonDeterministic');
    result.startTime = await r.readU64('startTime');
    result.stopTime = await r.readU64('stopTime');
  }
  if (minor >= 6) {
    const raw = await r.readStringMap({what: 'builtOutputs'});
    result.builtOutputs = decodeBuiltOutputs(raw, storeDir);
  }
  return result;
}

/**
 * Decode the protocol-2.6 builtOutputs map: key `<algo>:<hex>!<output>`, value a realisation JSON whose
 * `outPath` is a store path basename. Returns output name → full store path.
 */
export function decodeBuiltOutputs(raw: ReadonlyMap<string, string>, storeDir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, value] of raw) {
    const bang = key.indexOf('!');
    if (bang < 0) throw new ProtocolError(`builtOutputs key '${key}' has no '!<output name>'`);
    const name = key.slice(bang + 1);
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (error) {
      throw new ProtocolError(`builtOutputs value for '${key}' is not JSON: ${(error as Error).message}`);
    }
    const outPath = (parsed as {outPath?: unknown} | null)?.outPath;
    if (typeof outPath !== 'string' || outPath === '') {
      throw new ProtocolError(`builtOutputs value for '${key}' has no outPath`);
    }
    // The builder's word: it must name a path directly in the store (no `..`, no other directory), or the step would
    // root, hash and record whatever file it names.
    const full = outPath.startsWith('/') ? outPath : `${storeDir}/${outPath}`;
    if (!isStorePath(full, storeDir)) {
      throw new ProtocolError(`the builder reports output '${escapeControl(name)}' at ${JSON.stringify(escapeControl(outPath))}, which is not a store path in ${storeDir}`);
    }
    out.set(name, full);
  }
  return out;
}

/** What a BuildResult means for the step (Hydra's RemoteResult::updateWithBuildResult; docs/hydra-compat.md, "Running a step"). */
export interface StepOutcome {
  /** BuildSteps.status: 0 success, 1 failed, 3 aborted, 7 timed out, 10 log limit, 12 not deterministic. */
  stepStatus: number;
  /** Retry the step later (transient). */
  retry: boolean;
  /** Record the outputs in FailedPaths. */
  cacheFailure: boolean;
  /** Whether the remote errorMsg is kept for the step (only for status 3). */
  keepErrorMsg: boolean;
  /** Outputs were substituted or already valid on the builder (no build log). */
  isCached: boolean;
  /** The error message to store ('' unless kept). */
  errorMsg: string;
}

/** Map a BuildResult (or just its status name / wire value) to the step outcome, as Hydra's runner does. */
export function mapBuildResult(result: {status?: string; statusCode?: number; errorMsg?: string}): StepOutcome {
  const name = result.status ?? buildStatusName(result.statusCode ?? -1);
  let stepStatus = 3;
  let retry = false;
  let cacheFailure = false;
  let isCached = false;
  switch (name) {
    case 'Built':
      stepStatus = 0;
      break;
    case 'Substituted':
    case 'AlreadyValid':
    case 'ResolvesToAlreadyValid':
      stepStatus = 0;
      isCached = true;
      break;
    case 'PermanentFailure':
    case 'InputRejected':
    case 'OutputRejected':
      stepStatus = 1;
      cacheFailure = true;
      break;
    case 'TransientFailure':
      stepStatus = 1;
      retry = true;
      break;
    case 'TimedOut':
      stepStatus = 7;
      break;
    case 'MiscFailure':
      stepStatus = 3;
      retry = true;
      break;
    case 'LogLimitExceeded':
      stepStatus = 10;
      break;
    case 'NotDeterministic':
      stepStatus = 12;
      cacheFailure = true;
      break;
    default:
      // CachedFailure, DependencyFailed, NoSubstituters, HashMismatch and unknown values: aborted, not retried.
      stepStatus = 3;
      break;
  }
  const keepErrorMsg = stepStatus === 3;
  return {stepStatus, retry, cacheFailure, keepErrorMsg, isCached, errorMsg: keepErrorMsg ? (result.errorMsg ?? '') : ''};
}
