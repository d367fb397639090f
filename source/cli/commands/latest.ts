// `hydra-ops latest PROJECT/JOBSET/JOB [--eval ID] [--system SYSTEM] [--product SPEC [--download DIR]]`: the latest
// successful build of a job (Hydra's /job/…/latest), its outputs and products; one product's path, or its file
// copied into DIR. Exit 3 when the job has no successful build (or the jobset, evaluation or product is unknown).
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {usageError} from '../exit-codes.js';
import {formatDuration, printJson} from '../output.js';
import {parseId, runAction} from '../acting.js';
import {downloadProduct, findLatest, matchProduct, parseJobRef} from '../../actions/latest.js';
import {formatBytes} from '../../actions/ping.js';

interface LatestOptions {
  eval?: string;
  system?: string;
  product?: string;
  download?: string;
}

export function registerLatestCommand(program: Command, ctx: AppContext): void {
  program
    .command('latest <job>')
    .description('the latest successful build of PROJECT/JOBSET/JOB (as Hydra\'s /job/…/latest): its outputs and products')
    .option('--eval <id>', 'the latest successful build within this evaluation')
    .option('--system <system>', 'only builds for this platform (Hydra\'s latest-for)')
    .option('--product <spec>', 'print the path of the first product matching TYPE[/SUBTYPE[/NAME]] (e.g. file/tarball)')
    .option('--download <dir>', 'with --product: copy the product\'s file into DIR (fetched from store_uri when not in the local store)')
    .addHelpText(
      'after',
      `
Products are matched on BuildProducts' type, subtype and name, each part exactly; TYPE/SUBTYPE is Hydra's
/build/ID/download-by-type/TYPE/SUBTYPE. The first match by product number is taken.

Examples:
  hydra-ops latest nixpkgs/trunk/hello.x86_64-linux
  hydra-ops latest myproject/main/release --product file/tarball
  hydra-ops latest myproject/main/release --product file/tarball --download /srv/releases
  hydra-ops latest myproject/main/release --eval 4711 --system aarch64-linux --json

Exit code 3 when the job has no successful build (or the jobset, evaluation or product does not exist).
`,
    )
    .action(async (jobArg: string, opts: LatestOptions) => {
      const job = await runAction(async () => parseJobRef(jobArg));
      const evalId = opts.eval !== undefined ? parseId(opts.eval, 'evaluation id') : null;
      if (opts.download !== undefined && opts.product === undefined) throw usageError('latest: --download needs --product TYPE[/SUBTYPE[/NAME]] (which product to copy)');
      if (opts.system !== undefined && !/^[A-Za-z0-9_.+-]+$/.test(opts.system)) throw usageError(`latest: bad --system "${opts.system}"`);
      const {pool} = await ctx.database();
      const found = await runAction(() => findLatest(pool, job, {eval: evalId, system: opts.system ?? null}));
      const product = opts.product !== undefined ? await runAction(async () => matchProduct(found.products, opts.product!, found.build.id)) : null;
      let download: {file: string; source: string} | null = null;
      if (product && opts.download !== undefined) {
        const storeUri = ctx.config().hydraConf?.parsed.runner.storeUri ?? '';
        download = await runAction(() => downloadProduct(product, opts.download!, {storeUri}));
      }
      if (ctx.json) {
        printJson({build: found.build, outputs: found.outputs, products: found.products, product, download});
        return;
      }
      if (download) {
        process.stderr.write(`build ${found.build.id}: product ${product!.productnr} ${product!.type}/${product!.subtype} ${product!.name}${download.source === 'store_uri' ? ' (fetched from store_uri)' : ''}\n`);
        process.stdout.write(`${download.file}\n`);
        return;
      }
      if (product) {
        process.stdout.write(`${product.path ?? '-'}\n`);
        return;
      }
      const b = found.build;
      const ago = b.stoptime ? ` · finished ${formatDuration(Math.floor(Date.now() / 1000) - b.stoptime)} ago` : '';
      const lines = [
        `build ${b.id}  ${b.project}:${b.jobset}  ${b.job}  (${b.system})${ago}`,
        ...found.outputs.map((o) => `output ${o.name}: ${o.path ?? '-'}`),
        ...found.products.map((p) => `product ${p.productnr} ${p.type}/${p.subtype}/${p.name}: ${p.path ?? '-'}${p.filesize !== null ? ` (${formatBytes(p.filesize)})` : ''}`),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
}
