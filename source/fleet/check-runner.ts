// Rebuilding a derivation whose outputs the coordinator already has, to compare them (a `--check` across
// machines). Unlike a step (step-runner.ts), nothing is imported into the coordinator's store — its copy of
// the output path is the reference. Per round, on the chosen builder:
//   1. if the outputs are valid there, delete them (`nix-store --delete`; refused when still alive there);
//   2. send the input closure, BuildDerivation (nrRepeats 0; the log goes to round-<k>.log);
//   3. QueryPathInfos of the outputs: the builder's NAR hashes, compared with the recorded ones;
//   4. the first time an output differs, DumpStorePath it and unpack the NAR (verifying its hash) as
//      `<checkDir>/<basename>.check` — Nix's `.check` convention, as a plain directory.
// Rounds are separate rebuilds (current Nix rejects nrRepeats ≠ 0). Each round uses a fresh serve session, so
// no temporary root of the previous session keeps an output alive. After a mismatch the rebuilt outputs are
// deleted on the builder again (best effort), so its store never feeds the divergent copy to later builds.

import {PassThrough} from 'node:stream';
import {basename, join} from 'node:path';
import {mkdir} from 'node:fs/promises';
import {execa} from 'execa';
import {outputPathMap, resolveFromDrvFiles, toBasicDerivation, type Derivation, type DrvFileResolver} from '../nix/drv.js';
import {sameHash} from '../nix/nar.js';
import {unpackNar} from '../nix/nar-unpack.js';
import type {BuildResult} from '../nix/serve-client.js';
import {KeyedLock, sendClosure} from './closure-copy.js';
import {LogWriter} from './log-writer.js';
import type {MachineSpec} from './machines-file.js';
import {SshConnectionPool} from './ssh-transport.js';
import {openServeSession, type ServeSession} from './serve-session.js';

export interface ExpectedOutput {
  path: string;
  /** The recorded NAR hash (`sha256:…`, any encoding). */
  narHash: string;
}

export interface RebuildRequest {
  machine: MachineSpec;
  drvPath: string;
  drv: Derivation;
  /** Output name → the coordinator's path and NAR hash. */
  expected: ReadonlyMap<string, ExpectedOutput>;
  /** Rebuilds (≥ 1). */
  rounds: number;
  /** Logs and `.check` trees go here (created on demand). */
  checkDir: string;
  maxSilentTime?: number;
  buildTimeout?: number;
  maxLogSize?: number;
  signal?: AbortSignal;
  /** Called as each round begins. */
  onRound?(round: number): void;
}

export interface RoundResult {
  round: number;
  /** Nix BuildResult status name ('Built' on success). */
  status: string;
  errorMsg: string;
  /** Output name → the rebuilt NAR hash (success only). */
  hashes: Record<string, string>;
  logPath: string;
  startTime: number;
  stopTime: number;
}

export interface RebuiltOutput {
  name: string;
  path: string;
  expected: string;
  /** The NAR hash of each successful round, in order. */
  got: string[];
  /** Where the first differing rebuild was unpacked, if any. */
  checkPath: string | null;
}

export interface RebuildResult {
  /** 'completed': every round built (compare the hashes); 'failed': some round did not; 'aborted'. */
  outcome: 'completed' | 'failed' | 'aborted';
  /** Why it failed (failed / aborted). */
  error: string | null;
  rounds: RoundResult[];
  outputs: RebuiltOutput[];
  /** Outputs that were valid on the builder and deleted before round 1. */
  deletedBefore: string[];
  /** Some round's hash differs from the recorded one or from another round's. */
  mismatch: boolean;
}

export class CheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckError';
  }
}

export interface CheckRunnerOptions {
  sshPool?: SshConnectionPool;
  nixStoreBin?: string;
  log?: (line: string) => void;
  sendLockWaitMs?: number;
}


/** True when a machine builds into the coordinator's own store (nothing can be rebuilt there). */
export function buildsIntoLocalStore(machine: MachineSpec): boolean {
  return machine.kind === 'local' && (machine.remoteStore === undefined || machine.remoteStore === '' || machine.remoteStore === 'auto');
}

