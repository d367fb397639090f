// Opening the database hydra-ops works on: a configured server, or the embedded one.
import pg from 'pg';
import {connectOrStart, type EmbeddedHandle} from './embedded.js';

export type DatabaseTarget =
  | {kind: 'server'; config: pg.ClientConfig; source: string; description: string}
  | {kind: 'embedded'; dir: string; port: number; password: string; source: string};

export interface Database {
  pool: pg.Pool;
  /** Settings for extra dedicated connections (the LISTEN client). */
  connection: pg.ClientConfig;
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

export function describeTarget(t: DatabaseTarget): string {
  if (t.kind === 'embedded') return `embedded PostgreSQL (data ${t.dir}, port ${t.port}), chosen because ${t.source}`;
  return `${t.description}, from ${t.source}`;
}

export async function openDatabase(
  target: DatabaseTarget,
  opts: {poolSize?: number; applicationName?: string; log?: (line: string) => void} = {},
): Promise<Database> {
  let connection: pg.ClientConfig;
  let embedded: EmbeddedHandle | undefined;
  if (target.kind === 'embedded') {
    try {
      embedded = await connectOrStart({dir: target.dir, port: target.port, password: target.password, log: opts.log});
    } catch (e) {
      throw new DatabaseUnavailableError(e instanceof Error ? e.message : String(e));
    }
    connection = {connectionString: embedded.url};
  } else {
    connection = {...target.config};
  }
  connection.application_name = opts.applicationName ?? 'hydra-ops';
  const pool = new pg.Pool({...connection, max: opts.poolSize ?? 10});
  pool.on('error', () => {
    /* idle client errors surface on the next query */
  });
  try {
    const c = await pool.connect();
    c.release();
  } catch (e) {
    await pool.end().catch(() => {});
    throw new DatabaseUnavailableError(`cannot connect to ${describeTarget(target)}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return {
    pool,
    connection,
    target,
    embedded,
    describe: () => describeTarget(target),
    close: () => pool.end(),
  };
}
