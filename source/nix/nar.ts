// NAR (Nix archive) streaming parser and Nix hash encodings (nix32 / base16). The `nix-store --export` framing
// around NARs is in export-format.ts.
//
// Longer than the other modules because it is one format read together with its hash: the NAR parser reports
// the NAR hash in Nix's encoding while it checks the archive's grammar.

import {createHash, type Hash} from 'node:crypto';
import type {Readable, Writable} from 'node:stream';
import {execa} from 'execa';
import {ProtocolError, UnexpectedEofError, WireReader} from './wire.js';

// ---------------------------------------------------------------------------------------------------------------
// Hash encodings

const NIX32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

/** Length of the nix32 form of a digest of `size` bytes. */
export function nix32Length(size: number): number {
  return Math.floor((size * 8 - 1) / 5) + 1;
}

/** Nix's base-32 encoding: 5-bit groups taken from the end of the digest, with its own alphabet (no e, o, u, t). */
export function nix32Encode(digest: Uint8Array): string {
  const len = nix32Length(digest.length);
  let out = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = Math.floor(b / 8);
    const j = b % 8;
    const lo = digest[i]! >> j;
    const hi = i + 1 < digest.length ? digest[i + 1]! << (8 - j) : 0;
    out += NIX32_ALPHABET[(lo | hi) & 0x1f];
  }
  return out;
}

/** Decode a nix32 string into a digest of `size` bytes; throws on a bad character, length or overflow. */
export function nix32Decode(text: string, size: number): Buffer {
  if (text.length !== nix32Length(size)) {
    throw new Error(`invalid nix32 hash '${text}': expected ${nix32Length(size)} characters, got ${text.length}`);
  }
  const out = Buffer.alloc(size);
  for (let n = 0; n < text.length; n++) {
    const c = text[text.length - n - 1]!;
    const digit = NIX32_ALPHABET.indexOf(c);
    if (digit < 0) throw new Error(`invalid nix32 hash '${text}': bad character '${c}'`);
    const b = n * 5;
    const i = Math.floor(b / 8);
    const j = b % 8;
    out[i] = out[i]! | ((digit << j) & 0xff);
    const carry = digit >> (8 - j);
    if (i + 1 < size) out[i + 1] = out[i + 1]! | carry;
    else if (carry) throw new Error(`invalid nix32 hash '${text}': value overflows ${size} bytes`);
  }
  return out;
}

export type HashAlgorithm = 'md5' | 'sha1' | 'sha256' | 'sha512';
const HASH_SIZES: Record<HashAlgorithm, number> = {md5: 16, sha1: 20, sha256: 32, sha512: 64};

export interface ParsedHash {
  algorithm: HashAlgorithm;
  digest: Buffer;
}

/**
 * Parse `<algo>:<nix32|base16|base64>` or an SRI `<algo>-<base64>`; a bare digest needs `defaultAlgorithm`.
 */
export function parseHash(text: string, defaultAlgorithm?: HashAlgorithm): ParsedHash {
  let algorithm: string | undefined;
  let rest = text;
  let sri = false;
  const colon = text.indexOf(':');
  const dash = text.indexOf('-');
  if (colon >= 0) {
    algorithm = text.slice(0, colon);
    rest = text.slice(colon + 1);
  } else if (dash >= 0) {
    algorithm = text.slice(0, dash);
    rest = text.slice(dash + 1);
    sri = true;
  } else {
    algorithm = defaultAlgorithm;
  }
  if (!algorithm || !(algorithm in HASH_SIZES)) {
    throw new Error(`invalid hash '${text}': unknown or missing hash algorithm`);
  }
  const algo = algorithm as HashAlgorithm;
  const size = HASH_SIZES[algo];
  if (!sri && rest.length === size * 2) {
    if (!/^[0-9a-fA-F]+$/.test(rest)) throw new Error(`invalid base-16 hash '${text}'`);
    return {algorithm: algo, digest: Buffer.from(rest, 'hex')};
  }
  if (!sri && rest.length === nix32Length(size)) {
    return {algorithm: algo, digest: nix32Decode(rest, size)};
  }
  if (sri || rest.length === Math.ceil(size / 3) * 4) {
    const digest = Buffer.from(rest, 'base64');
    if (digest.length !== size || digest.toString('base64') !== rest) throw new Error(`invalid base-64 hash '${text}'`);
    return {algorithm: algo, digest};
  }
  throw new Error(`hash '${text}' has the wrong length for hash type '${algo}'`);
}

