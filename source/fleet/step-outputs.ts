// The output side of a step, after a successful build (docs/hydra-compat.md, "Running a step"): the outputs' paths,
// their GC roots, the copy back into the coordinator's store (remote machines; size limit: docs/hydra-compat.md,
// "Limits"), the nix-support scan (docs/hydra-compat.md, "nix-support") and the sizes, in the order of Hydra's
// build-remote.cc. step-runner.ts calls it under a local worker slot.

import {rm} from 'node:fs/promises';
import {outputPathMap} from '../nix/drv.js';
import {collectNixSupport, localNixSupportFs, type NixSupportFs} from '../nix/nix-support.js';
import type {BuildResult, PathInfo as RemotePathInfo, ServeClient} from '../nix/serve-client.js';
import {escapeControl} from '../config/escape.js';
import {isStorePath} from '../nix/store-path.js';
import {createGcRoot, storeDir, queryPathInfos, topoSortPaths} from '../nix/store.js';
import {receiveOutputs} from './closure-copy.js';
import type {CoordinatorStore} from './local-store.js';
import type {StepOutput, StepRequest, StepResult} from './step-api.js';

/** What the output side needs of the executor. */
export interface OutputSide {
  nixStore: string;
  store: CoordinatorStore;
  log: (line: string) => void;
  wrapFs: (fs: NixSupportFs) => NixSupportFs;
}

/** The step cannot be run as asked (not the machine's fault): it fails without retry and without blame. */
export class StepRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StepRefused';
  }
}

/** Outputs back into the coordinator's store, nix-support files and sizes (under a local worker slot). */
export async function afterBuild(o: OutputSide, request: StepRequest, client: ServeClient, result: StepResult, built: BuildResult, check: () => void): Promise<void> {
  const {drv, drvPath} = request;

  // Output paths: statically known ones, else what the builder reported.
  const outputs = new Map<string, string>();
  for (const [name, path] of outputPathMap(drv)) {
    const p = path ?? built.builtOutputs.get(name);
    if (!p) throw new Error(`output '${name}' of ${drvPath} has no known path after the build`);
    // The derivation's own paths are the coordinator's (not the machine's fault); reported ones are checked by
    // the serve client (decodeBuiltOutputs).
    if (!isStorePath(p, storeDir())) throw new StepRefused(`output '${escapeControl(name)}' of ${drvPath} is not a store path: ${JSON.stringify(escapeControl(p))}`);
    outputs.set(name, p);
  }
  const outputList = [...new Set(outputs.values())];

  // Rooted before anything is imported (and, for a localhost build, while its serve session still holds the
  // outputs as temporary roots): a garbage collection between the import and the recorded success cannot take
  // them. Hydra's queue runner keeps them alive through its store connection's temporary roots instead.
  const madeRoots: string[] = [];
  const unroot = () => Promise.all(madeRoots.map((r) => rm(r, {force: true}).catch(() => undefined)));
  try {
    if (request.gcRootsDir) {
      for (const p of outputList) {
        const r = await createGcRoot(request.gcRootsDir, p);
        if (r.created) madeRoots.push(r.root);
      }
    }
    await outputsAndPostprocessing(o, request, client, result, check, outputs, outputList);
  } catch (error) {
    await unroot();
    throw error;
  }
  if (result.status !== 0) await unroot();
}

/** Receiving (remote machines), nix-support files and sizes; fills `result`. */
async function outputsAndPostprocessing(
  o: OutputSide,
  request: StepRequest,
  client: ServeClient,
  result: StepResult,
  check: () => void,
  outputs: ReadonlyMap<string, string>,
  outputList: readonly string[],
): Promise<void> {
  const {machine, drvPath} = request;
  const isLocal = machine.kind === 'local';
  let infos: Map<string, {narHash: string; narSize: number; references: readonly string[]}>;
  let fs: NixSupportFs;
  if (isLocal) {
    infos = await queryPathInfos(outputList);
    for (const p of outputList) if (!infos.has(p)) throw new Error(`output ${p} is not valid after the build`);
    request.mark?.('outputs-queried');
    if (overOutputLimit(o, request, result, infos)) return;
    fs = localNixSupportFs(outputList, request.signal);
    request.mark?.('outputs-imported');
  } else {
    await request.onPhase('receiving');
    check();
    const receiveStart = performance.now();
    const localCheck = o.store.validPaths(outputList);
    localCheck.catch(() => undefined);
    const remote: Map<string, RemotePathInfo> = await client.queryPathInfos(outputList);
    for (const p of outputList) if (!remote.has(p)) throw new Error(`output ${p} is not valid on ${machine.uri} after the build`);
    infos = remote;
    request.mark?.('outputs-queried');
    if (overOutputLimit(o, request, result, infos)) {
      result.overheadMs += Math.round(performance.now() - receiveStart);
      return;
    }
    const already = await localCheck;
    const received = await receiveOutputs(client, topoSortPaths(outputList, (p) => remote.get(p)?.references), remote, {
      nixStore: o.nixStore,
      store: o.store,
      skip: already,
      signal: request.signal,
    });
    fs = received.fs;
    result.overheadMs += Math.round(performance.now() - receiveStart);
    request.mark?.('outputs-imported');
  }
  check();

  // Postprocessing: nix-support files and sizes. A cancel stops it here too (hashing product files, the
  // closure size query), not only the wait for it in run().
  await request.onPhase('postprocessing');
  check();
  const named = [...outputs.entries()].map(([name, path]) => ({name, path}));
  // Once, started here to overlap with the nix-support scan; a cancel stops it.
  const closureSize = o.store.closureNarSize(outputList, request.signal);
  closureSize.catch(() => undefined);
  const support = await collectNixSupport(named, o.wrapFs(fs), {signal: request.signal});
  check();
  for (const w of support.warnings) o.log(`${drvPath}: ${w}`);
  const stepOutputs = new Map<string, StepOutput>();
  for (const [name, path] of outputs) {
    const info = infos.get(path)!;
    stepOutputs.set(name, {path, narHash: info.narHash, narSize: info.narSize});
  }
  result.outputs = stepOutputs;
  result.products = support.products;
  result.releaseName = support.releaseName;
  result.metrics = [...support.metrics.values()];
  result.failedMarker = support.failed;
  result.size = outputList.reduce((n, p) => n + infos.get(p)!.narSize, 0);
  // A size the coordinator cannot measure is not the builder's fault: the build stands, without a closure size.
  result.closureSize = await closureSize.catch((e: unknown) => {
    o.log(`${drvPath}: cannot measure the closure size: ${e instanceof Error ? e.message : String(e)}`);
    return null;
  });
  request.mark?.('postprocessed');
}

/** docs/hydra-compat.md, "Limits": the sum of the outputs' NAR sizes over max_output_size fails the step with 11 (not retried, not cached). */
function overOutputLimit(
  o: OutputSide,
  request: StepRequest,
  result: StepResult,
  infos: ReadonlyMap<string, {narSize: number}>,
): boolean {
  if (!(request.maxOutputSize > 0)) return false;
  let total = 0;
  for (const info of infos.values()) total += info.narSize;
  if (total <= request.maxOutputSize) return false;
  Object.assign(result, {status: 11, retry: false, cacheFailure: false, errorMsg: null, isCached: false, machineFault: false});
  o.log(`${request.drvPath}: outputs are ${total} bytes, over the limit of ${request.maxOutputSize}`);
  return true;
}
