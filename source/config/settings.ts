// hydra-ops' own persisted settings (`hydra-ops config get|set|unset|list`), stored as JSON in `$HYDRA_OPS_CONFIG_DIR/config.json`, else `$XDG_CONFIG_HOME/hydra-ops/config.json`,
// else `~/.config/hydra-ops/config.json`. The file holds the embedded server's password, so it is
// written with mode 0600 (from creation: private-file.ts) and a directory we create is 0700. Reading and writing use node:fs directly: every command reads the
// settings, and a command line that answers fast cannot afford a settings library's start-up (a schema
// compiler took about as long as the rest of a script-mode command).
//
// Defaults live here, not in the file: opening the settings never writes anything, and a later
// change of a default reaches every installation that did not set the key explicitly.
// Chosen defaults:
//   embeddedPort unset   — the embedded server listens only on a Unix socket inside its data
//                          directory (source/db/embedded-endpoint.ts), so servers of different
//                          users and data directories never compete for a port; set it to have
//                          the server listen on 127.0.0.1 on that port instead (for TCP tools);
//                          its identity is verified either way.
//   statusAddress 127.0.0.1:8081 — loopback only; next to the Rust runner's 8080 so both can run
//                          on one host during a migration;
//   refreshMs 2000       — the console's polling period (k9s' default);
//   logFormat text, readonly false, localAdmin false.

import {randomBytes} from 'node:crypto';
import {mkdirSync, readFileSync} from 'node:fs';
import {writePrivateFile} from './private-file.js';
import {homedir} from 'node:os';
import {join, resolve} from 'node:path';
import {ConfigError, quote} from './errors.js';
import {parseDatabaseUrl, type Env} from './dbi.js';
import {parseEnvNames} from './child-env.js';

export type LogFormat = 'text' | 'json';

export interface SettingValues {
  databaseUrl: string;
  embeddedPort: number;
  embeddedPassword: string;
  hydraUser: string;
  readonly: boolean;
  localAdmin: boolean;
  refreshMs: number;
  statusAddress: string;
  logFormat: LogFormat;
  maxUnsupportedTime: number;
  reproSamplePercent: number;
  diffHook: string;
  commandEnv: string;
  hydraUrl: string;
}

export type SettingKey = keyof SettingValues;
type Stored = Partial<SettingValues> & Record<string, unknown>;

export const SETTING_DEFAULTS = {
  readonly: false,
  localAdmin: false,
  refreshMs: 2000,
  statusAddress: '127.0.0.1:8081',
  logFormat: 'text',
} as const satisfies Partial<SettingValues>;

type Kind = 'string' | 'integer' | 'boolean' | 'enum';
interface KeySpec {
  kind: Kind;
  description: string;
  minimum?: number;
  maximum?: number;
  values?: readonly string[];
  /** Extra check on the parsed value; returns a problem description or undefined. */
  check?: (value: string) => string | undefined;
  secret?: boolean;
}

function checkAddress(value: string): string | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):([0-9]+)$/.exec(value);
  if (!match) return `expected host:port (e.g. 127.0.0.1:8081 or [::1]:8081), got ${quote(value)}`;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return `port ${quote(match[2]!)} in ${quote(value)} is not in 1..65535`;
  return undefined;
}

