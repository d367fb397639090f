// What OpenSSH would do for a machine: its effective client configuration, as `ssh -G` prints it
// (OpenSSH's own resolver: Host/Match blocks, HostName, Port, User, IdentityFile, ProxyJump, …), and
// the choice of transport — the built-in ssh2 client or the `ssh` binary — that follows from it.
//
// The configuration file is the user's (~/.ssh/config of the passwd entry, as ssh reads it) plus
// /etc/ssh/ssh_config, unless HYDRA_OPS_SSH_CONFIG (or the pool's `sshConfigFile`) names a file,
// which is then passed as `ssh -F <file>`. See README (Builders).
import {execFile} from 'node:child_process';
import {existsSync, readFileSync} from 'node:fs';
import {userInfo} from 'node:os';
import {isAbsolute, join} from 'node:path';

export interface ResolvedSsh {
  /** The host as written in the machines file (an alias or a real name), without IPv6 brackets. */
  alias: string;
  hostname: string;
  port: number;
  user: string;
  /** IdentityFile entries that exist, `~` expanded, in OpenSSH's order. */
  identityFiles: string[];
  certificateFiles: string[];
  /** The agent socket to use (IdentityAgent, else SSH_AUTH_SOCK), or undefined for none. */
  agent: string | undefined;
  identitiesOnly: boolean;
  /** ProxyJump hops, in connection order (empty for a direct connection). */
  proxyJump: string[];
  proxyCommand: string | undefined;
  pkcs11Provider: string | undefined;
  knownHostsFiles: string[];
  /** The name host keys are looked up under (HostKeyAlias, else the resolved host name). */
  hostKeyName: string;
  /** True when the values come from `ssh -G`; false when no ssh binary was found (the URI's values are used). */
  fromSsh: boolean;
}

export class SshConfigError extends Error {
  override readonly name = 'SshConfigError';
}

export interface ResolveOptions {
  port?: number | undefined;
  user?: string | undefined;
  /** `ssh -F <file>`. */
  configFile?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** The ssh program (default `ssh`). */
  ssh?: string;
}

/** The home directory OpenSSH uses for `~`: the passwd entry's, not $HOME. */
function passwdHome(): string {
  try {
    return userInfo().homedir;
  } catch {
    return process.env.HOME ?? '/';
  }
}

function expandPath(p: string, env: NodeJS.ProcessEnv): string {
  let out = p.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, v: string) => env[v] ?? '');
  if (out === '~') out = passwdHome();
  else if (out.startsWith('~/')) out = join(passwdHome(), out.slice(2));
  return out;
}

/** Parses `ssh -G` output: lower-case keyword, space, value; repeated keywords collect. */
export function parseSshG(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    const sp = t.indexOf(' ');
    const key = (sp < 0 ? t : t.slice(0, sp)).toLowerCase();
    const value = sp < 0 ? '' : t.slice(sp + 1);
    const list = out.get(key) ?? [];
    list.push(value);
    out.set(key, list);
  }
  return out;
}

function runSshG(ssh: string, args: string[], env: NodeJS.ProcessEnv): Promise<{stdout: string} | 'no-ssh'> {
  return new Promise((resolve, reject) => {
    execFile(ssh, args, {env, timeout: 10_000, maxBuffer: 4 << 20}, (error, stdout, stderr) => {
      if (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return resolve('no-ssh');
        const why = String(stderr).trim().split('\n').filter(Boolean).join('; ') || error.message;
        return reject(new SshConfigError(`OpenSSH rejects the client configuration (ssh ${args.join(' ')}): ${why}`));
      }
      resolve({stdout: String(stdout)});
    });
  });
}

/** One ProxyJump hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`. */
export function parseJumpHop(hop: string): {host: string; user: string | undefined; port: number | undefined} {
  let rest = hop.startsWith('ssh://') ? hop.slice(6) : hop;
  rest = rest.replace(/\/$/, '');
  const at = rest.lastIndexOf('@');
  const user = at < 0 ? undefined : rest.slice(0, at);
  const hostPort = at < 0 ? rest : rest.slice(at + 1);
  let host = hostPort;
  let port: number | undefined;
  const m = /^(\[[^\]]+\]|[^:]+)(?::([0-9]{1,5}))?$/.exec(hostPort);
  if (!m) throw new SshConfigError(`ProxyJump hop '${hop}' is not [user@]host[:port]`);
  host = m[1]!;
  if (m[2] !== undefined) port = Number(m[2]);
  return {host: host.replace(/^\[(.*)\]$/, '$1'), user: user === '' ? undefined : user, port};
}

