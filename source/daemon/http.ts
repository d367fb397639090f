// The queue runner's HTTP status endpoint (docs/hydra-compat.md, "Status documents and metrics"): the Rust runner's REST documents
// so Hydra's web app (`queue_runner_endpoint`) works unchanged, Prometheus `/metrics`, and
// hydra-ops additions (`/status/progress`, `/status/cpp`). GET only, no authentication: the default
// address (setting `statusAddress`) is 127.0.0.1:8081, loopback only. The Rust runner's two write
// routes (`PUT /build`, `POST /build_one`) are answered with 501 and the hydra-ops command to use:
// an unauthenticated endpoint must not queue builds.
import http from 'node:http';
import type {AddressInfo} from 'node:net';
import type {Scheduler} from '../scheduler/scheduler.js';
import {DEFAULT_LIST_LIMIT, DEFAULT_STALL_SECONDS} from './status-common.js';
import {cppStatus} from './status-cpp.js';
import {restProgress} from './status-progress.js';
import {restBuildActive, restBuilds, restQueueSteps, restQueues, restRunnable, restSteps} from './status-lists.js';
import {restJobsets, restMachines, restStatus, restUploads} from './status.js';
import {buildUnfinished} from '../db/runner-sql.js';
import {METRICS_CONTENT_TYPE, renderMetrics} from './metrics.js';

export const DEFAULT_STATUS_ADDRESS = '127.0.0.1:8081';
/** Largest `?limit=` accepted. */
export const MAX_LIST_LIMIT = 1_000_000;

export interface StatusServerOptions {
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** Port; 0 picks a free one (default 8081). */
  port?: number;
  /** Idle seconds after which `/status/progress` reports a stall (default 300). */
  stallThresholdSeconds?: number;
  /** Serve only these paths (e.g. ['/metrics'] for hydra.conf's queue_runner_metrics_address); default all. */
  only?: readonly string[];
}

export interface StatusServer {
  /** The bound address, `host:port` (`[v6]:port` for IPv6). */
  address: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

export class StatusAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StatusAddressError';
  }
}

