// The `nix-store --export` framing (what `nix-store --import` and the serve protocol's ImportPaths read): each
// record is `1`, a NAR, the export magic, the path, its references (sorted set), the deriver ('' if none) and `0`
// (no legacy signature); the stream ends with `0`. NixOS/nix src/libstore/export-import.cc.

import {Writable, type Readable} from 'node:stream';
import {NarError, parseNar, type NarParseResult} from './nar.js';
import {WireReader, WireWriter, sortedSet} from './wire.js';

export const EXPORT_MAGIC = 0x4558494e;

export interface ExportEntryResult {
  narSize: number;
  /** `sha256:<nix32>` of the NAR bytes sent. */
  narHash: string;
}

/** Export records written one at a time by their producer (ServeClient.importRecords, the local store's import). */
export interface ImportRecords {
  /** Where a record's NAR bytes go, between begin() and commit(). */
  sink: Writable;
  begin(): Promise<void>;
  commit(path: string, references: Iterable<string>, deriver: string | null | undefined): Promise<void>;
}

/** Start an export record: its NAR follows. */
export async function beginExportRecord(writer: WireWriter): Promise<void> {
  writer.u64(1);
  await writer.flush();
}

/** Finish an export record after its NAR: magic, path, references, deriver, no signature. */
export async function commitExportRecord(
  writer: WireWriter,
  path: string,
  references: Iterable<string>,
  deriver: string | null | undefined,
): Promise<void> {
  writer.u64(EXPORT_MAGIC).string(path).strings(sortedSet(references)).string(deriver ?? '').u64(0);
  await writer.flush();
}

/**
 * The ImportRecords a producer writes through: framing on `writer`, NAR bytes straight to `sink` (the stream under
 * `writer`), so a NAR can be checked before its record is completed.
 */
export function exportRecords(writer: WireWriter, sink: Writable): ImportRecords {
  return {
    sink,
    begin: () => beginExportRecord(writer),
    commit: (path, references, deriver) => commitExportRecord(writer, path, references, deriver),
  };
}

/**
 * Write one export record, the NAR streamed unchanged from `nar`. The NAR is checked as it passes (a truncated or
 * malformed NAR raises before the trailer is written).
 */
export async function writeExportEntry(
  writer: WireWriter,
  nar: Readable | AsyncIterable<Buffer>,
  path: string,
  references: Iterable<string>,
  deriver?: string | null,
): Promise<ExportEntryResult> {
  await beginExportRecord(writer);
  const source = new WireReader(nar as AsyncIterable<Buffer>, {label: `NAR of ${path}`});
  // Forward bytes exactly as parsed so the receiver gets precisely one NAR.
  const result = await parseNarInto(source, writer, path);
  if (!(await source.atEof())) throw new NarError(`trailing data after the NAR of ${path}`, result.narSize);
  await commitExportRecord(writer, path, references, deriver);
  return {narSize: result.narSize, narHash: result.narHash};
}

/** Terminate an export stream (`0`). */
export function writeExportEnd(writer: WireWriter): WireWriter {
  return writer.u64(0);
}

async function parseNarInto(source: WireReader, writer: WireWriter, path: string): Promise<NarParseResult> {
  const forward = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      writer.raw(chunk);
      writer.flush().then(() => callback(), callback);
    },
  });
  const result = await parseNar(source, {tee: forward, label: path});
  await new Promise<void>((resolve, reject) => forward.end((error?: Error | null) => (error ? reject(error) : resolve())));
  return result;
}
