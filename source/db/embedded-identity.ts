// The embedded cluster's identity: PostgreSQL's system identifier, a 64-bit number initdb stores
// as the first field of global/pg_control (ControlFileData.system_identifier, see
// src/include/catalog/pg_control.h upstream) and the server reports as
// `SELECT system_identifier FROM pg_control_system()`. hydra-ops reads it from pg_control right
// after initdb — before any server runs, so no impostor can be asked — and records it in
// `$HYDRA_DATA/pg.identity.json` (mode 0600). Every connection to the embedded server then checks
// that the server answering at the expected address reports this identifier, after a SCRAM
// exchange (scram-client.ts) that proved it knows the password. The file also records the TCP
// port derived for clusters whose socket path would be too long (embedded-endpoint.ts).
import {existsSync, readFileSync} from 'node:fs';
import {endianness} from 'node:os';
import {join} from 'node:path';
import {writePrivateFile} from '../config/private-file.js';

export interface EmbeddedIdentity {
  /** Decimal text, as `system_identifier::text` prints it. */
  systemIdentifier: string;
  /** Set when the server listens on a derived TCP port (no usable socket path). */
  derivedPort?: number;
}

export class EmbeddedIdentityFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedIdentityFileError';
  }
}

/** `$HYDRA_DATA/pg.identity.json` for cluster directory `$HYDRA_DATA/pg`. */
export function identityFile(clusterDir: string): string {
  return `${clusterDir}.identity.json`;
}

export function readIdentity(clusterDir: string): EmbeddedIdentity | null {
  const file = identityFile(clusterDir);
  if (!existsSync(file)) return null;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new EmbeddedIdentityFileError(`${file}: not valid JSON (${(e as Error).message}); delete it to record the identity of ${clusterDir} again`);
  }
  const d = doc as Record<string, unknown>;
  if (typeof d !== 'object' || d === null || typeof d.systemIdentifier !== 'string' || !/^-?[0-9]+$/.test(d.systemIdentifier)) {
    throw new EmbeddedIdentityFileError(`${file}: field systemIdentifier must be a decimal string; delete the file to record the identity of ${clusterDir} again`);
  }
  if (d.derivedPort !== undefined && !(Number.isInteger(d.derivedPort) && (d.derivedPort as number) >= 1 && (d.derivedPort as number) <= 65535)) {
    throw new EmbeddedIdentityFileError(`${file}: field derivedPort must be an integer 1..65535`);
  }
  return {systemIdentifier: d.systemIdentifier, ...(d.derivedPort !== undefined ? {derivedPort: d.derivedPort as number} : {})};
}

export function writeIdentity(clusterDir: string, identity: EmbeddedIdentity): void {
  writePrivateFile(identityFile(clusterDir), JSON.stringify(identity, null, 2) + '\n');
}

/** The system identifier in the cluster's global/pg_control (signed, like the SQL bigint). */
export function controlFileIdentifier(clusterDir: string): string {
  const file = join(clusterDir, 'global', 'pg_control');
  const data = readFileSync(file);
  if (data.length < 8) throw new EmbeddedIdentityFileError(`${file}: too short to hold a system identifier`);
  return (endianness() === 'LE' ? data.readBigInt64LE(0) : data.readBigInt64BE(0)).toString();
}
