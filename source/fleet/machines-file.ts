// The Nix/Hydra machines file: parsing, includes, and the implicit localhost machine.
//
// Format (one entry per line or per `;`-separated piece; `#` starts a comment):
//   <uri> <systems> <ssh-key> <max-jobs> <speed-factor> <supported-features> <mandatory-features> <public-host-key>
// A missing column or `-` takes its default. `@<path>` includes another file (a missing file is ignored).
// Only `ssh://` machines and `localhost` are supported; other store types are reported per line.
//
// Longer than the other modules because it is one file format: the column parsers, the includes and the implicit
// localhost machine all produce the same MachineSpec with the same per-line errors.
import {readFileSync, statSync} from 'node:fs';
import {readFile, stat} from 'node:fs/promises';
import {dirname, resolve} from 'node:path';
import {availableParallelism} from 'node:os';
import {execFile} from 'node:child_process';
import {promisify} from 'node:util';

export interface MachineSpec {
  /** Canonical identity key: `localhost` or `ssh://[user@]host[:port][?params]`. */
  uri: string;
  kind: 'ssh' | 'local';
  host: string;
  /** Explicit port from the URI; undefined means the SSH default (22). */
  port: number | undefined;
  /** Explicit user from the URI; undefined means the current user. */
  user: string | undefined;
  systems: string[];
  sshKey?: string;
  maxJobs: number;
  speedFactor: number;
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  /** Decoded column 8: an OpenSSH public-key line such as `ssh-ed25519 AAAA…`. */
  publicHostKey?: string;
  /** `?remote-store=` parameter: passed as `--store` to the remote nix-store. */
  remoteStore?: string;
  file: string;
  line: number;
}

export interface MachineFileError {
  file: string;
  line: number;
  field: string;
  column: number;
  problem: string;
  /** `file:line: field <name> (column N): <problem>` */
  message: string;
}

export interface MachineSource {
  file: string;
  exists: boolean;
  ino: number;
  mtimeMs: number;
  size: number;
}

export interface ParsedMachines {
  machines: MachineSpec[];
  errors: MachineFileError[];
}

export interface LoadedMachines extends ParsedMachines {
  /** Every file that was looked at (top-level files and includes), with its stat at read time. */
  sources: MachineSource[];
}

const FIELDS = [
  'uri',
  'systems',
  'ssh-key',
  'max-jobs',
  'speed-factor',
  'supported-features',
  'mandatory-features',
  'public-host-key',
] as const;

const MAX_INCLUDE_DEPTH = 16;

function makeError(file: string, line: number, column: number, problem: string, field?: string): MachineFileError {
  const name = field ?? FIELDS[column - 1] ?? `column-${column}`;
  return {file, line, field: name, column, problem, message: `${file}:${line}: field ${name} (column ${column}): ${problem}`};
}

class FieldError extends Error {
  constructor(
    readonly column: number,
    readonly problem: string,
  ) {
    super(problem);
  }
}

const STRICT_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64Strict(text: string): Buffer | undefined {
  if (!STRICT_BASE64.test(text)) return undefined;
  const body = text.replace(/=+$/, '');
  if (body.length % 4 === 1) return undefined;
  if (text.includes('=') && text.length % 4 !== 0) return undefined;
  return Buffer.from(body, 'base64');
}

/** Checks that `line` is `<type> <base64 blob>[ comment]` and that the blob names the same key type. */
export function checkPublicKeyLine(line: string): string | undefined {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2 || !/^[a-z0-9@.-]+$/i.test(parts[0]!)) {
    return "does not decode to an OpenSSH public-key line ('<type> <base64 key>')";
  }
  const blob = decodeBase64Strict(parts[1]!);
  if (!blob || blob.length < 4) return `key data of the decoded '${parts[0]}' line is not valid base64`;
  const len = blob.readUInt32BE(0);
  if (len > blob.length - 4) return `key data of the decoded '${parts[0]}' line is truncated`;
  const inner = blob.subarray(4, 4 + len).toString('latin1');
  if (inner !== parts[0]) return `key type '${parts[0]}' does not match the key data ('${inner}')`;
  return undefined;
}

const UNSUPPORTED_WORDS = ['auto', 'daemon', 'local'];
const HOST_NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$/;
const HOST_IPV6 = /^\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._-]+)?\]$/;
const USER_NAME = /^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$/;
const KNOWN_PARAMS = new Set(['remote-store']);

interface ParsedUri {
  uri: string;
  kind: 'ssh' | 'local';
  host: string;
  port: number | undefined;
  user: string | undefined;
  remoteStore: string | undefined;
}

