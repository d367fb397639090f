// `machine ping`: is each build machine usable, and if not, why and what to do about it. Probes the machines
// in parallel (fleet/machine-probe) and turns the facts into the ping result the CLI prints and the console's
// Machines view shows: problems with a kind, a message and a fix.
import type {MachineSpec} from '../fleet/machines-file.js';
import {probeMachine, type MachineFacts, type ProbeOptions} from '../fleet/machine-probe.js';
import {SshConnectionPool} from '../fleet/ssh-transport.js';
import {diagnoseLocalNix, type LocalNixPlan} from '../nix/local-nix.js';

export type PingProblemKind =
  | 'unreachable' // TCP connection refused / no route: sshd down or wrong host/port
  | 'timeout'
  | 'host-key' // unknown or changed host key
  | 'auth' // the SSH key was refused
  | 'key-file' // the private key is missing or unusable
  | 'config' // the OpenSSH client configuration (ssh -G) or HYDRA_OPS_SSH_TRANSPORT is unusable
  | 'channel'
  | 'handshake' // nix-store --serve did not answer (not installed, not on PATH, wrong protocol)
  | 'import-refused' // the SSH user may not import unsigned paths (not a trusted user)
  | 'build-refused' // "you are not privileged to build input-addressed derivations"
  | 'import-failed' // import failed for another reason
  | 'build-failed' // the build probe failed for another reason
  | 'system-unsupported' // a system listed in the machines file the builder cannot build
  | 'feature-missing' // a feature listed in the machines file the builder does not declare
  | 'low-disk'
  | 'info-failed'
  | 'local-nix'; // this machine's own Nix cannot build, or builds with settings hydra-ops chose (source/nix/local-nix.ts)

export interface PingProblem {
  kind: PingProblemKind;
  /** 'error' makes the machine unusable; 'warning' does not. */
  severity: 'error' | 'warning';
  message: string;
  fix: string;
}

export interface PingResult {
  uri: string;
  /** False when any problem of severity 'error' was found. */
  ok: boolean;
  connectMs: number | null;
  handshake: {version: string; ms: number} | {error: string} | null;
  canImport: boolean | null;
  canBuild: boolean | null;
  /** What the builder really supports: its system and extra platforms. */
  systems: string[] | null;
  /** Column 2 of the machines file. */
  machineSystems: string[];
  /** The builder's system features. */
  features: string[] | null;
  /** Supported and mandatory features of the machines file. */
  machineFeatures: string[];
  storeFreeBytes: number | null;
  nixVersion: string | null;
  problems: PingProblem[];
}

export interface PingOptions extends Omit<ProbeOptions, 'pool'> {
  pool?: SshConnectionPool;
  /** How local machines build (default: diagnosed now). */
  localNix?: LocalNixPlan;
  /** Below this many free bytes in the builder's store a warning is raised (default 1 GiB). */
  minFreeBytes?: number;
  /** Machines probed at once (default 16). */
  concurrency?: number;
}

function sshUser(spec: MachineSpec): string {
  return spec.user ?? 'the SSH user';
}

function trustFix(spec: MachineSpec): string {
  const user = sshUser(spec);
  return (
    `on the builder, add ${user} to trusted-users in /etc/nix/nix.conf (NixOS: nix.settings.trusted-users = [ "${user}" ]) ` +
    `and restart nix-daemon; or connect as root (column 1: ssh://root@${spec.host}${spec.port ? `:${spec.port}` : ''})`
  );
}

