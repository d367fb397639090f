// Everything hydra-ops needs to know before it starts, from all sources at once, each value with
// the name of the place it came from. Precedence everywhere: command-line flags > environment >
// hydra-ops' persisted settings > defaults. hydra.conf is Hydra's own file: for the runner keys it
// is the fallback below hydra-ops' settings (max_unsupported_time is the one key both know).
//
// Database: --database-url > HYDRA_DATABASE_URL > HYDRA_DBI > DATABASE_URL > settings databaseUrl
// > the embedded server in <data dir>/pg. Empty environment variables count as unset.

import {existsSync, statSync} from 'node:fs';
import {join, resolve} from 'node:path';
import {ConfigError, quote} from './errors.js';
import {loginName} from './login-name.js';
import {dbiToUrl, describeDbi, parseDatabaseUrl, parseHydraDbi, type DbiConfig, type Env} from './dbi.js';
import {embeddedPgDir, resolveDataDir, type DataDirChoice, type DataDirOptions} from './data-dir.js';
import {defaultRunnerSettings, parseHydraConf, runnerKeyWarnings, type HydraConf, type RunnerField, type RunnerSettings} from './hydra-conf.js';
import {openSettings, parseSettingValue, type LogFormat, type SettingKey, type SettingValues, type SettingsStore} from './settings.js';

export interface ConfigFlags {
  /** --database-url */
  databaseUrl?: string;
  /** --data-dir (above HYDRA_DATA) */
  dataDir?: string;
  /** --hydra-config: hydra.conf path; must exist. */
  hydraConfig?: string;
  /** --user: Hydra user name to act as. */
  user?: string;
  /** --readonly */
  readonly?: boolean;
  /** --local-admin */
  localAdmin?: boolean;
  /** --max-unsupported-time (seconds) */
  maxUnsupportedTime?: number;
  /** --refresh-ms */
  refreshMs?: number;
  /** --status-address host:port */
  statusAddress?: string;
  /** --log-format */
  logFormat?: LogFormat;
}

export type DatabaseSource =
  | '--database-url'
  | 'HYDRA_DATABASE_URL'
  | 'HYDRA_DBI'
  | 'DATABASE_URL'
  | 'settings databaseUrl'
  | 'no database configured';

/** A configured server; structurally a `DatabaseTarget` of source/db/connection.ts. */
export interface ServerDatabase {
  kind: 'server';
  source: Exclude<DatabaseSource, 'no database configured'>;
  config: DbiConfig;
  /** Redacted URL (password `***`). */
  url: string;
  description: string;
}

/** The embedded PostgreSQL; structurally a `DatabaseTarget` of source/db/connection.ts. */
export interface EmbeddedDatabase {
  kind: 'embedded';
  source: 'no database configured';
  dir: string;
  /** The embeddedPort setting (loopback TCP); null: the Unix socket inside `dir`. */
  port: number | null;
  password: string;
  description: string;
}

export type DatabaseChoice = ServerDatabase | EmbeddedDatabase;

export interface Sourced<T> {
  value: T;
  /** Flag name, variable name, `settings`, `hydra.conf file:line`, `default`, … */
  source: string;
}

export interface HydraConfChoice {
  path: string;
  source: '--hydra-config' | 'HYDRA_CONFIG' | 'data directory';
  parsed: HydraConf;
}

export interface ResolvedConfig {
  database: DatabaseChoice;
  dataDir: DataDirChoice;
  /** hydra.conf when one was found; null otherwise. */
  hydraConf: HydraConfChoice | null;
  /** Runner settings: hydra.conf (C++ semantics) with hydra-ops flags and settings on top. */
  runner: RunnerSettings;
  runnerSources: Record<RunnerField, string>;
  /** Machines files to read (parsed elsewhere). */
  machinesFiles: Sourced<string[]>;
  hydraUser: Sourced<string>;
  readonly: Sourced<boolean>;
  localAdmin: Sourced<boolean>;
  refreshMs: Sourced<number>;
  statusAddress: Sourced<string>;
  /** Hydra's web UI (the console's `o`), when set. */
  hydraUrl: Sourced<string | null>;
  logFormat: Sourced<LogFormat>;
  settingsPath: string;
  /** hydra.conf warnings and other things an operator should see once. */
  warnings: string[];
}

