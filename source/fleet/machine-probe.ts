// Probing a build machine the way a step would use it, without building anything: connect (timed), serve
// handshake, ImportPaths of a tiny unsigned text object, BuildDerivation of a derivation whose output is that
// object (already valid → nothing is built; an unprivileged user is refused before anything happens), plus the
// builder's own view of itself: Nix version, system and extra platforms, system features, free store space.
// Facts only; judging them is the caller's business.
import {Readable} from 'node:stream';
import {execa} from 'execa';
import {makeTextPath, narOfRegularFile} from '../nix/text-path.js';
import {ServeClient, type BuildResult} from '../nix/serve-client.js';
import {startLocalServe, type LocalTransportOptions} from './local-transport.js';
import type {MachineSpec} from './machines-file.js';
import {SshTransportError, type SshErrorKind} from './ssh-common.js';
import {SshConnectionPool} from './ssh-transport.js';

export const PROBE_NAME = 'hydra-ops-ping-probe';
export const PROBE_CONTENTS = 'hydra-ops machine ping: a permission probe; safe to delete\n';
/** The probe object: identical on every machine, so repeated pings add nothing new to a store. */
export const probePath = (): string => makeTextPath(PROBE_NAME, PROBE_CONTENTS);

export interface ProbeStep<T = true> {
  ok: boolean;
  ms: number;
  value?: T;
  /** The error message, with what the peer printed on stderr. */
  error?: string;
}

export interface MachineFacts {
  uri: string;
  /** Time to an authenticated connection with the serve command started (ssh), or to spawn it (local). */
  connectMs: number | null;
  connectError?: {kind: SshErrorKind | 'spawn'; message: string; fingerprint?: string; expected?: string[]};
  handshake?: ProbeStep<{version: string; serverVersion: number}>;
  /** ImportPaths of the (unsigned) probe object. */
  import?: ProbeStep;
  /** BuildDerivation of the probe derivation. */
  build?: ProbeStep<{status: string}>;
  info?: ProbeStep<BuilderInfo>;
}

export interface BuilderInfo {
  nixVersion: string | null;
  /** The builder's `system` (`builtins.currentSystem`). */
  system: string | null;
  extraPlatforms: string[];
  systemFeatures: string[];
  storeFreeBytes: number | null;
}

export interface ProbeOptions {
  /** SSH pool to use (a private one, closed afterwards, when absent). */
  pool?: SshConnectionPool;
  /** Budget per remote operation and for connecting (default 15 s). */
  timeoutMs?: number;
  /** Settings for the local serve process of a `localhost` machine. */
  localServe?: Pick<LocalTransportOptions, 'wrapper' | 'extraArgs' | 'env'>;
}

const INFO_SCRIPT = [
  'nix-store --version',
  'echo @@@',
  'nix show-config --json --extra-experimental-features nix-command 2>/dev/null || echo "{}"',
  'echo @@@',
  'nix-instantiate --eval -E builtins.currentSystem 2>/dev/null',
  'echo @@@',
  // The store may not exist yet on a fresh daemon-backed builder: measure the file system it will live on.
  '{ df -Pk /nix/store 2>/dev/null || df -Pk /nix 2>/dev/null || df -Pk /; } | tail -n 1',
].join('; ');

/** Parses the output of INFO_SCRIPT. */
export function parseBuilderInfo(stdout: string): BuilderInfo {
  const [versionPart = '', configPart = '', systemPart = '', dfPart = ''] = stdout.split('@@@\n');
  const version = /\(Nix\)\s+(\S+)/.exec(versionPart)?.[1] ?? null;
  let config: Record<string, {value?: unknown}> = {};
  try {
    config = JSON.parse(configPart.trim() || '{}') as Record<string, {value?: unknown}>;
  } catch {
    config = {};
  }
  const list = (v: unknown): string[] =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? v.split(/\s+/).filter(Boolean) : [];
  const evalSystem = /^"([^"]+)"$/.exec(systemPart.trim())?.[1];
  const configSystem = typeof config.system?.value === 'string' ? config.system.value : undefined;
  const df = dfPart.trim().split(/\s+/);
  const avail = df.length >= 4 && /^\d+$/.test(df[3]!) ? Number(df[3]) * 1024 : null;
  return {
    nixVersion: version,
    system: evalSystem ?? configSystem ?? null,
    extraPlatforms: [...new Set(list(config['extra-platforms']?.value))].sort(),
    systemFeatures: [...new Set(list(config['system-features']?.value))].sort(),
    storeFreeBytes: avail,
  };
}

