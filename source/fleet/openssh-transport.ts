// The OpenSSH transport: the `ssh` binary, for what the built-in ssh2 client cannot do (certificates, PKCS#11,
// security keys, GSSAPI, ProxyCommand). Like Nix's SSHMaster (NixOS/nix src/libstore/ssh.cc) it keeps one
// ControlMaster per machine — `ssh -M -N` with a private ControlPath, ready once its LocalCommand printed
// "started" — and runs every command as a multiplexed session of that master (`-o ControlMaster=no` with the same
// ControlPath: a command never becomes a master of its own, so no process outlives the pool).
//
// Host keys: a pinned key (machines file column 8) is the only key accepted: it is written to a temporary
// known-hosts file under a fixed HostKeyAlias, with StrictHostKeyChecking=yes and no global known-hosts file.
// Without a pin, StrictHostKeyChecking=yes against the configured known_hosts files (never accept-new).
import {spawn, type ChildProcess} from 'node:child_process';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import type {Socket} from 'node:net';
import {SshTransportError, commandLine, type ExecHandle, type ExitStatus, type MachineTransportStats, type SshTarget} from './ssh-common.js';

export interface OpenSshOptions {
  ssh?: string;
  configFile?: string | undefined;
  /** Explicit known_hosts files (default: the configured ones). */
  knownHostsFiles?: string[] | undefined;
  connectTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  env?: NodeJS.ProcessEnv;
}

interface Master {
  index: number;
  controlPath: string;
  process: ChildProcess | undefined;
  ready: Promise<void>;
  dead: boolean;
  children: Set<ChildProcess>;
  bytesIn: number;
  bytesOut: number;
}

const PINNED_ALIAS = 'hydra-ops-pinned-host-key';

/** The transport error an `ssh` failure's stderr describes. */
export function classifySshFailure(uri: string, stderr: string): SshTransportError {
  const text = stderr.trim();
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^@+$/.test(l) && !l.startsWith('@'));
  const summary = lines.slice(-3).join('; ') || 'ssh exited without a message';
  const fingerprint = /(SHA256:[A-Za-z0-9+/]+)/.exec(text)?.[1];
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key is known for|Host key for .* has changed|REVOKED/i.test(text)) {
    return new SshTransportError('host-key', uri, `host key refused by OpenSSH (ssh): ${summary}`, fingerprint ? {fingerprint} : {});
  }
  if (/Permission denied|Too many authentication failures|no mutual signature/i.test(text)) {
    return new SshTransportError('auth', uri, `authentication refused (ssh): ${summary}`);
  }
  if (/timed out/i.test(text)) return new SshTransportError('timeout', uri, `ssh: ${summary}`);
  if (/no such identity|Load key .*: (?:invalid format|error in libcrypto)/i.test(text) && /Permission denied/i.test(text)) {
    return new SshTransportError('key-file', uri, `ssh: ${summary}`);
  }
  return new SshTransportError('connect', uri, `ssh: ${summary}`);
}

export class OpenSshTransport {
  private readonly masters = new Map<string, Master>();
  private readonly opened = new Map<string, number>();
  private readonly closedBytes = new Map<string, {in: number; out: number}>();
  private dir: string | undefined;
  private next = 0;
  private closed = false;

  constructor(private readonly o: OpenSshOptions) {}

  private workDir(): string {
    this.dir ??= mkdtempSync(join(tmpdir(), 'hydra-ops-ssh-'));
    return this.dir;
  }