function checkEnvNames(value: string): string | undefined {
  try {
    parseEnvNames(value);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

function checkWebUrl(value: string): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return `expected an http(s) URL such as https://hydra.example.org, got ${quote(value)}`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `expected an http:// or https:// URL, got ${quote(value)}`;
  return undefined;
}

function checkUrl(value: string): string | undefined {
  try {
    parseDatabaseUrl(value, {label: 'databaseUrl'});
    return undefined;
  } catch (error) {
    return (error as Error).message.replace(/^databaseUrl: /, '');
  }
}

export const SETTING_SPECS: Readonly<Record<SettingKey, KeySpec>> = {
  databaseUrl: {kind: 'string', description: 'postgres:// URL of the Hydra database', check: checkUrl, secret: true},
  embeddedPort: {kind: 'integer', minimum: 1, maximum: 65535, description: 'TCP port on 127.0.0.1 for the embedded PostgreSQL (unset: a Unix socket in the data directory only)'},
  embeddedPassword: {kind: 'string', description: 'password of the embedded PostgreSQL (generated)', secret: true},
  hydraUser: {kind: 'string', description: 'Hydra user name the operator acts as'},
  readonly: {kind: 'boolean', description: 'refuse every mutating action'},
  localAdmin: {kind: 'boolean', description: 'treat the local operator as a Hydra admin'},
  refreshMs: {kind: 'integer', minimum: 100, maximum: 3_600_000, description: 'console refresh period in milliseconds'},
  statusAddress: {kind: 'string', description: 'host:port of the daemon status/metrics endpoint', check: checkAddress},
  logFormat: {kind: 'enum', values: ['text', 'json'], description: 'daemon log format'},
  maxUnsupportedTime: {
    kind: 'integer',
    minimum: 0,
    maximum: 31_536_000,
    description: 'seconds a step may lack a capable machine before it fails as unsupported',
  },
  reproSamplePercent: {
    kind: 'integer',
    minimum: 0,
    maximum: 100,
    description: 'share (%) of newly successful builds the daemon re-checks for reproducibility on idle machines (0 = off)',
  },
  commandEnv: {
    kind: 'string',
    description: 'names of extra environment variables post-build commands and the diff hook get (e.g. HYDRA_DBI); default none',
    check: checkEnvNames,
  },
  hydraUrl: {kind: 'string', description: "base URL of Hydra's web UI, for the console's `o` (e.g. https://hydra.example.org)", check: checkWebUrl},
  diffHook: {kind: 'string', description: 'program run on a reproducibility mismatch with old path, new path, drv path, check dir (default: diffoscope if installed, else built-in)'},
};

export const SETTING_KEYS = Object.keys(SETTING_SPECS) as SettingKey[];

/** Why a stored value does not fit its key, or undefined (the file may have been edited by hand). */
function storedProblem(key: SettingKey, value: unknown): string | undefined {
  const spec = SETTING_SPECS[key];
  switch (spec.kind) {
    case 'enum':
      return typeof value === 'string' && spec.values!.includes(value) ? undefined : `must be one of ${spec.values!.join(', ')}`;
    case 'integer':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) return 'must be an integer';
      if (spec.minimum !== undefined && value < spec.minimum) return `must be >= ${spec.minimum}`;
      if (spec.maximum !== undefined && value > spec.maximum) return `must be <= ${spec.maximum}`;
      return undefined;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : 'must be a boolean';
    case 'string':
      return typeof value === 'string' && value !== '' ? undefined : 'must be a non-empty string';
  }
}

function readStored(file: string): Stored {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const err = error as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') return {};
    throw new ConfigError(`${file}: ${err.code ?? ''}${err.code ? ' ' : ''}${err.message}`, {file});
  }
  if (text.trim() === '') return {};
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${file}: not valid JSON (${(error as Error).message}); fix or delete the file`, {file});
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ConfigError(`${file}: invalid settings: expected a JSON object`, {file});
  for (const [key, value] of Object.entries(data)) {
    if (!(SETTING_KEYS as string[]).includes(key)) continue;
    const problem = storedProblem(key as SettingKey, value);
    if (problem) throw new ConfigError(`${file}: invalid setting \`${key}\` ${problem}`, {file, field: key});
  }
  return data as Stored;
}

/** Replaces the file atomically; the new file is 0600 from the moment it exists (private-file.ts). */
function writeStored(dir: string, file: string, data: Stored): void {
  try {
    mkdirSync(dir, {recursive: true, mode: 0o700});
    writePrivateFile(file, `${JSON.stringify(data, null, '\t')}\n`);
  } catch (error) {
    const err = error as NodeJS.ErrnoException;
    throw new ConfigError(`${file}: cannot write the settings: ${err.code ?? ''}${err.code ? ' ' : ''}${err.message}`, {file});
  }
}

/** Directory of the settings file for this environment. */
export function settingsDir(env: Env): string {
  if (env.HYDRA_OPS_CONFIG_DIR) return resolve(env.HYDRA_OPS_CONFIG_DIR);
  const base = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith('/') ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), '.config');
  return join(base, 'hydra-ops');
}

