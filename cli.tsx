#!/usr/bin/env node
// `--version` alone is answered before anything else is loaded (the command line's modules cost more than node's
// own start-up); everything else goes through main.
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const {VERSION} = await import('./source/cli/version.js');
  process.stdout.write(`${VERSION}\n`);
} else {
  // Node ≥ 21 defines `navigator`; on Node 20 the PostgreSQL driver's runtime probe (pg/lib/stream.js) falls back to
  // constructing a fetch Response, which loads undici (about 10 % of a short command's time). Define what Node 21 has.
  if (!('navigator' in globalThis)) {
    Object.defineProperty(globalThis, 'navigator', {value: {userAgent: `Node.js/${process.versions.node.split('.')[0]}`}, configurable: true, writable: true});
  }
  const {main} = await import('./source/cli/main.js');
  main(args).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(`hydra-ops: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = 1;
    },
  );
}
