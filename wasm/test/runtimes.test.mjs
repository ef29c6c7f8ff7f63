// Smoke tests of the built package under Deno and Bun (both installed from npm).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { packageDir } from './support/package.mjs';
import { startCluster } from './support/redis.mjs';

const run = promisify(execFile);
const bin = (name) => fileURLToPath(new URL(`../node_modules/.bin/${name}`, import.meta.url));
const smoke = fileURLToPath(new URL('./runtimes/smoke.mjs', import.meta.url));
const nodeEntry = new URL('node.mjs', packageDir).href;
// The browser and bundler entry fetches the module by URL; Deno's fetch reads file: URLs.
const webEntry = new URL('web.mjs', packageDir).href;

const runtimes = {
  deno: (ports) => [bin('deno'), ['run', '--allow-all', '--no-config', '--quiet', smoke, nodeEntry, ports]],
  'deno (web entry)': (ports) => [bin('deno'), ['run', '--allow-all', '--no-config', '--quiet', smoke, webEntry, ports]],
  bun: (ports) => [bin('bun'), [smoke, nodeEntry, ports]],
};

describe('other runtimes', () => {
  let cluster;

  before(async () => {
    cluster = await startCluster(3);
  });

  after(async () => {
    await cluster?.stop();
  });

  for (const [name, command] of Object.entries(runtimes)) {
    test(`${name} locks real Redis with the package`, async () => {
      const [file, args] = command(cluster.ports.join(','));
      const { stdout } = await run(file, args, { timeout: 20_000, env: { ...process.env, NO_COLOR: '1' } });
      const result = JSON.parse(stdout.trim().split('\n').pop());
      assert.match(result.value, /^[0-9a-f]{32}$/);
      assert.equal(result.refused, 'LOCK_CONTENDED');
      assert.equal(result.extensions, 1);
      assert.equal(result.clean, true);
      assert.deepEqual(await cluster.values('runtime:a'), [null, null, null]);
    });
  }
});