class Timeout extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Timeout(`${what} did not answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

interface Session {
  client: ServeClient;
  close(): Promise<void>;
}

async function openSession(spec: MachineSpec, pool: SshConnectionPool, o: ProbeOptions): Promise<Session> {
  if (spec.kind === 'local') {
    const t = startLocalServe({...o.localServe, ...(spec.remoteStore !== undefined ? {store: spec.remoteStore} : {})});
    const client = new ServeClient(t, {label: spec.uri});
    return {client, close: async () => void (await t.kill(1000))};
  }
  const h = await pool.openServe(spec);
  const client = new ServeClient(h, {label: spec.uri});
  return {
    client,
    close: async () => {
      await client.close();
      await withTimeout(h.exited, 3000, 'serve exit').catch(() => h.close());
    },
  };
}

async function step<T>(what: string, ms: number, body: () => Promise<T>): Promise<ProbeStep<T>> {
  const t0 = performance.now();
  try {
    const value = await withTimeout(body(), ms, what);
    return {ok: true, ms: Math.round(performance.now() - t0), value};
  } catch (e) {
    return {ok: false, ms: Math.round(performance.now() - t0), error: e instanceof Error ? e.message : String(e)};
  }
}

async function runInfo(spec: MachineSpec, pool: SshConnectionPool, ms: number): Promise<BuilderInfo> {
  if (spec.kind === 'local') {
    const r = await execa('sh', ['-c', INFO_SCRIPT], {reject: false, timeout: ms, stdin: 'ignore'});
    return parseBuilderInfo(String(r.stdout) + '\n');
  }
  const r = await pool.run(spec, ['sh', '-c', INFO_SCRIPT]);
  return parseBuilderInfo(r.stdout.toString('utf8') + '\n');
}

/** The probe derivation: its only output is the probe object; its builder does not exist (never runs). */
function probeDerivation(system: string) {
  const out = probePath();
  return {
    drvPath: makeTextPath(`${PROBE_NAME}.drv`, out),
    drv: {
      outputs: [{name: 'out', path: out}],
      inputSrcs: [],
      platform: system,
      builder: 'builtin:hydra-ops-ping-probe',
      args: [],
      env: {name: PROBE_NAME, out, system, builder: 'builtin:hydra-ops-ping-probe'},
    },
  };
}

/** Probes one machine. Never throws: every failure is recorded in the facts. */
export async function probeMachine(spec: MachineSpec, options: ProbeOptions = {}): Promise<MachineFacts> {
  const ms = options.timeoutMs ?? 15_000;
  const pool = options.pool ?? new SshConnectionPool({connectTimeoutMs: ms});
  const facts: MachineFacts = {uri: spec.uri, connectMs: null};
  const sessions: Session[] = [];
  try {
    const t0 = performance.now();
    let session: Session;
    try {
      session = await withTimeout(openSession(spec, pool, options), ms + 1000, 'connect');
    } catch (e) {
      if (e instanceof SshTransportError) {
        facts.connectError = {kind: e.kind, message: e.message, fingerprint: e.details.fingerprint, expected: e.details.expected};
      } else {
        facts.connectError = {kind: e instanceof Timeout ? 'timeout' : 'spawn', message: (e as Error).message};
      }
      return facts;
    }
    sessions.push(session);
    facts.connectMs = Math.round(performance.now() - t0);
    // The builder's own facts, on a second channel of the same connection, while the serve session runs.
    const info = step('builder information', ms, () => runInfo(spec, pool, ms));

    facts.handshake = await step('serve handshake', ms, async () => {
      await session.client.handshake();
      const v = session.client.serverVersion;
      return {version: `${v >> 8}.${v & 0xff}`, serverVersion: v};
    });
    if (facts.handshake.ok) {
      const probe = probePath();
      const nar = narOfRegularFile(PROBE_CONTENTS);
      facts.import = await step('ImportPaths', ms, async () => {
        await session.client.importPaths([{path: probe, references: [], deriver: null, nar: () => Readable.from([nar])}]);
        return true as const;
      });
      facts.info = await info;
      const system = facts.info.value?.system ?? spec.systems[0] ?? 'builtin';
      const {drvPath, drv} = probeDerivation(system);
      // A refused import ends the serve session: the build probe gets a fresh one.
      if (!facts.import.ok) {
        try {
          session = await withTimeout(openSession(spec, pool, options), ms, 'connect');
          sessions.push(session);
          await withTimeout(session.client.handshake(), ms, 'serve handshake');
        } catch (e) {
          facts.build = {ok: false, ms: 0, error: (e as Error).message};
          return facts;
        }
      }
      facts.build = await step('BuildDerivation', ms, async () => {
        const r: BuildResult = await session.client.buildDerivation(drvPath, drv, {maxSilentTime: 30, buildTimeout: 30});
        if (r.status === 'AlreadyValid' || r.status === 'Built') return {status: r.status};
        // Anything else means the request was accepted (the privilege check comes first) but the probe's
        // output was not there to short-cut the build; the builder that does not exist then failed.
        if (/not privileged|not allowed|trusted/i.test(r.errorMsg)) throw new Error(r.errorMsg);
        return {status: r.status};
      });
    } else {
      facts.info = await info;
    }
    return facts;
  } finally {
    for (const s of sessions) await s.close().catch(() => {});
    if (!options.pool) pool.closeAll();
  }
}
