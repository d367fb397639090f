// Database connection strings: Hydra's Perl-DBI form (HYDRA_DBI) and postgres:// URLs
// (HYDRA_DATABASE_URL, DATABASE_URL, --database-url), both turned into one node-postgres
// client configuration.
//
// HYDRA_DBI grammar (what Hydra's queue runner and DBD::Pg accept): the prefix `dbi:Pg:`
// (or `DBI:Pg:`), then a libpq conninfo string in which `;` also separates pairs:
//   key=value    `key = value`    key='quoted \' value'    trailing or doubled `;` allowed
// Supported keys are the libpq ones node-postgres can honour:
//   dbname host hostaddr port user password sslmode connect_timeout application_name options
// Anything else is rejected (libpq rejects unknown keys too), including DBD::Pg's aliases
// `database`/`db`, which Hydra's queue runner passes to libpq unchanged and libpq refuses.
// Decisions where libpq and node-postgres differ:
// - host absent: libpq uses the Unix socket directory; node-postgres would use TCP localhost.
//   An absent host becomes $PGHOST when set, else DEFAULT_SOCKET_DIR (Debian and NixOS).
// - hostaddr: accepted (numeric IP only). The connection goes to hostaddr; a host given as well
//   is then only used as the TLS server name, as in libpq.
// - sslmode: disable/allow/prefer → no TLS (node-postgres cannot fall back between plain and
//   TLS, so allow/prefer behave like disable); require → TLS without certificate checks;
//   verify-ca → certificate chain checked, host name not; verify-full → both. Without sslmode
//   node-postgres reads PGSSLMODE itself, like libpq.
// - an empty value (`host=`) means "not given", as in libpq.
// - a key given twice is an error (libpq silently takes the last one).
// Error messages quote the offending part with its 1-based position; password values are masked
// with as many `*` as they have characters, so positions still line up.
//
// Longer than the other modules because it is one key table read from two syntaxes (HYDRA_DBI and URLs) that share
// its validation and its rendering back to a URL.

import {isIP} from 'node:net';
import {ConfigError, quote} from './errors.js';
import {closestWord} from './edit-distance.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** libpq's compiled-in socket directory on Debian and NixOS. */
export const DEFAULT_SOCKET_DIR = '/run/postgresql';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/** TLS host-name check that accepts any name: used for sslmode=verify-ca. */
export function skipHostnameCheck(): undefined {
  return undefined;
}

export interface PgSslConfig {
  rejectUnauthorized: boolean;
  checkServerIdentity?: typeof skipHostnameCheck;
  servername?: string;
}

/** A node-postgres client configuration (`new pg.Client(config)`), plain data. */
export interface DbiConfig {
  host: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  ssl?: false | PgSslConfig;
  connectionTimeoutMillis?: number;
  application_name?: string;
  options?: string;
}

export const DBI_KEYS = [
  'dbname',
  'host',
  'hostaddr',
  'port',
  'user',
  'password',
  'sslmode',
  'connect_timeout',
  'application_name',
  'options',
] as const;
type DbiKey = (typeof DBI_KEYS)[number];

const PREFIXES = ['dbi:Pg:', 'DBI:Pg:'];
const EXAMPLE = 'dbi:Pg:dbname=hydra;host=…;user=…';

export interface ParseDbiOptions {
  /** Environment used for an absent host (PGHOST). Defaults to none. */
  env?: Env;
  /** Name of the variable the string came from, used in messages. */
  label?: string;
}

// ---------------------------------------------------------------------------------------
// HYDRA_DBI

/** Masks password values (same length, so reported positions still line up). */
function maskDbi(dbi: string): string {
  return dbi.replace(
    /(password[ \t]*=[ \t]*)('(?:[^'\\]|\\.)*'?|(?:[^\s;\\]|\\.)*)/g,
    (_all, lead: string, value: string) => lead + '*'.repeat(value.length),
  );
}

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
}

function isSeparator(c: string): boolean {
  return c === ';' || isSpace(c);
}