/** Format a digest as `<algo>:<nix32>` (default) or `<algo>:<hex>`. */
export function formatHash(algorithm: HashAlgorithm, digest: Uint8Array, base: 'nix32' | 'base16' = 'nix32'): string {
  const body = base === 'nix32' ? nix32Encode(digest) : Buffer.from(digest).toString('hex');
  return `${algorithm}:${body}`;
}

/** True if two hash strings (any accepted encoding) denote the same algorithm and digest. */
export function sameHash(a: string, b: string): boolean {
  const x = parseHash(a);
  const y = parseHash(b);
  return x.algorithm === y.algorithm && x.digest.equals(y.digest);
}

// ---------------------------------------------------------------------------------------------------------------
// NAR parsing

export const NAR_MAGIC = 'nix-archive-1';

export type NarEntryType = 'regular' | 'directory' | 'symlink';

export interface NarEntry {
  /** Path relative to the root of the NAR, '' for the root itself, components joined with '/'. */
  path: string;
  type: NarEntryType;
  executable?: boolean;
  size?: number;
  target?: string;
}

/**
 * Called for each entry: directories before their children, regular files after their contents were read (with
 * `contents` when the file is at most `contentsCap` bytes and `wantContents` accepts it), symlinks when seen.
 */
export type NarVisitor = (entry: NarEntry, contents?: Buffer) => void | Promise<void>;

export interface NarLimits {
  /** Maximum directory nesting depth (default 256). */
  maxDepth: number;
  /** Maximum number of entries of all kinds (default 1,000,000). */
  maxEntries: number;
  /** Maximum length of one name in bytes (default 255). */
  maxNameLength: number;
  /** Maximum symlink target length in bytes (default 4096). */
  maxTargetLength: number;
  /** Maximum size of one regular file (default 2^53 − 1). */
  maxFileSize: number;
  /** Maximum total NAR size (default 2^53 − 1). */
  maxNarSize: number;
}

export const DEFAULT_NAR_LIMITS: NarLimits = {
  maxDepth: 256,
  maxEntries: 1_000_000,
  maxNameLength: 255,
  maxTargetLength: 4096,
  maxFileSize: Number.MAX_SAFE_INTEGER,
  maxNarSize: Number.MAX_SAFE_INTEGER,
};

/** Where a regular file's contents go while they are read (e.g. a file being written out). */
export interface NarFileSink {
  write(piece: Buffer): Promise<void>;
  /** Called once after the contents, also when reading them failed. */
  close(): Promise<void>;
}

export interface NarParseOptions {
  visitor?: NarVisitor;
  /**
   * Called for each regular file before its contents are read; the contents are streamed into the sink it
   * returns (none: not streamed). The visitor still sees the entry afterwards.
   */
  fileSink?: (entry: NarEntry) => Promise<NarFileSink | undefined>;
  /** Receives the raw NAR bytes as they are parsed (backpressure honoured). */
  tee?: Writable;
  /** Regular files up to this size are handed to the visitor in full (default 1 MiB). */
  contentsCap?: number;
  /** Restrict which regular files' contents are buffered (default: all up to the cap). */
  wantContents?: (entry: NarEntry) => boolean;
  limits?: Partial<NarLimits>;
  /** Label for error messages (e.g. the store path being received). */
  label?: string;
}

export interface NarParseResult {
  /** `sha256:<nix32>` of the NAR bytes. */
  narHash: string;
  /** Raw SHA-256 digest. */
  digest: Buffer;
  narSize: number;
  entries: number;
}

export class NarError extends ProtocolError {
  constructor(message: string, offset?: number) {
    super(message, offset);
    this.name = 'NarError';
  }
}

const MAX_TOKEN = 64;

/**
 * Consume exactly one NAR from `reader`, validating its structure, hashing it and reporting its entries.
 * The reader is left positioned just after the NAR (so an unprefixed NAR in a protocol stream is delimited).
 */
