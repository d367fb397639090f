// The attributes of a store derivation that the step graph and the builders need: structured attributes (`__json`),
// requiredSystemFeatures, preferLocalBuild, the determinism check's inputs, the system type, and the output paths.
// A wrong type is a DrvAttributeError naming the file and the attribute.
import {compareBytes, type Derivation} from './drv-aterm.js';

/** A derivation attribute with the wrong type (e.g. `requiredSystemFeatures` that is not a list of strings). */
export class DrvAttributeError extends Error {
  constructor(
    readonly file: string | undefined,
    readonly attribute: string,
    detail: string,
  ) {
    super(`${file ?? 'derivation'}: attribute '${attribute}' ${detail}`);
    this.name = 'DrvAttributeError';
  }
}


const structuredCache = new WeakMap<Derivation, Record<string, unknown> | null>();

/** The parsed `__json` structured attributes, or null when the derivation has none. */
export function structuredAttrs(drv: Derivation): Record<string, unknown> | null {
  const cached = structuredCache.get(drv);
  if (cached !== undefined) return cached;
  const raw = drv.env.get('__json');
  let parsed: Record<string, unknown> | null = null;
  if (raw !== undefined) {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw new DrvAttributeError(drv.path, '__json', `is not valid JSON: ${(e as Error).message}`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new DrvAttributeError(drv.path, '__json', 'must be a JSON object');
    }
    parsed = value as Record<string, unknown>;
  }
  structuredCache.set(drv, parsed);
  return parsed;
}

function stringsAttr(drv: Derivation, name: string): string[] | undefined {
  const sa = structuredAttrs(drv);
  if (sa) {
    if (!Object.hasOwn(sa, name)) return undefined;
    const v = sa[name];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      throw new DrvAttributeError(drv.path, name, 'must be a list of strings');
    }
    return v as string[];
  }
  const v = drv.env.get(name);
  if (v === undefined) return undefined;
  return v.split(/[ \t\n\r]+/).filter((x) => x.length > 0);
}

function boolAttr(drv: Derivation, name: string, def: boolean): boolean {
  const sa = structuredAttrs(drv);
  if (sa) {
    if (!Object.hasOwn(sa, name)) return def;
    const v = sa[name];
    if (typeof v !== 'boolean') throw new DrvAttributeError(drv.path, name, 'must be a Boolean');
    return v;
  }
  const v = drv.env.get(name);
  return v === undefined ? def : v === '1';
}

/** True when some output has no statically known path (floating content-addressed, deferred or impure). */
export function hasUnknownOutputPaths(drv: Derivation): boolean {
  for (const o of drv.outputs.values()) if (o.path === '') return true;
  return false;
}

/**
 * Required system features, sorted and deduplicated: `requiredSystemFeatures` from the structured attributes or
 * the whitespace-separated env variable, plus `ca-derivations` when an output path is not statically known.
 */
export function requiredSystemFeatures(drv: Derivation): string[] {
  const set = new Set(stringsAttr(drv, 'requiredSystemFeatures') ?? []);
  if (hasUnknownOutputPaths(drv)) set.add('ca-derivations');
  return [...set].sort(compareBytes);
}

/** Whether the derivation asks to be built locally (`preferLocalBuild`). Host capability is the caller's check. */
export function preferLocalBuild(drv: Derivation): boolean {
  return boolAttr(drv, 'preferLocalBuild', false);
}

/** Env `isDetermistic` (sic) equals "1". */
export function isDeterministic(drv: Derivation): boolean {
  return drv.env.get('isDetermistic') === '1';
}

/**
 * The per-type key: platform, plus `:` and the sorted, comma-joined feature set (with `local` when preferLocal)
 * if there are any features, e.g. `x86_64-linux:big-parallel,kvm`.
 */
export function systemType(drv: Derivation, features: readonly string[], preferLocal: boolean): string {
  const set = new Set(features);
  if (preferLocal) set.add('local');
  if (set.size === 0) return drv.platform;
  return `${drv.platform}:${[...set].sort(compareBytes).join(',')}`;
}

/** Statically known output paths, in output-name order. */
export function outputPaths(drv: Derivation): string[] {
  return [...drv.outputs.keys()]
    .sort(compareBytes)
    .map((n) => drv.outputs.get(n)!.path)
    .filter((p) => p !== '');
}

/** Output name → path (null when not statically known), in output-name order. */
export function outputPathMap(drv: Derivation): Map<string, string | null> {
  const res = new Map<string, string | null>();
  for (const n of [...drv.outputs.keys()].sort(compareBytes)) res.set(n, drv.outputs.get(n)!.path || null);
  return res;
}
