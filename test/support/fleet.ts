// A fleet of real SSH build machines on loopback for tests.
//
// Each builder is an OpenSSH sshd on a free port, running in its own mount and PID namespace with a
// private directory bound over /nix, so each has its own (initially empty) Nix store; the Nix
// binaries themselves live outside /nix and work unchanged inside. The SSH user's home directory is
// replaced by an empty private one, so slow shell start-up files of the host user do not distort
// timings. Killing the namespace's helper process takes sshd and every session process with it.
// Requires root (namespaces, bind mounts, root login).
import {spawn, execFile, type ChildProcess} from 'node:child_process';
import {mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync, chownSync, existsSync} from 'node:fs';
import {createServer, connect, type Socket} from 'node:net';
import {tmpdir, userInfo} from 'node:os';
import {dirname, join} from 'node:path';
import {promisify} from 'node:util';
import {findStaticShell} from '../../source/nix/static-shell.js';
import {freePort} from './free-port.js';

const execFileAsync = promisify(execFile);
const SSHD = '/usr/sbin/sshd';

export interface FleetOptions {
  /** Column 2 of the machines file (default: the local system). */
  system?: string;
  maxJobs?: number;
  speedFactor?: number;
  supportedFeatures?: string[];
  /** How long to wait for a builder to accept connections (default 10 s). */
  startTimeoutMs?: number;
  /**
   * Builders (by index) reached as an unprivileged account instead of root, with their store owned by root and
   * served by a nix-daemon inside the builder (trusted-users = root): imports of unsigned paths and builds of
   * input-addressed derivations are refused, as on a builder whose SSH user is missing from trusted-users.
   */
  untrusted?: number[];
  /**
   * Give every builder a store of this many bytes: its /nix is a private tmpfs of that size instead of a
   * directory bound from the fleet directory (storeDir then stays empty), so imports and builds can run out of space.
   */
  storeSizeBytes?: number;
  /**
   * How Nix runs on the builders. 'multi-user' (the default) is a production builder: every builder has its own
   * build-users group and build users (seen only inside it; Nix kills a build user's processes before each build,
   * so two stores never share one), the sandbox on, and `/bin/sh` a static busybox through `sandbox-paths`.
   * 'single-user' builds as the SSH user with the sandbox off (the fixtures' builder is then the host's /bin/sh).
   */
  nixMode?: 'multi-user' | 'single-user';
  /**
   * Builders (by index) in a private network namespace of their own (only a loopback interface): nothing on this
   * machine reaches their sshd, only a bastion started with `fleet.startBastion(i)` (which forwards into it).
   */
  privateNetwork?: number[];
  /** Extra sshd_config lines for every builder (e.g. `TrustedUserCAKeys <file>`). */
  sshdExtraConfig?: string[];
}

/**
 * A bastion for a builder in a private network: a real sshd (one `sshd -i` per connection) that runs in the builder's
 * network namespace but is reached from this one on `port`. It only forwards: every command is refused
 * (ForceCommand), and `direct-tcpip` is permitted to the builder's sshd only (PermitOpen 127.0.0.1:<builder port>).
 */
export interface FleetBastion {
  port: number;
  /** `ssh-ed25519 AAAA…` */
  hostKeyLine: string;
  /** Private key the bastion accepts (the builders do not). */
  clientKey: string;
  logFile: string;
  /** Connections accepted so far. */
  connections(): number;
  stop(): Promise<void>;
}

/** Account name and uid of the unprivileged SSH user of `untrusted` builders (exists only inside them). */
export const UNTRUSTED_USER = {name: 'hydra-untrusted', uid: 30471};

export interface FleetBuilder {
  name: string;
  port: number;
  uri: string;
  /** The directory that is /nix for this builder. */
  storeDir: string;
  /** PID of the namespace helper; killing it kills sshd and everything it started. */
  pid: number;
  machineLine: string;
  /** `ssh-ed25519 AAAA…` */
  hostKeyLine: string;
  sshdConfig: string;
  logFile: string;
  /** Bound over the SSH user's home inside the builder (no shell start-up files of the host user). */
  homeDir: string;
  /** The builder's NIX_CONF_DIR (its nix.conf may be appended to before the builder starts). */
  nixConfDir: string;
  /** Build users of a multi-user builder (gid 0 and no uids for single-user ones). */
  buildUsers: {group: string; gid: number; uids: number[]};
  running: boolean;
}