/** Parses `host:port` or `[v6]:port`. */
export function parseStatusAddress(address: string): {host: string; port: number} {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):([0-9]+)$/.exec(address.trim());
  if (!m) throw new StatusAddressError(`status address: expected host:port (e.g. ${DEFAULT_STATUS_ADDRESS} or [::1]:8081), got "${address}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new StatusAddressError(`status address: port ${m[3]} in "${address}" is not in 0..65535`);
  return {host: m[1] ?? m[2]!, port};
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function listLimit(url: URL): number {
  const raw = url.searchParams.get('limit');
  if (raw === null || raw === '') return DEFAULT_LIST_LIMIT;
  if (!/^[0-9]+$/.test(raw)) throw new HttpError(400, `limit: "${raw}" is not a non-negative integer`);
  const n = Number(raw);
  if (n > MAX_LIST_LIMIT) throw new HttpError(400, `limit: ${raw} is above the maximum ${MAX_LIST_LIMIT}`);
  return n;
}

type Reply = {type: 'json'; body: unknown} | {type: 'text'; body: string};
type Route = (s: Scheduler, url: URL, now: number) => Reply | Promise<Reply>;

/** The Rust runner's write routes and what to use instead. */
const WRITE_ROUTES: Record<string, {method: string; instead: string}> = {
  '/build': {method: 'PUT', instead: 'queue builds through evaluation (hydra-ops eval) or restart them with hydra-ops restart'},
  '/build_one': {method: 'POST', instead: 'build a single queued build with hydra-ops daemon --build-one <id>'},
};

function route(path: string, stall: number): Route | null {
  const json = (f: (s: Scheduler, url: URL, now: number) => unknown): Route => async (s, url, now) => ({type: 'json', body: await f(s, url, now)});
  switch (path) {
    case '/status':
      return json((s, _u, now) => restStatus(s, now));
    case '/status/machines':
      return json((s, _u, now) => restMachines(s, now));
    case '/status/jobsets':
      return json((s) => restJobsets(s));
    case '/status/builds':
      return json((s, u) => restBuilds(s, {limit: listLimit(u)}));
    case '/status/steps':
      return json((s, u, now) => restSteps(s, {limit: listLimit(u)}, now));
    case '/status/runnable':
      return json((s, u, now) => restRunnable(s, {limit: listLimit(u)}, now));
    case '/status/queues':
      return json((s, u, now) => restQueues(s, {limit: listLimit(u)}, now));
    case '/status/queues/jobs':
      return json((s, u, now) => restQueueSteps(s, 'jobs', {limit: listLimit(u)}, now));
    case '/status/queues/scheduled':
      return json((s, u, now) => restQueueSteps(s, 'scheduled', {limit: listLimit(u)}, now));
    case '/status/uploads':
      return json(() => restUploads());
    case '/status/progress':
      return json((s, _u, now) => restProgress(s, now, stall));
    case '/status/cpp':
      return json((s, _u, now) => cppStatus(s, now));
    case '/metrics':
      return (s, _u, now) => ({type: 'text', body: renderMetrics(s, {now, stallThresholdSeconds: stall})});
  }
  const build = /^\/status\/build\/([^/]+)\/active$/.exec(path);
  if (build) {
    return json(async (s) => {
      const raw = decodeURIComponent(build[1]!);
      // Builds.id is a 32-bit integer.
      if (!/^[0-9]+$/.test(raw) || Number(raw) > 2147483647) throw new HttpError(400, `build id "${raw}" is not a build id (a positive 32-bit integer)`);
      const id = Number(raw);
      return restBuildActive(s, id, await buildUnfinished(s.pool, id));
    });
  }
  return null;
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, {'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...extra});
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body), extra);
}

/** Serves the status documents and metrics until close(). Rejects with a clear message when it cannot bind. */
export async function startStatusServer(scheduler: Scheduler, options: StatusServerOptions = {}): Promise<StatusServer> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8081;
  const stall = options.stallThresholdSeconds ?? DEFAULT_STALL_SECONDS;
  const server = http.createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://status.invalid');
    } catch {
      sendJson(res, 400, {error: 'malformed request target'});
      return;
    }
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    const write = options.only ? undefined : WRITE_ROUTES[path];
    if (write) {
      sendJson(res, 501, {error: `${write.method} ${path} is not provided by hydra-ops (its status server is unauthenticated and read-only): ${write.instead}`});
      return;
    }
    const handler = options.only && !options.only.includes(path) ? null : route(path, stall);
    if (!handler) {
      sendJson(res, 404, {error: `no such endpoint: ${path}`, path});
      return;
    }
    if (req.method !== 'GET') {
      sendJson(res, 405, {error: `method ${req.method} not allowed on ${path} (only GET)`}, {Allow: 'GET'});
      return;
    }
    Promise.resolve()
      .then(() => handler(scheduler, url, Date.now()))
      .then(
        (out) => {
          if (out.type === 'text') send(res, 200, METRICS_CONTENT_TYPE, out.body);
          else sendJson(res, 200, out.body);
        },
        (e: unknown) => {
          if (e instanceof HttpError) sendJson(res, e.status, {error: e.message});
          else sendJson(res, 500, {error: `internal error: ${e instanceof Error ? e.message : String(e)}`});
        },
      );
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const what = e.code === 'EADDRINUSE' ? 'the address is already in use' : e.code === 'EADDRNOTAVAIL' ? 'no such local address' : e.code === 'EACCES' ? 'permission denied' : e.message;
      reject(new StatusAddressError(`cannot listen on ${formatAddress(host, port)}: ${what}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', () => {});
  const bound = server.address() as AddressInfo;
  let closed: Promise<void> | null = null;
  return {
    address: formatAddress(bound.address, bound.port),
    host: bound.address,
    port: bound.port,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
