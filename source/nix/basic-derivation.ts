// The BasicDerivation sent with the serve protocol's BuildDerivation (NixOS/nix src/libstore/derivations.hh,
// BasicDerivation): a derivation whose input derivations are replaced by their output paths, and the resolvers that
// find those paths from the inputs' `.drv` files.
import {compareBytes, readDrv, type Derivation} from './drv-aterm.js';


export interface BasicDerivationOutput {
  name: string;
  path: string;
  hashAlgo: string;
  hash: string;
}

/** The derivation with input derivations replaced by their output paths (BuildDerivation's payload). */
export interface BasicDerivation {
  /** Sorted by name. */
  outputs: BasicDerivationOutput[];
  /** Sorted, deduplicated. */
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  /** Sorted by key. */
  env: [string, string][];
}

/** Output paths of the named outputs of an input derivation. */
export type InputOutputResolver = (drvPath: string, outputNames: readonly string[]) => string[] | Promise<string[]>;

export async function toBasicDerivation(drv: Derivation, resolveInputOutputs: InputOutputResolver): Promise<BasicDerivation> {
  const outputs = [...drv.outputs.entries()]
    .sort((a, b) => compareBytes(a[0], b[0]))
    .map(([name, o]) => ({name, path: o.path, hashAlgo: o.hashAlgo, hash: o.hash}));
  const srcs = new Set(drv.inputSrcs);
  const resolved = await Promise.all(
    [...drv.inputDrvs.entries()].map(([p, names]) => Promise.resolve(resolveInputOutputs(p, names))),
  );
  for (const paths of resolved) for (const p of paths) srcs.add(p);
  const env = [...drv.env.entries()].sort((a, b) => compareBytes(a[0], b[0]));
  return {
    outputs,
    inputSrcs: [...srcs].sort(compareBytes),
    platform: drv.platform,
    builder: drv.builder,
    args: [...drv.args],
    env,
  };
}

/** Error resolving an input derivation's outputs. */
export class InputResolutionError extends Error {
  constructor(
    readonly drvPath: string,
    readonly outputName: string,
    detail: string,
  ) {
    super(`input derivation ${drvPath}: output '${outputName}' ${detail}`);
    this.name = 'InputResolutionError';
  }
}

/** The resolver returned by resolveFromDrvFiles; `cache` holds the parsed input derivations. */
export type DrvFileResolver = ((drvPath: string, outputNames: readonly string[]) => Promise<string[]>) & {
  cache: Map<string, Promise<Derivation>>;
};

/**
 * A resolver for input-addressed inputs: reads each input's `.drv` (through `read`, default readDrv) and returns
 * the paths of the wanted outputs. Parsed derivations are kept in a bounded cache (most recently used kept).
 * Outputs without a static path (content-addressed) are an InputResolutionError: those come from realisations.
 */
export function resolveFromDrvFiles(
  options: {cacheSize?: number; read?: (drvPath: string) => Promise<Derivation>} = {},
): DrvFileResolver {
  const cacheSize = options.cacheSize ?? 2000;
  const read = options.read ?? readDrv;
  const cache = new Map<string, Promise<Derivation>>();
  const load = (drvPath: string): Promise<Derivation> => {
    let entry = cache.get(drvPath);
    if (entry !== undefined) {
      cache.delete(drvPath);
      cache.set(drvPath, entry);
      return entry;
    }
    entry = read(drvPath);
    entry.catch(() => cache.delete(drvPath));
    cache.set(drvPath, entry);
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
    return entry;
  };
  const resolver = async (drvPath: string, outputNames: readonly string[]): Promise<string[]> => {
    const input = await load(drvPath);
    return outputNames.map((name) => {
      const o = input.outputs.get(name);
      if (o === undefined) throw new InputResolutionError(drvPath, name, 'does not exist');
      if (o.path === '') throw new InputResolutionError(drvPath, name, 'has no statically known path (content-addressed)');
      return o.path;
    });
  };
  return Object.assign(resolver, {cache});
}