function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  if (query === '') return params;
  for (const piece of query.split('&')) {
    if (piece === '') continue;
    const eq = piece.indexOf('=');
    const rawKey = eq < 0 ? piece : piece.slice(0, eq);
    const rawValue = eq < 0 ? '' : piece.slice(eq + 1);
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(rawKey);
      value = decodeURIComponent(rawValue);
    } catch {
      throw new FieldError(1, `malformed percent-encoding in parameter '${piece}'`);
    }
    if (!KNOWN_PARAMS.has(key)) throw new FieldError(1, `parameter '${key}' not supported (only remote-store)`);
    if (value === '') throw new FieldError(1, `parameter '${key}' has an empty value`);
    if (params.has(key)) throw new FieldError(1, `parameter '${key}' given twice`);
    params.set(key, value);
  }
  return params;
}

function parseUri(raw: string): ParsedUri {
  const queryAt = raw.indexOf('?');
  const bare = queryAt < 0 ? raw : raw.slice(0, queryAt);
  const query = queryAt < 0 ? '' : raw.slice(queryAt + 1);

  if (bare === 'localhost') {
    const params = parseQuery(query);
    return {uri: raw, kind: 'local', host: 'localhost', port: undefined, user: undefined, remoteStore: params.get('remote-store')};
  }
  let rest: string;
  const schemeAt = raw.indexOf('://');
  if (schemeAt >= 0) {
    const scheme = raw.slice(0, schemeAt);
    if (scheme !== 'ssh') throw new FieldError(1, `scheme '${scheme}://' not supported (only ssh:// and localhost)`);
    rest = raw.slice(schemeAt + 3);
  } else if (raw.includes('/')) {
    throw new FieldError(1, `store '${raw}' not supported (only ssh:// and localhost)`);
  } else if (UNSUPPORTED_WORDS.includes(bare) || bare === '') {
    throw new FieldError(1, `store type '${bare || raw}' not supported (only ssh:// and localhost)`);
  } else {
    rest = raw;
  }
  const restQueryAt = rest.indexOf('?');
  const authority = restQueryAt < 0 ? rest : rest.slice(0, restQueryAt);
  const params = parseQuery(restQueryAt < 0 ? '' : rest.slice(restQueryAt + 1));
  if (authority.includes('/')) throw new FieldError(1, `unexpected path in '${raw}' (expected ssh://[user@]host[:port])`);
  const at = authority.lastIndexOf('@');
  const user = at < 0 ? undefined : authority.slice(0, at);
  const hostPort = at < 0 ? authority : authority.slice(at + 1);
  if (user !== undefined && !USER_NAME.test(user)) throw new FieldError(1, `invalid user name '${user}'`);
  let host: string;
  let portText: string | undefined;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0) throw new FieldError(1, `unterminated '[' in host '${hostPort}'`);
    host = hostPort.slice(0, close + 1);
    const after = hostPort.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw new FieldError(1, `unexpected '${after}' after host '${host}'`);
      portText = after.slice(1);
    }
    if (!HOST_IPV6.test(host)) throw new FieldError(1, `invalid host '${host}'`);
  } else {
    const colon = hostPort.indexOf(':');
    host = colon < 0 ? hostPort : hostPort.slice(0, colon);
    portText = colon < 0 ? undefined : hostPort.slice(colon + 1);
    if (host === '') throw new FieldError(1, `missing host in '${raw}'`);
    if (!HOST_NAME.test(host)) throw new FieldError(1, `invalid host '${host}'`);
  }
  let port: number | undefined;
  if (portText !== undefined) {
    if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new FieldError(1, `invalid port '${portText}' (expected 1-65535)`);
    }
    port = Number(portText);
  }
  return {uri: `ssh://${rest}`, kind: 'ssh', host, port, user, remoteStore: params.get('remote-store')};
}

function splitList(text: string): string[] {
  return [...new Set(text.split(',').filter((s) => s !== ''))].sort();
}

