// A node-postgres client that only completes a connection authenticated with SCRAM-SHA-256.
//
// Why this proves we talk to a server that knows our password: SCRAM is mutual. The server's
// final message carries a signature computed from the stored password verifier, and pg checks it
// (pg/lib/crypto/sasl.js finalizeSession: "server signature does not match"). A server that does
// not hold the verifier cannot produce it. What pg does not check on its own:
//   - a server may ask for the password in cleartext or as MD5 — pg would send it, handing the
//     password to whoever listens there. The password is therefore supplied through a function
//     that pg calls only when it is about to answer a challenge (Client#_getPassword); it refuses
//     unless the challenge is SCRAM, so the password never leaves the process otherwise;
//   - a server may skip authentication altogether (trust) or send AuthenticationOk without the
//     SCRAM final message. Both are caught when AuthenticationOk arrives: unless a verified
//     SCRAM exchange preceded it, the connection is refused (or, with `acceptUnauthenticated`,
//     completed without a password having been sent and marked `authenticated: false`, so a
//     caller can read diagnostics from an impostor before refusing it).
// Listeners added here on the Connection run before pg's own (pg attaches its listeners in
// connect()), so the method is known by the time pg asks for the password.
import type {EventEmitter} from 'node:events';
import pg from 'pg';

export type AuthMethod = 'none' | 'cleartext' | 'md5' | 'scram' | 'other';

export class ScramRequiredError extends Error {
  constructor(
    readonly method: AuthMethod,
    message: string,
  ) {
    super(message);
    this.name = 'ScramRequiredError';
  }
}

export interface ScramOnlyConfig extends pg.ClientConfig {
  /** Complete a connection that needed no password (flagged `authenticated: false`). */
  acceptUnauthenticated?: boolean;
}

export class ScramOnlyClient extends pg.Client {
  /** The method the server asked for; 'none' when it accepted us without a challenge. */
  authMethod: AuthMethod | null = null;
  /** True once a SCRAM exchange completed with a server signature that pg verified. */
  authenticated = false;

  constructor(config: ScramOnlyConfig = {}) {
    super(config);
    const con = (this as unknown as {connection: EventEmitter & {stream?: {destroy(): void}}}).connection;
    const self = this as unknown as {password: unknown};
    const password = self.password;
    let finalSeen = false;
    const refuse = (error: ScramRequiredError) => {
      con.emit('error', error);
      con.stream?.destroy();
    };
    con.on('authenticationCleartextPassword', () => (this.authMethod = 'cleartext'));
    con.on('authenticationMD5Password', () => (this.authMethod = 'md5'));
    con.on('authenticationSASL', (msg: {mechanisms?: string[]}) => {
      this.authMethod = msg.mechanisms?.includes('SCRAM-SHA-256') ? 'scram' : 'other';
    });
    // pg verifies the server signature in its own listener, which runs after this one and fails
    // the connection on a mismatch; reaching AuthenticationOk after this flag means it matched.
    con.on('authenticationSASLFinal', () => (finalSeen = true));
    con.on('authenticationOk', () => {
      if (this.authMethod === 'scram' && finalSeen) {
        this.authenticated = true;
        return;
      }
      this.authMethod ??= 'none';
      if (this.authMethod === 'none' && config.acceptUnauthenticated) return;
      refuse(
        new ScramRequiredError(
          this.authMethod,
          this.authMethod === 'none'
            ? 'the server accepted the connection without asking for a password (trust authentication)'
            : 'the server ended authentication without proving it knows the password (no SCRAM server signature)',
        ),
      );
    });
    self.password = () => {
      if (this.authMethod !== 'scram') {
        throw new ScramRequiredError(
          this.authMethod ?? 'other',
          `the server asked for the password by ${this.authMethod === 'md5' ? 'MD5' : this.authMethod === 'cleartext' ? 'cleartext' : 'an unsupported method'}; ` +
            'only SCRAM-SHA-256 is accepted, and the password was not sent',
        );
      }
      return typeof password === 'function' ? (password as () => unknown)() : password;
    };
  }
}

/**
 * Settings for connections to the database hydra-ops works on: node-postgres' own, plus whether the server must
 * prove by SCRAM that it knows the password (the embedded server: set by connection.ts). The pool and every
 * dedicated connection (LISTEN, the runner lock, probes) make their clients with newClient/newPool from the same
 * settings, so none of them would send the password in cleartext or as MD5 to a server that asked.
 */
export interface ConnectionSettings extends pg.ClientConfig {
  /** Every client is a ScramOnlyClient. */
  scramOnly?: boolean;
}

function split(settings: ConnectionSettings): {config: pg.ClientConfig; Client: typeof pg.Client} {
  const {scramOnly, ...config} = settings;
  return {config, Client: scramOnly ? ScramOnlyClient : pg.Client};
}

/** A dedicated client for these settings (not connected). */
export function newClient(settings: ConnectionSettings, extra: pg.ClientConfig = {}): pg.Client {
  const {config, Client} = split(settings);
  return new Client({...config, ...extra});
}

/** A pool whose clients are made as newClient makes them. */
export function newPool(settings: ConnectionSettings, options: Omit<pg.PoolConfig, keyof pg.ClientConfig> = {}): pg.Pool {
  const {config, Client} = split(settings);
  return new pg.Pool({...config, ...options, Client});
}

/** The settings a pool made by newPool connects with (its size and timeouts left out). */
export function settingsOfPool(pool: pg.Pool): ConnectionSettings {
  const {max: _max, min: _min, idleTimeoutMillis: _i, Client, ...rest} = pool.options as pg.PoolConfig & {Client?: unknown};
  return {...(rest as pg.ClientConfig), ...(Client === ScramOnlyClient ? {scramOnly: true} : {})};
}
