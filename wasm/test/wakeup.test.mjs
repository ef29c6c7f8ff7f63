// Wake-ups within one Redlock: a release hands the lock to an acquire of the same instance that
// waits for it, at once instead of after its retry delay, and while a lock of the instance is
// valid, its waiters do not ask the nodes for it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { quorumlock } from './support/package.mjs';
import { nodeSocket, startCluster } from './support/redis.mjs';

const { Redlock, respExecutor, LockLostError } = quorumlock;

// Far longer than any hand-off should take: without wake-ups, every waiter would sleep it out.
const SLOW_RETRY = { retryDelay: 2000, retryJitter: 0, requestTimeout: 1000 };
// A bound on a hand-off far below the retry delay, and roomy enough for a loaded machine.
const HAND_OFF_BOUND_MS = 700;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The lock of whichever of `acquiring` (two acquires) settles first, and the other acquire. */
async function firstOf(acquiring) {
  const [lock, index] = await Promise.race(acquiring.map((promise, index) => promise.then((lock) => [lock, index])));
  return [lock, acquiring[1 - index]];
}

/** Resolves once `check()` does, polling for up to two seconds. */
async function eventually(check) {
  for (const started = Date.now(); !(await check()); ) {
    if (Date.now() - started > 2000) throw new Error('the condition never held');
    await sleep(5);
  }
}