export interface Fleet {
  dir: string;
  /** A host directory the builders' sandboxes can read (e.g. for markers a test flips between builds). */
  sharedDir: string;
  builders: FleetBuilder[];
  machinesFile: string;
  /** Private key file the builders accept (column 3). */
  clientKey: string;
  /** The sshd log of builder i (for failure messages). */
  log(i: number): string;
  stop(): Promise<void>;
  stopBuilder(i: number): Promise<void>;
  startBuilder(i: number): Promise<void>;
  /** SIGSTOPs every process of builder i (it stops answering but keeps its connections open). */
  freezeBuilder(i: number): void;
  /** SIGCONTs them again. */
  thawBuilder(i: number): void;
  /** A bastion into the private network of builder i (see FleetOptions.privateNetwork). */
  startBastion(i: number): Promise<FleetBastion>;
}

async function keygen(file: string, comment: string): Promise<string> {
  await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
  const [type, blob] = readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/);
  return `${type} ${blob}`;
}

/** Resolves with the SSH banner when host:port answers like an SSH server, rejects otherwise. */
function sshBanner(port: number, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({host: '127.0.0.1', port});
    let data = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no banner'));
    }, timeoutMs);
    s.on('data', (c) => {
      data += c.toString('latin1');
      if (data.includes('\n')) {
        clearTimeout(timer);
        s.destroy();
        if (data.startsWith('SSH-')) resolve(data.trim());
        else reject(new Error(`unexpected banner ${JSON.stringify(data.slice(0, 40))}`));
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim() || '(empty)';
  } catch {
    return '(no log)';
  }
}

/**
 * PIDs (as seen here) of every process of the builder whose namespace helper is `helperPid`: all its descendants,
 * including those in nested PID namespaces (the sandboxes of multi-user builds).
 */
export function builderPids(helperPid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const todo = [...(children.get(helperPid) ?? [])];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Command lines of every process of a builder (see builderPids). */
export function builderCommandLines(helperPid: number): string[] {
  const out: string[] = [];
  for (const pid of builderPids(helperPid)) {
    try {
      out.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim());
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // exited meanwhile
    }
  }
}

function localSystem(): string {
  const arch = ({x64: 'x86_64', arm64: 'aarch64', ia32: 'i686'} as Record<string, string>)[process.arch] ?? process.arch;
  return `${arch}-${process.platform}`;
}

// Build-user ids: each multi-user builder takes a block of ids no other live builder (of any test process on this
// machine) holds. A block is claimed by creating its directory under /run; a block whose owner died is reclaimed.
const UID_BLOCKS = '/run/hydra-ops-test-build-users';
const UID_BASE = 3_000_000;
const UID_BLOCK_SIZE = 64;
const claimedBlocks = new Set<string>();

function claimUidBlock(): number {
  mkdirSync(UID_BLOCKS, {recursive: true, mode: 0o755});
  for (let block = 0; block < 4096; block++) {
    const dir = join(UID_BLOCKS, String(block));
    try {
      mkdirSync(dir);
    } catch {
      let owner = NaN;
      try {
        owner = Number(readFileSync(join(dir, 'pid'), 'utf8'));
      } catch {
        // being claimed right now, or left without a pid: leave it
      }
      if (!Number.isInteger(owner) || owner <= 0) continue;
      try {
        process.kill(owner, 0);
        continue;
      } catch {
        // its owner is gone: reclaim
      }
    }
    writeFileSync(join(dir, 'pid'), String(process.pid));
    claimedBlocks.add(dir);
    return UID_BASE + block * UID_BLOCK_SIZE;
  }
  throw new Error(`startFleet: no free block of build-user ids under ${UID_BLOCKS}`);
}

/** A block of build-user ids no other test holds (base is the group id; base+1… the users), until release(). */
export function claimBuildUserIds(): {base: number; release(): void} {
  const base = claimUidBlock();
  return {base, release: () => releaseUidBlock(base)};
}

function releaseUidBlock(gid: number): void {
  const dir = join(UID_BLOCKS, String((gid - UID_BASE) / UID_BLOCK_SIZE));
  rmSync(dir, {recursive: true, force: true});
  claimedBlocks.delete(dir);
}

const live = new Set<Fleet>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const fleet of live) {
      for (const b of fleet.builders) {
        if (b.running) {
          try {
            process.kill(b.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
      rmSync(fleet.dir, {recursive: true, force: true});
    }
    for (const dir of claimedBlocks) rmSync(dir, {recursive: true, force: true});
  });
}

export async function startFleet(n: number, opts: FleetOptions = {}): Promise<Fleet> {
  if (process.getuid?.() !== 0) throw new Error('startFleet: must run as root (mount namespaces and root logins)');
  if (!existsSync(SSHD)) throw new Error(`startFleet: ${SSHD} not found (OpenSSH server is required)`);
  mkdirSync('/run/sshd', {recursive: true, mode: 0o755}); // sshd's privilege-separation directory
  // The builders' private stores are mounted on /nix, which a fresh machine only has once Nix first ran as root.
  mkdirSync('/nix', {recursive: true, mode: 0o755});
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-fleet-'));
  chmodSync(dir, 0o755);
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
  const sharedDir = join(dir, 'shared');
  mkdirSync(sharedDir, {mode: 0o755});
  chmodSync(sharedDir, 0o755);
  const clientKey = join(dir, 'client_ed25519');
  const clientPub = await keygen(clientKey, 'hydra-ops-fleet-client');
  const authorizedKeys = join(dir, 'authorized_keys');
  writeFileSync(authorizedKeys, clientPub + '\n', {mode: opts.untrusted?.length ? 0o644 : 0o600});
  const system = opts.system ?? localSystem();
  const features = opts.supportedFeatures && opts.supportedFeatures.length > 0 ? opts.supportedFeatures.join(',') : '-';
  const nixMode = opts.nixMode ?? 'multi-user';
  const sandboxShell = nixMode === 'multi-user' ? findStaticShell() : null;
  if (nixMode === 'multi-user' && !sandboxShell) {
    throw new Error('startFleet: multi-user builders need a statically linked busybox for the sandbox (Debian: apt-get install busybox-static)');
  }

  const builders: FleetBuilder[] = [];
  const children = new Map<number, ChildProcess>();

  for (let i = 0; i < n; i++) {
    const bdir = join(dir, `builder-${i}`);
    const storeDir = join(bdir, 'nix');
    mkdirSync(storeDir, {recursive: true});
    mkdirSync(join(bdir, 'home'), {mode: 0o700});
    // The builder's own Nix configuration (NIX_CONF_DIR of sshd's sessions and of its nix-daemon): no binary
    // caches (offline, fast), and build users plus sandbox as the mode says.
    const nixConfDir = join(bdir, 'etc-nix');
    mkdirSync(nixConfDir);
    const untrusted = opts.untrusted?.includes(i) ?? false;
    const buildUsers = {group: `hydra-ops-bld${i}`, gid: 0, uids: [] as number[]};
    const passwdLines: string[] = [];
    const groupLines: string[] = [];
    if (nixMode === 'multi-user') {
      const base = claimUidBlock();
      buildUsers.gid = base;
      const count = Math.max(2, opts.maxJobs ?? 1);
      for (let k = 1; k <= count; k++) {
        buildUsers.uids.push(base + k);
        passwdLines.push(`${buildUsers.group}-${k}:x:${base + k}:${base}:Nix build user ${k}:/var/empty:/usr/sbin/nologin`);
      }
      groupLines.push(`${buildUsers.group}:x:${base}:${buildUsers.uids.map((_, k) => `${buildUsers.group}-${k + 1}`).join(',')}`);
      writeFileSync(
        join(nixConfDir, 'nix.conf'),
        `build-users-group = ${buildUsers.group}\nsandbox = true\nsandbox-paths = /bin/sh=${sandboxShell} ${sharedDir}\nsubstituters =\ntrusted-users = root\n`,
      );
    } else {
      writeFileSync(join(nixConfDir, 'nix.conf'), 'build-users-group =\nsandbox = false\nsubstituters =\ntrusted-users = root\n');
    }
    if (untrusted) {
      // The unprivileged account, seen only inside this builder.
      const {name: u, uid} = UNTRUSTED_USER;
      mkdirSync(join(bdir, 'home-untrusted'));
      chownSync(join(bdir, 'home-untrusted'), uid, uid);
      passwdLines.push(`${u}:x:${uid}:${uid}::${join(bdir, 'home-untrusted')}:/bin/sh`);
      groupLines.push(`${u}:x:${uid}:`);
    }
    // An /etc/passwd and /etc/group seen only inside this builder, with its own accounts added.
    writeFileSync(join(bdir, 'passwd'), [readFileSync('/etc/passwd', 'utf8').trimEnd(), ...passwdLines].join('\n') + '\n');
    writeFileSync(join(bdir, 'group'), [readFileSync('/etc/group', 'utf8').trimEnd(), ...groupLines].join('\n') + '\n');
    const hostKey = join(bdir, 'ssh_host_ed25519_key');
    const hostKeyLine = await keygen(hostKey, `builder-${i}`);
    const port = await freePort();
    const sshdConfig = join(bdir, 'sshd_config');
    writeFileSync(
      sshdConfig,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        'PidFile none',
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        `AuthorizedKeysFile ${authorizedKeys}`,
        'StrictModes no',
        'MaxSessions 10',
        'MaxStartups 100:30:200',
        'PrintMotd no',
        'LogLevel VERBOSE',
        `SetEnv NIX_CONF_DIR=${nixConfDir} NIX_USER_CONF_FILES=`,
        ...(opts.sshdExtraConfig ?? []),
        '',
      ].join('\n'),
    );
    const uri = `ssh://${untrusted ? UNTRUSTED_USER.name : 'root'}@127.0.0.1:${port}`;
    const machineLine = [
      uri,
      system,
      clientKey,
      String(opts.maxJobs ?? 1),
      String(opts.speedFactor ?? 1),
      features,
      '-',
      Buffer.from(hostKeyLine).toString('base64'),
    ].join(' ');
    builders.push({
      name: `builder-${i}`,
      port,
      uri,
      storeDir,
      pid: 0,
      machineLine,
      hostKeyLine,
      sshdConfig,
      logFile: join(bdir, 'sshd.log'),
      homeDir: join(bdir, 'home'),
      nixConfDir,
      buildUsers,
      running: false,
    });
  }
  const machinesFile = join(dir, 'machines');
  writeFileSync(machinesFile, builders.map((b) => b.machineLine).join('\n') + '\n');

  async function startBuilder(i: number): Promise<void> {
    const b = builders[i];
    if (!b) throw new Error(`startFleet: no builder ${i}`);
    if (b.running) return;
    try {
      await execFileAsync(SSHD, ['-t', '-f', b.sshdConfig]);
    } catch (e) {
      throw new Error(`startFleet: ${b.name}: sshd rejects its configuration: ${(e as {stderr?: string}).stderr ?? e}`);
    }
    // setpriv: the helper is killed when this process dies, however it dies, and takes the
    // namespace with it (--kill-child), so a crashed test run leaves no sshd behind.
    const child = spawn(
      'setpriv',
      [
        '--pdeathsig',
        'KILL',
        '--',
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--pid',
        ...(opts.privateNetwork?.includes(i) ? ['--net'] : []),
        '--fork',
        // Its own /proc: Nix's sandbox writes /proc/<pid>/uid_map with pids as seen in this namespace.
        '--mount-proc',
        '--kill-child=SIGKILL',
        'sh',
        '-c',
        'export NIX_CONF_DIR="$7" NIX_USER_CONF_FILES= && ' +
          (opts.privateNetwork?.includes(i) ? 'ip link set lo up && ' : '') +
          `${opts.storeSizeBytes ? `mount -t tmpfs -o size=${Math.floor(opts.storeSizeBytes)} hydra-ops-store /nix` : 'mount --bind "$1" /nix'} && ` +
          'mount --bind "$5" "$6" && mount --bind "$8/passwd" /etc/passwd && mount --bind "$8/group" /etc/group && ' +
          (opts.untrusted?.includes(i)
            ? // The store belongs to a nix-daemon started here; sshd starts once its socket exists.
              '{ nix-daemon >"$8/nix-daemon.log" 2>&1 & } && ' +
              'while [ ! -S /nix/var/nix/daemon-socket/socket ]; do sleep 0.02; done && exec "$2" -D -f "$3" -E "$4"'
            : // Initialise the empty store before any client: several first uses at once can fail with
              // "SQLite database is busy" while the schema is being created.
              'nix-store --init && exec "$2" -D -f "$3" -E "$4"'),
        'builder',
        b.storeDir,
        SSHD,
        b.sshdConfig,
        b.logFile,
        b.homeDir,
        userInfo().homedir,
        b.nixConfDir,
        dirname(b.storeDir),
      ],
      {stdio: ['ignore', 'ignore', 'pipe']},
    );
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    let exited = false;
    child.once('exit', () => (exited = true));
    if (child.pid === undefined) throw new Error(`startFleet: ${b.name}: cannot spawn setpriv/unshare`);
    b.pid = child.pid;
    b.running = true;
    children.set(i, child);
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (exited) {
        b.running = false;
        children.delete(i);
        throw new Error(
          `startFleet: ${b.name}: sshd exited during start-up\nstderr: ${stderr.trim() || '(empty)'}\nsshd log:\n${readLog(b.logFile)}`,
        );
      }
      if (opts.privateNetwork?.includes(i)) {
        // Not reachable from here: sshd says in its log when it listens.
        if (readLog(b.logFile).includes(`Server listening on 127.0.0.1 port ${b.port}`)) return;
      } else {
        try {
          await sshBanner(b.port);
          return;
        } catch {
          // not listening yet
        }
      }
      if (Date.now() > deadline) {
        await stopBuilder(i);
        throw new Error(
          `startFleet: ${b.name}: port ${b.port} did not answer within ${startTimeoutMs} ms\nstderr: ${stderr.trim() || '(empty)'}\nsshd log:\n${readLog(b.logFile)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async function stopBuilder(i: number): Promise<void> {
    const b = builders[i];
    if (!b) throw new Error(`startFleet: no builder ${i}`);
    const child = children.get(i);
    if (!b.running || !child) return;
    const gone = new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
    try {
      process.kill(b.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await gone;
    children.delete(i);
    b.running = false;
    // The namespace dies with its first process; wait until the port refuses connections.
    if (opts.privateNetwork?.includes(i)) return; // its network went with it
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      try {
        await sshBanner(b.port, 200);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`startFleet: ${b.name}: port ${b.port} still answers after the builder was killed`);
  }

  const bastions: FleetBastion[] = [];

  async function startBastion(i: number): Promise<FleetBastion> {
    const b = builders[i];
    if (!b?.running) throw new Error(`startFleet: builder ${i} is not running`);
    if (!opts.privateNetwork?.includes(i)) throw new Error(`startFleet: builder ${i} has no private network (FleetOptions.privateNetwork)`);
    const k = bastions.length;
    const bdir = join(dir, `bastion-${k}`);
    mkdirSync(bdir);
    const hostKey = join(bdir, 'ssh_host_ed25519_key');
    const hostKeyLine = await keygen(hostKey, `bastion-${k}`);
    const key = join(bdir, 'client_ed25519');
    const pub = await keygen(key, `bastion-${k}-client`);
    writeFileSync(join(bdir, 'authorized_keys'), pub + '\n', {mode: 0o600});
    const config = join(bdir, 'sshd_config');
    writeFileSync(
      config,
      [
        `HostKey ${hostKey}`,
        'PidFile none',
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        `AuthorizedKeysFile ${join(bdir, 'authorized_keys')}`,
        'StrictModes no',
        'AllowTcpForwarding local',
        `PermitOpen 127.0.0.1:${b.port}`,
        'PermitTTY no',
        'X11Forwarding no',
        'ForceCommand echo this bastion only forwards >&2; exit 1',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    await execFileAsync(SSHD, ['-t', '-f', config]);
    const logFile = join(bdir, 'sshd.log');
    const sessions = new Set<ChildProcess>();
    const sockets = new Set<Socket>();
    let accepted = 0;
    const netns = `/proc/${b.pid}/ns/net`;
    const server = createServer({pauseOnConnect: true}, (sock) => {
      accepted++;
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
      // sshd in inetd mode, in the builder's network namespace, with the connection as its stdin and stdout.
      const child = spawn('nsenter', [`--net=${netns}`, SSHD, '-i', '-f', config, '-E', logFile], {stdio: [sock, sock, 'ignore']});
      sessions.add(child);
      child.once('exit', () => {
        sessions.delete(child);
        sock.destroy();
      });
      child.once('error', () => sock.destroy());
      sock.on('error', () => {});
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const addr = server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : 0);
      });
    });
    const bastion: FleetBastion = {
      port,
      hostKeyLine,
      clientKey: key,
      logFile,
      connections: () => accepted,
      async stop() {
        for (const c of sessions) c.kill('SIGKILL');
        for (const sock of sockets) sock.destroy();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
    bastions.push(bastion);
    return bastion;
  }

  const fleet: Fleet = {
    dir,
    sharedDir,
    builders,
    machinesFile,
    clientKey,
    log: (i) => readLog(builders[i]?.logFile ?? ''),
    stopBuilder,
    startBuilder,
    freezeBuilder(i) {
      const b = builders[i];
      if (!b?.running) throw new Error(`startFleet: builder ${i} is not running`);
      signalAll(builderPids(b.pid), 'SIGSTOP');
    },
    thawBuilder(i) {
      const b = builders[i];
      if (!b?.running) throw new Error(`startFleet: builder ${i} is not running`);
      signalAll(builderPids(b.pid), 'SIGCONT');
    },
    startBastion,
    async stop() {
      for (const bastion of bastions) await bastion.stop().catch(() => {});
      for (let i = 0; i < builders.length; i++) await stopBuilder(i).catch(() => {});
      live.delete(fleet);
      rmSync(dir, {recursive: true, force: true});
      for (const b of builders) if (b.buildUsers.gid !== 0) releaseUidBlock(b.buildUsers.gid);
    },
  };
  live.add(fleet);
  installExitHook();
  try {
    await Promise.all(builders.map((_, i) => startBuilder(i)));
  } catch (e) {
    await fleet.stop();
    throw e;
  }
  return fleet;
}
