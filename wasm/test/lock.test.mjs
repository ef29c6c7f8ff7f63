// Acquire, contention, extend and release against three real Redis nodes, through the
// ioredis and node-redis executors.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Redis from 'ioredis';
import { createClient } from 'redis';
import { quorumlock } from './support/package.mjs';
import { startCluster } from './support/redis.mjs';

// A round is decided as soon as a quorum answered: the last node's reply may come later.
function holders(values, token) {
  return values.filter((value) => value === token).length;
}

function statuses(report) {
  return report.map((node) => node.status);
}

const { Redlock, Lock, ioredisExecutor, nodeRedisExecutor, LockContendedError, LockReleasedError } = quorumlock;

describe('three nodes', () => {
  let cluster;
  let ioredisClients;
  let nodeRedisClients;
  let viaIoredis;
  let viaNodeRedis;

  before(async () => {
    cluster = await startCluster(3);
    ioredisClients = cluster.ports.map((port) => new Redis({ port, host: '127.0.0.1' }));
    nodeRedisClients = await Promise.all(
      cluster.ports.map((port) => createClient({ socket: { port, host: '127.0.0.1' } }).connect()),
    );
    // One attempt, so refusals show at once; a roomy deadline, so a loaded machine is not a failure.
    const quick = { retryCount: 0, requestTimeout: 1000 };
    viaIoredis = new Redlock(ioredisClients.map(ioredisExecutor), quick);
    viaNodeRedis = new Redlock(nodeRedisClients.map(nodeRedisExecutor), quick);
  });

  after(async () => {
    await Promise.all(ioredisClients?.map((client) => client.quit()) ?? []);
    await Promise.all(nodeRedisClients?.map((client) => client.close()) ?? []);
    await cluster?.stop();
  });

  test('acquire stores the token with the TTL on every node', async () => {
    const lock = await viaIoredis.acquire('orders:1', 5000);
    assert.ok(lock instanceof Lock);
    assert.deepEqual(lock.resources, ['orders:1']);
    assert.match(lock.value, /^[0-9a-f]{32}$/);
    assert.ok(holders(await cluster.values('orders:1'), lock.value) >= 2);
    const ttl = Number(await cluster.command(lock.report.findIndex((n) => n.status === 'granted'), 'PTTL', 'orders:1'));
    assert.ok(ttl > 4000 && ttl <= 5000, `PTTL ${ttl}`);
    assert.ok(lock.validity > 4800 && lock.validity < 5000, `validity ${lock.validity}`);
    assert.ok(lock.isValid());
    assert.ok(Math.abs(lock.expiresAt - (Date.now() + lock.remaining())) < 50);
    assert.ok(statuses(lock.report).filter((status) => status === 'granted').length >= 2);
    assert.ok(statuses(lock.report).every((status) => status === 'granted' || status === 'no-answer'));
    await lock.release();
  });

  test('two Redlock instances contend: the second is refused until the first releases', async () => {
    const first = await viaIoredis.acquire('orders:2', 5000);
    const refused = await viaNodeRedis.acquire('orders:2', 5000).catch((error) => error);
    assert.ok(refused instanceof LockContendedError, `got ${refused}`);
    assert.equal(refused.name, 'LockContendedError');
    assert.equal(refused.code, 'LOCK_CONTENDED');
    assert.match(refused.message, /^lock already taken, locked nodes: \[[012] [012]( [012])?\]$/);
    assert.ok(statuses(refused.report).filter((status) => status === 'refused').length >= 2);
    assert.ok(holders(await cluster.values('orders:2'), first.value) >= 2);
    // How long the holder's keys have left, as the nodes told the clean-up round.
    assert.equal(typeof refused.retryAfter, 'number');
    assert.ok(refused.retryAfter > 0 && refused.retryAfter <= 5000, `retryAfter ${refused.retryAfter}`);

    await first.release();
    const second = await viaNodeRedis.acquire('orders:2', 5000);
    assert.notEqual(second.value, first.value);
    await second.release();
  });

  test('a waiting acquire gets the lock once the holder releases', async () => {
    const holder = await viaIoredis.acquire('orders:3', 5000);
    // The waiter's executors report its first refusal, so the release comes after it for sure.
    let refusedOnce;
    const refusal = new Promise((resolve) => (refusedOnce = resolve));
    const watching = nodeRedisClients.map((client) => async (command) => {
      const reply = await client.sendCommand(command);
      if (command[0] === 'SET' && reply === null) refusedOnce();
      return reply;
    });
    const waiter = new Redlock(watching, { retryCount: 100, retryDelay: 20, retryJitter: 5, requestTimeout: 1000 });
    const waiting = waiter.acquire('orders:3', 5000);
    await refusal;
    await holder.release();
    const lock = await waiting;
    assert.ok(holders(await cluster.values('orders:3'), lock.value) >= 2);
    await lock.release();
  });

  test('several resources are locked all or nothing', async () => {
    const other = await viaIoredis.acquire('stock:b', 5000);
    const refused = await viaNodeRedis.acquire(['stock:a', 'stock:b'], 5000).catch((error) => error);
    assert.equal(refused.code, 'LOCK_CONTENDED');
    assert.deepEqual(await cluster.values('stock:a'), [null, null, null], 'no partial lock is left');
    await other.release();

    const both = await viaNodeRedis.acquire(['stock:a', 'stock:b'], 5000);
    assert.deepEqual(both.resources, ['stock:a', 'stock:b']);
    assert.ok(holders(await cluster.values('stock:b'), both.value) >= 2);
    await both.release();
    for (let tries = 0; (await cluster.values('stock:a')).some((value) => value !== null); tries += 1) {
      assert.ok(tries < 200, 'a key was left behind');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });

  test('each node gets its own copy of the command, with any key spelled exactly', async () => {
    const key = 'naïve:ключ:😀:a:b';
    const seen = [];
    // The first executor spoils its array after sending: the other nodes must not see that.
    const spoiling = ioredisClients.map((client, index) => (command) => {
      seen.push([...command]);
      const reply = client.call(...command);
      if (index === 0) command.fill('spoilt');
      return reply;
    });
    const redlock = new Redlock(spoiling, { retryCount: 0, requestTimeout: 1000 });
    const lock = await redlock.acquire(key, 5000);
    assert.deepEqual(seen.slice(0, 3).map((command) => command.slice(0, 2)), [
      ['SET', key],
      ['SET', key],
      ['SET', key],
    ]);
    assert.deepEqual(seen[0].slice(2), [lock.value, 'NX', 'PX', '5000']);
    assert.ok(holders(await cluster.values(key), lock.value) >= 2);
    await lock.release();
  });

  test("the ioredis executor holds a tick's later commands back to send them in one write", async () => {
    const client = ioredisClients[0];
    const executor = ioredisExecutor(client);
    const set = executor(['SET', 'orders:tick', 'v']);
    const get = executor(['GET', 'orders:tick']);
    assert.equal(client.stream.writableCorked, 1, 'held back until the end of the tick');
    assert.deepEqual(await Promise.all([set, get]), ['OK', 'v']);
    assert.equal(client.stream.writableCorked, 0);
    await client.del('orders:tick');
  });

  test('extend sets a new TTL and a new validity', async () => {
    const lock = await viaIoredis.acquire('orders:4', 2000);
    assert.equal(lock.extensions, 0);
    const returned = await lock.extend(20_000);
    assert.equal(returned, lock);
    assert.equal(lock.extensions, 1);
    assert.ok(lock.validity > 19_000, `validity ${lock.validity}`);
    const granted = lock.report.findIndex((node) => node.status === 'granted');
    const ttl = Number(await cluster.command(granted, 'PTTL', 'orders:4'));
    assert.ok(ttl > 19_000, `PTTL ${ttl}`);
    await lock.release();
  });

  test('release deletes only our keys, is idempotent, and ends the lock', async () => {
    const lock = await viaIoredis.acquire('orders:5', 5000);
    const released = await lock.release();
    assert.equal(released.clean, true);
    assert.deepEqual(Object.keys(released), ['clean', 'report']);
    assert.equal(released.report, released.report);
    assert.equal(released.report.length, 3);
    // Decided once a quorum answered: a slower node's deletion finishes in the background.
    assert.ok(holders(statuses(released.report), 'granted') >= 2);
    for (const status of statuses(released.report)) assert.ok(['granted', 'no-answer'].includes(status), status);
    await viaIoredis.flush();
    assert.deepEqual(await cluster.values('orders:5'), [null, null, null]);
    assert.equal(await lock.release(), released);
    assert.equal(lock.isValid(), false);
    await assert.rejects(lock.extend(1000), LockReleasedError);

    // Compare-and-delete: a key that meanwhile belongs to another owner is left alone.
    const expired = await viaIoredis.acquire('orders:6', 5000);
    for (const index of [0, 1, 2]) await cluster.command(index, 'SET', 'orders:6', 'another-owner');
    const refused = await expired.release();
    assert.ok(holders(statuses(refused.report), 'refused') >= 2);
    assert.equal(holders(statuses(refused.report), 'granted'), 0);
    assert.deepEqual(await cluster.values('orders:6'), ['another-owner', 'another-owner', 'another-owner']);
  });
});