/** Parses Hydra's `dbi:Pg:…` string into a node-postgres configuration. Throws ConfigError. */
export function parseHydraDbi(dbi: string, opts: ParseDbiOptions = {}): DbiConfig {
  const label = opts.label ?? 'HYDRA_DBI';
  const shown = quote(maskDbi(dbi));
  const fail = (what: string): never => {
    throw new ConfigError(`${label}: ${what} in ${shown}`, {field: label});
  };

  if (dbi.trim() === '') {
    throw new ConfigError(`${label}: empty; expected a string like ${quote(EXAMPLE)}`, {field: label});
  }
  const prefix = PREFIXES.find((p) => dbi.startsWith(p));
  if (prefix === undefined) {
    if (/^(postgres|postgresql):\/\//i.test(dbi)) {
      fail(`a URL is not a DBI string (expected prefix "dbi:Pg:"; put URLs in HYDRA_DATABASE_URL)`);
    }
    // Matched on the masked text: without the prefix's ':' a password may sit inside what looks like the driver.
    const driver = /^dbi:([^:]*):?/i.exec(maskDbi(dbi));
    if (driver && driver[1]!.toLowerCase() === 'pg' && driver[1] !== 'Pg') {
      fail(`driver ${quote(driver[0])} at position 1: the driver name is case-sensitive, write "dbi:Pg:"`);
    }
    if (driver && driver[1] !== 'Pg') {
      fail(`driver ${quote(driver[0])} at position 1 does not denote a PostgreSQL database (expected "dbi:Pg:")`);
    }
    if (driver) {
      fail(`prefix ${quote(driver[0])} at position 1 must be written "dbi:Pg:" or "DBI:Pg:"`);
    }
    fail(`must start with "dbi:Pg:" but starts with ${quote(maskDbi(dbi).slice(0, 7))} at position 1`);
  }

  // libpq reads conninfo as a C string; a NUL would silently cut the value short.
  if (dbi.includes('\0')) fail(`NUL character at position ${dbi.indexOf('\0') + 1}`);

  const s = dbi;
  const n = s.length;
  let i = prefix!.length;
  const seen = new Map<string, number>();
  const pairs: Array<{key: string; value: string; pos: number; valuePos: number}> = [];

  for (;;) {
    while (i < n && isSeparator(s[i]!)) i++;
    if (i >= n) break;
    const keyStart = i;
    while (i < n && !isSeparator(s[i]!) && s[i] !== '=') i++;
    const key = s.slice(keyStart, i);
    if (key === '') fail(`empty key before "=" at position ${keyStart + 1}`);
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
    if (s[i] !== '=') {
      fail(`missing "=" after key ${quote(key)} at position ${keyStart + 1}`);
    }
    i++;
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
    const valuePos = i;
    let value = '';
    if (s[i] === "'") {
      i++;
      let closed = false;
      while (i < n) {
        const c = s[i]!;
        if (c === '\\') {
          if (i + 1 >= n) break;
          value += s[i + 1];
          i += 2;
        } else if (c === "'") {
          closed = true;
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed) fail(`unterminated quoted value for key ${quote(key)} starting at position ${valuePos + 1}`);
      if (i < n && !isSeparator(s[i]!)) {
        fail(`unexpected ${quote(s[i]!)} after the quoted value of ${quote(key)} at position ${i + 1}`);
      }
    } else {
      while (i < n && !isSeparator(s[i]!)) {
        const c = s[i]!;
        if (c === '\\') {
          if (i + 1 >= n) fail(`trailing backslash in the value of ${quote(key)} at position ${i + 1}`);
          value += s[i + 1];
          i += 2;
        } else {
          value += c;
          i++;
        }
      }
    }
    const first = seen.get(key);
    if (first !== undefined) {
      fail(`duplicate key ${quote(key)} at position ${keyStart + 1} (first given at position ${first})`);
    }
    seen.set(key, keyStart + 1);
    pairs.push({key, value, pos: keyStart + 1, valuePos: valuePos + 1});
  }

  if (pairs.length === 0) {
    fail(`no connection parameters after ${quote(prefix!)} (expected e.g. ${quote(EXAMPLE)})`);
  }

  const params = new Map<DbiKey, string>();
  for (const {key, value, pos, valuePos} of pairs) {
    if (!(DBI_KEYS as readonly string[]).includes(key)) {
      fail(`unknown key ${quote(key)} at position ${pos}${suggestion(key)}`);
    }
    checkValue(key as DbiKey, value, (what, why) => fail(`${what} at position ${valuePos} (${why})`));
    if (value !== '') params.set(key as DbiKey, value);
  }
  return buildConfig(params, opts.env ?? {});
}

// ---------------------------------------------------------------------------------------
// Shared key handling

function suggestion(key: string): string {
  if (key === 'database' || key === 'db') return ` (Hydra's queue runner passes it to libpq, which only knows "dbname")`;
  const best = closestWord(key.toLowerCase(), DBI_KEYS, 2);
  return best ? ` (did you mean ${quote(best)}?)` : ` (known keys: ${DBI_KEYS.join(', ')})`;
}

/** Validates one value; `problem` receives a description that quotes the bad value. */
function checkValue(key: DbiKey, value: string, problem: (what: string, why: string) => never): void {
  if (value === '') return;
  switch (key) {
    case 'port':
      if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > 65535) {
        problem(`bad port ${quote(value)}`, 'must be an integer 1..65535');
      }
      return;
    case 'host':
      if (value.includes(',')) problem(`multiple hosts ${quote(value)}`, 'only one host is supported');
      return;
    case 'hostaddr':
      if (isIP(value) === 0) problem(`hostaddr ${quote(value)}`, 'must be a numeric IP address');
      return;
    case 'sslmode':
      if (!(SSL_MODES as readonly string[]).includes(value)) {
        problem(`bad sslmode ${quote(value)}`, `expected one of ${SSL_MODES.join(', ')}`);
      }
      return;
    case 'connect_timeout':
      if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) {
        problem(`bad connect_timeout ${quote(value)}`, 'must be a whole number of seconds');
      }
      return;
    default:
      return;
  }
}

