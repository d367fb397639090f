// Child process for the private-file test: under umask 000, records the mode of every file the
// moment it is created (fstat of the new descriptor, before anything else can happen to it), then
// generates the settings password and initialises + starts an embedded server. Prints the records.
// fs is patched before conf, atomically and the hydra-ops modules load, so they all see the patch.
import fs from 'node:fs';
import {syncBuiltinESMExports} from 'node:module';

const [configDir, clusterDir] = process.argv.slice(2);
const created: {path: string; mode: number}[] = [];
const realOpen = fs.openSync;
fs.openSync = ((path: fs.PathLike, flags?: fs.OpenMode, mode?: fs.Mode) => {
  const existed = fs.existsSync(path);
  const fd = realOpen(path, flags ?? 'r', mode);
  if (!existed) created.push({path: String(path), mode: fs.fstatSync(fd).mode & 0o777});
  return fd;
}) as typeof fs.openSync;
const realWriteFile = fs.writeFileSync;
fs.writeFileSync = ((path: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, options?: fs.WriteFileOptions) => {
  const existed = typeof path !== 'number' && fs.existsSync(path);
  realWriteFile(path, data, options);
  if (!existed && typeof path !== 'number') created.push({path: String(path), mode: fs.statSync(path).mode & 0o777});
}) as typeof fs.writeFileSync;
syncBuiltinESMExports();
process.umask(0);

const {openSettings} = await import('../../source/config/settings.js');
const {connectOrStart} = await import('../../source/db/embedded.js');
const password = openSettings({HYDRA_OPS_CONFIG_DIR: configDir!}).embeddedPassword();
const handle = await connectOrStart({dir: clusterDir!, password});
process.stdout.write(JSON.stringify({created, pid: handle.pid}) + '\n');
