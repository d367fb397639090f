#!/usr/bin/env node
import {main} from './source/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`hydra-ops: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
