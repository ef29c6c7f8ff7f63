// Bad options, executors, resources and TTLs are TypeErrors and RangeErrors with a clear
// message, never a WebAssembly trap, and leave the client usable.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { quorumlock } from './support/package.mjs';
import { nodeSocket, startCluster } from './support/redis.mjs';

const { Redlock, respExecutor } = quorumlock;

function expectError(Type, pattern) {
  return (error) => {
    assert.ok(!(error instanceof WebAssembly.RuntimeError), `a trap: ${error}`);
    assert.equal(error.constructor, Type, `${error}`);
    assert.match(error.message, pattern);
    return true;
  };
}

describe('bad input', () => {
  let cluster;
  let executor;
  let redlock;

  before(async () => {
    cluster = await startCluster(1);
    executor = respExecutor({ connect: nodeSocket(cluster.ports[0]) });
    redlock = new Redlock([executor], { retryCount: 0, requestTimeout: 500 });
  });

  after(async () => {
    executor?.close();
    await cluster?.stop();
  });

  test('constructor arguments', () => {
    const ok = () => null;
    const cases = [
      [() => new Redlock(), TypeError, /executors must be an array of functions, got undefined/],
      [() => new Redlock('redis://x'), TypeError, /executors must be an array/],
      [() => new Redlock([]), RangeError, /at least one Redis node/],
      [() => new Redlock([ok, 'redis://x']), TypeError, /executors\[1\] must be a function, got string/],
      [() => new Redlock([ok], 5), TypeError, /options must be an object/],
      [() => new Redlock([ok], { retries: 3 }), TypeError, /unknown option "retries"/],
      [() => new Redlock([ok], { driftFactor: 1 }), RangeError, /driftFactor must be in \[0, 1\)/],
      [() => new Redlock([ok], { driftFactor: '0.1' }), TypeError, /driftFactor must be a number/],
      [() => new Redlock([ok], { retryCount: -1 }), RangeError, /retryCount must be a whole number/],
      [() => new Redlock([ok], { retryCount: 1.5 }), RangeError, /retryCount must be a whole number/],
      [() => new Redlock([ok], { retryDelay: NaN }), RangeError, /retryDelay must be finite/],
      [() => new Redlock([ok], { requestTimeout: Infinity }), RangeError, /requestTimeout must be finite/],
      [() => new Redlock([ok], { maxHold: -5 }), RangeError, /maxHold must be from 0/],
      [() => new Redlock([ok], { minValidity: 0 }), RangeError, /minimum validity must be above zero/],
      [() => new Redlock([ok], { requestTimeout: 0 }), RangeError, /request timeout must be above zero/],
    ];
    for (const [make, Type, pattern] of cases) assert.throws(make, expectError(Type, pattern));
  });

  test('acquire arguments', async () => {
    const cases = [
      [[5, 1000], TypeError, /resources must be a string or an array of strings, got number/],
      [[[], 1000], RangeError, /at least one key/],
      [[[''], 1000], RangeError, /resources\[0\] is an empty string/],
      [[['a', 'a'], 1000], RangeError, /resource "a" is given twice/],
      [[['a', 1], 1000], TypeError, /resources\[1\] must be a string/],
      [['a', '1000'], TypeError, /ttl must be a number of milliseconds, got string/],
      [['a'], TypeError, /ttl must be a number/],
      [['a', 0], RangeError, /whole number of milliseconds from 1/],
      [['a', 1.5], RangeError, /whole number/],
      [['a', -1], RangeError, /whole number/],
      [['a', NaN], RangeError, /whole number/],
      [['a', 2 ** 53], RangeError, /whole number/],
      [['a', 5], RangeError, /lock TTL 5ms is not longer than the drift allowance/],
      [['a', 1000, { signal: {} }], TypeError, /signal must be an AbortSignal/],
      [['a', 1000, { ttl: 5 }], TypeError, /unknown option "ttl"/],
      [['a', 1000, 'fast'], TypeError, /acquire options must be an object/],
    ];
    for (const [args, Type, pattern] of cases) await assert.rejects(redlock.acquire(...args), expectError(Type, pattern));

    const strict = new Redlock([executor], { requestTimeout: 900 });
    await assert.rejects(strict.acquire('a', 500), expectError(RangeError, /request timeout 900ms does not fit/));
    await assert.rejects(redlock.using('a', 1000), expectError(TypeError, /routine function/));
  });

  test('extend arguments, and the client still works afterwards', async () => {
    const lock = await redlock.acquire('still-works', 5000);
    await assert.rejects(lock.extend('10s'), expectError(TypeError, /ttl must be a number/));
    await assert.rejects(lock.extend(0), expectError(RangeError, /whole number/));
    await assert.rejects(lock.extend(5), expectError(RangeError, /not longer than the drift allowance/));
    await lock.extend(6000);
    assert.equal((await lock.release()).clean, true);
  });
});
