// SimulatedExecutor: a stand-in builder backend for the scheduler-scale benchmark only. It builds nothing:
// each step "succeeds" after a short random delay with its static output paths, made-up NAR hashes and sizes,
// and start/stop times. It can be paused (steps wait until resume()), so a benchmark can ingest the whole queue
// before any step finishes.
import {outputPathMap} from '../source/nix/drv.js';
import type {StepExecutor, StepRequest, StepResult, StepOutput} from '../source/fleet/step-api.js';

export class SimulatedExecutor implements StepExecutor {
  private paused: Promise<void> | null = null;
  private release: (() => void) | null = null;
  started = 0;
  finished = 0;

  constructor(
    private readonly minMs = 20,
    private readonly maxMs = 200,
  ) {}

  pause(): void {
    if (this.paused) return;
    this.paused = new Promise((r) => (this.release = r));
  }

  resume(): void {
    this.release?.();
    this.paused = null;
    this.release = null;
  }

  async run(req: StepRequest): Promise<StepResult> {
    this.started++;
    const start = Math.floor(Date.now() / 1000);
    await req.onPhase('building');
    if (this.paused) await this.paused;
    const delay = this.minMs + Math.random() * (this.maxMs - this.minMs);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, delay);
      req.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), {once: true});
    });
    const outputs = new Map<string, StepOutput>();
    for (const [name, path] of outputPathMap(req.drv)) {
      if (path) outputs.set(name, {path, narHash: 'sha256:' + '0'.repeat(52), narSize: 1024});
    }
    this.finished++;
    return {
      status: 0,
      retry: false,
      cacheFailure: false,
      errorMsg: null,
      isCached: false,
      machineFault: false,
      startTime: start,
      stopTime: Math.floor(Date.now() / 1000),
      timesBuilt: 1,
      isNonDeterministic: false,
      outputs,
      products: [],
      releaseName: null,
      metrics: [],
      failedMarker: false,
      size: 1024 * outputs.size,
      closureSize: 1024 * outputs.size,
      overheadMs: 0,
      bytesSent: 0,
      bytesReceived: 0,
      logPath: null,
    };
  }

  async close(): Promise<void> {
    this.resume();
  }
}
