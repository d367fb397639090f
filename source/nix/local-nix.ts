// Can this machine build with its own Nix, and with which settings? A coordinator that builds on `localhost`
// meets the same Nix configuration a fresh installation has: Debian's nix-bin defaults to the build-users group
// `nixbld` (which it does not create), the sandbox on, and no `/bin/sh` inside it; a plain user meets a store
// owned by root and, unless nix-setup-systemd is installed, no nix-daemon. Nix's own errors for these ("the group
// 'nixbld' specified in 'build-users-group' does not exist", "executing '/bin/sh': No such file or directory",
// "could not set permissions on '/nix/var/nix/profiles/per-user'") name a symptom, not the fix. This module
// gathers the facts once (`localNixFacts`) and decides (`planLocalNix`, pure): the extra `--option`s local builds
// need, the notices an operator should read, and — when nothing can build here — why, and the commands that fix it.
import {execFile} from 'node:child_process';
import {accessSync, constants, existsSync, statSync} from 'node:fs';
import {connect} from 'node:net';
import {userInfo} from 'node:os';
import {dirname, join} from 'node:path';
import {promisify} from 'node:util';
import {findStaticShell} from './static-shell.js';

const execFileAsync = promisify(execFile);

export interface LocalNixFacts {
  uid: number;
  user: string;
  /** Nix is installed (`nix` answered `show-config`). */
  installed: boolean;
  buildUsersGroup: string;
  /** 'true', 'false' or 'relaxed'. */
  sandbox: string;
  sandboxPaths: string[];
  /** Nix's state directory (/nix/var/nix) can be written by this user: the store is "ours". */
  storeWritable: boolean;
  /** A nix-daemon answers on its socket. */
  daemon: boolean;
  /** The build-users group, when one is configured: whether it exists and how many members it has. */
  buildGroup: {exists: boolean; members: number} | null;
  /** A statically linked shell usable as the sandbox's /bin/sh, or null. */
  staticShell: string | null;
  stateDir: string;
  storeDir: string;
}

export interface LocalNixProblem {
  summary: string;
  /** Commands or steps that fix it, most likely first. */
  fixes: string[];
}

export interface LocalNixPlan {
  /** How local builds run: in our own store, through the nix-daemon, or not at all. */
  mode: 'local' | 'daemon' | 'none';
  /** Extra arguments (`--option NAME VALUE` …) for local `nix-store --serve` processes. */
  options: string[];
  /** One line each: settings hydra-ops chose for local builds, and why. */
  notices: string[];
  /** Set when nothing can build on this machine. */
  problem: LocalNixProblem | null;
}

export interface PlanOptions {
  /**
   * True for the implicit `localhost` machine (no machines file: the demo, a zero-configuration start). Only then
   * may hydra-ops turn the sandbox off when it cannot give it a /bin/sh; a configured machine keeps its sandbox.
   */
  implicit: boolean;
}

function hasSandboxShell(paths: readonly string[]): boolean {
  return paths.some((p) => p === '/bin/sh' || p.startsWith('/bin/sh=') || p.startsWith('/bin/sh?') || p === '/bin');
}

/** The decision, from the facts alone. */
export function planLocalNix(f: LocalNixFacts, o: PlanOptions): LocalNixPlan {
  if (!f.installed) {
    return {
      mode: 'none',
      options: [],
      notices: [],
      problem: {summary: 'Nix is not installed on this machine (nix is not on PATH)', fixes: ['apt-get install nix-bin (Debian/Ubuntu)', 'elsewhere: the Nix installer, https://nixos.org/download']},
    };
  }
  if (!f.storeWritable) {
    if (f.daemon) {
      const options: string[] = [];
      const notices = [`local builds go through the nix-daemon (the store ${f.storeDir} belongs to another user)`];
      // The daemon builds with its own sandbox settings; a trusted user's --option reaches it, an untrusted one's is
      // ignored by the daemon (Nix then warns "ignoring the client-specified setting"), hence the hint.
      sandboxShell(f, o, options, notices, ` (the daemon takes it from trusted users only: add "trusted-users = root ${f.user}" to /etc/nix/nix.conf)`);
      return {mode: 'daemon', options, notices, problem: null};
    }
    return {
      mode: 'none',
      options: [],
      notices: [],
      problem: {
        summary:
          `user ${f.user} cannot write the Nix store ${f.storeDir} (${dirname(f.stateDir)} belongs to another user) and no nix-daemon ` +
          `answers on ${join(f.stateDir, 'daemon-socket', 'socket')}, so nothing can be evaluated or built on this machine`,
        fixes: [
          'as root: apt-get install nix-setup-systemd (starts nix-daemon; builds then go through it)',
          `as root: add "trusted-users = root ${f.user}" to /etc/nix/nix.conf and restart nix-daemon (needed to build and import for Hydra)`,
          'or run hydra-ops as the owner of the store (root), or point it at remote builders with a machines file (NIX_REMOTE_SYSTEMS)',
        ],
      },
    };
  }
  const options: string[] = [];
  const notices: string[] = [];
  // Nix uses build users only when it runs as root.
  if (f.uid === 0 && f.buildUsersGroup !== '' && f.buildGroup) {
    if (!f.buildGroup.exists || f.buildGroup.members === 0) {
      options.push('--option', 'build-users-group', '');
      notices.push(
        `building single-user as root on localhost: the build-users group '${f.buildUsersGroup}' ${f.buildGroup.exists ? 'has no members' : 'does not exist'} ` +
          `(for build users: groupadd -r ${f.buildUsersGroup}; then useradd -r -g ${f.buildUsersGroup} -G ${f.buildUsersGroup} -M -N -s /usr/sbin/nologin ${f.buildUsersGroup}1, … ${f.buildUsersGroup}N)`,
      );
    }
  }
  sandboxShell(f, o, options, notices, '');
  return {mode: 'local', options, notices, problem: null};
}