/** Turns probe facts into a ping result. */
export function judgePing(spec: MachineSpec, facts: MachineFacts, options: {minFreeBytes?: number} = {}): PingResult {
  const problems: PingProblem[] = [];
  const add = (kind: PingProblemKind, message: string, fix: string, severity: 'error' | 'warning' = 'error') =>
    problems.push({kind, severity, message, fix});
  const machineFeatures = [...new Set([...spec.supportedFeatures, ...spec.mandatoryFeatures])].sort();
  const target = `${spec.host}${spec.port ? ` port ${spec.port}` : ''}`;

  const ce = facts.connectError;
  if (ce) {
    switch (ce.kind) {
      case 'connect':
        add('unreachable', ce.message, `check that sshd runs on ${target} and that the address in column 1 is right (try: ssh ${spec.host})`);
        break;
      case 'timeout':
        add('timeout', ce.message, `check the network path to ${target} (firewall, host down) and that sshd answers`);
        break;
      case 'host-key':
        add(
          'host-key',
          ce.message,
          ce.expected
            ? `if the builder's host key changed legitimately, put the base64 of its public key line (ssh-keyscan ${spec.host}) in column 8 of ${spec.file}:${spec.line}; otherwise investigate a possible impostor`
            : `pin the host key: base64 of the builder's public key line (ssh-keyscan ${spec.host}) in column 8 of ${spec.file}:${spec.line}, or add it to known_hosts`,
        );
        break;
      case 'auth':
        add('auth', ce.message, `add the public key of ${spec.sshKey ?? 'the SSH key'} to ~${spec.user ?? ''}/.ssh/authorized_keys on the builder`);
        break;
      case 'key-file':
        add('key-file', ce.message, `fix column 3 of ${spec.file}:${spec.line} (a readable private key file), or load the key into ssh-agent (SSH_AUTH_SOCK)`);
        break;
      case 'config':
        add('config', ce.message, `check the OpenSSH client configuration for ${spec.host} (ssh -G ${spec.host}; HYDRA_OPS_SSH_CONFIG, HYDRA_OPS_SSH_TRANSPORT)`);
        break;
      default:
        add(ce.kind === 'channel' ? 'channel' : 'unreachable', ce.message, `check the builder's sshd configuration and logs`);
    }
  }

  let handshake: PingResult['handshake'] = null;
  if (facts.handshake) {
    if (facts.handshake.ok && facts.handshake.value) handshake = {version: facts.handshake.value.version, ms: facts.handshake.ms};
    else {
      handshake = {error: facts.handshake.error ?? 'failed'};
      add(
        'handshake',
        `serve protocol handshake failed: ${facts.handshake.error}`,
        /not found|No such file/i.test(facts.handshake.error ?? '')
          ? `install Nix on the builder and make nix-store reachable on the PATH of non-interactive SSH sessions`
          : `run "ssh ${spec.host} nix-store --serve --write" by hand to see what the builder says`,
      );
    }
  }

  let canImport: boolean | null = null;
  if (facts.import) {
    canImport = facts.import.ok;
    if (!facts.import.ok) {
      const msg = facts.import.error ?? '';
      if (/lacks a valid signature|not allowed|trusted|privileged/i.test(msg)) {
        add('import-refused', `${sshUser(spec)} may not import unsigned store paths: ${lastLine(msg)}`, trustFix(spec));
      } else {
        add('import-failed', `importing a test path failed: ${lastLine(msg)}`, `check the builder's store (disk space, permissions) and its nix-daemon log`);
      }
    }
  }
  let canBuild: boolean | null = null;
  if (facts.build) {
    canBuild = facts.build.ok;
    if (!facts.build.ok) {
      const msg = facts.build.error ?? '';
      if (/not privileged|not allowed|trusted/i.test(msg)) {
        add('build-refused', `${sshUser(spec)} may not build derivations: ${lastLine(msg)}`, trustFix(spec));
      } else {
        add('build-failed', `the build probe failed: ${lastLine(msg)}`, `run "ssh ${spec.host} nix-store --serve --write" by hand and check the builder's nix-daemon log`);
      }
    }
  }

  let systems: string[] | null = null;
  let features: string[] | null = null;
  let storeFreeBytes: number | null = null;
  let nixVersion: string | null = null;
  const info = facts.info;
  if (info?.ok && info.value) {
    const v = info.value;
    nixVersion = v.nixVersion;
    storeFreeBytes = v.storeFreeBytes;
    if (v.system) {
      systems = [...new Set([v.system, ...v.extraPlatforms])];
      const unsupported = spec.systems.filter((s) => !systems!.includes(s));
      if (unsupported.length > 0) {
        add(
          'system-unsupported',
          `the machines file lists ${unsupported.join(', ')} but the builder builds only ${systems.join(', ')}`,
          `remove ${unsupported.join(', ')} from column 2 of ${spec.file}:${spec.line}, or add them to extra-platforms on the builder (with binfmt emulation)`,
        );
      }
    }
    features = v.systemFeatures;
    const missing = machineFeatures.filter((f) => !v.systemFeatures.includes(f));
    if (missing.length > 0) {
      add(
        'feature-missing',
        `the machines file lists feature(s) ${missing.join(', ')} the builder does not declare (it has ${v.systemFeatures.join(', ') || 'none'})`,
        `add them to system-features in the builder's nix.conf, or remove them from columns 6/7 of ${spec.file}:${spec.line}; builds that require them fail there`,
        'warning',
      );
    }
    const min = options.minFreeBytes ?? 2 ** 30;
    if (storeFreeBytes !== null && storeFreeBytes < min) {
      add(
        'low-disk',
        `only ${formatBytes(storeFreeBytes)} free in the builder's /nix/store`,
        `collect garbage on the builder (nix-collect-garbage) or grow its disk`,
        'warning',
      );
    }
  } else if (info && !info.ok && !ce) {
    add('info-failed', `cannot read the builder's Nix configuration: ${info.error}`, `check that nix and df run for ${sshUser(spec)} on the builder`, 'warning');
  }

  return {
    uri: spec.uri,
    ok: !problems.some((p) => p.severity === 'error'),
    connectMs: facts.connectMs,
    handshake,
    canImport,
    canBuild,
    systems,
    machineSystems: spec.systems,
    features,
    machineFeatures,
    storeFreeBytes,
    nixVersion,
    problems,
  };
}

