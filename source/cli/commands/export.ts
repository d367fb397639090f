// `hydra-ops export BUILD|--eval EVAL [--closure runtime|build|cached] --to DIR [--gc]`: a closure into a
// `file://` binary cache directory, incrementally; `--gc` removes what no exported set refers to any more.
import {Option, type Command} from 'commander';
import type {AppContext} from '../context.js';
import {usageError} from '../exit-codes.js';
import {printJson} from '../output.js';
import {parseId, runAction} from '../acting.js';
import {CLOSURE_KINDS, exportClosure, type ClosureKind} from '../../actions/export.js';
import {BinaryCacheError, forgetSet, gcBinaryCache, withCacheLock, type CacheCompression} from '../../nix/binary-cache.js';
import {formatBytes} from '../../actions/ping.js';

interface ExportOptions {
  eval?: string;
  closure: ClosureKind;
  to?: string;
  compression: CacheCompression;
  name?: string;
  forget?: string;
  gc?: boolean;
  dryRun?: boolean;
}

async function cacheErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof BinaryCacheError) throw usageError(e.message);
    throw e;
  }
}

export function registerExportCommand(program: Command, ctx: AppContext): void {
  program
    .command('export [build]')
    .description("write a build's (or an evaluation's) closure into a file:// binary cache directory (narinfo + compressed NARs), skipping what is there")
    .option('--eval <id>', 'every build of this evaluation')
    .addOption(new Option('--closure <kind>', 'runtime: outputs and their references; build: the .drv closure; cached: both, with every output present').choices([...CLOSURE_KINDS]).default('runtime'))
    .requiredOption('--to <dir>', 'the binary cache directory (created when missing)')
    .addOption(new Option('--compression <method>', 'NAR compression').choices(['xz', 'bzip2', 'none']).default('xz'))
    .option('--name <set>', 'name of the exported set recorded in DIR/sets (default build-ID-CLOSURE or eval-ID-CLOSURE)')
    .option('--forget <set>', 'drop a recorded set (its files go at the next --gc)')
    .option('--gc', 'remove narinfos and NARs that no recorded set refers to (after exporting, if something is exported)')
    .option('--dry-run', 'with --gc: list what would be removed')
    .addHelpText(
      'after',
      `
Use the directory as a substituter elsewhere:
  nix-store --realise PATH --option substituters file://DIR --option require-sigs false
  nix copy --extra-experimental-features nix-command --from file://DIR PATH --option require-sigs false

Examples:
  hydra-ops export 1234 --to /backup/cache
  hydra-ops export --eval 567 --closure cached --to /backup/cache
  hydra-ops export --to /backup/cache --forget build-1234-runtime --gc
`,
    )
    .action(async (buildArg: string | undefined, opts: ExportOptions) => {
      const dir = opts.to!;
      if (buildArg !== undefined && opts.eval !== undefined) throw usageError('export: give a BUILD or --eval EVAL, not both');
      const what = buildArg !== undefined ? {build: parseId(buildArg, 'build id')} : opts.eval !== undefined ? {eval: parseId(opts.eval, 'evaluation id')} : null;
      if (!what && !opts.gc && !opts.forget) throw usageError('export: give a BUILD, --eval EVAL, --forget SET or --gc');
      const out: Record<string, unknown> = {dir};
      if (what) {
        const db = (await ctx.database()).pool;
        const r = await runAction(() =>
          cacheErrors(() =>
            exportClosure(db, what, {
              dir,
              closure: opts.closure,
              compression: opts.compression,
              setName: opts.name,
              onPath: (p, written) => {
                if (written && !ctx.json) process.stderr.write(`exported ${p}\n`);
              },
            }),
          ),
        );
        out.export = {set: r.set, closure: r.closure, paths: r.paths, written: r.written.length, skipped: r.skipped.length, narBytes: r.narBytes, fileBytes: r.fileBytes, writtenPaths: r.written};
        if (!ctx.json) process.stdout.write(`${r.set}: ${r.paths} paths, ${r.written.length} written (${formatBytes(r.fileBytes)} compressed), ${r.skipped.length} already in ${dir}\n`);
      }
      if (opts.forget) {
        const dropped = await cacheErrors(() => withCacheLock(dir, () => forgetSet(dir, opts.forget!)));
        if (!dropped) throw usageError(`export --forget: no set "${opts.forget}" in ${dir}/sets`);
        out.forgotten = opts.forget;
        if (!ctx.json) process.stdout.write(`forgot set ${opts.forget}\n`);
      }
      if (opts.gc) {
        const g = await cacheErrors(() => withCacheLock(dir, () => gcBinaryCache(dir, {dryRun: opts.dryRun === true})));
        out.gc = {...g, dryRun: opts.dryRun === true};
        if (!ctx.json) {
          for (const f of g.removed) process.stdout.write(`${opts.dryRun ? 'would remove' : 'removed'} ${f}\n`);
          process.stdout.write(`gc: ${g.removed.length} file(s) ${opts.dryRun ? 'to remove' : 'removed'} (${formatBytes(g.freedBytes)}), ${g.keptPaths} store paths kept\n`);
        }
      }
      if (ctx.json) printJson(out);
    });
}
