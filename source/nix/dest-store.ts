// The destination store of hydra.conf's `store_uri` and the substituters of `use-substitutes`, through Nix itself:
// `nix copy --to <store_uri>` publishes a closure (binary caches such as file:// and s3:// with their `?secret-key=`,
// `?compression=` parameters; `ssh://` goes through `nix-store --serve --write` on the other side),
// `nix store copy-log` puts a build log at `log/<drv basename>` of a binary cache (Hydra's
// `BinaryCacheStore::upsertFile("log/…")` in src/hydra-queue-runner/builder.cc), and `nix-store --realise` of output
// paths substitutes them from the configured substituters (Hydra's `localStore->ensurePath` in queue-monitor.cc).
// Nix 2.8 needs `nix-command` for the `nix` subcommands; it is enabled per call, never in nix.conf.
import {execa} from 'execa';
import {mkdtemp, mkdir, copyFile, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {basename, join} from 'node:path';
import {storeDir} from './store-path.js';
import {chunks} from './store.js';

const NIX_COMMAND = ['--extra-experimental-features', 'nix-command'];

/** A store URI without its query (parameters such as `secret-key=` name files an error message need not show). */
export function displayStoreUri(uri: string): string {
  const q = uri.indexOf('?');
  return q < 0 ? uri : uri.slice(0, q);
}

/** The URI's scheme (`file`, `s3`, `ssh`, `ssh-ng`, `https`, …), or '' for a bare word such as `local`/`daemon`. */
export function storeUriScheme(uri: string): string {
  return /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1]?.toLowerCase() ?? '';
}

/** Nix's binary cache stores (the only ones `upload_logs_to_binary_cache` applies to, as in Hydra). */
export function isBinaryCacheUri(uri: string): boolean {
  return ['file', 's3', 'http', 'https'].includes(storeUriScheme(uri));
}

export class DestStoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DestStoreError';
  }
}

export interface NixCallOptions {
  /** Extra environment (e.g. NIX_SSHOPTS for an ssh:// destination). */
  env?: Record<string, string>;
  /** `--option name value` pairs (e.g. substituters and trusted-public-keys for substitution). */
  options?: ReadonlyArray<readonly [string, string]>;
  signal?: AbortSignal;
}

function optionArgs(o: NixCallOptions): string[] {
  return (o.options ?? []).flatMap(([k, v]) => ['--option', k, v]);
}

function lastLines(text: string, n = 6): string {
  const lines = text.split('\n').map((l) => l.trimEnd()).filter((l) => l !== '' && !/^warning: .*experimental/i.test(l));
  return lines.slice(-n).join('; ') || 'no message';
}

async function run(cmd: string, args: string[], o: NixCallOptions): Promise<{ok: boolean; stdout: string; stderr: string; exitCode?: number}> {
  const r = await execa(cmd, args, {
    reject: false,
    stdin: 'ignore',
    env: {...o.env},
    ...(o.signal ? {cancelSignal: o.signal} : {}),
  });
  return {ok: !r.failed, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? r.message ?? ''), exitCode: r.exitCode};
}

/**
 * Copies `paths` and their closure from the local store to `uri` (`nix copy` skips what the destination has).
 * `checkSigs: false` is Nix's NoCheckSigs: a destination that requires signatures accepts unsigned paths (only
 * stores that check signatures at all, such as a local store with `require-sigs`, tell the difference; binary
 * caches never check). Throws DestStoreError with Nix's message.
 */
export async function copyClosureTo(uri: string, paths: readonly string[], o: NixCallOptions & {checkSigs: boolean}): Promise<void> {
  // In chunks like the other store calls: a wide graph level would not fit on one command line.
  for (const chunk of chunks([...new Set(paths)])) {
    const r = await run('nix', [...NIX_COMMAND, 'copy', ...(o.checkSigs ? [] : ['--no-check-sigs']), ...optionArgs(o), '--to', uri, ...chunk], o);
    if (!r.ok) {
      throw new DestStoreError(`cannot copy ${chunk.length} output(s) to the destination store ${displayStoreUri(uri)}: ${lastLines(r.stderr)}`);
    }
  }
}

/**
 * The subset of `paths` the store `uri` lacks (Hydra's getMissingRemotePaths, queue-monitor.cc): one
 * `nix-store --store <uri> --check-validity --print-invalid` per chunk of paths. Throws DestStoreError when the
 * store cannot be asked.
 */
export async function missingPathsIn(uri: string, paths: readonly string[], o: NixCallOptions = {}): Promise<Set<string>> {
  const missing = new Set<string>();
  for (const chunk of chunks([...new Set(paths)])) {
    const r = await run('nix-store', ['--store', uri, ...optionArgs(o), '--check-validity', '--print-invalid', ...chunk], o);
    if (!r.ok) throw new DestStoreError(`cannot query the destination store ${displayStoreUri(uri)}: ${lastLines(r.stderr)}`);
    for (const line of r.stdout.split('\n')) if (line !== '') missing.add(line);
  }
  return missing;
}

/** Uploads a build log as `log/<drv basename>` of the binary cache `uri` (Hydra's layout). */
export async function uploadBuildLog(uri: string, drvPath: string, logFile: string, o: NixCallOptions = {}): Promise<void> {
  // `nix store copy-log` copies from one store to another: the source is a scratch binary cache holding only the log.
  const scratch = await mkdtemp(join(tmpdir(), 'hydra-ops-log-upload-'));
  try {
    await writeFile(join(scratch, 'nix-cache-info'), `StoreDir: ${storeDir()}\n`);
    await mkdir(join(scratch, 'log'));
    await copyFile(logFile, join(scratch, 'log', basename(drvPath)));
    const r = await run('nix', [...NIX_COMMAND, 'store', 'copy-log', ...optionArgs(o), '--from', `file://${scratch}`, '--to', uri, drvPath], o);
    if (!r.ok) throw new DestStoreError(`cannot upload the log of ${drvPath} to ${displayStoreUri(uri)}: ${lastLines(r.stderr)}`);
  } finally {
    await rm(scratch, {recursive: true, force: true});
  }
}

/**
 * Substitutes output paths into the local store from the configured substituters (never builds: the arguments are
 * outputs, not derivations). Best effort with --keep-going: the caller re-checks which paths are valid now. One
 * `nix-store --realise` per chunk of paths, like the other store queries, so a large graph level cannot overflow
 * the command line.
 */
export async function substitutePaths(paths: readonly string[], o: NixCallOptions = {}): Promise<{ok: boolean; message: string}> {
  let ok = true;
  let message = '';
  for (const chunk of chunks([...new Set(paths)])) {
    if (o.signal?.aborted) return {ok: false, message: 'aborted'};
    const r = await run('nix-store', ['--realise', '--keep-going', '--max-jobs', '0', ...optionArgs(o), ...chunk], o);
    if (!r.ok) {
      ok = false;
      message = lastLines(r.stderr);
    }
  }
  return {ok, message};
}