export interface ResolveOptions {
  flags?: ConfigFlags;
  env: Env;
  /** Overrides for the data-directory probe (tests). */
  dataDirOptions?: DataDirOptions;
  /** Processor count for max_local_worker_threads (tests). */
  nproc?: number;
  /** Settings store to use instead of opening the one `env` designates. */
  settings?: SettingsStore;
}

const set = (value: string | undefined): value is string => value !== undefined && value !== '';

function chooseDatabase(flags: ConfigFlags, env: Env, settings: SettingsStore, dataDir: string): DatabaseChoice {
  const server = (source: ServerDatabase['source'], config: DbiConfig): ServerDatabase => ({
    kind: 'server',
    source,
    config,
    url: dbiToUrl(config),
    description: describeDbi(config),
  });
  if (set(flags.databaseUrl)) return server('--database-url', parseDatabaseUrl(flags.databaseUrl, {env, label: '--database-url'}));
  if (set(env.HYDRA_DATABASE_URL)) {
    return server('HYDRA_DATABASE_URL', parseDatabaseUrl(env.HYDRA_DATABASE_URL, {env, label: 'HYDRA_DATABASE_URL'}));
  }
  if (set(env.HYDRA_DBI)) return server('HYDRA_DBI', parseHydraDbi(env.HYDRA_DBI, {env, label: 'HYDRA_DBI'}));
  if (set(env.DATABASE_URL)) return server('DATABASE_URL', parseDatabaseUrl(env.DATABASE_URL, {env, label: 'DATABASE_URL'}));
  const stored = settings.getSetting('databaseUrl');
  if (stored !== undefined) {
    return server('settings databaseUrl', parseDatabaseUrl(stored, {env, label: `databaseUrl in ${settings.settingsPath()}`}));
  }
  const dir = embeddedPgDir(dataDir);
  const port = settings.getSetting('embeddedPort') ?? null;
  return {
    kind: 'embedded',
    source: 'no database configured',
    dir,
    port,
    password: settings.embeddedPassword(),
    description: `embedded PostgreSQL in ${dir} ${port !== null ? `on 127.0.0.1:${port}` : 'on a Unix socket in that directory'}`,
  };
}

function chooseHydraConf(flags: ConfigFlags, env: Env, dataDir: string, warnings: string[]): Omit<HydraConfChoice, 'parsed'> | null {
  const isFile = (path: string) => {
    try {
      return statSync(path).isFile();
    } catch {
      return false;
    }
  };
  if (set(flags.hydraConfig)) {
    const path = resolve(flags.hydraConfig);
    if (!isFile(path)) {
      throw new ConfigError(`--hydra-config: ${quote(flags.hydraConfig)} is not an existing file`, {field: '--hydra-config'});
    }
    return {path, source: '--hydra-config'};
  }
  if (set(env.HYDRA_CONFIG)) {
    const path = resolve(env.HYDRA_CONFIG);
    if (isFile(path)) return {path, source: 'HYDRA_CONFIG'};
    warnings.push(`HYDRA_CONFIG=${env.HYDRA_CONFIG} does not exist; running without hydra.conf, as Hydra does`);
    return null;
  }
  const path = join(dataDir, 'hydra.conf');
  return existsSync(path) && isFile(path) ? {path, source: 'data directory'} : null;
}

/** A flag value checked like the corresponding setting; errors name the flag. */
function checkFlag<K extends SettingKey>(key: K, flag: string, value: SettingValues[K]): SettingValues[K] {
  try {
    return parseSettingValue(key, String(value));
  } catch (error) {
    throw new ConfigError((error as Error).message.replace(`setting ${key}`, flag), {field: flag});
  }
}

