// The built-in diff summary of two file trees (a store path and its rebuilt `.check` copy), used when no
// diff hook is configured and diffoscope is not installed: entries only on one side, type / mode / symlink
// target changes, and for each differing regular file a unified diff excerpt (text) or sizes and hashes
// (binary or large files).

import {createHash} from 'node:crypto';
import {createReadStream} from 'node:fs';
import {lstat, readdir, readFile, readlink} from 'node:fs/promises';
import {join} from 'node:path';

export interface TreeDiffOptions {
  /** Text files larger than this are compared by size and hash only (default 1 MiB). */
  maxTextBytes?: number;
  /** Lines of unified diff shown per file (default 200). */
  maxExcerptLines?: number;
  /** Stop listing after this many differing entries (default 1000). */
  maxEntries?: number;
  /** Context lines around changes (default 3). */
  context?: number;
}

export interface TreeDiffResult {
  /** The report, ready to be written to a log. */
  text: string;
  /** Relative paths that differ (including entries present on one side only); '' is the root. */
  differing: string[];
  onlyOld: string[];
  onlyNew: string[];
}

type Kind = 'file' | 'exec' | 'dir' | 'symlink' | 'other';

async function kindOf(path: string): Promise<{kind: Kind; size: number}> {
  const st = await lstat(path);
  if (st.isSymbolicLink()) return {kind: 'symlink', size: 0};
  if (st.isDirectory()) return {kind: 'dir', size: 0};
  if (st.isFile()) return {kind: st.mode & 0o111 ? 'exec' : 'file', size: st.size};
  return {kind: 'other', size: 0};
}

