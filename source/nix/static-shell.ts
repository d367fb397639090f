// A statically linked shell for Nix's sandbox. Inside the sandbox only the store and `sandbox-paths` exist, so a
// derivation whose builder is `/bin/sh` needs `/bin/sh` mapped to a shell that needs no dynamic loader. Nix
// builds configured with `--with-sandbox-shell` (NixOS) map one by default; Debian's nix-bin leaves
// `sandbox-paths` empty. Debian's busybox-static provides one at /bin/busybox (its applets run without a PATH).
import {closeSync, openSync, readSync} from 'node:fs';

export const STATIC_SHELL_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox', '/bin/busybox.static', '/usr/bin/busybox-static'];

/** True when `path` is an ELF executable without a program interpreter (PT_INTERP), i.e. statically linked. */
export function isStaticElf(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const head = Buffer.alloc(64);
    if (readSync(fd, head, 0, 64, 0) < 64) return false;
    if (head.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(le ? head.readBigUInt64LE(32) : head.readBigUInt64BE(32)) : u32(head, 28);
    const phentsize = u16(head, is64 ? 54 : 42);
    const phnum = u16(head, is64 ? 56 : 44);
    if (phnum === 0 || phentsize < 8 || phnum > 256) return false;
    const table = Buffer.alloc(phentsize * phnum);
    if (readSync(fd, table, 0, table.length, phoff) < table.length) return false;
    for (let i = 0; i < phnum; i++) if (u32(table, i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

/** The first statically linked shell found among the usual places, or null. */
export function findStaticShell(candidates: readonly string[] = STATIC_SHELL_CANDIDATES): string | null {
  for (const c of candidates) if (isStaticElf(c)) return c;
  return null;
}
