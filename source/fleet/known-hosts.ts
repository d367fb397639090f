// OpenSSH known_hosts files: parsing, host matching (plain, wildcard, [host]:port and hashed
// `|1|salt|hash` entries) and SHA-256 fingerprints as `ssh-keygen -l` prints them.
//
// Markers: `@revoked` entries are honoured (a presented key listed as revoked is refused);
// `@cert-authority` entries are skipped, since certificate host keys are not accepted here.
import {createHash, createHmac, randomBytes, timingSafeEqual} from 'node:crypto';
import {readFile} from 'node:fs/promises';
import {homedir} from 'node:os';
import {join} from 'node:path';

export type HostPattern = {kind: 'hashed'; salt: Buffer; hash: Buffer} | {kind: 'pattern'; pattern: string; negated: boolean};

export interface KnownHostEntry {
  marker: 'revoked' | 'cert-authority' | undefined;
  patterns: HostPattern[];
  keyType: string;
  keyBlob: Buffer;
  file: string;
  line: number;
}

export interface KnownHostsParse {
  entries: KnownHostEntry[];
  /** Lines that could not be parsed, as `file:line: problem` (they are skipped, like ssh does). */
  problems: string[];
}

/** `SHA256:<base64 without padding>` of a wire-format key blob, as `ssh-keygen -lf` prints it. */
export function fingerprintSha256(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

/** The key type named inside a wire-format key blob (first SSH string). */
export function keyTypeOfBlob(keyBlob: Buffer): string | undefined {
  if (keyBlob.length < 4) return undefined;
  const len = keyBlob.readUInt32BE(0);
  if (len > keyBlob.length - 4) return undefined;
  return keyBlob.subarray(4, 4 + len).toString('latin1');
}

/** Decodes an OpenSSH public-key line (`<type> <base64>[ comment]`) to its wire-format blob. */
export function publicKeyLineToBlob(line: string): {keyType: string; keyBlob: Buffer} {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) throw new Error(`not an OpenSSH public-key line: '${line.slice(0, 40)}'`);
  const keyBlob = Buffer.from(parts[1]!, 'base64');
  const inner = keyTypeOfBlob(keyBlob);
  if (inner !== parts[0]) throw new Error(`public-key line type '${parts[0]}' does not match its key data`);
  return {keyType: parts[0]!, keyBlob};
}

/** The name a host is looked up under: `host` for port 22, `[host]:port` otherwise. */
export function knownHostName(host: string, port: number | undefined): string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return port === undefined || port === 22 ? bare : `[${bare}]:${port}`;
}

/** A hashed host field `|1|salt|hash` for `name` (as `ssh-keygen -H` writes it). */
export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  const hash = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${hash.toString('base64')}`;
}

function parsePatterns(field: string): HostPattern[] | string {
  if (field.startsWith('|')) {
    const m = /^\|1\|([A-Za-z0-9+/=]+)\|([A-Za-z0-9+/=]+)$/.exec(field);
    if (!m) return `unsupported hashed host field '${field.slice(0, 20)}…'`;
    const salt = Buffer.from(m[1]!, 'base64');
    const hash = Buffer.from(m[2]!, 'base64');
    if (hash.length !== 20) return 'hashed host field has a hash of the wrong length';
    return [{kind: 'hashed', salt, hash}];
  }
  const patterns: HostPattern[] = [];
  for (const raw of field.split(',')) {
    if (raw === '') continue;
    const negated = raw.startsWith('!');
    patterns.push({kind: 'pattern', pattern: (negated ? raw.slice(1) : raw).toLowerCase(), negated});
  }
  return patterns.length > 0 ? patterns : 'empty host field';
}

export function parseKnownHosts(text: string, file: string): KnownHostsParse {
  const entries: KnownHostEntry[] = [];
  const problems: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/[ \t]+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0]!.startsWith('@')) {
      const m = fields.shift()!;
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else {
        problems.push(`${file}:${i + 1}: unknown marker '${m}'`);
        continue;
      }
    }
    if (fields.length < 3) {
      problems.push(`${file}:${i + 1}: expected '<hosts> <key type> <base64 key>'`);
      continue;
    }
    const patterns = parsePatterns(fields[0]!);
    if (typeof patterns === 'string') {
      problems.push(`${file}:${i + 1}: ${patterns}`);
      continue;
    }
    const keyType = fields[1]!;
    const keyBlob = Buffer.from(fields[2]!, 'base64');
    if (keyTypeOfBlob(keyBlob) !== keyType) {
      problems.push(`${file}:${i + 1}: key data does not match key type '${keyType}'`);
      continue;
    }
    entries.push({marker, patterns, keyType, keyBlob, file, line: i + 1});
  }
  return {entries, problems};
}

function globMatch(pattern: string, text: string): boolean {
  const re = new RegExp(
    '^' +
      pattern
        .split('')
        .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('') +
      '$',
  );
  return re.test(text);
}

/** Whether an entry applies to `name` (the result of knownHostName). A matching negated pattern excludes it. */
export function entryMatchesHost(entry: KnownHostEntry, name: string): boolean {
  const lower = name.toLowerCase();
  let matched = false;
  for (const p of entry.patterns) {
    if (p.kind === 'hashed') {
      const h = createHmac('sha1', p.salt).update(lower).digest();
      if (h.length === p.hash.length && timingSafeEqual(h, p.hash)) matched = true;
      continue;
    }
    if (globMatch(p.pattern, lower)) {
      if (p.negated) return false;
      matched = true;
    }
  }
  return matched;
}

export type HostKeyVerdict =
  | {status: 'match'; entry: KnownHostEntry}
  | {status: 'revoked'; entry: KnownHostEntry}
  | {status: 'mismatch'; expected: KnownHostEntry[]}
  | {status: 'unknown'};

function sameBlob(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Checks a presented host key against known_hosts entries for host:port. */
export function checkHostKey(entries: KnownHostEntry[], host: string, port: number | undefined, keyBlob: Buffer): HostKeyVerdict {
  for (const e of entries) {
    if (e.marker === 'revoked' && sameBlob(e.keyBlob, keyBlob)) return {status: 'revoked', entry: e};
  }
  const name = knownHostName(host, port);
  const applicable = entries.filter((e) => e.marker === undefined && entryMatchesHost(e, name));
  const hit = applicable.find((e) => sameBlob(e.keyBlob, keyBlob));
  if (hit) return {status: 'match', entry: hit};
  if (applicable.length > 0) return {status: 'mismatch', expected: applicable};
  return {status: 'unknown'};
}

/** Key types known for host:port (used to steer host-key algorithm negotiation toward them). */
export function knownKeyTypes(entries: KnownHostEntry[], host: string, port: number | undefined): string[] {
  const name = knownHostName(host, port);
  return [...new Set(entries.filter((e) => e.marker === undefined && entryMatchesHost(e, name)).map((e) => e.keyType))];
}

/** ssh's default known_hosts files: the user's and the system-wide one. */
export function defaultKnownHostsFiles(): string[] {
  return [join(homedir(), '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts'];
}

/** Reads and parses known_hosts files; missing files are skipped. */
export async function loadKnownHosts(files: string[]): Promise<KnownHostsParse> {
  const entries: KnownHostEntry[] = [];
  const problems: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') problems.push(`${file}: cannot read: ${code ?? (e as Error).message}`);
      continue;
    }
    const parsed = parseKnownHosts(text, file);
    entries.push(...parsed.entries);
    problems.push(...parsed.problems);
  }
  return {entries, problems};
}