async function fileHash(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function isText(b: Buffer): boolean {
  const head = b.subarray(0, 8192);
  if (head.includes(0)) return false;
  return !head.toString('utf8').includes('\uFFFD');
}

const show = (rel: string) => (rel === '' ? '(root)' : rel);

/** A unified diff of two line lists (LCS based; inputs are bounded by the caller). */
export function unifiedDiff(a: string[], b: string[], context = 3): string[] {
  const n = a.length;
  const m = b.length;
  // Trim the common prefix and suffix first: the usual case (a few changed lines) stays cheap.
  let pre = 0;
  while (pre < n && pre < m && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < n - pre && suf < m - pre && a[n - 1 - suf] === b[m - 1 - suf]) suf++;
  const A = a.slice(pre, n - suf);
  const B = b.slice(pre, m - suf);
  const rows = A.length + 1;
  const cols = B.length + 1;
  const lcs = new Uint32Array(rows * cols);
  for (let i = A.length - 1; i >= 0; i--) {
    for (let j = B.length - 1; j >= 0; j--) {
      lcs[i * cols + j] = A[i] === B[j] ? lcs[(i + 1) * cols + j + 1]! + 1 : Math.max(lcs[(i + 1) * cols + j]!, lcs[i * cols + j + 1]!);
    }
  }
  // Edit script over the whole files: ' ', '-', '+' with positions.
  const ops: Array<{op: ' ' | '-' | '+'; text: string}> = [];
  for (let i = 0; i < pre; i++) ops.push({op: ' ', text: a[i]!});
  let i = 0;
  let j = 0;
  while (i < A.length || j < B.length) {
    if (i < A.length && j < B.length && A[i] === B[j]) {
      ops.push({op: ' ', text: A[i]!});
      i++;
      j++;
    } else if (i < A.length && (j === B.length || lcs[(i + 1) * cols + j]! >= lcs[i * cols + j + 1]!)) {
      ops.push({op: '-', text: A[i]!});
      i++;
    } else {
      ops.push({op: '+', text: B[j]!});
      j++;
    }
  }
  for (let k = n - suf; k < n; k++) ops.push({op: ' ', text: a[k]!});
  // Group into hunks.
  const out: string[] = [];
  let k = 0;
  while (k < ops.length) {
    if (ops[k]!.op === ' ') {
      k++;
      continue;
    }
    let start = Math.max(0, k - context);
    let end = k;
    while (end < ops.length) {
      if (ops[end]!.op !== ' ') {
        end++;
        continue;
      }
      let run = 0;
      while (end + run < ops.length && ops[end + run]!.op === ' ') run++;
      if (end + run >= ops.length || run > 2 * context) {
        end = Math.min(ops.length, end + context);
        break;
      }
      end += run;
    }
    let oldLine = 1;
    let newLine = 1;
    for (let x = 0; x < start; x++) {
      if (ops[x]!.op !== '+') oldLine++;
      if (ops[x]!.op !== '-') newLine++;
    }
    const slice = ops.slice(start, end);
    const oldCount = slice.filter((o) => o.op !== '+').length;
    const newCount = slice.filter((o) => o.op !== '-').length;
    out.push(`@@ -${oldCount === 0 ? oldLine - 1 : oldLine},${oldCount} +${newCount === 0 ? newLine - 1 : newLine},${newCount} @@`);
    for (const o of slice) out.push(`${o.op}${o.text}`);
    k = end;
    start = end;
  }
  return out;
}

/** Compares the trees at `oldRoot` and `newRoot` (either may be a file or symlink). */
export async function diffTrees(oldRoot: string, newRoot: string, options: TreeDiffOptions = {}): Promise<TreeDiffResult> {
  const maxText = options.maxTextBytes ?? 1024 * 1024;
  const maxExcerpt = options.maxExcerptLines ?? 200;
  const maxEntries = options.maxEntries ?? 1000;
  const context = options.context ?? 3;
  const lines: string[] = [];
  const differing: string[] = [];
  const onlyOld: string[] = [];
  const onlyNew: string[] = [];
  let truncated = false;
  const note = (rel: string, text: string[]) => {
    differing.push(rel);
    if (differing.length > maxEntries) {
      truncated = true;
      return;
    }
    lines.push(...text);
  };

  const compareFiles = async (rel: string, oldPath: string, newPath: string, oldSize: number, newSize: number): Promise<void> => {
    if (oldSize === newSize && oldSize <= maxText) {
      const [x, y] = await Promise.all([readFile(oldPath), readFile(newPath)]);
      if (x.equals(y)) return;
      return textOrBinary(rel, x, y);
    }
    if (oldSize <= maxText && newSize <= maxText) {
      const [x, y] = await Promise.all([readFile(oldPath), readFile(newPath)]);
      return textOrBinary(rel, x, y);
    }
    const [hx, hy] = await Promise.all([fileHash(oldPath), fileHash(newPath)]);
    if (hx === hy) return;
    note(rel, [`differs (large): ${show(rel)}: ${oldSize} bytes sha256:${hx} → ${newSize} bytes sha256:${hy}`]);
  };

  const textOrBinary = (rel: string, x: Buffer, y: Buffer): void => {
    if (isText(x) && isText(y)) {
      const lines = (t: string) => (t.endsWith('\n') ? t.slice(0, -1) : t).split('\n');
      const a = lines(x.toString('utf8'));
      const b = lines(y.toString('utf8'));
      if (a.length <= 20_000 && b.length <= 20_000) {
        const hunks = unifiedDiff(a, b, context);
        const shown = hunks.slice(0, maxExcerpt);
        const more = hunks.length > shown.length ? [`… ${hunks.length - shown.length} more diff lines`] : [];
        note(rel, [`differs (text): ${show(rel)}`, `--- old/${rel}`, `+++ new/${rel}`, ...shown, ...more]);
        return;
      }
    }
    const h = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    let first = 0;
    while (first < x.length && first < y.length && x[first] === y[first]) first++;
    note(rel, [`differs (binary): ${show(rel)}: ${x.length} bytes sha256:${h(x)} → ${y.length} bytes sha256:${h(y)}; first difference at byte ${first}`]);
  };

  const walk = async (rel: string): Promise<void> => {
    const oldPath = rel === '' ? oldRoot : join(oldRoot, rel);
    const newPath = rel === '' ? newRoot : join(newRoot, rel);
    const [o, n] = await Promise.all([kindOf(oldPath), kindOf(newPath)]);
    const kinds = (k: Kind) => ({file: 'regular file', exec: 'executable file', dir: 'directory', symlink: 'symlink', other: 'special file'})[k];
    if (o.kind !== n.kind) {
      const bothFiles = (o.kind === 'file' || o.kind === 'exec') && (n.kind === 'file' || n.kind === 'exec');
      if (!bothFiles) {
        note(rel, [`type differs: ${show(rel)}: ${kinds(o.kind)} → ${kinds(n.kind)}`]);
        return;
      }
      note(rel, [`mode differs: ${show(rel)}: ${kinds(o.kind)} → ${kinds(n.kind)}`]);
    }
    if (o.kind === 'symlink') {
      const [x, y] = await Promise.all([readlink(oldPath), readlink(newPath)]);
      if (x !== y) note(rel, [`symlink target differs: ${show(rel)}: ${JSON.stringify(x)} → ${JSON.stringify(y)}`]);
      return;
    }
    if (o.kind === 'file' || o.kind === 'exec') return compareFiles(rel, oldPath, newPath, o.size, n.size);
    if (o.kind !== 'dir') return;
    const [a, b] = await Promise.all([readdir(oldPath), readdir(newPath)]);
    const inB = new Set(b);
    const inA = new Set(a);
    for (const name of [...new Set([...a, ...b])].sort()) {
      const child = rel === '' ? name : `${rel}/${name}`;
      if (!inB.has(name)) {
        onlyOld.push(child);
        note(child, [`only in old: ${child}`]);
      } else if (!inA.has(name)) {
        onlyNew.push(child);
        note(child, [`only in new: ${child}`]);
      } else {
        await walk(child);
      }
    }
  };

  await walk('');
  const header = ['hydra-ops built-in diff summary', `old: ${oldRoot}`, `new: ${newRoot}`, ''];
  const footer = [
    '',
    truncated ? `… listing stopped after ${maxEntries} entries` : '',
    `summary: ${differing.length} differing entr${differing.length === 1 ? 'y' : 'ies'} (${onlyOld.length} only in old, ${onlyNew.length} only in new)`,
  ].filter((l, i) => i !== 1 || l !== '');
  return {text: [...header, ...lines, ...footer].join('\n') + '\n', differing, onlyOld, onlyNew};
}
