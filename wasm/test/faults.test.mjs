// Failed votes, not crashes: dead, paused and misbehaving nodes, over the RESP executor on raw
// sockets, with five and three real Redis nodes.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { quorumlock } from './support/package.mjs';
import { nodeSocket, startCluster } from './support/redis.mjs';

const { Redlock, respExecutor, QuorumError } = quorumlock;

function statuses(report) {
  return report.map((node) => node.status);
}

function count(report, status) {
  return statuses(report).filter((s) => s === status).length;
}

/** Waits until `condition()` holds: work a round no longer waits for finishes in the background. */
async function eventually(condition) {
  for (let tries = 0; !(await condition()); tries += 1) {
    if (tries === 200) assert.fail('the condition never held');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('five nodes, some of them down', () => {
  let cluster;
  let executors;
  let redlock;

  before(async () => {
    cluster = await startCluster(5);
    executors = cluster.ports.map((port) => respExecutor({ connect: nodeSocket(port) }));
    redlock = new Redlock(executors, { retryCount: 0, requestTimeout: 1000 });
  });

  after(async () => {
    for (const executor of executors ?? []) executor.close();
    await cluster?.stop();
  });

  test('one node down: the other four still grant the lock', async () => {
    await cluster.kill(4);
    const lock = await redlock.acquire('jobs:1', 5000);
    assert.ok(count(lock.report, 'granted') >= 3);
    assert.notEqual(lock.report[4].status, 'granted');
    const released = await lock.release();
    // The release is decided once a quorum answered; nodes slower than that show as no-answer
    // (their deletions finish in the background). No live node refuses or fails.
    assert.ok(count(released.report, 'granted') >= 3);
    for (const node of released.report.slice(0, 4)) assert.ok(['granted', 'no-answer'].includes(node.status), node.status);
    if (released.report[4].status === 'failed') {
      assert.equal(released.report[4].error.kind, 'io');
      assert.equal(released.clean, false);
    } else {
      assert.equal(released.report[4].status, 'no-answer');
    }
    await eventually(async () => (await cluster.values('jobs:1')).slice(0, 4).every((value) => value === null));
  });

  test('majority down: no quorum, and nothing is left locked on the live nodes', async () => {
    await cluster.kill(3);
    await cluster.kill(2);
    const error = await redlock.acquire('jobs:2', 5000).catch((e) => e);
    assert.ok(error instanceof QuorumError, `got ${error}`);
    assert.equal(error.name, 'QuorumError');
    assert.equal(error.code, 'NO_QUORUM');
    assert.match(error.message, /^no quorum: [0-2] of 5 nodes granted the lock, 3 needed/);
    assert.equal(error.report.length, 5);
    assert.ok(count(error.report, 'failed') >= 1);
    assert.deepEqual((await cluster.values('jobs:2')).slice(0, 2), [null, null]);
  });
});

describe('three nodes, misbehaving executors', () => {
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

  test('throwing synchronously and rejecting are failed votes', async () => {
    const throws = () => {
      throw new Error('executor exploded');
    };
    const rejects = async () => {
      throw new Error('connection reset');
    };
    const redlock = new Redlock([executors[0], throws, rejects], { retryCount: 0, requestTimeout: 1000 });
    const error = await redlock.acquire('odd:1', 5000).catch((e) => e);
    assert.equal(error.code, 'NO_QUORUM');
    assert.deepEqual(error.report[1].error, { kind: 'io', message: 'executor exploded' });
    assert.deepEqual(error.report[2].error, { kind: 'io', message: 'connection reset' });
    assert.deepEqual(await cluster.values('odd:1'), [null, null, null], 'the clean-up release ran');
  });

  test('garbage replies are protocol failures, and two honest nodes still make a quorum', async () => {
    for (const garbage of ['PONG', 3.5, { nonsense: true }, [1, 2], Symbol('x')]) {
      const redlock = new Redlock([executors[0], executors[1], async () => garbage], { retryCount: 0, requestTimeout: 1000 });
      const lock = await redlock.acquire('odd:2', 5000);
      assert.ok(count(lock.report, 'granted') >= 2);
      const released = await lock.release();
      assert.equal(released.report[2].status, 'failed');
      assert.equal(released.report[2].error.kind, 'protocol');
    }
  });

  test('a node that never answers times out without holding anything up', async () => {
    const hangs = () => new Promise(() => {});
    // One silent node: the quorum of the other two decides at once, without waiting for it.
    const oneSilent = new Redlock([executors[0], hangs, executors[2]], { retryCount: 0, requestTimeout: 300 });
    const lock = await oneSilent.acquire('odd:3', 2000);
    assert.equal(lock.report[1].status, 'no-answer');
    const released = await lock.release();
    assert.equal(released.clean, true);
    assert.equal(released.report[1].status, 'no-answer');
    // Two silent nodes: no quorum, decided by the request timeout.
    const twoSilent = new Redlock([executors[0], hangs, hangs], { retryCount: 0, requestTimeout: 300 });
    const error = await twoSilent.acquire('odd:3b', 2000).catch((e) => e);
    assert.equal(error.code, 'NO_QUORUM');
    assert.deepEqual(statuses(error.report).slice(1), ['timed-out', 'timed-out']);
    assert.ok(error.report[1].latency >= 300, `gave up after ${error.report[1].latency} ms`);
  });

  test('a paused Redis (accepting connections, never answering) is a timed-out vote', async () => {
    const redlock = new Redlock(executors, { retryCount: 0, requestTimeout: 300 });
    cluster.pause(1);
    cluster.pause(2);
    try {
      const error = await redlock.acquire('odd:4', 2000).catch((e) => e);
      assert.equal(error.code, 'NO_QUORUM');
      assert.deepEqual(statuses(error.report), ['granted', 'timed-out', 'timed-out']);
    } finally {
      cluster.resume(1);
      cluster.resume(2);
    }
  });

  test('a node that lost its scripts gets the script source after NOSCRIPT', async () => {
    for (const index of [0, 1, 2]) await cluster.command(index, 'SCRIPT', 'FLUSH');
    const sent = [];
    const recording = executors.map((executor) => (command) => {
      sent.push(command[0]);
      return executor(command);
    });
    const redlock = new Redlock(recording, { retryCount: 0, requestTimeout: 1000 });
    const lock = await redlock.acquire(['odd:5', 'odd:6'], 5000);
    assert.ok(sent.includes('EVALSHA') && sent.includes('EVAL'), `sent ${sent}`);
    await lock.release();
    assert.deepEqual(await cluster.values('odd:6'), [null, null, null]);
  });

  test('the db option selects the database; a refused AUTH is a failed vote', async () => {
    const inDb1 = cluster.ports.map((port) => respExecutor({ connect: nodeSocket(port), db: 1 }));
    const badAuth = [1, 2].map((index) => respExecutor({ connect: nodeSocket(cluster.ports[index]), password: 'wrong' }));
    try {
      const redlock = new Redlock(inDb1, { retryCount: 0, requestTimeout: 1000 });
      const lock = await redlock.acquire('odd:7', 5000);
      assert.deepEqual(await cluster.values('odd:7'), [null, null, null], 'nothing in db 0');
      assert.equal(await inDb1[0](['GET', 'odd:7']), lock.value);
      await lock.release();

      const refused = new Redlock([inDb1[0], ...badAuth], { retryCount: 0, requestTimeout: 1000 });
      const error = await refused.acquire('odd:8', 5000).catch((e) => e);
      assert.equal(error.code, 'NO_QUORUM');
      for (const node of error.report.slice(1)) {
        assert.equal(node.status, 'failed');
        assert.match(node.error.message, /AUTH/);
      }
    } finally {
      for (const executor of [...inDb1, ...badAuth]) executor.close();
    }
  });
});