/** Turns the text an operator typed into the setting's type; throws ConfigError naming key and type. */
export function parseSettingValue<K extends SettingKey>(key: K, raw: string): SettingValues[K] {
  const spec = SETTING_SPECS[key];
  const bad = (expected: string): never => {
    throw new ConfigError(`setting ${key}: expected ${expected}, got ${quote(raw)}`, {field: key});
  };
  const text = raw.trim();
  let value: unknown;
  switch (spec.kind) {
    case 'integer': {
      const range =
        spec.maximum !== undefined ? `an integer ${spec.minimum}..${spec.maximum}` : `an integer >= ${spec.minimum}`;
      if (!/^-?[0-9]+$/.test(text)) bad(range);
      const n = Number(text);
      if (!Number.isSafeInteger(n) || n < (spec.minimum ?? -Infinity) || n > (spec.maximum ?? Infinity)) bad(range);
      value = n;
      break;
    }
    case 'boolean': {
      const lower = text.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(lower)) value = true;
      else if (['false', '0', 'no', 'off'].includes(lower)) value = false;
      else bad('a boolean (true/false, 1/0, yes/no, on/off)');
      break;
    }
    case 'enum':
      if (!spec.values!.includes(text)) bad(`one of ${spec.values!.join(', ')}`);
      value = text;
      break;
    case 'string': {
      if (text === '') bad('a non-empty string');
      const problem = spec.check?.(text);
      if (problem !== undefined) {
        throw new ConfigError(`setting ${key}: ${problem}`, {field: key});
      }
      value = text;
      break;
    }
  }
  return value as SettingValues[K];
}

export interface SettingInfo {
  key: SettingKey;
  /** Effective value (stored, else default); secrets are not masked here. */
  value: SettingValues[SettingKey] | undefined;
  source: 'settings' | 'default' | 'unset';
  description: string;
  secret: boolean;
}

export interface SettingsStore {
  /** The stored value, else the default, else undefined. */
  getSetting<K extends SettingKey>(key: K): SettingValues[K] | undefined;
  /** True when the key is stored in the file (not just defaulted). */
  hasSetting(key: SettingKey): boolean;
  /** Parses `raw` into the key's type and stores it. Throws ConfigError. */
  setSetting(key: string, raw: string): void;
  unsetSetting(key: string): void;
  /** Path of the settings file (it may not exist yet). */
  settingsPath(): string;
  listSettings(): SettingInfo[];
  /** The embedded server's password, generated and stored on first use. */
  embeddedPassword(): string;
}

function assertKey(key: string): SettingKey {
  if (!(SETTING_KEYS as string[]).includes(key)) {
    throw new ConfigError(`unknown setting ${quote(key)} (known settings: ${SETTING_KEYS.join(', ')})`, {field: key});
  }
  return key as SettingKey;
}

/** Opens the settings for this environment. Reads nothing and writes nothing yet. */
export function openSettings(env: Env): SettingsStore {
  const dir = settingsDir(env);
  const file = join(dir, 'config.json');
  // Read on every access, so a value set by another process is never served stale.
  const read = (): Stored => readStored(file);
  const update = (change: (data: Stored) => void): void => {
    const data = {...read()};
    change(data);
    writeStored(dir, file, data);
  };

  const api: SettingsStore = {
    getSetting(key) {
      assertKey(key);
      const stored = read()[key];
      if (stored !== undefined) return stored as SettingValues[typeof key];
      return (SETTING_DEFAULTS as Partial<SettingValues>)[key];
    },
    hasSetting(key) {
      assertKey(key);
      return read()[key] !== undefined;
    },
    setSetting(key, raw) {
      const k = assertKey(key);
      const value = parseSettingValue(k, raw);
      update((data) => {
        data[k] = value as never;
      });
    },
    unsetSetting(key) {
      const k = assertKey(key);
      if (read()[k] === undefined) return;
      update((data) => {
        delete data[k];
      });
    },
    settingsPath() {
      return file;
    },
    listSettings() {
      const stored = read();
      return SETTING_KEYS.map((key) => {
        const spec = SETTING_SPECS[key];
        const own = stored[key] as SettingValues[SettingKey] | undefined;
        const fallback = (SETTING_DEFAULTS as Partial<SettingValues>)[key];
        return {
          key,
          value: own ?? fallback,
          source: own !== undefined ? 'settings' : fallback !== undefined ? 'default' : 'unset',
          description: spec.description,
          secret: spec.secret === true,
        } satisfies SettingInfo;
      });
    },
    embeddedPassword() {
      const existing = read().embeddedPassword;
      if (typeof existing === 'string' && existing !== '') return existing;
      const generated = randomBytes(24).toString('base64url');
      update((data) => {
        data.embeddedPassword = generated;
      });
      return generated;
    },
  };
  return api;
}
