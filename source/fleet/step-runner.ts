// Runs one build step on one machine over the serve protocol, in the order of Hydra's
// build-remote.cc (docs/hydra-compat.md, "Running a step"):
// connect + handshake, send the input closure (per-machine send lock), truncate the log, BuildDerivation with
// the log streaming to a file, map the BuildResult, then, under a local worker slot, the output side
// (step-outputs.ts: copy back, nix-support, sizes). Transport failures become status 3 with a machine fault; an
// aborted step kills the remote build and becomes status 4. Serve sessions may be kept for a machine's next step.

import {resolveFromDrvFiles, toBasicDerivation, type DrvFileResolver} from '../nix/drv.js';
import type {NixSupportFs} from '../nix/nix-support.js';
import {mapBuildResult, ServeClient, type BuildResult} from '../nix/serve-client.js';
import {KeyedLock, sendClosure} from './closure-copy.js';
import {StoreCommands, StoreSessions, type CoordinatorStore} from './local-store.js';
import type {LocalTransportOptions} from './local-transport.js';
import {LogWriter} from './log-writer.js';
import type {MachineSpec} from './machines-file.js';
import {SshConnectionPool} from './ssh-transport.js';
import {openServeSession, type ServeSession} from './serve-session.js';
import {blankStepResult, type StepExecutor, type StepRequest, type StepResult} from './step-api.js';
import {afterBuild, StepRefused, type OutputSide} from './step-outputs.js';

export interface FleetExecutorOptions {
  /** Shared pool of SSH connections (one per machine); created (and closed by close()) when not given. */
  sshPool?: SshConnectionPool;
  /** The coordinator's local store is where outputs go (the only supported destination). */
  localStoreIsDestination?: true;
  /** nix-store program for local operations and local machines (default 'nix-store' from PATH). */
  nixStoreBin?: string;
  /** Diagnostic lines (connection trouble, log write errors). */
  log?: (line: string) => void;
  /** Extra settings for the serve process of a `localhost` machine (e.g. `--option build-users-group ''`). */
  localServe?: Pick<LocalTransportOptions, 'wrapper' | 'extraArgs' | 'env'>;
  /** Longest wait for a machine's send lock before uploading anyway (default 600 s, as Hydra). */
  sendLockWaitMs?: number;
  /** How long a finished serve process may take to exit after EOF before its channel is closed (default 5 s). */
  closeWaitMs?: number;
  /**
   * How the coordinator's store is reached: 'serve' (default) — a few long-lived `nix-store --serve --write`
   * processes; 'commands' — a nix-store command per operation (local-store.ts).
   */
  localStore?: 'serve' | 'commands';
  /**
   * Keep a step's serve session open for the machine's next step (default false): connecting, the remote
   * `nix-store --serve` start and the handshake are then paid once per slot, not per step. A session is retired after
   * `sessionMaxSteps` steps (default 100; its temporary roots on the builder go with it) or `sessionIdleMs` without
   * a step (default 30 s), and whenever a step on it failed in transport or was aborted. Off by default: a kept
   * session's temporary roots keep the builder's inputs and outputs alive, so a reproducibility check that deletes
   * an output on that builder, or a GC there, is refused until the session is retired.
   */
  reuseSessions?: boolean;
  sessionMaxSteps?: number;
  sessionIdleMs?: number;
  /** Wraps the reader of the outputs' nix-support files and products (instrumentation, fault injection in tests). */
  wrapNixSupportFs?: (fs: NixSupportFs) => NixSupportFs;
}

class StepAborted extends Error {
  constructor() {
    super('step aborted');
    this.name = 'StepAborted';
  }
}

export class FleetExecutor implements StepExecutor {
  private readonly pool: SshConnectionPool;
  private readonly ownsPool: boolean;
  private readonly nixStore: string;
  private readonly log: (line: string) => void;
  private readonly localServe: FleetExecutorOptions['localServe'];
  private readonly sendLocks = new KeyedLock();
  private readonly sendLockWaitMs: number;
  private readonly closeWaitMs: number;
  private readonly wrapFs: (fs: NixSupportFs) => NixSupportFs;
  private readonly resolver: DrvFileResolver = resolveFromDrvFiles();
  /** The coordinator's store. */
  readonly store: CoordinatorStore;
  private readonly outputSide: OutputSide;
  private readonly reuse: boolean;
  private readonly sessionMaxSteps: number;
  private readonly sessionIdleMs: number;
  /** Open sessions between steps, per machine. */
  private readonly spare = new Map<string, Spare[]>();
  /** Sessions opened so far (statistics, tests). */
  sessionsOpened = 0;
  private closing = false;

