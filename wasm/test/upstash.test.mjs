// The @upstash/redis executor (Redis over HTTP, for fetch-only runtimes) against three real
// Redis nodes behind local REST bridges.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from '@upstash/redis';
import { quorumlock } from './support/package.mjs';
import { startCluster } from './support/redis.mjs';
import { startUpstashBridge } from './support/upstash-bridge.mjs';

const { Redlock, upstashExecutor } = quorumlock;

describe('@upstash/redis', () => {
  let cluster;
  let bridges;
  let redlock;

  before(async () => {
    cluster = await startCluster(3);
    bridges = await Promise.all(cluster.ports.map(startUpstashBridge));
    const clients = bridges.map(
      ({ url }) => new Redis({ url, token: 'local', automaticDeserialization: false, retry: false, enableTelemetry: false }),
    );
    redlock = new Redlock(clients.map(upstashExecutor), { retryCount: 0, requestTimeout: 1000 });
  });

  after(async () => {
    await Promise.all(bridges?.map((bridge) => bridge.close()) ?? []);
    await cluster?.stop();
  });

  test('acquire, contend, extend and release over REST', async () => {
    const lock = await redlock.acquire('edge:1', 5000);
    assert.ok((await cluster.values('edge:1')).filter((v) => v === lock.value).length >= 2);
    const refused = await redlock.acquire('edge:1', 5000).catch((e) => e);
    assert.equal(refused.code, 'LOCK_CONTENDED');
    await lock.extend(10_000);
    assert.ok(lock.validity > 9000);
    assert.equal((await lock.release()).clean, true);
    await redlock.flush();
    assert.deepEqual(await cluster.values('edge:1'), [null, null, null]);
  });

  test('scripts for several resources, with the NOSCRIPT fallback', async () => {
    for (const index of [0, 1, 2]) await cluster.command(index, 'SCRIPT', 'FLUSH');
    const lock = await redlock.acquire(['edge:a', 'edge:b'], 5000);
    assert.ok((await cluster.values('edge:b')).filter((v) => v === lock.value).length >= 2);
    assert.equal((await lock.release()).clean, true);
  });
});
