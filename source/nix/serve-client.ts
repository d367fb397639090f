// Client side of the Nix serve protocol (`nix-store --serve --write`): the requests hydra-ops sends
// (QueryValidPaths, QueryClosure, QueryPathInfos, DumpStorePath, ImportPaths, BuildDerivation) over a
// ServeConnection (serve-connection.ts: greeting, one request in flight, the peer's stderr). BuildDerivation's
// arguments and result are in serve-build.ts, the export framing ImportPaths sends in export-format.ts.
// NixOS/nix src/nix-store/nix-store.cc (opServe).

import type {Readable, Writable} from 'node:stream';
import {parseNar, type NarParseOptions, type NarVisitor} from './nar.js';
import {exportRecords, writeExportEnd, writeExportEntry, type ImportRecords} from './export-format.js';
import {readBuildResult, writeBuildArguments, type BuildOptions, type BuildResult, type WireBasicDerivation} from './serve-build.js';
import {ServeConnection, ServeError} from './serve-connection.js';
import {sortedSet} from './wire.js';

export {ServeConnection, ServeError, type ServeClientOptions, type ServeStreams} from './serve-connection.js';
export type {ImportRecords} from './export-format.js';
export {
  BuildStatus,
  buildStatusName,
  decodeBuiltOutputs,
  mapBuildResult,
  type BuildOptions,
  type BuildResult,
  type BuildStatusName,
  type StepOutcome,
  type WireBasicDerivation,
} from './serve-build.js';

/** Command codes of the requests this client sends. */
export const ServeCommand = {
  QueryValidPaths: 1,
  QueryPathInfos: 2,
  DumpStorePath: 3,
  ImportPaths: 4,
  QueryClosure: 7,
  BuildDerivation: 8,
} as const;

export interface PathInfo {
  path: string;
  /** Deriver store path, or undefined. */
  deriver: string | undefined;
  references: string[];
  downloadSize: number;
  narSize: number;
  /** `sha256:<nix32>`. */
  narHash: string;
  /** Content address, or undefined. */
  ca: string | undefined;
  sigs: string[];
}

export interface ImportEntry {
  path: string;
  references: Iterable<string>;
  deriver?: string | null;
  /**
   * The path's NAR, e.g. `dumpLocalPath(path)`, or a function returning it that is called when the entry is sent
   * (for producers that must not start early).
   */
  nar: Readable | AsyncIterable<Buffer> | (() => Readable | AsyncIterable<Buffer>);
}

/** The serve protocol's requests, one at a time, over a ServeConnection. */
export class ServeClient extends ServeConnection {
  /** QueryValidPaths: which of `paths` are valid on the peer. */
  queryValidPaths(paths: Iterable<string>, options: {lock?: boolean; substitute?: boolean} = {}): Promise<Set<string>> {
    return this.run('QueryValidPaths', async () => {
      this.writer
        .u64(ServeCommand.QueryValidPaths)
        .bool(options.lock ?? false)
        .bool(options.substitute ?? false)
        .strings(sortedSet(paths));
      await this.writer.flush();
      return new Set(await this.reader.readStrings({what: 'valid paths'}));
    });
  }

  /**
   * QueryClosure (nix-store.cc opServe): the closure of `paths` on the peer, the paths included. An invalid path
   * makes the peer fail and exit (the connection is then broken).
   */
  queryClosure(paths: Iterable<string>, options: {includeOutputs?: boolean} = {}): Promise<string[]> {
    return this.run('QueryClosure', async () => {
      this.writer.u64(ServeCommand.QueryClosure).bool(options.includeOutputs ?? false).strings(sortedSet(paths));
      await this.writer.flush();
      return await this.reader.readStrings({what: 'closure'});
    });
  }

  /**
   * ImportPaths with export records written by `body` one at a time: `begin()`, the NAR's bytes to `sink`, then
   * `commit()` (so a NAR can be checked before its record is completed). The peer registers each record once its
   * trailer is read; a body that throws leaves the connection broken (the peer must then be killed, which drops
   * the record in progress).
   */
  importRecords<T>(body: (io: ImportRecords) => Promise<T>): Promise<T> {
    return this.run('ImportPaths', async () => {
      this.writer.u64(ServeCommand.ImportPaths);
      const value = await body(exportRecords(this.writer, this.stdin));
      writeExportEnd(this.writer);
      await this.writer.flush();
      const answer = await this.reader.readU64('ImportPaths answer');
      if (answer !== 1) {
        this.broken = new Error(`ImportPaths answer ${answer}`);
        throw new ServeError(`${this.label} failed to import the paths (answer ${answer})`, await this.settledStderr());
      }
      return value;
    });
  }

