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

describe('AbortSignal', () => {
  let cluster;
  let executors;

  before(async () => {
    cluster = await startCluster(3);
    executors = cluster.ports.map((port) => respExecutor({ connect: nodeSocket(port) }));
  });

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
    // The clean-up is decided by a quorum; the slowest node's deletion finishes after it.
    await redlock.flush();
    assert.deepEqual(await cluster.values('queue:3'), [null, null, null]);
  });
});