  /** Options shared by the master and its sessions. */
  private baseArgs(target: SshTarget, controlPath: string, index: number): string[] {
    const args = ['-x', '-a', '-T', '-o', 'BatchMode=yes'];
    args.push('-o', `ConnectTimeout=${Math.max(1, Math.ceil(this.o.connectTimeoutMs / 1000))}`);
    args.push('-o', `ServerAliveInterval=${Math.max(1, Math.round(this.o.keepaliveIntervalMs / 1000))}`);
    args.push('-o', `ServerAliveCountMax=${this.o.keepaliveCountMax}`);
    args.push('-o', `ControlPath=${controlPath}`);
    if (this.o.configFile !== undefined) args.push('-F', this.o.configFile);
    if (target.port !== undefined) args.push('-p', String(target.port));
    if (target.user !== undefined) args.push('-l', target.user);
    if (target.sshKey !== undefined) args.push('-i', target.sshKey);
    args.push('-o', 'StrictHostKeyChecking=yes', '-o', 'UpdateHostKeys=no');
    if (target.publicHostKey !== undefined) {
      const file = join(this.workDir(), `pinned-${index}`);
      writeFileSync(file, `${PINNED_ALIAS} ${target.publicHostKey}\n`, {mode: 0o600});
      args.push('-o', `UserKnownHostsFile=${file}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', `HostKeyAlias=${PINNED_ALIAS}`, '-o', 'CheckHostIP=no');
    } else if (this.o.knownHostsFiles !== undefined) {
      const files = this.o.knownHostsFiles.length > 0 ? this.o.knownHostsFiles.map((f) => `"${f}"`).join(' ') : '/dev/null';
      args.push('-o', `UserKnownHostsFile=${files}`, '-o', 'GlobalKnownHostsFile=/dev/null');
    }
    return args;
  }

  private host(target: SshTarget): string {
    return target.host.replace(/^\[(.*)\]$/, '$1');
  }

  private master(target: SshTarget): Master {
    const existing = this.masters.get(target.uri);
    if (existing && !existing.dead) return existing;
    const index = this.next++;
    const m: Master = {
      index,
      controlPath: join(this.workDir(), `cm-${index}`),
      process: undefined,
      ready: Promise.resolve(),
      dead: false,
      children: new Set(),
      bytesIn: 0,
      bytesOut: 0,
    };
    this.masters.set(target.uri, m);
    m.ready = this.startMaster(target, m);
    m.ready.catch(() => {});
    return m;
  }

  private startMaster(target: SshTarget, m: Master): Promise<void> {
    const uri = target.uri;
    const args = [
      ...this.baseArgs(target, m.controlPath, m.index),
      '-M',
      '-N',
      '-o',
      'ControlMaster=yes',
      '-o',
      'ControlPersist=no',
      '-o',
      'PermitLocalCommand=yes',
      '-o',
      'LocalCommand=echo started',
      '--',
      this.host(target),
    ];
    return new Promise<void>((resolve, reject) => {
      const child = spawn(this.o.ssh ?? 'ssh', args, {stdio: ['ignore', 'pipe', 'pipe'], env: this.o.env ?? process.env});
      m.process = child;
      let out = '';
      let err = '';
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        child.kill('SIGKILL');
        reject(new SshTransportError('timeout', uri, `ssh did not establish a connection within ${this.o.connectTimeoutMs} ms`));
      }, this.o.connectTimeoutMs + 2000);
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (!settled && out.includes('started')) {
          settled = true;
          clearTimeout(timer);
          this.opened.set(uri, (this.opened.get(uri) ?? 0) + 1);
          resolve();
        }
      });
      child.stderr!.on('data', (c: Buffer) => {
        err = (err + c.toString()).slice(-8192);
      });
      child.once('error', (e: NodeJS.ErrnoException) => {
        m.dead = true;
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new SshTransportError('connect', uri, `cannot run ssh: ${e.code ?? e.message}`, {cause: e}));
      });
      child.once('close', () => {
        m.dead = true;
        if (this.masters.get(uri) === m) this.masters.delete(uri);
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(classifySshFailure(uri, err));
      });
    });
  }

  async exec(target: SshTarget, argv: string[]): Promise<ExecHandle> {
    const command = commandLine(argv);
    if (this.closed) throw new SshTransportError('closed', target.uri, 'connection pool is closed');
    const m = this.master(target);
    await m.ready;
    if (this.closed) throw new SshTransportError('closed', target.uri, 'connection pool is closed');
    const args = [...this.baseArgs(target, m.controlPath, m.index), '-o', 'ControlMaster=no', '--', this.host(target), command];
    const child = spawn(this.o.ssh ?? 'ssh', args, {stdio: ['pipe', 'pipe', 'pipe'], env: this.o.env ?? process.env});
    m.children.add(child);
    let closeRequested = false;
    let spawnError: Error | undefined;
    child.once('error', (e) => (spawnError = e));
    child.stdin!.on('error', () => {});
    const masterProcess = m.process;
    const exited = new Promise<ExitStatus>((resolve, reject) => {
      child.once('close', (code, signal) => {
        m.children.delete(child);
        m.bytesIn += ((child.stdout as Socket).bytesRead ?? 0) + ((child.stderr as Socket).bytesRead ?? 0);
        m.bytesOut += (child.stdin as Socket).bytesWritten ?? 0;
        if (spawnError) return reject(new SshTransportError('connect', target.uri, `cannot run ssh: ${spawnError.message}`, {cause: spawnError}));
        if (closeRequested) return resolve({code: code ?? null, signal: null});
        // 255 is ssh's own failure; it means a lost connection when the master is gone too.
        if (code === 255 && (m.dead || masterProcess?.exitCode !== null)) {
          return reject(new SshTransportError('lost', target.uri, 'connection lost while the command was running'));
        }
        resolve({code: code ?? null, signal: signal ?? null});
      });
    });
    exited.catch(() => {});
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    return {
      stdin: child.stdin!,
      stdout: child.stdout!,
      stderr: child.stderr!,
      exited,
      close: async () => {
        if (!closeRequested) {
          closeRequested = true;
          child.stdin!.end();
          child.kill('SIGTERM');
          child.stdout!.resume();
          child.stderr!.resume();
        }
        await closed;
      },
    };
  }

  has(uri: string): boolean {
    return this.masters.has(uri) || this.opened.has(uri);
  }

  stats(uri: string): MachineTransportStats {
    const m = this.masters.get(uri);
    const live = m && !m.dead;
    const closed = this.closedBytes.get(uri) ?? {in: 0, out: 0};
    return {
      connectionsOpened: this.opened.get(uri) ?? 0,
      connectionsOpen: live && m.process?.exitCode === null ? 1 : 0,
      channelsOpen: live ? m.children.size : 0,
      bytesIn: closed.in + (m?.bytesIn ?? 0),
      bytesOut: closed.out + (m?.bytesOut ?? 0),
    };
  }

  /** PID of the machine's ControlMaster (for tests and diagnostics). */
  masterPid(uri: string): number | undefined {
    const m = this.masters.get(uri);
    return m && !m.dead ? m.process?.pid : undefined;
  }

  closeMachine(uri: string): void {
    const m = this.masters.get(uri);
    if (!m) return;
    this.masters.delete(uri);
    m.dead = true;
    const c = this.closedBytes.get(uri) ?? {in: 0, out: 0};
    this.closedBytes.set(uri, {in: c.in + m.bytesIn, out: c.out + m.bytesOut});
    for (const child of m.children) child.kill('SIGTERM');
    m.process?.kill('SIGTERM');
  }

  closeAll(): void {
    this.closed = true;
    for (const uri of [...this.masters.keys()]) this.closeMachine(uri);
    if (this.dir) {
      rmSync(this.dir, {recursive: true, force: true});
      this.dir = undefined;
    }
  }
}