export class CheckRunner {
  private readonly pool: SshConnectionPool;
  private readonly ownsPool: boolean;
  private readonly nixStore: string;
  private readonly log: (line: string) => void;
  private readonly sendLocks = new KeyedLock();
  private readonly sendLockWaitMs: number;
  private readonly resolver: DrvFileResolver = resolveFromDrvFiles();

  constructor(options: CheckRunnerOptions = {}) {
    this.ownsPool = options.sshPool === undefined;
    this.pool = options.sshPool ?? new SshConnectionPool();
    this.nixStore = options.nixStoreBin ?? 'nix-store';
    this.log = options.log ?? (() => undefined);
    this.sendLockWaitMs = options.sendLockWaitMs ?? 600_000;
  }

  async close(): Promise<void> {
    if (this.ownsPool) this.pool.closeAll();
  }

  async rebuild(req: RebuildRequest): Promise<RebuildResult> {
    const result: RebuildResult = {outcome: 'completed', error: null, rounds: [], outputs: [], deletedBefore: [], mismatch: false};
    if (buildsIntoLocalStore(req.machine)) {
      throw new CheckError(
        `${req.machine.uri} builds into the coordinator's own store, where the outputs are already valid; choose a machine with its own store`,
      );
    }
    const declared = outputPathMap(req.drv);
    for (const [name, path] of declared) {
      if (path === null) throw new CheckError(`${req.drvPath}: output '${name}' has no known path (floating content-addressed outputs cannot be checked)`);
      const exp = req.expected.get(name);
      if (!exp) throw new CheckError(`${req.drvPath}: no recorded hash for output '${name}'`);
      result.outputs.push({name, path, expected: exp.narHash, got: [], checkPath: null});
    }
    const paths = result.outputs.map((o) => o.path);
    const rounds = Math.max(1, Math.floor(req.rounds));
    await mkdir(req.checkDir, {recursive: true});
    const basic = await toBasicDerivation(req.drv, this.resolver);
    let session: ServeSession | undefined;
    const onAbort = () => void session?.kill();
    req.signal?.addEventListener('abort', onAbort, {once: true});
    try {
      for (let round = 1; round <= rounds; round++) {
        if (req.signal?.aborted) throw new CheckError('aborted');
        req.onRound?.(round);
        const logPath = join(req.checkDir, `round-${round}.log`);
        const log = await LogWriter.open(logPath);
        try {
          session = await this.connect(req.machine, log);
          await session.client.handshake();
          const valid = await session.client.queryValidPaths(paths);
          if (valid.size > 0) {
            // A fresh session after deleting: the old one may hold temporary roots.
            await session.close();
            session = undefined;
            await this.deleteOnBuilder(req.machine, [...valid]);
            if (round === 1) result.deletedBefore.push(...valid);
            session = await this.connect(req.machine, log);
            await session.client.handshake();
          }
          const client = session.client;
          await sendClosure(client, basic.inputSrcs, {
            nixStore: this.nixStore,
            lock: () => this.sendLocks.acquire(req.machine.uri, this.sendLockWaitMs, req.signal),
          });
          await log.truncate();
          const t0 = Math.floor(Date.now() / 1000);
          const built: BuildResult = await client.buildDerivation(req.drvPath, basic, {
            maxSilentTime: req.maxSilentTime ?? 0,
            buildTimeout: req.buildTimeout ?? 0,
            maxLogSize: req.maxLogSize ?? 0,
            nrRepeats: 0,
            enforceDeterminism: false,
          });
          const t1 = Math.floor(Date.now() / 1000);
          await log.flush();
          const r: RoundResult = {
            round,
            status: built.status,
            errorMsg: built.errorMsg,
            hashes: {},
            logPath,
            startTime: built.startTime || t0,
            stopTime: built.stopTime || t1,
          };
          result.rounds.push(r);
          if (built.status !== 'Built') {
            const why =
              built.status === 'Substituted' || built.status === 'AlreadyValid' || built.status === 'ResolvesToAlreadyValid'
                ? `the builder did not rebuild the outputs (${built.status})`
                : `the rebuild failed with ${built.status}${built.errorMsg ? `: ${built.errorMsg.trim()}` : ''}`;
            throw new CheckError(`round ${round} on ${req.machine.uri}: ${why} (log: ${logPath})`);
          }
          const infos = await client.queryPathInfos(paths);
          for (const o of result.outputs) {
            const info = infos.get(o.path);
            if (!info) throw new CheckError(`round ${round}: output ${o.path} is not valid on ${req.machine.uri} after the build`);
            r.hashes[o.name] = info.narHash;
            o.got.push(info.narHash);
            const differs = !sameHash(info.narHash, o.expected);
            if (differs) result.mismatch = true;
            if (differs && o.checkPath === null) {
              const target = join(req.checkDir, `${basename(o.path)}.check`);
              const pipe = new PassThrough({highWaterMark: 1 << 20});
              pipe.on('error', () => undefined); // destroyed by a failing unpack; reported below
              const unpacking = unpackNar(pipe, target, {label: o.path}).then(
                () => null,
                (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
              );
              let dumped: {narHash: string} | undefined;
              let dumpError: unknown;
              try {
                dumped = await client.dumpStorePath(o.path, undefined, pipe);
              } catch (e) {
                dumpError = e;
              } finally {
                pipe.end();
              }
              const unpackError = await unpacking;
              if (unpackError) throw new CheckError(`round ${round}: unpacking the rebuilt ${o.path} into ${target} failed: ${unpackError.message}`);
              if (dumpError || !dumped) throw dumpError;
              if (!sameHash(dumped.narHash, info.narHash)) {
                throw new CheckError(`round ${round}: the NAR of ${o.path} sent by ${req.machine.uri} hashes to ${dumped.narHash}, not ${info.narHash}`);
              }
              o.checkPath = target;
            }
          }
          await session.close();
          session = undefined;
        } finally {
          await log.close();
        }
      }
      // Rounds may also disagree among themselves.
      for (const o of result.outputs) if (new Set(o.got).size > 1) result.mismatch = true;
    } catch (error) {
      if (req.signal?.aborted) {
        result.outcome = 'aborted';
        result.error = 'the check was aborted';
      } else {
        result.outcome = 'failed';
        result.error = error instanceof Error ? error.message : String(error);
        this.log(`${req.machine.uri}: check of ${req.drvPath}: ${result.error}`);
      }
      if (session) await session.kill().catch(() => undefined);
      session = undefined;
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
    }
    if (result.mismatch && result.outcome === 'completed') {
      await this.deleteOnBuilder(req.machine, paths).catch((e) =>
        this.log(`${req.machine.uri}: could not delete the divergent rebuild of ${req.drvPath}: ${(e as Error).message}`),
      );
    }
    return result;
  }

  /** `nix-store --delete` on the builder; throws CheckError with its message when Nix refuses. */
  async deleteOnBuilder(machine: MachineSpec, paths: string[]): Promise<void> {
    if (paths.length === 0) return;
    const argv = ['nix-store'];
    if (machine.remoteStore !== undefined && machine.remoteStore !== '') argv.push('--store', machine.remoteStore);
    argv.push('--delete', ...paths);
    let code: number | null;
    let stderr: string;
    if (machine.kind === 'local') {
      const r = await execa(this.nixStore, argv.slice(1), {reject: false, stdin: 'ignore'});
      code = r.exitCode ?? null;
      stderr = String(r.stderr);
    } else {
      const r = await this.pool.run(machine, argv);
      code = r.code;
      stderr = r.stderr.toString('utf8');
    }
    if (code !== 0) {
      throw new CheckError(
        `cannot delete ${paths.join(', ')} on ${machine.uri} before rebuilding it (nix-store --delete exit ${code ?? 'signal'}: ${stderr.trim() || 'no message'}); ` +
          'it is still alive there (a GC root or a referrer) — free it on the builder or check on another machine',
      );
    }
  }

  private connect(machine: MachineSpec, log: LogWriter): Promise<ServeSession> {
    return openServeSession(machine, {pool: this.pool, nixStore: this.nixStore, closeWaitMs: 5000, onStderr: (chunk) => log.write(chunk)});
  }
}
