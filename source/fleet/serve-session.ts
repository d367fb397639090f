// One serve-protocol session with a machine (`nix-store --serve --write`): over the pooled SSH
// connection, or as a local process for a `localhost` machine. Shared by the step executor and the
// reproducibility check runner.
import {PassThrough} from 'node:stream';
import {ServeClient} from '../nix/serve-client.js';
import {startLocalServe, type LocalTransportOptions} from './local-transport.js';
import type {MachineSpec} from './machines-file.js';
import type {SshConnectionPool} from './ssh-transport.js';

export interface ServeSession {
  client: ServeClient;
  /** EOF, then wait (bounded) for the remote command to exit. */
  close(): Promise<void>;
  /** Cancel now: EOF and tear the channel / process group down so the remote build dies. */
  kill(): Promise<void>;
  /** Settles when the remote command (or local process) has exited. */
  exited: Promise<unknown>;
}

export interface ServeSessionOptions {
  pool: SshConnectionPool;
  /** nix-store program for local machines. */
  nixStore: string;
  /** Extra settings for a local machine's serve process. */
  localServe?: Pick<LocalTransportOptions, 'wrapper' | 'extraArgs' | 'env'>;
  /** How long a finished serve process may take to exit after EOF before it is torn down. */
  closeWaitMs: number;
  /** The remote's stderr (the build log). */
  onStderr: (chunk: Buffer) => void;
}

export async function openServeSession(machine: MachineSpec, o: ServeSessionOptions): Promise<ServeSession> {
  if (machine.kind === 'local') {
    const options: LocalTransportOptions = {nixStore: o.nixStore, ...o.localServe};
    if (machine.remoteStore !== undefined) options.store = machine.remoteStore;
    const transport = startLocalServe(options);
    const client = new ServeClient(transport, {label: machine.uri, onStderr: o.onStderr});
    return {
      client,
      close: async () => {
        await client.close();
        if (!(await settlesWithin(transport.exited, o.closeWaitMs))) await transport.kill(1000);
      },
      kill: async () => {
        client.abort();
        await transport.kill(1000);
      },
      exited: transport.exited,
    };
  }
  const handle = await o.pool.openServe(machine);
  // Read the channel in flowing mode through a buffer, so that its end (and 'close') is seen even when the
  // protocol reader no longer asks for data.
  const stdout = new PassThrough({highWaterMark: 1 << 20});
  handle.stdout.pipe(stdout);
  const client = new ServeClient({stdin: handle.stdin, stdout, stderr: handle.stderr}, {label: machine.uri, onStderr: o.onStderr});
  return {
    client,
    close: async () => {
      await client.close();
      if (!(await settlesWithin(handle.exited, o.closeWaitMs))) await handle.close();
    },
    kill: async () => {
      client.abort();
      await settlesWithin(handle.close(), 2000);
    },
    exited: handle.exited.then(
      () => undefined,
      () => undefined,
    ),
  };
}

/** True when `p` settles (either way) within `ms`. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  if (timer) clearTimeout(timer);
  return settled;
}