function buildConfig(params: Map<DbiKey, string>, env: Env): DbiConfig {
  const host = params.get('host');
  const hostaddr = params.get('hostaddr');
  const config: DbiConfig = {host: hostaddr ?? host ?? (env.PGHOST || DEFAULT_SOCKET_DIR)};
  const port = params.get('port');
  if (port !== undefined) config.port = Number(port);
  const database = params.get('dbname');
  if (database !== undefined) config.database = database;
  const user = params.get('user');
  if (user !== undefined) config.user = user;
  const password = params.get('password');
  if (password !== undefined) config.password = password;
  const sslmode = params.get('sslmode') as SslMode | undefined;
  if (sslmode !== undefined) {
    if (sslmode === 'disable' || sslmode === 'allow' || sslmode === 'prefer') {
      config.ssl = false;
    } else if (sslmode === 'require') {
      config.ssl = {rejectUnauthorized: false};
    } else if (sslmode === 'verify-ca') {
      config.ssl = {rejectUnauthorized: true, checkServerIdentity: skipHostnameCheck};
    } else {
      config.ssl = {rejectUnauthorized: true};
    }
    if (config.ssl && hostaddr !== undefined && host !== undefined) config.ssl.servername = host;
  }
  const timeout = params.get('connect_timeout');
  if (timeout !== undefined) config.connectionTimeoutMillis = Number(timeout) * 1000;
  const application = params.get('application_name');
  if (application !== undefined) config.application_name = application;
  const options = params.get('options');
  if (options !== undefined) config.options = options;
  return config;
}

// ---------------------------------------------------------------------------------------
// postgres:// URLs