/** Resolves a host as `ssh -G` sees it. */
export async function resolveSsh(host: string, o: ResolveOptions = {}): Promise<ResolvedSsh> {
  const env = o.env ?? process.env;
  const alias = host.replace(/^\[(.*)\]$/, '$1');
  const args = ['-G'];
  if (o.configFile !== undefined) args.push('-F', o.configFile);
  if (o.port !== undefined) args.push('-p', String(o.port));
  if (o.user !== undefined) args.push('-l', o.user);
  args.push('--', alias);
  const r = await runSshG(o.ssh ?? 'ssh', args, env);
  const agentFromEnv = env.SSH_AUTH_SOCK && env.SSH_AUTH_SOCK !== '' ? env.SSH_AUTH_SOCK : undefined;
  if (r === 'no-ssh') {
    if (o.configFile !== undefined) throw new SshConfigError(`an SSH client configuration file is set (${o.configFile}) but no 'ssh' program was found to read it`);
    return {
      alias,
      hostname: alias,
      port: o.port ?? 22,
      user: o.user ?? userInfo().username,
      identityFiles: ['id_rsa', 'id_ecdsa', 'id_ed25519'].map((n) => join(passwdHome(), '.ssh', n)).filter((f) => existsSync(f)),
      certificateFiles: [],
      agent: agentFromEnv,
      identitiesOnly: false,
      proxyJump: [],
      proxyCommand: undefined,
      pkcs11Provider: undefined,
      knownHostsFiles: [join(passwdHome(), '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts'],
      hostKeyName: alias,
      fromSsh: false,
    };
  }
  const g = parseSshG(r.stdout);
  const one = (k: string): string | undefined => g.get(k)?.[0];
  const none = (v: string | undefined): string | undefined => (v === undefined || v === '' || v.toLowerCase() === 'none' ? undefined : v);
  const hostname = one('hostname') ?? alias;
  const port = Number(one('port') ?? o.port ?? 22);
  const identityFiles = (g.get('identityfile') ?? []).map((f) => expandPath(f, env)).filter((f) => existsSync(f));
  const certificateFiles = (g.get('certificatefile') ?? []).map((f) => expandPath(f, env)).filter((f) => existsSync(f));
  const agentSetting = one('identityagent');
  let agent: string | undefined;
  if (agentSetting === undefined || agentSetting === 'SSH_AUTH_SOCK') agent = agentFromEnv;
  else if (agentSetting.toLowerCase() === 'none') agent = undefined;
  else if (agentSetting.startsWith('$')) agent = env[agentSetting.replace(/^\$\{?|\}$/g, '')] || undefined;
  else agent = expandPath(agentSetting, env);
  const jump = none(one('proxyjump'));
  const knownHostsFiles = [...(g.get('userknownhostsfile') ?? []), ...(g.get('globalknownhostsfile') ?? [])]
    .flatMap((v) => v.split(/\s+/))
    .filter((f) => f !== '' && f !== 'none')
    .map((f) => expandPath(f, env));
  return {
    alias,
    hostname,
    port: Number.isInteger(port) && port > 0 ? port : 22,
    user: one('user') ?? o.user ?? userInfo().username,
    identityFiles,
    certificateFiles,
    agent,
    identitiesOnly: (one('identitiesonly') ?? 'no').toLowerCase() === 'yes',
    proxyJump: jump ? jump.split(',').filter((h) => h !== '') : [],
    proxyCommand: none(one('proxycommand')),
    pkcs11Provider: none(one('pkcs11provider')),
    knownHostsFiles,
    hostKeyName: none(one('hostkeyalias')) ?? hostname,
    fromSsh: true,
  };
}

export type TransportMode = 'auto' | 'ssh2' | 'openssh';

/**
 * HYDRA_OPS_SSH_TRANSPORT: a comma-separated list of `MODE` (every machine) and `HOST=MODE` (machines whose column-1
 * host or URI is HOST) with MODE one of auto, ssh2, openssh. Returns the mode for one machine.
 */
export function transportModeFor(setting: string | undefined, uri: string, host: string): TransportMode {
  let mode: TransportMode = 'auto';
  if (setting === undefined || setting.trim() === '') return mode;
  const check = (m: string): TransportMode => {
    if (m !== 'auto' && m !== 'ssh2' && m !== 'openssh') {
      throw new SshConfigError(`HYDRA_OPS_SSH_TRANSPORT: '${m}' is not a transport (expected auto, ssh2 or openssh)`);
    }
    return m;
  };
  let specific: TransportMode | undefined;
  for (const raw of setting.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.lastIndexOf('=');
    if (eq < 0) mode = check(item);
    else if (item.slice(0, eq) === uri || item.slice(0, eq) === host) specific = check(item.slice(eq + 1));
    else check(item.slice(eq + 1));
  }
  return specific ?? mode;
}

/** Why ssh2 cannot reach this machine as OpenSSH would (undefined when it can). */
export function needsOpenSsh(r: ResolvedSsh, explicitKey: string | undefined): string | undefined {
  if (r.proxyCommand !== undefined) return `ProxyCommand ${r.proxyCommand}`;
  if (r.pkcs11Provider !== undefined) return `PKCS11Provider ${r.pkcs11Provider}`;
  if (r.certificateFiles.length > 0) return `CertificateFile ${r.certificateFiles[0]}`;
  const keys = explicitKey !== undefined ? [explicitKey, ...r.identityFiles] : r.identityFiles;
  for (const k of keys) {
    const cert = `${k}-cert.pub`;
    if (existsSync(cert)) return `certificate ${cert}`;
    try {
      const head = readFileSync(k.endsWith('.pub') ? k : `${k}.pub`, 'utf8').slice(0, 40);
      if (head.startsWith('sk-')) return `security-key identity ${k}`;
    } catch {
      // no public half next to it: ssh2 reads the private key itself
    }
  }
  return undefined;
}

/** A path made absolute against the current directory (ssh -F accepts relative paths, the error text should not). */
export function configFileFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = env.HYDRA_OPS_SSH_CONFIG;
  if (v === undefined || v === '') return undefined;
  return isAbsolute(v) ? v : join(process.cwd(), v);
}
