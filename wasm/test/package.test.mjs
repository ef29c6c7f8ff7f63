// The tarball from `npm pack` installs into an empty folder and locks real Redis from short
// scripts in the README's style, as ESM and as CommonJS.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { packageDir } from './support/package.mjs';
import { startCluster } from './support/redis.mjs';

const run = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const quiet = ['--no-audit', '--no-fund', '--loglevel=error'];

const esmScript = `
import Redis from 'ioredis';
import { Redlock, ioredisExecutor } from 'quorumlock';

const clients = process.env.PORTS.split(',').map((port) => new Redis(Number(port)));
const redlock = new Redlock(clients.map(ioredisExecutor));
const lock = await redlock.acquire('invoice:42', 10_000);
console.log('locked', lock.value, lock.report.map((node) => node.status).join(' '));
await lock.release();
await redlock.flush(); // the slower nodes' deletions, before the connections close
await Promise.all(clients.map((client) => client.quit()));
`;

const cjsScript = `
const Redis = require('ioredis');
const { Redlock, ioredisExecutor, LockContendedError } = require('quorumlock');

(async () => {
  const clients = process.env.PORTS.split(',').map((port) => new Redis(Number(port)));
  const redlock = new Redlock(clients.map(ioredisExecutor), { retryCount: 0, requestTimeout: 1000 });
  const value = await redlock.using('invoice:43', 5000, async () => {
    const error = await redlock.acquire('invoice:43', 5000).catch((e) => e);
    return error instanceof LockContendedError ? error.code : 'not refused';
  });
  console.log(value);
  await Promise.all(clients.map((client) => client.quit()));
})();
`;

describe('npm pack', () => {
  let cluster;
  let work;
  let tarball;

  before(async () => {
    cluster = await startCluster(3);
    work = mkdtempSync(join(tmpdir(), 'quorumlock-pack-'));
    const { stdout } = await run(npm, ['pack', '--json', '--pack-destination', work, ...quiet], {
      cwd: fileURLToPath(packageDir),
    });
    const [packed] = JSON.parse(stdout);
    tarball = { path: join(work, packed.filename), files: packed.files.map((file) => file.path) };
  });

  after(async () => {
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the tarball holds the module, the glue, both entries and the types, and nothing else', () => {
    for (const file of ['quorumlock_wasm_bg.wasm', 'quorumlock_wasm.js', 'node.mjs', 'node.cjs', 'workerd.mjs', 'index.d.ts', 'package.json', 'README.md', 'adapters/resp.js']) {
      assert.ok(tarball.files.includes(file), `${file} is missing from ${tarball.files}`);
    }
    assert.ok(!tarball.files.some((file) => file.includes('test')), `${tarball.files}`);
  });

  test('installs into an empty folder and locks Redis from ESM and CommonJS', async () => {
    const appDir = mkdtempSync(join(work, 'app-'));
    writeFileSync(join(appDir, 'package.json'), '{}');
    await run(npm, ['install', tarball.path, ...quiet], { cwd: appDir });
    // The README example uses ioredis; link the copy already installed for these tests.
    symlinkSync(fileURLToPath(new URL('../node_modules/ioredis', import.meta.url)), join(appDir, 'node_modules', 'ioredis'));
    writeFileSync(join(appDir, 'lock.mjs'), esmScript);
    writeFileSync(join(appDir, 'lock.cjs'), cjsScript);
    const env = { ...process.env, PORTS: cluster.ports.join(',') };

    const esm = await run(process.execPath, ['lock.mjs'], { cwd: appDir, env, timeout: 20_000 });
    assert.match(esm.stdout, /^locked [0-9a-f]{32} (granted|no-answer) (granted|no-answer) (granted|no-answer)\n$/);
    const cjs = await run(process.execPath, ['lock.cjs'], { cwd: appDir, env, timeout: 20_000 });
    assert.equal(cjs.stdout, 'LOCK_CONTENDED\n');
    assert.deepEqual(await cluster.values('invoice:42'), [null, null, null]);
  });
});