/** A sandbox without /bin/sh: map a static shell there, or (implicit localhost only) turn the sandbox off. */
function sandboxShell(f: LocalNixFacts, o: PlanOptions, options: string[], notices: string[], trustHint: string): void {
  if (f.sandbox === 'false' || hasSandboxShell(f.sandboxPaths)) return;
  if (f.staticShell) {
    options.push('--option', 'extra-sandbox-paths', `/bin/sh=${f.staticShell}`);
    notices.push(`the sandbox has no /bin/sh: local builds get ${f.staticShell} (statically linked) as /bin/sh, as NixOS's Nix does${trustHint}`);
  } else if (o.implicit) {
    options.push('--option', 'sandbox', 'false');
    notices.push(`local builds run without the sandbox: it has no /bin/sh and no static shell was found (apt-get install busybox-static turns it back on)${trustHint}`);
  } else {
    notices.push('the sandbox has no /bin/sh: derivations whose builder is /bin/sh fail on localhost (apt-get install busybox-static, or set sandbox-paths)');
  }
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The state directory is writable, or does not exist yet and would be created by this user. */
function stateWritable(stateDir: string): boolean {
  let dir = stateDir;
  for (;;) {
    if (existsSync(dir)) return statSync(dir).isDirectory() && writable(dir);
    const up = dirname(dir);
    if (up === dir) return false;
    dir = up;
  }
}

function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function groupInfo(name: string): Promise<{exists: boolean; members: number}> {
  try {
    const {stdout} = await execFileAsync('getent', ['group', name]);
    const members = (stdout.trim().split(':')[3] ?? '').split(',').filter((m) => m !== '');
    return {exists: true, members: members.length};
  } catch {
    return {exists: false, members: 0};
  }
}

const settingText = (v: unknown): string => (Array.isArray(v) ? v.join(' ') : v === undefined || v === null ? '' : String(v));

/** Gathers the facts: Nix's effective settings for this user and environment, the store's owner, the daemon. */
export async function localNixFacts(env: NodeJS.ProcessEnv = process.env): Promise<LocalNixFacts> {
  const stateDir = env.NIX_STATE_DIR || '/nix/var/nix';
  const storeDir = env.NIX_STORE_DIR || '/nix/store';
  const facts: LocalNixFacts = {
    uid: process.getuid?.() ?? -1,
    user: userInfo().username,
    installed: false,
    buildUsersGroup: '',
    sandbox: 'false',
    sandboxPaths: [],
    storeWritable: stateWritable(stateDir),
    daemon: false,
    buildGroup: null,
    staticShell: findStaticShell(),
    stateDir,
    storeDir,
  };
  try {
    const {stdout} = await execFileAsync('nix', ['show-config', '--json', '--extra-experimental-features', 'nix-command'], {env, maxBuffer: 16 << 20});
    const json = JSON.parse(stdout) as Record<string, {value: unknown}>;
    facts.installed = true;
    facts.buildUsersGroup = settingText(json['build-users-group']?.value).trim();
    facts.sandbox = settingText(json.sandbox?.value) || 'false';
    const paths = json['sandbox-paths']?.value;
    facts.sandboxPaths = Array.isArray(paths) ? paths.map(String) : settingText(paths).split(/\s+/).filter((p) => p !== '');
  } catch {
    return facts;
  }
  const remote = env.NIX_REMOTE ?? '';
  facts.daemon = (remote === '' || remote === 'daemon' || remote === 'auto') && (await socketAnswers(join(stateDir, 'daemon-socket', 'socket')));
  if (remote === 'daemon') facts.storeWritable = false;
  if (facts.buildUsersGroup !== '') facts.buildGroup = await groupInfo(facts.buildUsersGroup);
  return facts;
}

/** Facts and plan in one call. */
export async function diagnoseLocalNix(env: NodeJS.ProcessEnv = process.env, o: PlanOptions = {implicit: false}): Promise<LocalNixPlan & {facts: LocalNixFacts}> {
  const facts = await localNixFacts(env);
  return {...planLocalNix(facts, o), facts};
}

/** The problem as text an operator reads: the summary, then each fix on its own line. */
export function describeLocalNixProblem(p: LocalNixProblem): string {
  return [p.summary, ...p.fixes.map((f) => `  fix: ${f}`)].join('\n');
}