function parseEntry(entry: string, file: string, line: number): MachineSpec {
  const tokens = entry.split(/[ \t\r\n]+/).filter((t) => t !== '');
  const isSet = (i: number) => tokens.length > i && tokens[i] !== '' && tokens[i] !== '-';
  if (!isSet(0)) throw new FieldError(1, 'store URI missing');
  const uri = parseUri(tokens[0]!);

  let maxJobs = 1;
  if (isSet(3)) {
    const t = tokens[3]!;
    if (!/^[0-9]+$/.test(t) || Number(t) > 0xffffffff) {
      throw new FieldError(4, `'${t}' is not an unsigned integer`);
    }
    maxJobs = Number(t);
  }
  let speedFactor = 1;
  if (isSet(4)) {
    const t = tokens[4]!;
    if (!/^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/.test(t) || !Number.isFinite(Number(t))) {
      throw new FieldError(5, `'${t}' is not a number`);
    }
    const v = Number(t);
    if (v < 0) throw new FieldError(5, `'${t}' is negative`);
    speedFactor = v === 0 ? 1 : v;
  }
  let publicHostKey: string | undefined;
  if (isSet(7)) {
    const t = tokens[7]!;
    const decoded = decodeBase64Strict(t);
    if (!decoded) throw new FieldError(8, `'${t.length > 24 ? t.slice(0, 24) + '…' : t}' is not valid base64`);
    const text = decoded.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(decoded) || /[\0\n]/.test(text.trim())) {
      throw new FieldError(8, "does not decode to an OpenSSH public-key line ('<type> <base64 key>')");
    }
    const problem = checkPublicKeyLine(text);
    if (problem) throw new FieldError(8, problem);
    publicHostKey = text.trim();
  }

  const spec: MachineSpec = {
    uri: uri.uri,
    kind: uri.kind,
    host: uri.host,
    port: uri.port,
    user: uri.user,
    systems: isSet(1) ? splitList(tokens[1]!) : [],
    maxJobs,
    speedFactor,
    supportedFeatures: isSet(5) ? splitList(tokens[5]!) : [],
    mandatoryFeatures: isSet(6) ? splitList(tokens[6]!) : [],
    file,
    line,
  };
  if (isSet(2)) spec.sshKey = tokens[2]!;
  if (publicHostKey !== undefined) spec.publicHostKey = publicHostKey;
  if (uri.remoteStore !== undefined) spec.remoteStore = uri.remoteStore;
  return spec;
}

interface ParseContext {
  machines: MachineSpec[];
  errors: MachineFileError[];
  seen: Map<string, MachineSpec>;
  sources: MachineSource[];
  stack: string[];
}

function statSource(file: string): MachineSource {
  try {
    const st = statSync(file);
    return {file, exists: true, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size};
  } catch {
    return {file, exists: false, ino: 0, mtimeMs: 0, size: 0};
  }
}

function parseInto(ctx: ParseContext, text: string, file: string): void {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    for (const piece of lines[i]!.split(';')) {
      let entry = piece.trim();
      const hash = entry.indexOf('#');
      if (hash >= 0) entry = entry.slice(0, hash);
      entry = entry.trim();
      if (entry === '') continue;

      if (entry.startsWith('@')) {
        includeFile(ctx, entry.slice(1).trim(), file, lineNo);
        continue;
      }
      try {
        const spec = parseEntry(entry, file, lineNo);
        const first = ctx.seen.get(spec.uri);
        if (first) {
          ctx.errors.push(
            makeError(file, lineNo, 1, `duplicate machine '${spec.uri}' (first defined at ${first.file}:${first.line})`),
          );
          continue;
        }
        ctx.seen.set(spec.uri, spec);
        ctx.machines.push(spec);
      } catch (e) {
        if (e instanceof FieldError) ctx.errors.push(makeError(file, lineNo, e.column, e.problem));
        else throw e;
      }
    }
  }
}

