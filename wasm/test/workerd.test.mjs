// The built package in workerd (Cloudflare's runtime, from npm) against real Redis nodes on
// loopback, through `connect()` sockets and the RESP executor.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { packageDir, quorumlock } from './support/package.mjs';
import { nodeSocket, startCluster } from './support/redis.mjs';

const workerdBin = fileURLToPath(new URL('../node_modules/.bin/workerd', import.meta.url));

/** The worker and the package files as workerd modules. */
function writeConfig(dir, ports) {
  cpSync(fileURLToPath(new URL('./workerd/worker.mjs', import.meta.url)), join(dir, 'worker.mjs'));
  cpSync(fileURLToPath(packageDir), join(dir, 'quorumlock'), { recursive: true });
  const modules = [`(name = "worker.mjs", esModule = embed "worker.mjs")`];
  const walk = (sub) => {
    for (const entry of readdirSync(join(dir, 'quorumlock', sub), { withFileTypes: true })) {
      const name = sub ? `${sub}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(name);
      else if (name.endsWith('.wasm')) modules.push(`(name = "quorumlock/${name}", wasm = embed "quorumlock/${name}")`);
      else if (/\.(m?js)$/.test(name)) modules.push(`(name = "quorumlock/${name}", esModule = embed "quorumlock/${name}")`);
    }
  };
  walk('');
  writeFileSync(
    join(dir, 'config.capnp'),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "loopback", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [${modules.join(',\n    ')}],
  compatibilityDate = "2025-01-01",
  globalOutbound = "loopback",
  bindings = [(name = "REDIS_PORTS", text = "${ports.join(',')}")],
);
`,
  );
}

/** Starts workerd; resolves with its base URL once it reports the listening port. */
function startWorkerd(dir) {
  const child = spawn(workerdBin, ['serve', 'config.capnp', '--control-fd=3'], {
    cwd: dir,
    stdio: ['ignore', 'inherit', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const ready = new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`workerd exited with ${code}:\n${stderr}`)));
    createInterface({ input: child.stdio[3] }).on('line', (line) => {
      const message = JSON.parse(line);
      if (message.event === 'listen' && message.socket === 'http') resolve(`http://127.0.0.1:${message.port}`);
    });
  });
  return { child, ready, stderr: () => stderr };
}

describe('workerd', () => {
  let cluster;
  let dir;
  let workerd;
  let base;
  let executors;

  before(async () => {
    cluster = await startCluster(3);
    dir = mkdtempSync(join(tmpdir(), 'quorumlock-workerd-'));
    writeConfig(dir, cluster.ports);
    workerd = startWorkerd(dir);
    base = await workerd.ready;
    executors = cluster.ports.map((port) => quorumlock.respExecutor({ connect: nodeSocket(port) }));
  });

  after(async () => {
    for (const executor of executors ?? []) executor.close();
    if (workerd) {
      const exited = new Promise((resolve) => workerd.child.once('exit', resolve));
      workerd.child.kill('SIGKILL');
      await exited;
    }
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function call(route) {
    const response = await fetch(`${base}/${route}`);
    const body = await response.json();
    assert.equal(response.status, 200, `${route}: ${JSON.stringify(body)}\n${workerd.stderr()}`);
    return body;
  }

  test('acquire, refuse, extend, lock several keys and release inside a worker', async () => {
    const result = await call('cycle');
    assert.match(result.value, /^[0-9a-f]{32}$/);
    assert.deepEqual(result.refused.name, 'LockContendedError');
    assert.equal(result.refused.code, 'LOCK_CONTENDED');
    assert.equal(result.extensions, 1);
    assert.ok(result.validity > 7000);
    assert.deepEqual(result.released, [true, true]);
    assert.deepEqual(await cluster.values('worker:1'), [null, null, null]);
  });

  test('a lock taken in the worker is on the nodes, and refused to Node', async () => {
    const { value } = await call('hold');
    assert.ok((await cluster.values('worker:held')).filter((v) => v === value).length >= 2);
    const refused = await new quorumlock.Redlock(executors, { retryCount: 0, requestTimeout: 1000 })
      .acquire('worker:held', 5000)
      .catch((e) => e);
    assert.equal(refused.code, 'LOCK_CONTENDED');
  });

  test('a lock held from Node is refused to the worker', async () => {
    const lock = await new quorumlock.Redlock(executors, { requestTimeout: 1000 }).acquire('node:held', 10_000);
    const result = await call('contend');
    assert.equal(result.code, 'LOCK_CONTENDED');
    assert.ok(result.report.filter((node) => node.status === 'refused').length >= 2);
    await lock.release();
  });

  test('using keeps extending inside the worker', async () => {
    const result = await call('using');
    assert.equal(result.aborted, false);
    assert.ok(result.extensions >= 2, `${result.extensions} extensions`);
    assert.deepEqual(await cluster.values('worker:using'), [null, null, null]);
  });
});
