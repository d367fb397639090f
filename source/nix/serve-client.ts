// Client side of the Nix serve protocol (`nix-store --serve --write`) over any duplex byte stream:
// a local child process, or an ssh exec channel. Requests are strictly sequential (one in flight).
//
// Longer than the other modules because it is one protocol client: its commands share one framing, one version
// negotiation and one request in flight.

import type {Readable, Writable} from 'node:stream';
import {EXPORT_MAGIC, parseNar, writeExportEntry, type NarParseOptions, type NarVisitor} from './nar.js';
import {ProtocolError, WireReader, WireWriter, sortedSet} from './wire.js';
import {isStorePath} from './store-path.js';
import {escapeControl} from '../config/escape.js';

export const SERVE_MAGIC_1 = 0x390c9deb;
export const SERVE_MAGIC_2 = 0x5452eecb;
/** The version this client offers: 2.6, like Hydra's queue runner. */
export const CLIENT_VERSION = 0x206;
/** The oldest server version accepted. */
export const MIN_SERVER_VERSION = 0x205;

/** Command codes of the requests this client sends. */
export const ServeCommand = {
  QueryValidPaths: 1,
  QueryPathInfos: 2,
  DumpStorePath: 3,
  ImportPaths: 4,
  QueryClosure: 7,
  BuildDerivation: 8,
} as const;

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

export interface PathInfo {
  path: string;
  /** Deriver store path, or undefined. */
  deriver: string | undefined;
  references: string[];
  downloadSize: number;
  narSize: number;
  /** `sha256:<nix32>`. */
  narHash: string;
  /** Content address, or undefined. */
  ca: string | undefined;
  sigs: string[];
}

/** What ServeClient.importRecords hands its body. */
export interface ImportRecords {
  /** Where a record's NAR bytes go, between begin() and commit(). */
  sink: Writable;
  begin(): Promise<void>;
  commit(path: string, references: Iterable<string>, deriver: string | null | undefined): Promise<void>;
}

export interface ImportEntry {
  path: string;
  references: Iterable<string>;
  deriver?: string | null;
  /**
   * The path's NAR, e.g. `dumpLocalPath(path)`, or a function returning it that is called when the entry is sent
   * (for producers that must not start early).
   */
  nar: Readable | AsyncIterable<Buffer> | (() => Readable | AsyncIterable<Buffer>);
}

export interface ServeStreams {
  stdin: Writable;
  stdout: Readable;
  stderr?: Readable;
}

export interface ServeClientOptions {
  /** Store directory used to turn builtOutputs basenames into full paths (default $NIX_STORE_DIR or /nix/store). */
  storeDir?: string;
  /** Name of the peer for error messages (e.g. the machine). */
  label?: string;
  /** Each stderr chunk (remote messages and the build log) as it arrives. */
  onStderr?: (chunk: Buffer) => void;
  /** Bytes of stderr kept for error messages (default 64 KiB). */
  stderrTail?: number;
}

/** An error talking to the serve peer; the message includes what the peer printed on stderr, if anything. */
export class ServeError extends Error {
  /** What the peer printed on stderr (tail), '' if nothing. */
  readonly stderr: string;
  constructor(message: string, stderr = '', cause?: unknown) {
    super(stderr ? `${message}\n${stderr}` : message, cause === undefined ? undefined : {cause});
    this.name = 'ServeError';
    this.stderr = stderr;
  }
}

export class ServeClient {
  private readonly reader: WireReader;
  private readonly writer: WireWriter;
  private readonly stdin: Writable;
  private readonly stderr: Readable | undefined;
  private readonly storeDir: string;
  private readonly label: string;
  private readonly tailLimit: number;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private stderrDone: Promise<void>;
  private queue: Promise<unknown> = Promise.resolve();
  private broken: Error | undefined;
  private closed = false;
  /** Version the server announced (0 before the handshake). */
  serverVersion = 0;
  /** Effective version: min(client, server) (0 before the handshake). */
  version = 0;

