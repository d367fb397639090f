// Child process used by the embedded-server race test: connect-or-start, report, exit.
import {connectOrStart} from '../../source/db/embedded.js';

const [dir, port, password] = process.argv.slice(2);
const handle = await connectOrStart({dir: dir!, port: Number(port), password: password!});
process.stdout.write(JSON.stringify(handle) + '\n');
