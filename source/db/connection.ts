// Opening the database hydra-ops works on: a configured server, or the embedded one.
import pg from 'pg';
import {connectOrStart, type EmbeddedHandle} from './embedded.js';
import {newPool, type ConnectionSettings} from './scram-client.js';

export type DatabaseTarget =
  | {kind: 'server'; config: pg.ClientConfig; source: string; description: string}
  /** `port`: the embeddedPort setting (loopback TCP); null: the Unix socket in `dir` (embedded-endpoint.ts). */
  | {kind: 'embedded'; dir: string; port: number | null; password: string; source: string};

export interface Database {
  pool: pg.Pool;
  /** Settings for extra dedicated connections (LISTEN, the runner lock, probes): make their clients with newClient. */
  connection: ConnectionSettings;
  target: DatabaseTarget;
  embedded?: EmbeddedHandle;
  describe(): string;
  close(): Promise<void>;
}

export class DatabaseUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUnavailableError';
  }
}

export function describeTarget(t: DatabaseTarget, embedded?: EmbeddedHandle): string {
  if (t.kind === 'embedded') {
    const where = embedded ? embedded.listen : t.port !== null ? `127.0.0.1:${t.port}` : 'Unix socket in the data directory';
    return `embedded PostgreSQL (data ${t.dir}, ${where}), chosen because ${t.source}`;
  }
  return `${t.description}, from ${t.source}`;
}

export async function openDatabase(
  target: DatabaseTarget,
  opts: {poolSize?: number; applicationName?: string; log?: (line: string) => void} = {},
): Promise<Database> {
  let connection: ConnectionSettings;
  let embedded: EmbeddedHandle | undefined;
  if (target.kind === 'embedded') {
    try {
      embedded = await connectOrStart({dir: target.dir, ...(target.port !== null ? {port: target.port} : {}), password: target.password, log: opts.log});
    } catch (e) {
      throw new DatabaseUnavailableError(e instanceof Error ? e.message : String(e));
    }
    // The embedded server, like the identity-checked first connection, must prove by SCRAM that it knows the
    // password, on pooled and dedicated connections alike (scram-client.ts).
    connection = {...embedded.connection, scramOnly: true};
  } else {
    connection = {...target.config};
  }
  connection.application_name = opts.applicationName ?? 'hydra-ops';
  const pool = newPool(connection, {max: opts.poolSize ?? 10});
  pool.on('error', () => {
    /* idle client errors surface on the next query */
  });
  try {
    const c = await pool.connect();
    c.release();
  } catch (e) {
    await pool.end().catch(() => {});
    throw new DatabaseUnavailableError(`cannot connect to ${describeTarget(target, embedded)}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return {
    pool,
    connection,
    target,
    embedded,
    describe: () => describeTarget(target, embedded),
    close: () => pool.end(),
  };
}