function maskUrl(url: string): string {
  return url
    .replace(/^([a-z]+:\/\/[^:/@?#]*:)([^@/?#]*)@/i, (_all, lead: string) => `${lead}***@`)
    .replace(/([?&]password=)[^&#]*/gi, (_all, lead: string) => `${lead}***`);
}

function decode(part: string, what: string, fail: (what: string) => never): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return fail(`bad percent-encoding in the ${what} ${quote(part)}`);
  }
}

/**
 * Parses a `postgres://` or `postgresql://` URL (libpq URI syntax) into the same configuration
 * as parseHydraDbi: `postgresql://user:pw@host:port/db?sslmode=require`; an empty host means the
 * Unix socket directory, which may also be given as `?host=/run/postgresql` or percent-encoded
 * in the host part. Query parameters are the DBI keys. Throws ConfigError.
 */
export function parseDatabaseUrl(url: string, opts: ParseDbiOptions = {}): DbiConfig {
  const label = opts.label ?? 'database URL';
  const shown = quote(maskUrl(url));
  const fail = (what: string): never => {
    throw new ConfigError(`${label}: ${what} in ${shown}`, {field: label});
  };
  if (url.trim() === '') {
    throw new ConfigError(`${label}: empty; expected a URL like "postgresql://user@host:5432/hydra"`, {field: label});
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1];
  if (scheme === undefined || !/^postgres(ql)?$/i.test(scheme)) {
    if (/^dbi:/i.test(url)) fail(`a DBI string is not a URL (put it in HYDRA_DBI)`);
    fail(`scheme ${quote(scheme ?? url.slice(0, 12))} is not "postgres://" or "postgresql://"`);
  }
  if (!url.slice(scheme!.length + 1).startsWith('//')) fail(`expected "//" after ${quote(scheme + ':')}`);
  const authority = /^[^:]+:\/\/([^/?#]*)/.exec(url)![1]!;
  const hostPart = authority.includes('@') ? authority.slice(authority.lastIndexOf('@') + 1) : authority;
  if (hostPart.includes(',')) fail(`multiple hosts ${quote(hostPart)} (only one host is supported)`);

  // libpq allows an empty host after user info (`postgresql://user@/db`, `postgresql://:5433/db`),
  // WHATWG URL parsing does not: parse with a stand-in host and drop it afterwards.
  const emptyHost = hostPart === '' || hostPart.startsWith(':');
  const standIn = 'empty-host.invalid';
  const authorityStart = scheme!.length + 3;
  const userInfo = authority.length - hostPart.length;
  const forParsing = emptyHost
    ? url.slice(0, authorityStart + userInfo) + standIn + url.slice(authorityStart + userInfo)
    : url;
  let parsed: URL;
  try {
    parsed = new URL(forParsing);
  } catch {
    const port = /:([^:\]]*)$/.exec(hostPart)?.[1];
    if (port !== undefined && (!/^[0-9]+$/.test(port) || Number(port) > 65535)) {
      fail(`bad port ${quote(port)} (must be an integer 1..65535)`);
    }
    return fail('not a valid URL');
  }
  if (parsed.hash !== '') fail(`unexpected fragment ${quote(parsed.hash)}`);

  const params = new Map<DbiKey, string>();
  const set = (key: DbiKey, value: string, where?: string) => {
    checkValue(key, value, (what, why) => fail(`${what}${where === undefined ? '' : ` in ${where}`} (${why})`));
    if (value !== '') params.set(key, value);
  };
  if (parsed.username !== '') set('user', decode(parsed.username, 'user name', fail));
  if (parsed.password !== '') params.set('password', decode(parsed.password, 'password', fail));
  let hostname = emptyHost ? '' : parsed.hostname;
  if (hostname.startsWith('[') && hostname.endsWith(']')) hostname = hostname.slice(1, -1);
  if (hostname !== '') set('host', decode(hostname, 'host', fail));
  if (parsed.port !== '') set('port', parsed.port);
  const path = parsed.pathname.replace(/^\//, '');
  if (path.includes('/')) fail(`database name ${quote(decode(path, 'database name', fail))} must not contain "/"`);
  if (path !== '') set('dbname', decode(path, 'database name', fail));

  const fromQuery = new Set<string>();
  for (const [key, value] of parsed.searchParams) {
    if (key === '') fail(`empty query parameter name`);
    if (!(DBI_KEYS as readonly string[]).includes(key)) {
      fail(`unknown query parameter ${quote(key)}${suggestion(key)}`);
    }
    if (fromQuery.has(key)) fail(`duplicate query parameter ${quote(key)}`);
    fromQuery.add(key);
    if (params.has(key as DbiKey)) fail(`query parameter ${quote(key)} repeats a value given in the URL itself`);
    set(key as DbiKey, value, `query parameter ${quote(key)}`);
  }
  return buildConfig(params, opts.env ?? {});
}

// ---------------------------------------------------------------------------------------
// Rendering

function sslModeOf(config: DbiConfig): SslMode | undefined {
  if (config.ssl === undefined) return undefined;
  if (config.ssl === false) return 'disable';
  if (!config.ssl.rejectUnauthorized) return 'require';
  return config.ssl.checkServerIdentity ? 'verify-ca' : 'verify-full';
}

export interface DbiToUrlOptions {
  /** Replace the password by `***` (default true). */
  redact?: boolean;
}

/**
 * Renders a configuration as a libpq/node-postgres URL. A socket directory goes into the
 * `host` query parameter. With redaction (the default) the password reads `***`.
 */
export function dbiToUrl(config: DbiConfig, opts: DbiToUrlOptions = {}): string {
  const redact = opts.redact ?? true;
  const socket = config.host.startsWith('/');
  let auth = '';
  if (config.user !== undefined) auth = encodeURIComponent(config.user);
  if (config.password !== undefined) auth += ':' + (redact ? '***' : encodeURIComponent(config.password));
  if (auth !== '') auth += '@';
  let host = '';
  if (!socket) host = isIP(config.host) === 6 ? `[${config.host}]` : encodeURIComponent(config.host);
  if (config.port !== undefined) host += `:${config.port}`;
  const query: string[] = [];
  if (socket) query.push(`host=${encodeURIComponent(config.host)}`);
  const sslmode = sslModeOf(config);
  if (sslmode !== undefined) query.push(`sslmode=${sslmode}`);
  if (config.connectionTimeoutMillis !== undefined) {
    query.push(`connect_timeout=${Math.round(config.connectionTimeoutMillis / 1000)}`);
  }
  if (config.application_name !== undefined) query.push(`application_name=${encodeURIComponent(config.application_name)}`);
  if (config.options !== undefined) query.push(`options=${encodeURIComponent(config.options)}`);
  const database = config.database !== undefined ? encodeURIComponent(config.database) : '';
  return `postgresql://${auth}${host}/${database}${query.length > 0 ? '?' + query.join('&') : ''}`;
}

/**
 * One line for `db status`: where, which database, as whom, TLS; never the password.
 * e.g. `database "hydra" as user "hydra" via socket /run/postgresql (port 5432), password set, TLS off`
 */
export function describeDbi(config: DbiConfig): string {
  const parts: string[] = [];
  const database = config.database !== undefined ? `database ${quote(config.database)}` : 'default database';
  const user = config.user !== undefined ? `user ${quote(config.user)}` : 'the default user';
  const where = config.host.startsWith('/')
    ? `via socket ${config.host} (${config.port !== undefined ? `port ${config.port}` : 'default port'})`
    : `on ${isIP(config.host) === 6 ? `[${config.host}]` : config.host}:${config.port ?? 5432}`;
  parts.push(`${database} as ${user} ${where}`);
  if (config.password !== undefined) parts.push('password set');
  const sslmode = sslModeOf(config);
  parts.push(sslmode === undefined ? 'TLS per PGSSLMODE' : sslmode === 'disable' ? 'TLS off' : `TLS ${sslmode}`);
  return parts.join(', ');
}
