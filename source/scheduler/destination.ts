// hydra.conf's `store_uri` and `upload_logs_to_binary_cache` as seen by a running step (docs/hydra-compat.md,
// "Destination store"): a succeeded step's outputs go to the destination store before its builds may finish, and
// every step's log (failed ones too) is uploaded to a binary-cache destination, as Hydra's C++ runner does in
// src/hydra-queue-runner/build-remote.cc (copyPathsFromRemote into destStore) and builder.cc (the log upload in
// doBuildStep's clean-up, for every step that got a row).
import {stat} from 'node:fs/promises';
import {copyClosureTo, isBinaryCacheUri, uploadBuildLog} from '../nix/dest-store.js';
import type {StepResult} from '../fleet/step-api.js';
import {STATUS} from '../db/runner-sql.js';
import type {SchedulerContext} from './context.js';

export class StepDestination {
  constructor(private readonly ctx: SchedulerContext) {}

  /** The destination store URI, or '' when outputs stay in the local store. */
  get uri(): string {
    return this.ctx.options.runner.storeUri;
  }

  /**
   * The outputs' closure goes from the local store to the destination. Like Hydra's copy into its destStore
   * (`addToStore(…, NoCheckSigs)`), signatures are not checked: the outputs were just built by the farm. A
   * destination that refuses them makes the step fail like any copy error in Hydra: status 3 (aborted, retried),
   * the reason in errorMsg, not blamed on the builder. The caller holds a local worker slot.
   */
  async publishOutputs(drvPath: string, result: StepResult, signal: AbortSignal): Promise<StepResult> {
    const {ctx} = this;
    const t0 = Date.now();
    try {
      await copyClosureTo(this.uri, [...result.outputs.values()].map((o) => o.path), {...ctx.options.nix, signal, checkSigs: false});
    } catch (e) {
      if (signal.aborted) return result; // the abort is recorded by the caller
      const message = (e as Error).message;
      ctx.log('warn', `step ${drvPath}: ${message}`);
      return {...result, status: STATUS.aborted, retry: true, errorMsg: message, machineFault: false, cacheFailure: false, overheadMs: result.overheadMs + (Date.now() - t0)};
    }
    return {...result, overheadMs: result.overheadMs + (Date.now() - t0)};
  }

  /**
   * upload_logs_to_binary_cache: the step's log goes to `log/<drv basename>` of a binary-cache destination, whatever
   * the step's status (Hydra uploads it for every step with a row). A failed upload changes nothing about the step;
   * it is logged. The local log stays where the console and `hydra-ops log` read it. No log (the outputs were
   * substituted or already valid on the builder) means nothing to upload, as in Hydra.
   */
  async uploadLog(drvPath: string, logPath: string | null, signal?: AbortSignal): Promise<void> {
    const {ctx} = this;
    if (!ctx.options.runner.uploadLogsToBinaryCache || !isBinaryCacheUri(this.uri) || !logPath) return;
    try {
      await stat(logPath);
    } catch {
      return;
    }
    await uploadBuildLog(this.uri, drvPath, logPath, {...ctx.options.nix, ...(signal ? {signal} : {})}).catch((e) =>
      ctx.log('warn', `step ${drvPath}: ${(e as Error).message}`),
    );
  }
}
