// Small self-contained store objects computed without a store: the path of a text file as
// `builtins.toFile` names it (`makeTextPath`), and the NAR of a single regular file. Used to probe a
// builder's permissions with a path nobody has to build.
import {createHash} from 'node:crypto';
import {storeDir as defaultStoreDir, toNixBase32} from './store-path.js';

/** Folds a digest to `size` bytes by XOR, as Nix's compressHash does. */
function compressHash(digest: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < digest.length; i++) out[i % size]! ^= digest[i]!;
  return out;
}

/**
 * The store path of a text object with no references, as `builtins.toFile name contents` computes it:
 * sha256 of `text:sha256:<hex of sha256(contents)>:<store dir>:<name>`, folded to 20 bytes, nix-base32.
 */
export function makeTextPath(name: string, contents: string | Buffer, storeDir = defaultStoreDir()): string {
  const contentHash = createHash('sha256').update(contents).digest('hex');
  const fingerprint = `text:sha256:${contentHash}:${storeDir}:${name}`;
  const digest = createHash('sha256').update(fingerprint).digest();
  return `${storeDir}/${toNixBase32(compressHash(digest, 20))}-${name}`;
}

function wireString(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(b.length));
  const pad = Buffer.alloc((8 - (b.length % 8)) % 8);
  return Buffer.concat([len, b, pad]);
}

/** The NAR serialisation of a single non-executable regular file. */
export function narOfRegularFile(contents: string | Buffer): Buffer {
  return Buffer.concat(['nix-archive-1', '(', 'type', 'regular', 'contents'].map(wireString).concat([wireString(contents), wireString(')')]));
}

/** `sha256:<nix32>` of bytes (the form narHash takes). */
export function sha256Nix32(bytes: Buffer): string {
  return `sha256:${toNixBase32(createHash('sha256').update(bytes).digest())}`;
}