export async function parseNar(reader: WireReader, options: NarParseOptions = {}): Promise<NarParseResult> {
  const limits: NarLimits = {...DEFAULT_NAR_LIMITS, ...options.limits};
  const contentsCap = options.contentsCap ?? 1024 * 1024;
  const label = options.label ? `NAR of ${options.label}` : 'NAR';
  const hash: Hash = createHash('sha256');
  const start = reader.bytesRead;
  let teeQueue: Buffer[] = [];
  let teeQueued = 0;
  const tee = options.tee;
  let teeError: Error | undefined;
  const onTeeError = (error: Error) => {
    teeError ??= error;
  };
  tee?.on('error', onTeeError);

  const flushTee = async (force = false): Promise<void> => {
    if (!tee || teeQueued === 0 || (!force && teeQueued < 64 * 1024)) return;
    const data = Buffer.concat(teeQueue, teeQueued);
    teeQueue = [];
    teeQueued = 0;
    if (teeError) throw new NarError(`writing ${label} copy failed: ${teeError.message}`);
    await new Promise<void>((resolve, reject) => {
      tee.write(data, (error) => (error ? reject(new NarError(`writing ${label} copy failed: ${error.message}`)) : resolve()));
    });
  };

  const size = () => reader.bytesRead - start;
  const fail = (message: string): never => {
    throw new NarError(`bad ${label}: ${message}`, size());
  };

  reader.setTap((bytes) => {
    hash.update(bytes);
    if (tee) {
      teeQueue.push(bytes);
      teeQueued += bytes.length;
    }
  });

  let entries = 0;

  const token = async (what: string): Promise<string> => {
    if (size() > limits.maxNarSize) fail(`larger than the limit of ${limits.maxNarSize} bytes`);
    try {
      return (await reader.readBytes({max: MAX_TOKEN, what: `${label} ${what}`})).toString('latin1');
    } catch (error) {
      if (error instanceof ProtocolError && !(error instanceof NarError)) fail(error.message.replace(/ \(at byte \d+\)$/, ''));
      throw error;
    }
  };
  const expect = async (expected: string, what: string): Promise<void> => {
    const got = await token(what);
    if (got !== expected) fail(`expected '${expected}' (${what}), got '${printable(got)}'`);
  };
  const readField = async (what: string, max: number): Promise<Buffer> => {
    try {
      return await reader.readBytes({max, what: `${label} ${what}`});
    } catch (error) {
      if (error instanceof ProtocolError && !(error instanceof NarError)) fail(error.message.replace(/ \(at byte \d+\)$/, ''));
      throw error;
    }
  };

  const parseNode = async (path: string, depth: number): Promise<void> => {
    if (++entries > limits.maxEntries) fail(`more than ${limits.maxEntries} entries`);
    if (depth > limits.maxDepth) fail(`nesting deeper than ${limits.maxDepth} at '${path}'`);
    await expect('(', 'open tag');
    await expect('type', 'type field');
    const type = await token('file type');
    if (type === 'regular') {
      let executable = false;
      let field = await token('field');
      if (field === 'executable') {
        const marker = await token('executable marker');
        if (marker !== '') fail(`executable marker has a non-empty value at '${path}'`);
        executable = true;
        field = await token('field');
      }
      if (field !== 'contents') fail(`expected 'contents' at '${path}', got '${printable(field)}'`);
      let len: number;
      try {
        len = await reader.readU64(`${label} file size`);
      } catch (error) {
        if (error instanceof ProtocolError) fail(`file size of '${path}': ${error.message.replace(/ \(at byte \d+\)$/, '')}`);
        throw error;
      }
      if (len > limits.maxFileSize) fail(`file '${path}' of ${len} bytes exceeds the limit of ${limits.maxFileSize}`);
      const entry: NarEntry = {path, type: 'regular', executable, size: len};
      const keep = len <= contentsCap && options.visitor !== undefined && (options.wantContents?.(entry) ?? true);
      const parts: Buffer[] = [];
      const sink = options.fileSink ? await options.fileSink(entry) : undefined;
      try {
        await reader.readStreaming(
          len,
          async (piece) => {
            if (keep) parts.push(piece);
            if (sink) await sink.write(piece);
            await flushTee();
          },
          `${label} contents of '${path}'`,
        );
        await reader.readPadding(len, `contents of '${path}'`);
      } catch (error) {
        if (error instanceof ProtocolError && !(error instanceof NarError)) fail(error.message.replace(/ \(at byte \d+\)$/, ''));
        throw error;
      } finally {
        await sink?.close();
      }
      await expect(')', `close tag of '${path}'`);
      if (options.visitor) await options.visitor(entry, keep ? Buffer.concat(parts, len) : undefined);
    } else if (type === 'symlink') {
      await expect('target', `target field of '${path}'`);
      const raw = await readField(`symlink target of '${path}'`, limits.maxTargetLength);
      if (raw.length === 0) fail(`symlink '${path}' has an empty target`);
      if (raw.includes(0)) fail(`symlink '${path}' target contains NUL`);
      await expect(')', `close tag of '${path}'`);
      if (options.visitor) await options.visitor({path, type: 'symlink', target: raw.toString('utf8')});
    } else if (type === 'directory') {
      if (options.visitor) await options.visitor({path, type: 'directory'});
      let previous: Buffer | undefined;
      for (;;) {
        await flushTee();
        const field = await token(`field of directory '${path}'`);
        if (field === ')') break;
        if (field !== 'entry') fail(`expected 'entry' or ')' in directory '${path}', got '${printable(field)}'`);
        await expect('(', 'open tag of entry');
        await expect('name', 'name field');
        const name = await readField(`entry name in '${path}'`, limits.maxNameLength);
        const shown = printable(name.toString('utf8'));
        if (name.length === 0) fail(`empty entry name in directory '${path}'`);
        const nameText = name.toString('utf8');
        if (nameText === '.' || nameText === '..') fail(`invalid entry name '${nameText}' in directory '${path}'`);
        if (name.includes(0x2f)) fail(`entry name '${shown}' in directory '${path}' contains '/'`);
        if (name.includes(0)) fail(`entry name '${shown}' in directory '${path}' contains NUL`);
        if (previous && Buffer.compare(previous, name) >= 0) {
          fail(`directory '${path}' is not sorted: '${shown}' follows '${printable(previous.toString('utf8'))}'`);
        }
        previous = name;
        await expect('node', 'node field');
        await parseNode(path === '' ? nameText : `${path}/${nameText}`, depth + 1);
        await expect(')', `close tag of entry '${shown}'`);
      }
    } else {
      fail(`unknown file type '${printable(type)}' at '${path}'`);
    }
  };

  try {
    let magic: string;
    try {
      magic = (await reader.readBytes({max: MAX_TOKEN, what: `${label} magic`})).toString('latin1');
    } catch (error) {
      if (error instanceof UnexpectedEofError && size() === 0) fail('the stream ended before the archive began');
      if (error instanceof ProtocolError) fail(`input doesn't look like a Nix archive (${error.message.replace(/ \(at byte \d+\)$/, '')})`);
      throw error;
    }
    if (magic !== NAR_MAGIC) fail(`input doesn't look like a Nix archive (magic '${printable(magic)}')`);
    await parseNode('', 0);
    await flushTee(true);
  } finally {
    reader.setTap(undefined);
    tee?.off('error', onTeeError);
  }
  const digest = hash.digest();
  return {narHash: formatHash('sha256', digest), digest, narSize: size(), entries};
}

