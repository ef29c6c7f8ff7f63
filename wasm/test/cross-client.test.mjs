// The npm package and the Rust client contend for the same resources on the same nodes and
// behave as one lock: same keys, same tokens format, same commands (SET NX PX for one resource,
// the acquire script for several), and a release by either wakes a waiter of the other.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import Redis from 'ioredis';
import { quorumlock } from './support/package.mjs';
import { nodeSocket, startCluster } from './support/redis.mjs';

const { Redlock, respExecutor, respSubscriber } = quorumlock;

const rustClient =
  process.env.QUORUMLOCK_CROSS_CLIENT ??
  `${process.env.CARGO_TARGET_DIR ?? fileURLToPath(new URL('../../target', import.meta.url))}/debug/cross_client`;

/** Runs the Rust client; `line()` resolves with each line it prints. */
function runRust(cluster, ...args) {
  const child = spawn(rustClient, args, {
    env: { ...process.env, QUORUMLOCK_NODES: cluster.ports.map((p) => `redis://127.0.0.1:${p}`).join(',') },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    async line() {
      const { value, done } = await lines.next();
      assert.ok(!done, 'the Rust client ended early');
      return value;
    },
    release: () => child.stdin.end('\n'),
    exited,
    kill: () => child.kill('SIGKILL'),
  };
}

describe('the Rust client and the npm package share one lock', () => {
  let cluster;
  let executors;
  let redlock;
  const children = [];
  const rust = (...args) => {
    const child = runRust(cluster, ...args);
    children.push(child);
    return child;
  };

  before(async () => {
    assert.ok(existsSync(rustClient), `${rustClient} is missing: build it with make wasm-test`);
    cluster = await startCluster(3);
    executors = cluster.ports.map((port) => respExecutor({ connect: nodeSocket(port) }));
    redlock = new Redlock(executors, { retryCount: 0, requestTimeout: 1000 });
  });

  after(async () => {
    for (const child of children) child.kill();
    for (const executor of executors ?? []) executor.close();
    await cluster?.stop();
  });

  test('a resource held by the Rust client is refused to JavaScript until released', async () => {
    const holder = rust('hold', 'shared:1');
    const [word, token] = (await holder.line()).split(' ');
    assert.equal(word, 'locked');
    assert.ok((await cluster.values('shared:1')).filter((v) => v === token).length >= 2);

    const refused = await redlock.acquire('shared:1', 5000).catch((e) => e);
    assert.equal(refused.code, 'LOCK_CONTENDED');

    holder.release();
    assert.equal(await holder.line(), 'released');
    assert.equal(await holder.exited, 0);
    const lock = await redlock.acquire('shared:1', 5000);
    await lock.release();
  });

  test('resources held by JavaScript are refused to the Rust client, singly and together', async () => {
    const lock = await redlock.acquire(['shared:a', 'shared:b'], 10_000);
    for (const resources of [['shared:b'], ['shared:a', 'shared:c']]) {
      const attempt = rust('try', ...resources);
      assert.match(await attempt.line(), /^refused LOCK_CONTENDED /);
      assert.equal(await attempt.exited, 0);
    }
    await lock.release();
    const attempt = rust('try', 'shared:b');
    assert.match(await attempt.line(), /^locked [0-9a-f]{32}$/);
    assert.equal(await attempt.line(), 'released');
  });

  test("the Rust client's release wakes a JavaScript waiter over Pub/Sub", async () => {
    const holder = rust('hold', 'shared:w');
    assert.match(await holder.line(), /^locked /);
    const subscribers = cluster.ports.map((port) => respSubscriber({ connect: nodeSocket(port) }));
    const admins = cluster.ports.map((port) => new Redis(port, '127.0.0.1'));
    const waiting = new Redlock(executors, {
      subscribers,
      // Far longer than a hand-off may take: without the wake-up, the waiter sleeps it out.
      retryCount: 10,
      retryDelay: 2000,
      retryJitter: 0,
      requestTimeout: 1000,
    });
    try {
      const acquiring = waiting.acquire('shared:w', 5000);
      // Refused once, the waiter has left its marker beside the key and listens on every node.
      const listening = async () => {
        const counts = await Promise.all(
          admins.map(async (admin) => Number((await admin.pubsub('NUMSUB', 'quorumlock:released:shared:w'))[1])),
        );
        return counts.every((count) => count === 1);
      };
      for (let tries = 0; !(await listening()); tries += 1) {
        if (tries === 300) assert.fail('the waiter never subscribed');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      holder.release();
      assert.equal(await holder.line(), 'released');
      const releasedAt = performance.now();
      const lock = await acquiring;
      const handOff = performance.now() - releasedAt;
      assert.ok(handOff < 1000, `the waiter got the lock ${handOff.toFixed(0)} ms after the release`);
      await lock.release();
      await waiting.flush();
    } finally {
      for (const subscriber of subscribers) subscriber.close();
      for (const admin of admins) admin.disconnect();
    }
  });

  test("a JavaScript release wakes a Rust waiter over Pub/Sub", async () => {
    const lock = await redlock.acquire('shared:r', 10_000);
    const admins = cluster.ports.map((port) => new Redis(port, '127.0.0.1'));
    try {
      const waiter = rust('wait', 'shared:r');
      // Refused once, the Rust waiter has left its marker beside the key and listens on the
      // nodes; it retries only every two seconds on its own.
      const listening = async () => {
        const counts = await Promise.all(
          admins.map(async (admin) => Number((await admin.pubsub('NUMSUB', 'quorumlock:released:shared:r'))[1])),
        );
        return counts.filter((count) => count === 1).length >= 2;
      };
      for (let tries = 0; !(await listening()); tries += 1) {
        if (tries === 300) assert.fail('the Rust waiter never subscribed');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await lock.release();
      const releasedAt = performance.now();
      assert.match(await waiter.line(), /^locked /);
      const handOff = performance.now() - releasedAt;
      assert.ok(handOff < 1000, `the Rust waiter got the lock ${handOff.toFixed(0)} ms after the release`);
      assert.equal(await waiter.line(), 'released');
      assert.equal(await waiter.exited, 0);
    } finally {
      for (const admin of admins) admin.disconnect();
    }
  });
});
