// Wake-ups across processes: with subscribers, an acquire waiting for a lock that another
// Redlock (another process, or the Rust client) holds hears of its release over Pub/Sub and
// tries again at once instead of after its retry delay. Each instance here has executors and
// subscribers of its own, as two processes would.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Redis from 'ioredis';
import { createClient } from 'redis';
import { quorumlock } from './support/package.mjs';
import { nodeSocket, startCluster } from './support/redis.mjs';

const {
  Redlock,
  ioredisExecutor,
  ioredisSubscriber,
  nodeRedisExecutor,
  nodeRedisSubscriber,
  respExecutor,
  respSubscriber,
} = quorumlock;

// Far longer than any hand-off should take: without wake-ups, the waiter would sleep it out.
const SLOW_RETRY = { retryDelay: 2000, retryJitter: 0, requestTimeout: 1000 };
const HAND_OFF_BOUND_MS = 500;
const CHANNEL_PREFIX = 'quorumlock:released:';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check()` does, polling for up to three seconds. */
async function eventually(check) {
  for (const started = Date.now(); !(await check()); ) {
    if (Date.now() - started > 3000) throw new Error('the condition never held');
    await sleep(10);
  }
}

describe('wake-ups across processes', () => {
  let cluster;
  /** ioredis clients for looking at the nodes' subscriptions. */
  let admins;
  /** Everything a test opened, closed after all tests. */
  const closing = [];

  before(async () => {
    cluster = await startCluster(3);
    admins = cluster.ports.map((port) => new Redis(port, '127.0.0.1'));
  });

  after(async () => {
    for (const close of closing) await close();
    for (const admin of admins ?? []) admin.disconnect();
    await cluster?.stop();
  });

  /** How many connections subscribe to the channel of `key`, per node. */
  const subscriptions = (key) =>
    Promise.all(admins.map(async (admin) => Number((await admin.pubsub('NUMSUB', CHANNEL_PREFIX + key))[1])));

  /** A Redlock of its own, as another process would have, over node-redis. */
  async function nodeRedisInstance(options) {
    const clients = await Promise.all(
      cluster.ports.map((port) => createClient({ socket: { port, host: '127.0.0.1' } }).connect()),
    );
    const subscribers = clients.map(nodeRedisSubscriber);
    closing.push(async () => {
      for (const subscriber of subscribers) await subscriber.close();
      for (const client of clients) client.destroy();
    });
    return new Redlock(clients.map(nodeRedisExecutor), { ...options, subscribers });
  }

  /** A Redlock of its own over ioredis; `redisOptions` for its clients. */
  function ioredisInstance(options, redisOptions = {}) {
    const clients = cluster.ports.map((port) => new Redis(port, '127.0.0.1', redisOptions));
    const subscribers = clients.map(ioredisSubscriber);
    closing.push(async () => {
      for (const subscriber of subscribers) subscriber.close();
      for (const client of clients) client.disconnect();
    });
    return new Redlock(clients.map(ioredisExecutor), { ...options, subscribers });
  }

  /** A Redlock of its own over raw sockets. */
  function respInstance(options) {
    const executors = cluster.ports.map((port) => respExecutor({ connect: nodeSocket(port) }));
    const subscribers = cluster.ports.map((port) => respSubscriber({ connect: nodeSocket(port) }));
    closing.push(async () => {
      for (const subscriber of subscribers) subscriber.close();
      for (const executor of executors) executor.close();
    });
    return new Redlock(executors, { ...options, subscribers });
  }

  /**
   * `holder` holds `key` while `waiter` waits, subscribed on every node (to the channel of
   * `keyPrefix + key`); `whileWaiting`, if given, runs then, after which the subscriptions must
   * be back. Asserts that the waiter gets the lock soon after the release, then lets it go.
   */
  async function assertReleaseWakesWaiter(holder, waiter, key, { keyPrefix = '', whileWaiting } = {}) {
    const subscribed = async () => (await subscriptions(keyPrefix + key)).every((count) => count === 1);
    const held = await holder.acquire(key, 10_000);
    const waiting = waiter.acquire(key, 10_000);
    // Refused once, the waiter sleeps out its delay, subscribed on every node.
    await eventually(subscribed);
    if (whileWaiting) {
      await whileWaiting();
      await eventually(subscribed);
    }
    const releasing = performance.now();
    await held.release();
    const lock = await waiting;
    const waited = performance.now() - releasing;
    assert.ok(waited < HAND_OFF_BOUND_MS, `the waiter got the lock ${waited.toFixed(0)} ms after the release`);
    await lock.release();
    await Promise.all([holder.flush(), waiter.flush()]);
  }

  test('a release by another instance wakes the waiter at once (node-redis)', { timeout: 20_000 }, async () => {
    const [a, b] = [await nodeRedisInstance(SLOW_RETRY), await nodeRedisInstance(SLOW_RETRY)];
    await assertReleaseWakesWaiter(a, b, 'elsewhere:node-redis');
  });

  test('a release by another instance wakes the waiter at once (ioredis)', { timeout: 20_000 }, async () => {
    await assertReleaseWakesWaiter(ioredisInstance(SLOW_RETRY), ioredisInstance(SLOW_RETRY), 'elsewhere:ioredis');
  });

  test('with an ioredis keyPrefix, the waiter listens on the prefixed key', { timeout: 20_000 }, async () => {
    const prefixed = { keyPrefix: 'app:' };
    const [a, b] = [ioredisInstance(SLOW_RETRY, prefixed), ioredisInstance(SLOW_RETRY, prefixed)];
    await assertReleaseWakesWaiter(a, b, 'elsewhere:prefixed', {
      keyPrefix: 'app:',
      // The key itself carries the prefix, as ioredis stores it.
      whileWaiting: async () => assert.equal(await admins[0].exists('app:elsewhere:prefixed'), 1),
    });
  });

  test('a release by another instance wakes the waiter at once (RESP sockets)', { timeout: 20_000 }, async () => {
    await assertReleaseWakesWaiter(respInstance(SLOW_RETRY), respInstance(SLOW_RETRY), 'elsewhere:resp');
  });

  test('a RESP subscriber whose connection is killed subscribes again and still wakes the waiter', { timeout: 20_000 }, async () => {
    // Longer than the subscriber's pause before it reconnects plus the hand-off bound, so that
    // only a wake-up can end the wait in time.
    const slower = { ...SLOW_RETRY, retryDelay: 4000 };
    const key = 'elsewhere:resubscribed';
    await assertReleaseWakesWaiter(respInstance(slower), respInstance(slower), key, {
      whileWaiting: async () => {
        for (const admin of admins) await admin.client('KILL', 'TYPE', 'pubsub');
        assert.deepEqual(await subscriptions(key), [0, 0, 0]);
      },
    });
  });

  test('the waiter unsubscribes once it has its lock (RESP sockets)', { timeout: 20_000 }, async () => {
    const key = 'elsewhere:resp-unsubscribe';
    const a = respInstance(SLOW_RETRY);
    const b = respInstance(SLOW_RETRY);
    const held = await a.acquire(key, 10_000);
    const waiting = b.acquire(key, 10_000);
    await eventually(async () => (await subscriptions(key)).every((count) => count === 1));
    await held.release();
    await (await waiting).release();
    await eventually(async () => (await subscriptions(key)).every((count) => count === 0));
    await Promise.all([a.flush(), b.flush()]);
  });

  test('the waiters unsubscribe once none is left for the resource', { timeout: 20_000 }, async () => {
    const key = 'elsewhere:unsubscribe';
    const a = ioredisInstance(SLOW_RETRY);
    const b = ioredisInstance(SLOW_RETRY);
    const held = await a.acquire(key, 10_000);
    // Two waiters of one instance share one subscription per node.
    const waiting = [b.acquire(key, 10_000), b.acquire(key, 10_000)];
    await eventually(async () => (await subscriptions(key)).every((count) => count === 1));
    await held.release();
    const [first, index] = await Promise.race(waiting.map((promise, at) => promise.then((lock) => [lock, at])));
    // The other still waits: the subscriptions stay.
    await sleep(100);
    assert.deepEqual(await subscriptions(key), [1, 1, 1]);
    await first.release();
    await (await waiting[1 - index]).release();
    await eventually(async () => (await subscriptions(key)).every((count) => count === 0));
    await Promise.all([a.flush(), b.flush()]);
  });

  test('a subscriber that throws or rejects costs only the wake-up', { timeout: 20_000 }, async () => {
    const key = 'elsewhere:failing';
    const failing = [
      { subscribe: () => Promise.reject(new Error('down')), unsubscribe: () => Promise.reject(new Error('down')) },
      {
        subscribe: () => {
          throw new Error('down');
        },
        unsubscribe: () => {
          throw new Error('down');
        },
      },
      null,
    ];
    const a = ioredisInstance({ retryDelay: 100, retryJitter: 0 });
    const clients = cluster.ports.map((port) => new Redis(port, '127.0.0.1'));
    closing.push(() => clients.forEach((client) => client.disconnect()));
    const b = new Redlock(clients.map(ioredisExecutor), { retryDelay: 100, retryJitter: 0, subscribers: failing });
    const held = await a.acquire(key, 10_000);
    const waiting = b.acquire(key, 10_000);
    await sleep(250);
    await held.release();
    const lock = await waiting;
    await lock.release();
    await Promise.all([a.flush(), b.flush()]);
  });

  test('subscribers of the wrong shape or number are refused at construction', () => {
    const executors = cluster.ports.map(() => async () => null);
    assert.throws(() => new Redlock(executors, { subscribers: 'no' }), TypeError);
    assert.throws(() => new Redlock(executors, { subscribers: [null, null] }), RangeError);
    assert.throws(() => new Redlock(executors, { subscribers: [{ subscribe() {} }, null, null] }), /subscribers\[0\]/);
    assert.throws(() => new Redlock(executors, { subscribers: [null, 42, null] }), TypeError);
    assert.throws(() => ioredisSubscriber({}), TypeError);
    const badPrefix = { subscribe() {}, unsubscribe() {}, keyPrefix: 7 };
    assert.throws(() => new Redlock([() => 'OK'], { subscribers: [badPrefix] }), /keyPrefix must be a string/);
    assert.throws(() => nodeRedisSubscriber(null), TypeError);
    assert.throws(() => respSubscriber({}), TypeError);
    // Every node may go without one.
    new Redlock(executors, { subscribers: [null, undefined, null] });
  });
});
