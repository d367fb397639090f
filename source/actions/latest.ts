// `hydra-ops latest PROJECT/JOBSET/JOB`: the latest successful build of a job — Hydra's `/job/P/J/JOB/latest`
// (NixOS/hydra Base/Controller/ListBuilds.pm `latest`: finished = 1, buildstatus = 0, highest id), `latest-for`
// with `--system`, and within one evaluation with `--eval` — with its outputs and products; one product's path,
// or a copy of its file in a directory, realised from the coordinator's store or, when not valid there, from
// hydra.conf's `store_uri` as a substituter.
//
// Product matching (`--product SPEC`), documented in README.md: SPEC is `TYPE`, `TYPE/SUBTYPE` or
// `TYPE/SUBTYPE/NAME`, each part compared exactly with BuildProducts' type, subtype and name (a `nix-support/
// hydra-build-products` line is `TYPE SUBTYPE PATH`, the name is the path's last component). `TYPE/SUBTYPE` is
// Hydra's `/build/ID/download-by-type/TYPE/SUBTYPE`; like Hydra, the first match by productnr is taken.
import {cp, mkdir, stat} from 'node:fs/promises';
import {basename, join} from 'node:path';
import type {Queryable} from '../db/queryable.js';
import {buildOutputs, buildProducts, getBuild, type BuildOutputRow, type BuildProduct, type BuildRow} from '../db/queries/builds.js';
import {jobsetId, latestSuccessful, type JobRef} from '../db/queries/job-history.js';
import {displayStoreUri, substitutePaths} from '../nix/dest-store.js';
import {isValidPath} from '../nix/store.js';
import {storeDir} from '../nix/store-path.js';
import {ActionError} from './errors.js';

export interface LatestResult {
  build: BuildRow;
  outputs: BuildOutputRow[];
  products: BuildProduct[];
}

/** `PROJECT/JOBSET/JOB` → its parts; anything else is a usage error naming the argument. */
export function parseJobRef(arg: string): JobRef {
  const parts = arg.split('/');
  if (parts.length !== 3 || parts.some((p) => p === '')) {
    throw new ActionError('usage', `bad job "${arg}": expected PROJECT/JOBSET/JOB (e.g. nixpkgs/trunk/hello.x86_64-linux)`);
  }
  return {project: parts[0]!, jobset: parts[1]!, job: parts[2]!};
}

export async function findLatest(db: Queryable, job: JobRef, o: {eval?: number | null; system?: string | null} = {}): Promise<LatestResult> {
  const name = `${job.project}/${job.jobset}/${job.job}`;
  if ((await jobsetId(db, job.project, job.jobset)) === null) throw new ActionError('not-found', `no jobset ${job.project}:${job.jobset}`);
  if (o.eval !== undefined && o.eval !== null) {
    const {rows} = await db.query<{jobset: string; project: string}>(
      'SELECT j.project, j.name AS jobset FROM JobsetEvals e JOIN Jobsets j ON j.id = e.jobset_id WHERE e.id = $1',
      [o.eval],
    );
    if (rows.length === 0) throw new ActionError('not-found', `no evaluation ${o.eval}`);
    if (rows[0]!.project !== job.project || rows[0]!.jobset !== job.jobset) {
      throw new ActionError('usage', `evaluation ${o.eval} belongs to ${rows[0]!.project}:${rows[0]!.jobset}, not ${job.project}:${job.jobset}`);
    }
  }
  const id = await latestSuccessful(db, job, o);
  if (id === null) {
    const scope = [o.system ? `for ${o.system}` : '', o.eval ? `in evaluation ${o.eval}` : ''].filter(Boolean).join(' ');
    throw new ActionError('not-found', `${name} has no successful build${scope ? ` ${scope}` : ''}`);
  }
  const build = (await getBuild(db, id))!;
  const [outputs, products] = await Promise.all([buildOutputs(db, id), buildProducts(db, id)]);
  return {build, outputs, products};
}

/** Parses `TYPE[/SUBTYPE[/NAME]]`. */
export function parseProductSpec(spec: string): {type: string; subtype?: string; name?: string} {
  const parts = spec.split('/');
  if (parts.length > 3 || parts.some((p) => p === '')) {
    throw new ActionError('usage', `bad --product "${spec}": expected TYPE, TYPE/SUBTYPE or TYPE/SUBTYPE/NAME (e.g. file/tarball)`);
  }
  return {type: parts[0]!, ...(parts[1] !== undefined ? {subtype: parts[1]} : {}), ...(parts[2] !== undefined ? {name: parts[2]} : {})};
}

/** The first product (by productnr) matching SPEC; not found lists what the build has. */
export function matchProduct(products: readonly BuildProduct[], spec: string, buildId: number): BuildProduct {
  const want = parseProductSpec(spec);
  const hit = [...products]
    .sort((a, b) => a.productnr - b.productnr)
    .find((p) => p.type === want.type && (want.subtype === undefined || p.subtype === want.subtype) && (want.name === undefined || p.name === want.name));
  if (!hit) {
    const has = products.map((p) => `${p.type}/${p.subtype}/${p.name}`).join(', ') || 'none';
    throw new ActionError('not-found', `build ${buildId} has no product ${spec} (its products: ${has})`);
  }
  return hit;
}

/** The store path a product lives in (`/nix/store/<hash>-name` of `/nix/store/<hash>-name/sub/file`). */
export function productStorePath(path: string): string {
  const dir = storeDir();
  if (!path.startsWith(dir + '/')) throw new ActionError('refused', `product path ${path} is not in the Nix store ${dir}`);
  const rest = path.slice(dir.length + 1);
  return `${dir}/${rest.split('/')[0]}`;
}

export interface DownloadResult {
  /** The file or directory written. */
  file: string;
  /** Where the store path came from. */
  source: 'local' | 'store_uri';
}

/**
 * Copies the product's file (or directory) into `dir` under its name, realising its store path first: valid in
 * the local store as it is, else substituted from `storeUri` (hydra.conf's store_uri, the farm's own binary cache,
 * so its signatures are not required).
 */
export async function downloadProduct(product: BuildProduct, dir: string, o: {storeUri: string; env?: Record<string, string>}): Promise<DownloadResult> {
  if (!product.path) throw new ActionError('refused', `product ${product.productnr} of build ${product.build} has no path`);
  const storePath = productStorePath(product.path);
  let source: DownloadResult['source'] = 'local';
  if (!(await isValidPath(storePath))) {
    if (!o.storeUri) {
      throw new ActionError('refused', `${storePath} is not valid in the local store, and hydra.conf sets no store_uri to fetch it from`);
    }
    const uri = displayStoreUri(o.storeUri);
    const r = await substitutePaths([storePath], {
      env: o.env,
      options: [
        ['substituters', uri],
        ['require-sigs', 'false'],
      ],
    });
    if (!(await isValidPath(storePath))) throw new ActionError('refused', `cannot fetch ${storePath} from store_uri ${uri}: ${r.message || 'not there'}`);
    source = 'store_uri';
  }
  let from = product.path;
  const st = await stat(from).catch(() => null);
  if (!st) throw new ActionError('refused', `product path ${from} does not exist in ${storePath}`);
  if (st.isDirectory() && product.defaultpath) from = join(from, product.defaultpath);
  await mkdir(dir, {recursive: true});
  const file = join(dir, basename(from));
  await cp(from, file, {recursive: true, force: true, errorOnExist: false, dereference: true});
  return {file, source};
}
