// How a machine is reached, and by which transport: its host resolved as OpenSSH would (`ssh -G`, ssh-config.ts),
// its ProxyJump hops resolved in connection order, and the choice between the built-in ssh2 client and the `ssh`
// binary — OpenSSH when the configuration needs what ssh2 cannot do, or when HYDRA_OPS_SSH_TRANSPORT says so.
import {SshConfigError, needsOpenSsh, parseJumpHop, resolveSsh, transportModeFor, type ResolvedSsh} from './ssh-config.js';
import {SshTransportError, type SshTarget} from './ssh-common.js';

export interface Route {
  resolved: ResolvedSsh;
  /** ProxyJump hops in connection order, each resolved. */
  hops: ResolvedSsh[];
  transport: 'ssh2' | 'openssh';
  /** Why OpenSSH is used (for diagnostics). */
  reason: string | undefined;
  at: number;
}

const ROUTE_TTL_MS = 30_000;
const MAX_JUMP_DEPTH = 8;

/** The routes of the machines, each resolved once and cached. */
export class SshRoutes {
  private readonly routes = new Map<string, Promise<Route>>();

  constructor(private readonly o: {sshConfigFile: string | undefined; transportSetting: string | undefined; env: NodeJS.ProcessEnv}) {}

  /** How a machine is reached (resolved with `ssh -G`, cached for 30 s and until closeMachine). */
  route(target: SshTarget): Promise<Route> {
    const cached = this.routes.get(target.uri);
    if (cached) return cached;
    const p = this.computeRoute(target);
    this.routes.set(target.uri, p);
    const expire = () => setTimeout(() => this.routes.get(target.uri) === p && this.routes.delete(target.uri), ROUTE_TTL_MS).unref();
    p.then(expire, () => this.routes.get(target.uri) === p && this.routes.delete(target.uri));
    return p;
  }

  /** Forgets a machine's route (it is resolved again on next use). */
  delete(uri: string): void {
    this.routes.delete(uri);
  }

  private async computeRoute(target: SshTarget): Promise<Route> {
    const uri = target.uri;
    try {
      const mode = transportModeFor(this.o.transportSetting, uri, target.host);
      const opts = {configFile: this.o.sshConfigFile, env: this.o.env};
      const resolved = await resolveSsh(target.host, {...opts, port: target.port, user: target.user});
      if (mode === 'openssh') return {resolved, hops: [], transport: 'openssh', reason: 'selected by HYDRA_OPS_SSH_TRANSPORT', at: Date.now()};
      const hops = await this.resolveHops(resolved.proxyJump, 0);
      let reason = needsOpenSsh(resolved, target.sshKey);
      for (const h of hops) reason ??= needsOpenSsh(h, undefined);
      if (reason !== undefined && mode === 'ssh2') {
        throw new SshConfigError(`needs ${reason}, which the ssh2 transport cannot use, but HYDRA_OPS_SSH_TRANSPORT selects ssh2`);
      }
      return {resolved, hops, transport: reason === undefined ? 'ssh2' : 'openssh', reason, at: Date.now()};
    } catch (e) {
      if (e instanceof SshConfigError) throw new SshTransportError('config', uri, e.message, {cause: e});
      throw e;
    }
  }

  /** Resolves ProxyJump hops: for `a,b` the target is reached through b and b through a; a single hop keeps its own ProxyJump. */
  private async resolveHops(hops: string[], depth: number): Promise<ResolvedSsh[]> {
    if (hops.length === 0) return [];
    if (depth >= MAX_JUMP_DEPTH) throw new SshConfigError(`ProxyJump chain longer than ${MAX_JUMP_DEPTH} hops (a loop?)`);
    const last = parseJumpHop(hops[hops.length - 1]!);
    const r = await resolveSsh(last.host, {configFile: this.o.sshConfigFile, env: this.o.env, port: last.port, user: last.user});
    const before = hops.length > 1 ? hops.slice(0, -1) : r.proxyJump;
    return [...(await this.resolveHops(before, depth + 1)), r];
  }
}
