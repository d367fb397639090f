// A TCP port on 127.0.0.1 that nothing listens on right now: the kernel picks it (bind to port 0), the
// probe socket is closed and the port handed to the test. Fixed or pid-derived ports collide with other
// servers and with outgoing connections, whose ephemeral ports share the same range.
import {createServer} from 'node:net';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no port from the kernel'))));
    });
  });
}
