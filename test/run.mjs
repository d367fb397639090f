#!/usr/bin/env node
// Runs every test file under test/ with node's built-in runner and fails when none ran.
// Node 20 does not expand globs and a bare `node --test` silently finds nothing, so the
// file list is built here and the reported test count is checked.
import {existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, relative} from 'node:path';
import {spawn} from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'test');
const only = process.argv.slice(2);

function collect(dir) {
  const found = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) {
      if (name !== 'support' && name !== 'fixtures') found.push(...collect(full));
    } else if (/\.test\.tsx?$/.test(name)) {
      found.push(full);
    }
  }
  return found;
}

// The tests need root: their builders are sshd processes in private mount and PID namespaces. A plain user's
// `npm test` runs this script again through sudo (asking for the password on the terminal when sudo needs one).
if (process.getuid?.() !== 0) {
  const sudo = ['/usr/bin/sudo', '/bin/sudo'].find((p) => existsSync(p));
  if (!sudo) {
    console.error('test/run.mjs: the tests need root (their builders are sshd processes in private mount and PID namespaces), and sudo is not installed: run `npm test` as root');
    process.exit(1);
  }
  console.error('test/run.mjs: the tests need root (their builders are sshd processes in private mount and PID namespaces); running them through sudo');
  const keep = Object.entries(process.env).filter(([k]) => /^(HYDRA_OPS_TEST_|TERM$|LANG$|LC_)/.test(k)).map(([k, v]) => `${k}=${v}`);
  const again = spawn(sudo, ['--', 'env', ...keep, process.execPath, new URL(import.meta.url).pathname, ...process.argv.slice(2)], {stdio: 'inherit'});
  again.on('close', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  runAll();
}

function runAll() {
  let files = collect(testDir);
  if (only.length > 0) files = files.filter((f) => only.some((o) => f.includes(o)));
  if (files.length === 0) {
    console.error('test/run.mjs: no test files found under test/');
    process.exit(1);
  }
  console.error(`running ${files.length} test files: ${files.map((f) => relative(root, f)).join(' ')}`);

  // The coordinator's Nix configuration for the tests, stated here instead of taken from the machine: no build
  // users (tests run several builds at once as root; the test builders bring their own build users), no sandbox
  // (the fixtures' builder is the host's /bin/sh) and no binary caches (offline and fast). Nix reads only this
  // file, whatever /etc/nix holds.
  const nixConfDir = mkdtempSync(join(tmpdir(), 'hydra-ops-test-nix-conf-'));
  writeFileSync(join(nixConfDir, 'nix.conf'), 'build-users-group =\nsandbox = false\nsubstituters =\n');
  process.on('exit', () => rmSync(nixConfDir, {recursive: true, force: true}));

  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-concurrency=1', ...files],
    {cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: {...process.env, HYDRA_OPS_UNDER_TEST: '1', NIX_CONF_DIR: nixConfDir, NIX_USER_CONF_FILES: ''}},
  );
  let tail = '';
  child.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    tail = (tail + chunk.toString()).slice(-4096);
  });
  child.on('close', (code) => {
    const tests = Number(/^# tests (\d+)/m.exec(tail)?.[1] ?? 0);
    if (tests === 0) {
      console.error('test/run.mjs: the runner reported zero tests — failing');
      process.exit(1);
    }
    process.exit(code ?? 1);
  });
}