function layered<K extends SettingKey>(
  key: K,
  flag: string,
  flagValue: SettingValues[K] | undefined,
  settings: SettingsStore,
): Sourced<SettingValues[K]> {
  if (flagValue !== undefined) return {value: checkFlag(key, flag, flagValue), source: flag};
  const value = settings.getSetting(key) as SettingValues[K];
  return {value, source: settings.hasSetting(key) ? 'settings' : 'default'};
}

export function resolveConfig(opts: ResolveOptions): ResolvedConfig {
  const flags = opts.flags ?? {};
  const env = opts.env;
  const settings = opts.settings ?? openSettings(env);
  const warnings: string[] = [];

  const dataDir: DataDirChoice = set(flags.dataDir)
    ? {dir: resolve(flags.dataDir), source: '--data-dir', reason: 'from --data-dir'}
    : resolveDataDir(env, opts.dataDirOptions);

  const database = chooseDatabase(flags, env, settings, dataDir.dir);

  const confChoice = chooseHydraConf(flags, env, dataDir.dir, warnings);
  const confOptions = {env, ...(opts.nproc !== undefined ? {nproc: opts.nproc} : {})};
  let hydraConf: HydraConfChoice | null = null;
  let runner: RunnerSettings;
  let runnerSources: Record<RunnerField, string>;
  if (confChoice) {
    const parsed = parseHydraConf(confChoice.path, confOptions);
    hydraConf = {...confChoice, parsed};
    warnings.push(...parsed.warnings, ...runnerKeyWarnings(parsed));
    runner = {...parsed.runner};
    runnerSources = {...parsed.runnerSources};
  } else {
    runner = defaultRunnerSettings(confOptions);
    runnerSources = Object.fromEntries(
      [...Object.keys(runner), 'queueRunnerEndpoint'].map((k) => [k, 'default']),
    ) as Record<RunnerField, string>;
  }
  if (flags.maxUnsupportedTime !== undefined) {
    runner.maxUnsupportedTime = checkFlag('maxUnsupportedTime', '--max-unsupported-time', flags.maxUnsupportedTime);
    runnerSources.maxUnsupportedTime = '--max-unsupported-time';
  } else if (settings.hasSetting('maxUnsupportedTime')) {
    runner.maxUnsupportedTime = settings.getSetting('maxUnsupportedTime')!;
    runnerSources.maxUnsupportedTime = 'settings';
  }

  const remoteSystems = (env.NIX_REMOTE_SYSTEMS ?? '').split(':').filter((p) => p !== '');
  const machinesFiles: Sourced<string[]> =
    remoteSystems.length > 0
      ? {value: remoteSystems, source: 'NIX_REMOTE_SYSTEMS'}
      : {value: ['/etc/nix/machines'], source: 'default'};

  let hydraUser: Sourced<string>;
  if (set(flags.user)) hydraUser = {value: flags.user, source: '--user'};
  else if (set(env.HYDRA_OPS_USER)) hydraUser = {value: env.HYDRA_OPS_USER, source: 'HYDRA_OPS_USER'};
  else if (settings.hasSetting('hydraUser')) hydraUser = {value: settings.getSetting('hydraUser')!, source: 'settings'};
  else hydraUser = {value: loginName(env), source: 'OS login name'};

  return {
    database,
    dataDir,
    hydraConf,
    runner,
    runnerSources,
    machinesFiles,
    hydraUser,
    readonly: layered('readonly', '--readonly', flags.readonly === true ? true : undefined, settings),
    localAdmin: layered('localAdmin', '--local-admin', flags.localAdmin === true ? true : undefined, settings),
    refreshMs: layered('refreshMs', '--refresh-ms', flags.refreshMs, settings),
    statusAddress: layered('statusAddress', '--status-address', flags.statusAddress, settings),
    hydraUrl: settings.hasSetting('hydraUrl') ? {value: settings.getSetting('hydraUrl') ?? null, source: 'settings'} : {value: null, source: 'default'},
    logFormat: layered('logFormat', '--log-format', flags.logFormat, settings),
    settingsPath: settings.settingsPath(),
    warnings,
  };
}
