// The contract between the scheduler and the builders: run one derivation on one machine.
// The scheduler owns the database rows; an executor owns everything that touches a builder:
// connecting, copying the input closure, building with the log streaming to a file, mapping the
// BuildResult to a step status (docs/hydra-compat.md, "Running a step"), size limits, copying the outputs back and
// reading their nix-support files.
import type {Derivation} from '../nix/drv.js';
import type {NewBuildProduct, BuildMetric} from '../nix/nix-support.js';
import type {MachineSpec} from './machines-file.js';

/** Busy phases the executor reports; the scheduler writes them as BuildSteps.busy 10/20/30/40/50. */
export type StepPhase = 'connecting' | 'sending' | 'building' | 'receiving' | 'postprocessing';

/**
 * Instants inside a step the executor reports to an optional timing hook (StepRequest.mark), in this order:
 * the session is open, the handshake is done, the input closure is known and checked on the builder, it is copied,
 * the build is over, the outputs' path infos are in, the outputs are imported, nix-support and sizes are done.
 */
export type StepMark =
  | 'session-open'
  | 'handshake'
  | 'inputs-queried'
  | 'inputs-copied'
  | 'built'
  | 'outputs-queried'
  | 'outputs-imported'
  | 'postprocessed';

export interface StepRequest {
  machine: MachineSpec;
  drvPath: string;
  drv: Derivation;
  /** BuildOptions of BuildDerivation (docs/hydra-compat.md, "Serve protocol"); seconds, bytes. */
  maxSilentTime: number;
  buildTimeout: number;
  maxLogSize: number;
  /** Sum of the outputs' NAR sizes above which the step fails with status 11 (0 = no limit). */
  maxOutputSize: number;
  /** Log file (docs/hydra-compat.md, "Logs"); created on demand, truncated after the input copy. */
  logPath: string;
  /**
   * hydra.conf's gc_roots_dir: the outputs are rooted there before they are imported into the coordinator's store
   * (and right after a localhost build), so no garbage collection can delete them before the step is recorded.
   * The roots stay when the step succeeds; they are removed again when it does not.
   */
  gcRootsDir?: string;
  /** Aborting stops the remote build within 2 s; the result then has status 4. */
  signal: AbortSignal;
  onPhase(phase: StepPhase): void | Promise<void>;
  /** Timing hook (benchmarks): called at each StepMark; absent, nothing is measured. */
  mark?(mark: StepMark): void;
  /** The serve-protocol handshake succeeded: the machine's failure counter resets. */
  onConnected?(): void;
  /** The build is over on the builder and its slot may be reused while outputs copy back (docs/hydra-compat.md, "Machine choice and back-off"). */
  onSlotReleased?(): void;
  /**
   * Takes a local worker slot for the output copy and the work on the coordinator's store after a successful build
   * (the scheduler waits in busy phase 35 when none is free); resolves with the slot's release.
   */
  localWorkSlot?(): Promise<() => void>;
}

export interface StepOutput {
  path: string;
  narHash: string;
  narSize: number;
}

export interface StepResult {
  /** BuildSteps.status: 0, 1, 3, 4, 7, 10, 11 or 12. */
  status: number;
  /** Retry later (transient failure or transport error). */
  retry: boolean;
  /** Record the outputs in FailedPaths (permanent, cacheable failures). */
  cacheFailure: boolean;
  /** Kept only where Hydra keeps it (status 3), else null. */
  errorMsg: string | null;
  /** Outputs were substituted or already valid on the builder (no log). */
  isCached: boolean;
  /** A transport/connection failure: the machine backs off (docs/hydra-compat.md, "Machine choice and back-off"). */
  machineFault: boolean;
  /** Build start/stop (Unix seconds) as reported by the builder, else measured around BuildDerivation. */
  startTime: number;
  stopTime: number;
  timesBuilt: number;
  isNonDeterministic: boolean;
  /** Realised outputs (success only). */
  outputs: Map<string, StepOutput>;
  /** Parsed nix-support data of the outputs (success only). */
  products: NewBuildProduct[];
  releaseName: string | null;
  metrics: BuildMetric[];
  /** Some output has nix-support/failed: the build gets status 6. */
  failedMarker: boolean;
  /** Σ NAR size of the outputs / of their closure (success only). */
  size: number | null;
  closureSize: number | null;
  /** Milliseconds spent copying inputs and outputs. */
  overheadMs: number;
  bytesSent: number;
  bytesReceived: number;
  /** The log file, or null when there is none (substituted / already valid). */
  logPath: string | null;
}

/** A result with nothing realised (status 3 unless given): the starting point of every outcome. */
export function blankStepResult(fields: Partial<StepResult> = {}): StepResult {
  return {
    status: 3,
    retry: false,
    cacheFailure: false,
    errorMsg: null,
    isCached: false,
    machineFault: false,
    startTime: 0,
    stopTime: 0,
    timesBuilt: 0,
    isNonDeterministic: false,
    outputs: new Map(),
    products: [],
    releaseName: null,
    metrics: [],
    failedMarker: false,
    size: null,
    closureSize: null,
    overheadMs: 0,
    bytesSent: 0,
    bytesReceived: 0,
    logPath: null,
    ...fields,
  };
}

export interface StepExecutor {
  run(request: StepRequest): Promise<StepResult>;
  /** Closes pooled connections. */
  close(): Promise<void>;
}
