// `using`: automatic extension, the lost signal, and release at the end.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { quorumlock } from './support/package.mjs';
import { nodeSocket, startCluster } from './support/redis.mjs';

const { Redlock, respExecutor, LockLostError } = quorumlock;

describe('using', () => {
  let cluster;
  let executors;
  let redlock;

  before(async () => {
    cluster = await startCluster(3);
    executors = cluster.ports.map((port) => respExecutor({ connect: nodeSocket(port) }));
    redlock = new Redlock(executors, { retryCount: 0, requestTimeout: 1000 });
  });

  after(async () => {
    for (const executor of executors ?? []) executor.close();
    await cluster?.stop();
  });

  test('keeps the lock past its TTL by extending it, then releases it', async () => {
    let token;
    // A roomy request timeout: a loaded machine must not turn this into a test of latency.
    const patient = new Redlock(executors, { retryCount: 0, requestTimeout: 300 });
    const value = await patient.using('report:daily', 1000, async (signal, lock) => {
      token = lock.value;
      // What is under test is the passing of time: more than two and a half TTLs.
      await new Promise((resolve) => setTimeout(resolve, 2600));
      assert.equal(signal.aborted, false);
      assert.ok(lock.extensions >= 2, `${lock.extensions} extensions`);
      assert.ok(lock.isValid());
      const values = await cluster.values('report:daily');
      assert.ok(values.filter((v) => v === token).length >= 2);
      return 'done';
    });
    assert.equal(value, 'done');
    await patient.flush();
    assert.deepEqual(await cluster.values('report:daily'), [null, null, null]);
  });

  test('aborts the signal when the keys are deleted behind it, and rejects with LockLostError', async () => {
    let seen;
    const outcome = await new Redlock(executors, { retryCount: 0, requestTimeout: 300 })
      .using('report:weekly', 1000, async (signal) => {
        for (const index of [0, 1, 2]) await cluster.command(index, 'DEL', 'report:weekly');
        await once(signal, 'abort');
        seen = signal.reason;
        return 'finished anyway';
      })
      .catch((error) => error);
    assert.ok(outcome instanceof LockLostError, `got ${outcome}`);
    assert.equal(outcome, seen);
    assert.equal(outcome.name, 'LockLostError');
    assert.equal(outcome.code, 'LOCK_LOST');
    assert.match(outcome.message, /^lock lost: our keys are gone or taken on nodes \[/);
    assert.ok(outcome.report.every((node) => node.status !== 'granted'));
  });

  test("rethrows the routine's error after releasing", async () => {
    const failure = new Error('routine failed');
    await assert.rejects(
      redlock.using(['report:a', 'report:b'], 5000, { retryCount: 0 }, async () => {
        throw failure;
      }),
      (error) => error === failure,
    );
    await redlock.flush();
    assert.deepEqual(await cluster.values('report:a'), [null, null, null]);
  });

  test('a held resource makes using reject without running the routine', async () => {
    const holder = await redlock.acquire('report:held', 5000);
    let ran = false;
    const error = await redlock
      .using('report:held', 5000, () => {
        ran = true;
      })
      .catch((e) => e);
    assert.equal(error.code, 'LOCK_CONTENDED');
    assert.equal(ran, false);
    await holder.release();
  });
});