  /** QueryPathInfos: path infos of the valid ones among `paths` (invalid paths are absent from the map). */
  queryPathInfos(paths: Iterable<string>): Promise<Map<string, PathInfo>> {
    return this.run('QueryPathInfos', async () => {
      this.writer.u64(ServeCommand.QueryPathInfos).strings(sortedSet(paths));
      await this.writer.flush();
      const out = new Map<string, PathInfo>();
      for (;;) {
        const path = await this.reader.readString({what: 'path'});
        if (path === '') break;
        const deriver = await this.reader.readString({what: `deriver of ${path}`});
        const references = await this.reader.readStrings({what: `references of ${path}`});
        const downloadSize = await this.reader.readU64(`download size of ${path}`);
        const narSize = await this.reader.readU64(`NAR size of ${path}`);
        let narHash = '';
        let ca = '';
        let sigs: string[] = [];
        if (this.minor() >= 4) {
          narHash = await this.reader.readString({what: `NAR hash of ${path}`});
          ca = await this.reader.readString({what: `content address of ${path}`});
          sigs = await this.reader.readStrings({what: `signatures of ${path}`});
        }
        out.set(path, {
          path,
          deriver: deriver || undefined,
          references,
          downloadSize,
          narSize,
          narHash,
          ca: ca || undefined,
          sigs,
        });
      }
      return out;
    });
  }

  /**
   * DumpStorePath: stream the NAR of `path`, reporting entries to `visitor` and copying raw bytes to `tee`.
   * Returns the NAR's hash (`sha256:<nix32>`) and size, to be compared with QueryPathInfos.
   */
  dumpStorePath(
    path: string,
    visitor?: NarVisitor,
    tee?: Writable,
    options: Omit<NarParseOptions, 'visitor' | 'tee'> = {},
  ): Promise<{narHash: string; narSize: number; entries: number}> {
    return this.run('DumpStorePath', async () => {
      this.writer.u64(ServeCommand.DumpStorePath).string(path);
      await this.writer.flush();
      const result = await parseNar(this.reader, {label: path, ...options, visitor, tee});
      return {narHash: result.narHash, narSize: result.narSize, entries: result.entries};
    });
  }

  /**
   * ImportPaths: send paths in the export format, dependencies before dependents. The iterable is consumed
   * lazily, so NAR producers can be started one at a time. Returns the number of paths and NAR bytes sent.
   */
  importPaths(entries: Iterable<ImportEntry> | AsyncIterable<ImportEntry>): Promise<{paths: number; narBytes: number}> {
    return this.run('ImportPaths', async () => {
      this.writer.u64(ServeCommand.ImportPaths);
      let paths = 0;
      let narBytes = 0;
      for await (const entry of entries as AsyncIterable<ImportEntry>) {
        const nar = typeof entry.nar === 'function' ? entry.nar() : entry.nar;
        const r = await writeExportEntry(this.writer, nar, entry.path, entry.references, entry.deriver);
        paths++;
        narBytes += r.narSize;
      }
      writeExportEnd(this.writer);
      await this.writer.flush();
      const answer = await this.reader.readU64('ImportPaths answer');
      if (answer !== 1) {
        this.broken = new Error(`ImportPaths answer ${answer}`);
        throw new ServeError(`remote machine ${this.label} failed to import closure (answer ${answer})`, await this.settledStderr());
      }
      return {paths, narBytes};
    });
  }

  /** BuildDerivation: build `drv` (registered under `drvPath`) on the peer. The build log streams on stderr. */
  buildDerivation(drvPath: string, drv: WireBasicDerivation, options: BuildOptions = {}): Promise<BuildResult> {
    return this.run('BuildDerivation', async () => {
      this.writer.u64(ServeCommand.BuildDerivation);
      writeBuildArguments(this.writer, this.minor(), drvPath, drv, options);
      await this.writer.flush();
      return await readBuildResult(this.reader, this.minor(), this.storeDir);
    });
  }
}