  constructor(streams: ServeStreams, options: ServeClientOptions = {}) {
    this.label = options.label ?? 'serve peer';
    this.reader = new WireReader(streams.stdout, {label: `${this.label} (stdout)`});
    this.writer = new WireWriter(streams.stdin, {label: `${this.label} (stdin)`});
    this.stdin = streams.stdin;
    this.storeDir = (options.storeDir ?? (process.env.NIX_STORE_DIR || '/nix/store')).replace(/\/+$/, '');
    this.tailLimit = options.stderrTail ?? 64 * 1024;
    this.stderr = streams.stderr;
    const onStderr = options.onStderr;
    if (this.stderr) {
      const stream = this.stderr;
      this.stderrDone = new Promise((resolve) => {
        stream.once('end', resolve);
        stream.once('close', resolve);
        stream.once('error', () => resolve());
      });
      stream.on('data', (chunk: Buffer | string) => {
        const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        this.keepTail(b);
        onStderr?.(b);
      });
    } else {
      this.stderrDone = Promise.resolve();
    }
  }

  /** Bytes written to the peer. */
  get bytesSent(): number {
    return this.writer.bytesWritten;
  }

  /** Bytes read from the peer (protocol stream only, stderr not counted). */
  get bytesReceived(): number {
    return this.reader.bytesRead;
  }

  /** Neither broken by an error nor closed: the next request may be sent. */
  get usable(): boolean {
    return this.broken === undefined && !this.closed;
  }

  /** Forget the stderr kept for error messages (a reused connection starts a new job). */
  clearStderrTail(): void {
    this.tail = [];
    this.tailBytes = 0;
  }

  /** The last bytes the peer wrote to stderr, as text. */
  stderrText(): string {
    return Buffer.concat(this.tail, this.tailBytes).toString('utf8');
  }

  private keepTail(b: Buffer): void {
    this.tail.push(b);
    this.tailBytes += b.length;
    while (this.tailBytes - this.tail[0]!.length >= this.tailLimit && this.tail.length > 1) {
      this.tailBytes -= this.tail.shift()!.length;
    }
    if (this.tailBytes > this.tailLimit * 2) {
      const joined = Buffer.concat(this.tail, this.tailBytes).subarray(this.tailBytes - this.tailLimit);
      this.tail = [joined];
      this.tailBytes = joined.length;
    }
  }

