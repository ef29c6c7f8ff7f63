// Cancelling a waiting acquire with an AbortSignal.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { quorumlock } from './support/package.mjs';
import { nodeSocket, startCluster } from './support/redis.mjs';

const { Redlock, respExecutor, AbortError } = quorumlock;

/** A promise and its resolve function. */
function signalled() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** `reply`, marked as handled: a rejection that comes while a test holds the reply back must
 * not count as unhandled. */
function held(reply) {
  const promise = Promise.resolve(reply);
  promise.catch(() => {});
  return promise;
}

/** Resolves once `check()` does, polling for up to two seconds. */
async function eventually(check) {
  for (const started = Date.now(); !(await check()); ) {
    if (Date.now() - started > 2000) throw new Error('timed out waiting for the nodes');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('AbortSignal', () => {
  let cluster;
  let executors;

  before(async () => {
    cluster = await startCluster(3);
    executors = cluster.ports.map((port) => respExecutor({ connect: nodeSocket(port) }));
  });

  /** The value of each of `keys` on every node, key after key. */
  async function valuesOf(keys) {
    return (await Promise.all(keys.map((key) => cluster.values(key)))).flat();
  }

  after(async () => {
    for (const executor of executors ?? []) executor.close();
    await cluster?.stop();
  });

  test('an already aborted signal rejects before anything is sent', async () => {
    let sent = 0;
    const counting = executors.map((executor) => (command) => {
      sent += 1;
      return executor(command);
    });
    const reason = new Error('shutting down');
    const error = await new Redlock(counting, { requestTimeout: 1000 })
      .acquire('queue:1', 5000, { signal: AbortSignal.abort(reason) })
      .catch((e) => e);
    assert.ok(error instanceof AbortError);
    assert.equal(error.name, 'AbortError');
    assert.equal(error.code, 'ABORTED');
    assert.equal(error.cause, reason);
    assert.equal(sent, 0);
  });

  test('aborting a waiting acquire rejects it at once', async () => {
    const holder = await new Redlock(executors, { requestTimeout: 1000 }).acquire('queue:2', 10_000);
    const refused = signalled();
    const watching = executors.map((executor) => async (command) => {
      const reply = await executor(command);
      if (command[0] === 'SET' && reply === null) refused.resolve();
      return reply;
    });
    const controller = new AbortController();
    // Without the abort this would wait for minutes.
    const waiting = new Redlock(watching, { retryCount: 1000, retryDelay: 100, requestTimeout: 1000 }).acquire('queue:2', 10_000, {
      signal: controller.signal,
    });
    await refused.promise;
    const reason = new Error('request cancelled');
    controller.abort(reason);
    const error = await waiting.catch((e) => e);
    assert.ok(error instanceof AbortError, `got ${error}`);
    assert.equal(error.cause, reason);
    assert.ok(holder.isValid());
    assert.ok((await cluster.values('queue:2')).filter((v) => v === holder.value).length >= 2);
    await holder.release();
  });

  test('aborting while SETs are in flight releases what they set', async () => {
    const sent = signalled();
    const gate = signalled();
    let sets = 0;
    // The commands reach Redis at once; only the replies are held back until the gate opens.
    const slow = executors.map((executor) => async (command) => {
      const reply = executor(command);
      if (command[0] === 'SET' && ++sets === 3) sent.resolve();
      await gate.promise;
      return reply;
    });
    const controller = new AbortController();
    const redlock = new Redlock(slow, { retryCount: 0, requestTimeout: 1000 });
    const acquiring = redlock.acquire('queue:3', 10_000, { signal: controller.signal });
    await sent.promise;
    controller.abort();
    gate.resolve();
    const error = await acquiring.catch((e) => e);
    assert.ok(error instanceof AbortError, `got ${error}`);
    // Whatever may still run in the background is done before the keys are looked at.
    await redlock.flush();
    assert.deepEqual(await cluster.values('queue:3'), [null, null, null]);
  });

  test('aborting a multi-key attempt in flight deletes every key it set', async () => {
    const keys = ['queue:4a', 'queue:4b'];
    const sent = signalled();
    const gate = signalled();
    let evals = 0;
    const slow = executors.map((executor) => async (command) => {
      const reply = held(executor(command));
      // A lock on several resources goes by source (EVAL).
      if (command[0] === 'EVAL' && ++evals === 3) sent.resolve();
      await gate.promise;
      return reply;
    });
    const controller = new AbortController();
    const redlock = new Redlock(slow, { retryCount: 0, requestTimeout: 1000 });
    const acquiring = redlock.acquire(keys, 10_000, { signal: controller.signal });
    await sent.promise;
    await eventually(async () => (await valuesOf(keys)).every((value) => value !== null));
    controller.abort();
    gate.resolve();
    const error = await acquiring.catch((e) => e);
    assert.ok(error instanceof AbortError, `got ${error}`);
    assert.equal(error.code, 'ABORTED');
    // By the time it rejects, the keys are gone from a quorum at least.
    for (const key of keys) {
      assert.ok((await cluster.values(key)).filter((value) => value === null).length >= 2);
    }
    await redlock.flush();
    // Nobody else held the keys, so the clean-up left no waiter marker either.
    const markers = keys.map((key) => `quorumlock:waiting:${key}`);
    assert.deepEqual(await valuesOf([...keys, ...markers]), Array(12).fill(null));
  });

  test('aborting during the clean-up of a refused attempt makes no further attempt', async () => {
    const holder = await new Redlock(executors, { requestTimeout: 1000 }).acquire('queue:5', 10_000);
    const cleaning = signalled();
    const gate = signalled();
    let sets = 0;
    let cleanUps = 0;
    // Only the clean-up's replies are held back, so the abort finds it in flight.
    const watching = executors.map((executor) => async (command) => {
      const reply = held(executor(command));
      if (command[0] === 'SET') {
        sets += 1;
        return reply;
      }
      if (++cleanUps === 3) cleaning.resolve();
      await gate.promise;
      return reply;
    });
    const controller = new AbortController();
    const waiting = new Redlock(watching, { retryCount: 1000, retryDelay: 10, retryJitter: 0, requestTimeout: 1000 }).acquire(
      'queue:5',
      10_000,
      { signal: controller.signal },
    );
    await cleaning.promise;
    controller.abort();
    gate.resolve();
    const error = await waiting.catch((e) => e);
    assert.ok(error instanceof AbortError, `got ${error}`);
    // Past the pause a retry would have taken.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(sets, 3);
    assert.deepEqual(await cluster.values('queue:5'), Array(3).fill(holder.value));
    await holder.release();
  });
});
