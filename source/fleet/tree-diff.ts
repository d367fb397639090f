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
  /** Bounds of each file's line diff (edit distance, time); beyond them the file's diff says "diff truncated". */
  lineDiff?: Pick<LineDiffLimits, 'maxEdits' | 'maxMs' | 'sliceMs'>;
  /** Time for all line diffs together (default 30 s); later text files are compared by size and hash only. */
  maxTotalDiffMs?: number;
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

export interface LineDiffLimits {
  /** Give up (and say "diff truncated") when the files differ in more than this many lines (default 2000). */
  maxEdits?: number;
  /** Give up after this much time in the diff (default 2 s). */
  maxMs?: number;
  /** Yield to the event loop after computing this long (default 10 ms). */
  sliceMs?: number;
  /** Stop producing output after this many diff lines (the excerpt; default unlimited). */
  maxLines?: number;
}

export interface LineDiff {
  /** Unified diff hunks (`@@ … @@`, then ' ', '-', '+' lines). */
  lines: string[];
  /** Why the diff is incomplete ('diff truncated: …'), or null. */
  truncated: string | null;
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A unified diff of two line lists: Myers' O(ND) greedy algorithm (as GNU diff), with the edit distance D
 * capped (`maxEdits`), so time is O((N+M)·D) and the trace O(D²) however long and different the inputs are.
 * Asynchronous: it yields to the event loop every `sliceMs`, and gives up after `maxMs`.
 */
export async function unifiedDiff(a: readonly string[], b: readonly string[], context = 3, limits: LineDiffLimits = {}): Promise<LineDiff> {
  const maxEdits = Math.max(1, limits.maxEdits ?? 2000);
  const maxMs = limits.maxMs ?? 2000;
  const sliceMs = limits.sliceMs ?? 10;
  const maxLines = limits.maxLines ?? Infinity;
  const t0 = performance.now();
  let sliceStart = t0;
  const n = a.length;
  const m = b.length;
  // Trim the common prefix and suffix first: the usual case (a few changed lines) stays cheap.
  let pre = 0;
  while (pre < n && pre < m && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < n - pre && suf < m - pre && a[n - 1 - suf] === b[m - 1 - suf]) suf++;
  // Lines as small integers: comparisons in the inner loop are integer comparisons.
  const ids = new Map<string, number>();
  const intern = (lines: readonly string[], from: number, to: number): Int32Array => {
    const out = new Int32Array(to - from);
    for (let i = from; i < to; i++) {
      const line = lines[i]!;
      let id = ids.get(line);
      if (id === undefined) ids.set(line, (id = ids.size));
      out[i - from] = id;
    }
    return out;
  };
  const A = intern(a, pre, n - suf);
  const B = intern(b, pre, m - suf);
  const N = A.length;
  const M = B.length;
  const truncatedAt = (why: string): LineDiff => ({
    lines: [],
    truncated: `diff truncated: ${why} (first difference at line ${pre + 1} of old, ${pre + 1} of new; ${n} → ${m} lines)`,
  });
  // Forward greedy search; trace[d] holds V after step d for k in [-d, d] (index k + d).
  const max = Math.min(N + M, maxEdits);
  const off = max + 1;
  const V = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let found = -1;
  for (let d = 0; d <= max && found < 0; d++) {
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && V[off + k - 1]! < V[off + k + 1]!) ? V[off + k + 1]! : V[off + k - 1]! + 1;
      let y = x - k;
      while (x < N && y < M && A[x] === B[y]) {
        x++;
        y++;
      }
      V[off + k] = x;
      if (x >= N && y >= M) {
        found = d;
        break;
      }
    }
    trace.push(V.slice(off - d, off + d + 1));
    const now = performance.now();
    if (now - t0 > maxMs) return truncatedAt(`gave up after ${Math.round(now - t0)} ms`);
    if (now - sliceStart > sliceMs) {
      await yieldToLoop();
      sliceStart = performance.now();
    }
  }
  if (found < 0) return truncatedAt(`the files differ in more than ${maxEdits} lines`);
  // Backtrack into an edit script (in reverse), then reverse it.
  type Op = {op: ' ' | '-' | '+'; text: string};
  const rev: Op[] = [];
  let x = N;
  let y = M;
  for (let d = found; d > 0; d--) {
    const v = trace[d - 1]!;
    const at = (k: number) => v[k + d - 1]!;
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      rev.push({op: ' ', text: a[pre + x - 1]!});
      x--;
      y--;
    }
    if (prevK === k + 1) rev.push({op: '+', text: b[pre + prevY]!});
    else rev.push({op: '-', text: a[pre + prevX]!});
    x = prevX;
    y = prevY;
  }
  while (x > 0 && y > 0) {
    rev.push({op: ' ', text: a[pre + x - 1]!});
    x--;
    y--;
  }
  const ops: Op[] = [];
  for (let i = 0; i < pre; i++) ops.push({op: ' ', text: a[i]!});
  for (let i = rev.length - 1; i >= 0; i--) ops.push(rev[i]!);
  for (let i = n - suf; i < n; i++) ops.push({op: ' ', text: a[i]!});
  // Group into hunks, counting line numbers as we go (one pass over the script).
  const out: string[] = [];
  let k = 0;
  let oldLine = 1; // line numbers of ops[pos]
  let newLine = 1;
  let pos = 0;
  const advance = (to: number) => {
    for (; pos < to; pos++) {
      if (ops[pos]!.op !== '+') oldLine++;
      if (ops[pos]!.op !== '-') newLine++;
    }
  };
  while (k < ops.length && out.length < maxLines) {
    if (ops[k]!.op === ' ') {
      k++;
      continue;
    }
    const start = Math.max(0, k - context);
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
    advance(start);
    let oldCount = 0;
    let newCount = 0;
    for (let i = start; i < end; i++) {
      if (ops[i]!.op !== '+') oldCount++;
      if (ops[i]!.op !== '-') newCount++;
    }
    out.push(`@@ -${oldCount === 0 ? oldLine - 1 : oldLine},${oldCount} +${newCount === 0 ? newLine - 1 : newLine},${newCount} @@`);
    for (let i = start; i < end; i++) out.push(`${ops[i]!.op}${ops[i]!.text}`);
    k = end;
  }
  return {lines: out, truncated: null};
}