  constructor(options: FleetExecutorOptions = {}) {
    this.ownsPool = options.sshPool === undefined;
    this.pool = options.sshPool ?? new SshConnectionPool();
    this.nixStore = options.nixStoreBin ?? 'nix-store';
    this.log = options.log ?? (() => undefined);
    this.localServe = options.localServe;
    this.sendLockWaitMs = options.sendLockWaitMs ?? 600_000;
    this.closeWaitMs = options.closeWaitMs ?? 5000;
    this.wrapFs = options.wrapNixSupportFs ?? ((fs) => fs);
    this.reuse = options.reuseSessions ?? false;
    this.sessionMaxSteps = options.sessionMaxSteps ?? 100;
    this.sessionIdleMs = options.sessionIdleMs ?? 30_000;
    this.store = options.localStore === 'commands' ? new StoreCommands(this.nixStore) : new StoreSessions({nixStore: this.nixStore});
    this.outputSide = {nixStore: this.nixStore, store: this.store, log: this.log, wrapFs: this.wrapFs};
  }

  /** The SSH pool in use (for connection statistics). */
  get sshPool(): SshConnectionPool {
    return this.pool;
  }

  async close(): Promise<void> {
    this.closing = true;
    const spares = [...this.spare.values()].flat();
    this.spare.clear();
    await Promise.all(spares.map((sp) => (clearTimeout(sp.timer), sp.session.close())));
    if (this.ownsPool) this.pool.closeAll();
    await this.store.close();
  }

  /** A machine's spare session, if one is open; its stderr now goes to `log`. */
  private takeSpare(machine: MachineSpec, log: LogWriter): Spare | undefined {
    const list = this.spare.get(sessionKey(machine));
    const sp = list?.pop();
    if (!sp) return undefined;
    clearTimeout(sp.timer);
    sp.session.client.clearStderrTail();
    sp.sink = (chunk) => log.write(chunk);
    return sp;
  }

  /** Keeps `sp` for the machine's next step (or retires it). */
  private putSpare(machine: MachineSpec, sp: Spare): Promise<void> | void {
    sp.sink = () => undefined;
    sp.steps++;
    if (this.closing || sp.dead || sp.steps >= this.sessionMaxSteps || !sp.session.client.usable) return sp.session.close();
    const key = sessionKey(machine);
    const list = this.spare.get(key) ?? [];
    this.spare.set(key, list);
    list.push(sp);
    const retire = () => {
      const i = list.indexOf(sp);
      if (i < 0) return;
      list.splice(i, 1);
      if (list.length === 0 && this.spare.get(key) === list) this.spare.delete(key);
      clearTimeout(sp.timer);
      void sp.session.close();
    };
    sp.timer = setTimeout(retire, this.sessionIdleMs);
    sp.timer.unref();
    sp.retire = retire;
  }

  async run(request: StepRequest): Promise<StepResult> {
    const result = blankStepResult({logPath: request.logPath});
    const {signal} = request;
    let session: ServeSession | undefined;
    let spare: Spare | undefined;
    let sent0 = 0;
    let received0 = 0;
    let killing: Promise<void> | undefined;
    const onAbort = () => {
      if (session && !killing) killing = session.kill();
    };
    signal.addEventListener('abort', onAbort, {once: true});
    let log: LogWriter | undefined;
    let client: ServeClient | undefined;
    let broken = false;
    const check = () => {
      if (signal.aborted) throw new StepAborted();
    };
    try {
      check();
      log = await LogWriter.open(request.logPath);
      await request.onPhase('connecting');
      check();
      // A machine that hangs before the session exists (TCP or SSH handshake, channel open) must not delay a cancel.
      spare = this.reuse ? this.takeSpare(request.machine, log) : undefined;
      if (!spare) {
        const writer = log;
        const sp: Spare = {session: undefined as unknown as ServeSession, sink: (chunk) => writer.write(chunk), steps: 0, dead: false};
        sp.session = await abortable(this.connect(request.machine, (chunk) => sp.sink(chunk)), signal, (late) => void late.kill());
        this.sessionsOpened++;
        void sp.session.exited.then(() => {
          sp.dead = true;
          sp.retire?.();
        });
        spare = sp;
      }
      session = spare.session;
      request.mark?.('session-open');
      client = session.client;
      sent0 = client.bytesSent;
      received0 = client.bytesReceived;
      if (signal.aborted) onAbort();
      check();
      // The rest stops waiting at an abort too: a wedged builder may never answer the request in flight, even after
      // the kill. The work fills its own result, so nothing it does after an abort reaches the returned one.
      const active = client;
      const work = blankStepResult({logPath: request.logPath});
      try {
        await abortable(
          (async () => {
            await active.handshake();
            request.mark?.('handshake');
            request.onConnected?.();
            await this.execute(request, active, log!, work, check);
          })(),
          signal,
          () => undefined,
        );
      } finally {
        if (!signal.aborted) Object.assign(result, work);
      }
    } catch (error) {
      if (signal.aborted || error instanceof StepAborted) {
        Object.assign(result, {status: 4, retry: false, cacheFailure: false, errorMsg: null, machineFault: false, isCached: false});
      } else if (error instanceof StepRefused) {
        this.log(`${request.machine.uri}: ${request.drvPath}: ${error.message}`);
        Object.assign(result, {status: 1, retry: false, cacheFailure: false, errorMsg: error.message, machineFault: false, isCached: false});
      } else {
        broken = true;
        const message = error instanceof Error ? error.message : String(error);
        this.log(`${request.machine.uri}: ${request.drvPath}: ${message}`);
        Object.assign(result, {status: 3, retry: true, cacheFailure: false, errorMsg: message, machineFault: true, isCached: false});
      }
      result.outputs = new Map();
      result.products = [];
      result.releaseName = null;
      result.metrics = [];
      result.failedMarker = false;
      result.size = null;
      result.closureSize = null;
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (client) {
        result.bytesSent = client.bytesSent - sent0;
        result.bytesReceived = client.bytesReceived - received0;
      }
      if (session) {
        if (killing) await killing;
        else if (signal.aborted || broken) await session.kill();
        else if (this.reuse && spare) await this.putSpare(request.machine, spare);
        else await session.close();
      }
      if (log) {
        if (result.logPath === null) await log.remove().catch(() => undefined);
        else await log.close();
        if (log.error) this.log(`${request.logPath}: writing the build log failed: ${log.error.message}`);
      }
    }
    return result;
  }