describe('wake-ups within one instance', () => {
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

  /** Executors that note each `SET` of `key` with the time it was sent. */
  function recordingSets(key, sets) {
    return executors.map((executor) => (command) => {
      if (command[0] === 'SET' && command[1] === key) sets.push(performance.now());
      return executor(command);
    });
  }

  test('contending acquires hand the lock on at once, one holder at a time', { timeout: 20_000 }, async () => {
    const redlock = new Redlock(executors, SLOW_RETRY);
    const contenders = 5;
    let holding = 0;
    let releasedAt = null;
    const handOffs = [];
    const started = performance.now();
    await Promise.all(
      Array.from({ length: contenders }, async () => {
        const lock = await redlock.acquire('wake:handoff', 10_000);
        holding += 1;
        assert.equal(holding, 1, 'two acquires held the lock at once');
        if (releasedAt !== null) handOffs.push(performance.now() - releasedAt);
        await sleep(20);
        holding -= 1;
        releasedAt = performance.now();
        await lock.release();
      }),
    );
    const elapsed = performance.now() - started;
    assert.equal(handOffs.length, contenders - 1);
    for (const gap of handOffs) assert.ok(gap < HAND_OFF_BOUND_MS, `a hand-off took ${gap.toFixed(1)} ms`);
    // Each waiter sleeping out even one retry delay would take far longer.
    assert.ok(elapsed < SLOW_RETRY.retryDelay, `the acquires took ${elapsed.toFixed(0)} ms`);
    await redlock.flush();
    assert.deepEqual(await cluster.values('wake:handoff'), [null, null, null]);
  });

  test('while a sibling holds the lock, a waiter sends no SET until the release', { timeout: 20_000 }, async () => {
    const key = 'wake:quiet';
    const sets = [];
    // A short retry delay: a waiter that asked the nodes would do so many times over.
    const redlock = new Redlock(recordingSets(key, sets), { retryDelay: 40, retryJitter: 0, retryCount: 200 });
    const first = await redlock.acquire(key, 10_000);
    // Two waiters, asking the nodes again and again: the instance took the first lock while
    // nobody waited, and does not know it as a holder.
    const waiters = [redlock.acquire(key, 10_000), redlock.acquire(key, 10_000)];
    await eventually(() => sets.length >= 6);
    await sleep(100);
    // The release wakes a waiter, which takes the lock while the other waits: the instance
    // knows this holder.
    await first.release();
    const [holder, third] = await firstOf(waiters);
    const heldFrom = performance.now();
    const setsBefore = sets.length;
    // A fresh acquire started now waits without asking either.
    const fourth = redlock.acquire(key, 10_000);
    await sleep(400);
    assert.equal(sets.length, setsBefore, 'a waiter asked the nodes while its sibling held the lock');
    assert.ok(sets.every((at) => at < heldFrom));
    const releasing = performance.now();
    await holder.release();
    const next = await third;
    assert.ok(performance.now() - releasing < HAND_OFF_BOUND_MS);
    assert.ok(sets.length > setsBefore, 'the woken waiter asked the nodes after the release');
    await next.release();
    await (await fourth).release();
    await redlock.flush();
  });

  test('a lock taken by the only waiter stays known: a fresh acquire sends no SET while it is held', { timeout: 20_000 }, async () => {
    const key = 'wake:lone';
    const sets = [];
    const redlock = new Redlock(recordingSets(key, sets), { retryDelay: 40, retryJitter: 0, retryCount: 200 });
    const first = await redlock.acquire(key, 10_000);
    const waiting = redlock.acquire(key, 10_000);
    // The waiter has been refused twice: it has paused, and waits in the instance.
    await eventually(() => sets.length >= 6);
    await first.release();
    // Nobody else waits now, yet the instance remembers who holds the lock.
    const holder = await waiting;
    const heldFrom = performance.now();
    const fresh = redlock.acquire(key, 10_000);
    await sleep(300);
    const early = sets.filter((at) => at >= heldFrom);
    assert.equal(early.length, 0, `${early.length} SETs went to the nodes while the lock was held here`);
    const releasing = performance.now();
    await holder.release();
    const next = await fresh;
    assert.ok(performance.now() - releasing < HAND_OFF_BOUND_MS, 'the release did not wake the fresh acquire');
    await next.release();
    await redlock.flush();
  });

  test('a holder that expires without a release leaves its waiters to the nodes once its validity ends', { timeout: 20_000 }, async () => {
    const key = 'wake:expiring';
    const sets = [];
    const redlock = new Redlock(recordingSets(key, sets), { retryDelay: 40, retryJitter: 0, retryCount: 200 });
    const first = await redlock.acquire(key, 10_000);
    const waiters = [redlock.acquire(key, 500), redlock.acquire(key, 500)];
    // Two attempts each: both waiters have paused once, so both wait in the instance when the
    // lock changes hands.
    await eventually(() => sets.length >= 12);
    await first.release();
    // Known to the instance, and never released: its keys expire after 500 ms.
    const [abandoned, third] = await firstOf(waiters);
    const heldFrom = performance.now();
    const validUntil = heldFrom + abandoned.remaining();
    const next = await third;
    const waited = performance.now() - heldFrom;
    assert.ok(!abandoned.isValid());
    // No SET went out while the abandoned lock was valid, and the waiter got the lock soon
    // after its keys expired.
    const early = sets.filter((at) => at >= heldFrom && at < validUntil - 5);
    assert.deepEqual(
      early.map((at) => `${(at - heldFrom).toFixed(1)} ms in, ${(validUntil - at).toFixed(1)} ms before the end`),
      [],
      'a waiter asked the nodes while the lock was valid',
    );
    assert.ok(waited >= 400 && waited < 500 + HAND_OFF_BOUND_MS, `the waiter got the lock after ${waited.toFixed(0)} ms`);
    await next.release();
    await redlock.flush();
  });

  test('an extension that finds the lock lost wakes the waiters', { timeout: 20_000 }, async () => {
    const key = 'wake:lost';
    const redlock = new Redlock(executors, SLOW_RETRY);
    const first = await redlock.acquire(key, 10_000);
    const waiting = redlock.acquire(key, 10_000);
    // The waiter has asked, been refused, and sleeps out its delay.
    await sleep(150);
    for (let node = 0; node < 3; node++) await cluster.command(node, 'DEL', key);
    const lostAt = performance.now();
    const error = await first.extend(10_000).catch((e) => e);
    assert.ok(error instanceof LockLostError, `got ${error}`);
    const next = await waiting;
    const waited = performance.now() - lostAt;
    assert.ok(waited < HAND_OFF_BOUND_MS, `the waiter got the lock after ${waited.toFixed(0)} ms`);
    await next.release();
    await redlock.flush();
  });
});