/** Compares the trees at `oldRoot` and `newRoot` (either may be a file or symlink). */
export async function diffTrees(oldRoot: string, newRoot: string, options: TreeDiffOptions = {}): Promise<TreeDiffResult> {
  const maxText = options.maxTextBytes ?? 1024 * 1024;
  const maxExcerpt = options.maxExcerptLines ?? 200;
  const maxEntries = options.maxEntries ?? 1000;
  const context = options.context ?? 3;
  const totalDiffMs = options.maxTotalDiffMs ?? 30_000;
  let diffMsUsed = 0;
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

  const textOrBinary = async (rel: string, x: Buffer, y: Buffer): Promise<void> => {
    if (differing.length >= maxEntries) return note(rel, []); // not listed anyway
    if (isText(x) && isText(y)) {
      const lines = (t: string) => (t.endsWith('\n') ? t.slice(0, -1) : t).split('\n');
      const head = [`differs (text): ${show(rel)}`, `--- old/${rel}`, `+++ new/${rel}`];
      const left = totalDiffMs - diffMsUsed;
      if (left <= 0) {
        const h = (b: Buffer) => createHash('sha256').update(b).digest('hex');
        note(rel, [...head, `diff truncated: the time for line diffs (${totalDiffMs} ms) is used up; ${x.length} bytes sha256:${h(x)} → ${y.length} bytes sha256:${h(y)}`]);
        return;
      }
      const t0 = performance.now();
      const d = await unifiedDiff(lines(x.toString('utf8')), lines(y.toString('utf8')), context, {
        ...options.lineDiff,
        maxMs: Math.min(options.lineDiff?.maxMs ?? 2000, left),
        maxLines: maxExcerpt + 1,
      });
      diffMsUsed += performance.now() - t0;
      const shown = d.lines.slice(0, maxExcerpt);
      const more = d.lines.length > shown.length ? ['… more diff lines not shown'] : [];
      note(rel, [...head, ...shown, ...more, ...(d.truncated ? [d.truncated] : [])]);
      return;
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