function includeFile(ctx: ParseContext, path: string, fromFile: string, lineNo: number): void {
  if (path === '') {
    ctx.errors.push(makeError(fromFile, lineNo, 1, "empty include path after '@'", 'include'));
    return;
  }
  // Relative include paths are resolved against the including file's directory.
  const target = resolve(dirname(fromFile), path);
  if (ctx.stack.includes(target)) {
    ctx.errors.push(makeError(fromFile, lineNo, 1, `include cycle: '${target}' is already being read`, 'include'));
    return;
  }
  if (ctx.stack.length >= MAX_INCLUDE_DEPTH) {
    ctx.errors.push(makeError(fromFile, lineNo, 1, `includes nested deeper than ${MAX_INCLUDE_DEPTH}`, 'include'));
    return;
  }
  let text: string;
  try {
    text = readFileSync(target, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    ctx.sources.push(statSource(target));
    if (err.code === 'ENOENT') return; // a missing include is ignored, as Nix does
    ctx.errors.push(makeError(fromFile, lineNo, 1, `cannot read '${target}': ${err.code ?? err.message}`, 'include'));
    return;
  }
  ctx.sources.push(statSource(target));
  ctx.stack.push(target);
  try {
    parseInto(ctx, text, target);
  } finally {
    ctx.stack.pop();
  }
}

function newContext(): ParseContext {
  return {machines: [], errors: [], seen: new Map(), sources: [], stack: []};
}

/** Parses machines-file text. `file` names the text in errors and anchors relative includes. */
export function parseMachinesText(text: string, file: string): ParsedMachines {
  const ctx = newContext();
  ctx.stack.push(resolve(file));
  parseInto(ctx, text, file);
  return {machines: ctx.machines, errors: ctx.errors};
}

/**
 * Reads and parses the given machines files in order (as if concatenated; a URI may appear only once
 * across all of them). Missing files are skipped and reported in `sources` with `exists: false`.
 */
export async function loadMachinesFiles(files: string[]): Promise<LoadedMachines> {
  const ctx = newContext();
  for (const file of files) {
    let text: string;
    let source: MachineSource;
    try {
      const st = await stat(file);
      text = await readFile(file, 'utf8');
      source = {file, exists: true, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size};
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      ctx.sources.push({file, exists: false, ino: 0, mtimeMs: 0, size: 0});
      if (err.code !== 'ENOENT') ctx.errors.push(makeError(file, 0, 0, `cannot read file: ${err.code ?? err.message}`, 'file'));
      continue;
    }
    ctx.sources.push(source);
    ctx.stack.push(resolve(file));
    parseInto(ctx, text, file);
    ctx.stack.pop();
  }
  return {machines: ctx.machines, errors: ctx.errors, sources: ctx.sources};
}

/**
 * The machines files Hydra's queue runner reads: `NIX_REMOTE_SYSTEMS` (colon-separated) when set,
 * else `/etc/nix/machines` when it exists, else none (→ the implicit localhost machine).
 */
export function machinesFilesFromEnv(env: NodeJS.ProcessEnv = process.env, defaultFile = '/etc/nix/machines'): string[] {
  const value = env.NIX_REMOTE_SYSTEMS;
  if (value !== undefined) return value.split(':').filter((f) => f !== '');
  try {
    statSync(defaultFile);
    return [defaultFile];
  } catch {
    return [];
  }
}

const execFileAsync = promisify(execFile);

export interface LocalNixSettings {
  system: string;
  /** Nix's `extra-platforms`: further systems this machine builds (e.g. i686-linux on x86_64-linux). */
  extraPlatforms?: string[];
  maxJobs: number;
  systemFeatures: string[];
}

function stringList(raw: unknown): string[] {
  return Array.isArray(raw)
    ? raw.filter((f): f is string => typeof f === 'string' && f !== '')
    : typeof raw === 'string'
      ? raw.split(/\s+/).filter((f) => f !== '')
      : [];
}

/** Reads the local Nix settings (`nix show-config --json`, Nix 2.8 needs the nix-command feature flag). */
export async function localNixSettings(env: NodeJS.ProcessEnv = process.env): Promise<LocalNixSettings> {
  let json: Record<string, {value: unknown}>;
  try {
    const {stdout} = await execFileAsync('nix', ['show-config', '--json', '--extra-experimental-features', 'nix-command'], {
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
    json = JSON.parse(stdout) as Record<string, {value: unknown}>;
  } catch (e) {
    throw new Error(`cannot read the local Nix configuration with 'nix show-config': ${(e as Error).message}`);
  }
  const system = json.system?.value;
  if (typeof system !== 'string' || system === '') throw new Error("'nix show-config' reported no 'system'");
  const rawJobs = json['max-jobs']?.value;
  let maxJobs: number;
  if (rawJobs === 'auto') maxJobs = availableParallelism();
  else if (typeof rawJobs === 'number' && Number.isInteger(rawJobs) && rawJobs >= 0) maxJobs = rawJobs;
  else if (typeof rawJobs === 'string' && /^[0-9]+$/.test(rawJobs)) maxJobs = Number(rawJobs);
  else maxJobs = 1;
  const systemFeatures = stringList(json['system-features']?.value);
  const extraPlatforms = stringList(json['extra-platforms']?.value);
  return {system, extraPlatforms, maxJobs, systemFeatures};
}

/**
 * The machine Hydra uses when no machines file is configured: `localhost` with the local system
 * (plus i686-linux on x86_64-linux), Nix's max-jobs, speed factor 1 and the local system features. hydra-ops also
 * lists Nix's `extra-platforms`, which local Nix builds (Hydra's src/hydra-queue-runner/state.cc lists only the
 * system): a preferLocalBuild step of such a platform then has a machine.
 */
export async function implicitLocalhost(env: NodeJS.ProcessEnv = process.env): Promise<MachineSpec> {
  const nix = await localNixSettings(env);
  return implicitLocalhostFrom(nix);
}

export function implicitLocalhostFrom(nix: LocalNixSettings): MachineSpec {
  const systems = [...new Set([...(nix.system === 'x86_64-linux' ? ['i686-linux', 'x86_64-linux'] : [nix.system]), ...(nix.extraPlatforms ?? [])])];
  return {
    uri: 'localhost',
    kind: 'local',
    host: 'localhost',
    port: undefined,
    user: undefined,
    systems,
    maxJobs: nix.maxJobs,
    speedFactor: 1,
    supportedFeatures: [...new Set(nix.systemFeatures)].sort(),
    mandatoryFeatures: [],
    file: '(implicit)',
    line: 0,
  };
}
