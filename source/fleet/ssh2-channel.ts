// A remote command on an ssh2 exec channel, as the ExecHandle every transport gives: its streams, its exit status
// (or the lost connection that ended it first), and cancellation.
import type {Client as SshClient, ClientChannel} from 'ssh2';
import {SshTransportError, type ExecHandle, type ExitStatus} from './ssh-common.js';

/**
 * The handle of a command running on `channel` of `client`; `onRelease` is called once, when the channel is done
 * with (closed, or its connection dropped).
 */
export function channelHandle(uri: string, client: SshClient, channel: ClientChannel, onRelease: () => void): ExecHandle {
  let exit: ExitStatus | undefined;
  let closeRequested = false;
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      onRelease();
    }
  };
  // Stream errors (e.g. writing after the connection died) surface through `exited`.
  channel.on('error', () => {});
  channel.stderr.on('error', () => {});
  channel.on('exit', (code: number | null, signal?: string) => {
    exit = {code: typeof code === 'number' ? code : null, signal: signal ?? null};
  });
  const closed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
  // A dropped connection settles `exited` even when nobody drains the channel's output.
  const lost = new Promise<void>((resolve) => {
    const onClose = () => resolve();
    client.once('close', onClose);
    void closed.then(() => client.removeListener('close', onClose));
  });
  const exited = Promise.race([closed, lost]).then((): ExitStatus => {
    release();
    if (exit) return exit;
    if (closeRequested) return {code: null, signal: null};
    throw new SshTransportError('lost', uri, 'connection lost while the command was running');
  });
  exited.catch(() => {});
  return {
    stdin: channel,
    stdout: channel,
    stderr: channel.stderr,
    exited,
    close: async () => {
      if (!closeRequested) {
        closeRequested = true;
        try {
          channel.end();
          channel.close();
        } catch {
          // already closed
        }
        // Nobody may be reading any more: keep the data flowing so 'close' can be emitted.
        channel.resume();
        channel.stderr.resume();
      }
      await closed;
    },
  };
}