  /** Wait (briefly) for the peer's stderr to end so that its last words can be reported. */
  private async settledStderr(ms = 1000): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.stderrDone, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    if (timer) clearTimeout(timer);
    const text = this.stderrText().trim();
    return text.length > 4000 ? `…${text.slice(-4000)}` : text;
  }

  private run<T>(what: string, body: () => Promise<T>, needsHandshake = true): Promise<T> {
    const task = async (): Promise<T> => {
      if (this.broken) throw new ServeError(`${what}: connection to ${this.label} is unusable after an earlier error: ${this.broken.message}`);
      if (this.closed) throw new ServeError(`${what}: connection to ${this.label} is closed`);
      if (needsHandshake && this.version === 0) throw new ServeError(`${what}: handshake with ${this.label} has not been done`);
      try {
        return await body();
      } catch (error) {
        // ServeErrors are complete already (bodies mark the connection broken themselves when needed).
        if (error instanceof ServeError) throw error;
        this.broken = error as Error;
        const stderr = await this.settledStderr();
        const message = error instanceof Error ? error.message : String(error);
        throw new ServeError(`${what} with ${this.label} failed: ${message}`, stderr, error);
      }
    };
    const result = this.queue.then(task, task);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Exchange greetings; returns the effective version. */
  handshake(): Promise<number> {
    return this.run(
      'handshake',
      async () => {
        if (this.version !== 0) return this.version;
        this.writer.u64(SERVE_MAGIC_1).u64(CLIENT_VERSION);
        try {
          await this.writer.flush();
        } catch (error) {
          const stderr = await this.settledStderr();
          this.broken = error as Error;
          throw new ServeError(`cannot connect to ${this.label}: ${(error as Error).message}`, stderr, error);
        }
        let magic: bigint;
        let server: bigint;
        try {
          magic = await this.reader.readU64Big('server magic');
          if (magic !== BigInt(SERVE_MAGIC_2)) {
            throw new ServeError(
              `protocol mismatch with ${this.label}: expected magic 0x${SERVE_MAGIC_2.toString(16)}, got 0x${magic.toString(16)}`,
            );
          }
          server = await this.reader.readU64Big('server version');
        } catch (error) {
          this.broken = error as Error;
          if (error instanceof ServeError) throw new ServeError(error.message, await this.settledStderr());
          const stderr = await this.settledStderr();
          throw new ServeError(
            `cannot connect to ${this.label}: connection closed during the handshake${stderr ? '' : ' (no message)'}`,
            stderr,
            error,
          );
        }
        const v = Number(BigInt.asUintN(32, server));
        if (server > 0xffffffffn || (v & 0xff00) !== 0x200 || v < MIN_SERVER_VERSION) {
          this.broken = new Error('unsupported version');
          throw new ServeError(
            `unsupported serve protocol version ${formatVersion(server)} of ${this.label} (need 2.x with x >= ${MIN_SERVER_VERSION & 0xff})`,
          );
        }
        this.serverVersion = v;
        this.version = Math.min(v, CLIENT_VERSION);
        return this.version;
      },
      false,
    );
  }

  private minor(): number {
    return this.version & 0xff;
  }

  /** QueryValidPaths: which of `paths` are valid on the peer. */
  queryValidPaths(paths: Iterable<string>, options: {lock?: boolean; substitute?: boolean} = {}): Promise<Set<string>> {
    return this.run('QueryValidPaths', async () => {
      this.writer
        .u64(ServeCommand.QueryValidPaths)
        .bool(options.lock ?? false)
        .bool(options.substitute ?? false)
        .strings(sortedSet(paths));
      await this.writer.flush();
      return new Set(await this.reader.readStrings({what: 'valid paths'}));
    });
  }

  /**
   * QueryClosure (nix-store.cc opServe): the closure of `paths` on the peer, the paths included. An invalid path
   * makes the peer fail and exit (the connection is then broken).
   */
  queryClosure(paths: Iterable<string>, options: {includeOutputs?: boolean} = {}): Promise<string[]> {
    return this.run('QueryClosure', async () => {
      this.writer.u64(ServeCommand.QueryClosure).bool(options.includeOutputs ?? false).strings(sortedSet(paths));
      await this.writer.flush();
      return await this.reader.readStrings({what: 'closure'});
    });
  }

  /**
   * ImportPaths with export records written by `body` one at a time: `begin()`, the NAR's bytes to `sink`, then
   * `commit()` (so a NAR can be checked before its record is completed). The peer registers each record once its
   * trailer is read; a body that throws leaves the connection broken (the peer must then be killed, which drops
   * the record in progress).
   */
  importRecords<T>(body: (io: ImportRecords) => Promise<T>): Promise<T> {
    return this.run('ImportPaths', async () => {
      const w = this.writer;
      w.u64(ServeCommand.ImportPaths);
      const value = await body({
        sink: this.stdin,
        begin: async () => {
          w.u64(1);
          await w.flush();
        },
        commit: async (path, references, deriver) => {
          w.u64(EXPORT_MAGIC).string(path).strings(sortedSet(references)).string(deriver ?? '').u64(0);
          await w.flush();
        },
      });
      w.u64(0);
      await w.flush();
      const answer = await this.reader.readU64('ImportPaths answer');
      if (answer !== 1) {
        this.broken = new Error(`ImportPaths answer ${answer}`);
        throw new ServeError(`${this.label} failed to import the paths (answer ${answer})`, await this.settledStderr());
      }
      return value;
    });
  }

  /** QueryPathInfos: path infos of the valid ones among `paths` (invalid paths are absent from the map). */
  queryPathInfos(paths: Iterable<string>): Promise<Map<string, PathInfo>> {
    return this.run('QueryPathInfos', async () => {
      this.writer.u64(ServeCommand.QueryPathInfos).strings(sortedSet(paths));
      await this.writer.flush();
      const out = new Map<string, PathInfo>();
      for (;;) {
        const path = await this.reader.readString({what: 'path'});
        if (path === '') break;
        const deriver = await this.reader.readString({what: `deriver of ${path}`});
        const references = await this.reader.readStrings({what: `references of ${path}`});
        const downloadSize = await this.reader.readU64(`download size of ${path}`);
        const narSize = await this.reader.readU64(`NAR size of ${path}`);
        let narHash = '';
        let ca = '';
        let sigs: string[] = [];
        if (this.minor() >= 4) {
          narHash = await this.reader.readString({what: `NAR hash of ${path}`});
          ca = await this.reader.readString({what: `content address of ${path}`});
          sigs = await this.reader.readStrings({what: `signatures of ${path}`});
        }
        out.set(path, {
          path,
          deriver: deriver || undefined,
          references,
          downloadSize,
          narSize,
          narHash,
          ca: ca || undefined,
          sigs,
        });
      }
      return out;
    });
  }

  /**
   * DumpStorePath: stream the NAR of `path`, reporting entries to `visitor` and copying raw bytes to `tee`.
   * Returns the NAR's hash (`sha256:<nix32>`) and size, to be compared with QueryPathInfos.
   */
  dumpStorePath(
    path: string,
    visitor?: NarVisitor,
    tee?: Writable,
    options: Omit<NarParseOptions, 'visitor' | 'tee'> = {},
  ): Promise<{narHash: string; narSize: number; entries: number}> {
    return this.run('DumpStorePath', async () => {
      this.writer.u64(ServeCommand.DumpStorePath).string(path);
      await this.writer.flush();
      const result = await parseNar(this.reader, {label: path, ...options, visitor, tee});
      return {narHash: result.narHash, narSize: result.narSize, entries: result.entries};
    });
  }

  /**
   * ImportPaths: send paths in the export format, dependencies before dependents. The iterable is consumed
   * lazily, so NAR producers can be started one at a time. Returns the number of paths and NAR bytes sent.
   */
  importPaths(entries: Iterable<ImportEntry> | AsyncIterable<ImportEntry>): Promise<{paths: number; narBytes: number}> {
    return this.run('ImportPaths', async () => {
      this.writer.u64(ServeCommand.ImportPaths);
      let paths = 0;
      let narBytes = 0;
      for await (const entry of entries as AsyncIterable<ImportEntry>) {
        const nar = typeof entry.nar === 'function' ? entry.nar() : entry.nar;
        const r = await writeExportEntry(this.writer, nar, entry.path, entry.references, entry.deriver);
        paths++;
        narBytes += r.narSize;
      }
      this.writer.u64(0);
      await this.writer.flush();
      const answer = await this.reader.readU64('ImportPaths answer');
      if (answer !== 1) {
        this.broken = new Error(`ImportPaths answer ${answer}`);
        throw new ServeError(`remote machine ${this.label} failed to import closure (answer ${answer})`, await this.settledStderr());
      }
      return {paths, narBytes};
    });
  }

  /** BuildDerivation: build `drv` (registered under `drvPath`) on the peer. The build log streams on stderr. */
  buildDerivation(drvPath: string, drv: WireBasicDerivation, options: BuildOptions = {}): Promise<BuildResult> {
    return this.run('BuildDerivation', async () => {
      const w = this.writer;
      w.u64(ServeCommand.BuildDerivation).string(drvPath);
      writeBasicDerivation(w, drv);
      w.u64(options.maxSilentTime ?? 0).u64(options.buildTimeout ?? 0);
      if (this.minor() >= 2) w.u64(options.maxLogSize ?? 0);
      if (this.minor() >= 3) w.u64(options.nrRepeats ?? 0).bool(options.enforceDeterminism ?? false);
      if (this.minor() >= 7) w.bool(options.keepFailed ?? false);
      await w.flush();

      const r = this.reader;
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
      if (this.minor() >= 3) {
        result.timesBuilt = await r.readU64('timesBuilt');
        result.isNonDeterministic = await r.readBool('isNonDeterministic');
        result.startTime = await r.readU64('startTime');
        result.stopTime = await r.readU64('stopTime');
      }
      if (this.minor() >= 6) {
        const raw = await r.readStringMap({what: 'builtOutputs'});
        result.builtOutputs = decodeBuiltOutputs(raw, this.storeDir);
      }
      return result;
    });
  }

  /**
   * End the request stream at once, even with a request in flight: the peer sees EOF and aborts a running build
   * (how a cancelled step reaches the builder). The pending request then fails with a ServeError.
   */
  abort(): void {
    this.closed = true;
    this.writer.endNow();
  }

  /** Close the request stream after the request in flight (EOF makes the peer exit). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.queue;
      await this.writer.end();
    } catch {
      // the peer is gone already
    }
  }
}

function formatVersion(v: bigint): string {
  if (v > 0xffffffffn) return `0x${v.toString(16)}`;
  const n = Number(v);
  return `${n >> 8}.${n & 0xff}`;
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