function lastLine(msg: string): string {
  const lines = msg.split('\n').map((l) => l.trim()).filter(Boolean);
  const err = [...lines].reverse().find((l) => l.startsWith('error:'));
  return (err ?? lines[lines.length - 1] ?? msg).replace(/^error:\s*/, '');
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/**
 * Pings machines in parallel; results come back in the order of `specs`. `onResult` sees each result as soon
 * as it is known (for the console). Never throws for a machine's failure.
 */
export async function pingMachines(
  specs: readonly MachineSpec[],
  options: PingOptions & {onResult?: (r: PingResult) => void} = {},
): Promise<PingResult[]> {
  const pool = options.pool ?? new SshConnectionPool({connectTimeoutMs: options.timeoutMs ?? 15_000});
  const results: PingResult[] = new Array(specs.length);
  let next = 0;
  const worker = async () => {
    while (next < specs.length) {
      const i = next++;
      const spec = specs[i]!;
      if (spec.kind === 'local') {
        results[i] = await pingLocal(spec, {...options, pool});
      } else {
        const facts = await probeMachine(spec, {...options, pool});
        results[i] = judgePing(spec, facts, options);
      }
      options.onResult?.(results[i]!);
    }
  };
  try {
    await Promise.all(Array.from({length: Math.min(options.concurrency ?? 16, specs.length)}, worker));
  } finally {
    if (!options.pool) pool.closeAll();
  }
  return results;
}

/**
 * A local machine: first what this machine's Nix allows (local-nix.ts), so that an operator reads why nothing can
 * build and the fix instead of Nix's raw error; then, when it can build, the probe with the settings the runner uses.
 */
async function pingLocal(spec: MachineSpec, options: PingOptions & {pool: SshConnectionPool}): Promise<PingResult> {
  const plan: LocalNixPlan = options.localNix ?? (await diagnoseLocalNix(process.env, {implicit: spec.file === '(implicit)'}));
  const localProblems: PingProblem[] = plan.notices.map((n) => ({kind: 'local-nix', severity: 'warning', message: n, fix: 'none needed; see the message'}));
  if (plan.problem) {
    return {
      uri: spec.uri,
      ok: false,
      connectMs: null,
      handshake: null,
      canImport: false,
      canBuild: false,
      systems: null,
      machineSystems: spec.systems,
      features: null,
      machineFeatures: [...new Set([...spec.supportedFeatures, ...spec.mandatoryFeatures])].sort(),
      storeFreeBytes: null,
      nixVersion: null,
      problems: [{kind: 'local-nix', severity: 'error', message: plan.problem.summary, fix: plan.problem.fixes.join('; or ')}, ...localProblems],
    };
  }
  const extraArgs = [...(options.localServe?.extraArgs ?? []), ...plan.options];
  const facts = await probeMachine(spec, {...options, localServe: {...options.localServe, extraArgs}});
  const r = judgePing(spec, facts, options);
  r.problems.push(...localProblems);
  return r;
}

/** Machines matching NAME: the exact URI, or the host name (several machines may share it). */
export function selectMachines(specs: readonly MachineSpec[], name: string): MachineSpec[] {
  const exact = specs.filter((m) => m.uri === name);
  if (exact.length > 0) return exact;
  return specs.filter((m) => m.host === name || `${m.user ?? ''}@${m.host}` === name || (m.port !== undefined && `${m.host}:${m.port}` === name));
}