function printable(s: string): string {
  const cut = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  // eslint-disable-next-line no-control-regex
  return cut.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Parse a NAR from a whole readable stream and require that nothing follows it. */
export async function parseNarStream(source: Readable, options: NarParseOptions = {}): Promise<NarParseResult> {
  const reader = new WireReader(source, {label: options.label ?? 'NAR stream'});
  const result = await parseNar(reader, options);
  if (!(await reader.atEof())) throw new NarError(`trailing data after the NAR${options.label ? ` of ${options.label}` : ''}`, result.narSize);
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// A local path's NAR (the export framing around NARs is in export-format.ts)

/**
 * The NAR of a path in the local store, from `nix-store --dump`. The process starts when iteration starts (so
 * no output is lost however late the consumer begins); a non-zero exit raises an error with its stderr.
 */
export async function* dumpLocalPath(path: string, options: {nixStore?: string} = {}): AsyncGenerator<Buffer> {
  const child = execa(options.nixStore ?? 'nix-store', ['--dump', path], {
    encoding: 'buffer',
    buffer: {stdout: false, stderr: true},
    reject: false,
    stdin: 'ignore',
  });
  let finished = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    const result = await child;
    finished = true;
    if (result.exitCode !== 0) {
      const stderr = Buffer.from(result.stderr as Uint8Array).toString('utf8').trim();
      throw new Error(`nix-store --dump ${path} failed (${result.exitCode ?? result.signal}): ${stderr || 'no message'}`);
    }
  } finally {
    if (!finished) {
      child.kill();
      await child.catch(() => undefined);
    }
  }
}
