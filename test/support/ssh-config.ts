// An OpenSSH client configuration for tests: one `Host` block per alias, pointing at a loopback sshd.
export interface SshHost {
  alias: string;
  port: number;
  identityFile: string;
  knownHosts?: string;
  proxyJump?: string;
}

export function sshConfigText(hosts: SshHost[]): string {
  const lines: string[] = [];
  for (const h of hosts) {
    lines.push(`Host ${h.alias}`, '  HostName 127.0.0.1', `  Port ${h.port}`, '  User root', `  IdentityFile ${h.identityFile}`);
    if (h.knownHosts) lines.push(`  UserKnownHostsFile ${h.knownHosts}`);
    if (h.proxyJump) lines.push(`  ProxyJump ${h.proxyJump}`);
  }
  return lines.join('\n') + '\n';
}