  /** Everything after the handshake; fills `result`. */
  private async execute(
    request: StepRequest,
    client: ServeClient,
    log: LogWriter,
    result: StepResult,
    check: () => void,
  ): Promise<void> {
    const {machine, drv, drvPath} = request;
    const isLocal = machine.kind === 'local';

    // Sending: the BasicDerivation and its input closure.
    await request.onPhase('sending');
    check();
    const sendStart = performance.now();
    const basic = await toBasicDerivation(drv, this.resolver);
    if (!isLocal) {
      await sendClosure(client, basic.inputSrcs, {
        nixStore: this.nixStore,
        store: this.store,
        lock: () => this.sendLocks.acquire(machine.uri, this.sendLockWaitMs, request.signal),
        ...(request.mark ? {onQueried: () => request.mark!('inputs-queried')} : {}),
      });
    }
    request.mark?.('inputs-copied');
    result.overheadMs += Math.round(performance.now() - sendStart);
    check();
    await log.truncate();

    // Building.
    await request.onPhase('building');
    check();
    const buildStart = Math.floor(Date.now() / 1000);
    const built: BuildResult = await client.buildDerivation(drvPath, basic, {
      maxSilentTime: request.maxSilentTime,
      buildTimeout: request.buildTimeout,
      maxLogSize: request.maxLogSize,
      nrRepeats: 0,
      enforceDeterminism: false,
    });
    const buildStop = Math.floor(Date.now() / 1000);
    request.mark?.('built');
    await log.flush();
    const outcome = mapBuildResult(built);
    result.status = outcome.stepStatus;
    result.retry = outcome.retry;
    result.cacheFailure = outcome.cacheFailure;
    result.errorMsg = outcome.keepErrorMsg ? outcome.errorMsg : null;
    result.isCached = outcome.isCached;
    result.machineFault = false;
    result.timesBuilt = built.timesBuilt;
    result.isNonDeterministic = built.isNonDeterministic;
    if (built.startTime !== 0) {
      result.startTime = built.startTime;
      result.stopTime = built.stopTime;
    } else {
      result.startTime = buildStart;
      result.stopTime = buildStop;
    }
    if (result.status !== 0) return;
    if (outcome.isCached) result.logPath = null;
    // Local work (output copy, imports, sizes) holds a local worker slot; the machine's slot is given back first.
    const releaseLocal = request.localWorkSlot ? await request.localWorkSlot() : () => undefined;
    try {
      check();
      request.onSlotReleased?.();
      await afterBuild(this.outputSide, request, client, result, built, check);
    } finally {
      releaseLocal();
    }
  }

  private connect(machine: MachineSpec, onStderr: (chunk: Buffer) => void): Promise<ServeSession> {
    return openServeSession(machine, {
      pool: this.pool,
      nixStore: this.nixStore,
      localServe: this.localServe,
      closeWaitMs: this.closeWaitMs,
      onStderr,
    });
  }
}

/** A serve session kept between steps. */
interface Spare {
  session: ServeSession;
  /** Where its stderr (the build log) goes now. */
  sink: (chunk: Buffer) => void;
  steps: number;
  /** The remote command has exited. */
  dead: boolean;
  timer?: NodeJS.Timeout;
  retire?: () => void;
}

/** Sessions are shared only by steps on the very same machine entry. */
function sessionKey(machine: MachineSpec): string {
  return JSON.stringify(machine);
}

/** `p`, or a StepAborted rejection once `signal` aborts; a value that arrives after the abort is handed to `late`. */
function abortable<T>(p: Promise<T>, signal: AbortSignal, late: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      p.then(late, () => undefined);
      reject(new StepAborted());
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, {once: true});
    p.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
