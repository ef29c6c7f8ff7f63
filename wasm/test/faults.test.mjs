// Failed votes, not crashes: dead, paused and misbehaving nodes, over the RESP executor on raw
// sockets, with five and three real Redis nodes.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { packageDir, quorumlock } from './support/package.mjs';
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
    await redlock.flush();
    assert.deepEqual((await cluster.values('jobs:1')).slice(0, 4), [null, null, null, null]);
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
    const releasing = performance.now();
    const released = await lock.release();
    assert.equal(released.clean, true);
    assert.equal(released.report[1].status, 'no-answer');
    // The silent node's deletion runs on until its request timeout, and no longer.
    await oneSilent.flush();
    const flushed = performance.now() - releasing;
    assert.ok(flushed >= 290 && flushed < 2000, `flushed after ${flushed} ms`);
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
    // A lock on several resources goes by source from the start: no node can lack its script.
    const lock = await redlock.acquire(['odd:5', 'odd:6'], 5000);
    assert.deepEqual(sent, ['EVAL', 'EVAL', 'EVAL']);
    // The release goes by digest, meets NOSCRIPT and falls back to the source.
    await lock.release();
    await redlock.flush();
    assert.ok(sent.slice(3).includes('EVALSHA') && sent.slice(3).includes('EVAL'), `sent ${sent}`);
    assert.deepEqual(await cluster.values('odd:6'), [null, null, null]);
  });

  test('a slower node that lost its scripts gets the release as EVAL after the outcome', async () => {
    const sent = [[], [], []];
    const recording = executors.map((executor, index) => (command) => {
      sent[index].push(command[0]);
      return executor(command);
    });
    const redlock = new Redlock(recording, { retryCount: 0, requestTimeout: 2000 });
    // One key: a plain SET, which needs no script on any node.
    const lock = await redlock.acquire('odd:9', 5000);
    // The acquire is decided by a quorum: wait for the third node's key too.
    await eventually(async () => (await cluster.values('odd:9')).every((value) => value === lock.value));
    await cluster.command(2, 'SCRIPT', 'FLUSH');
    for (const commands of sent) commands.length = 0;
    cluster.pause(2);
    let released;
    try {
      // Decided by the other two while node 2 is paused, its EVALSHA unanswered.
      released = await lock.release();
    } finally {
      cluster.resume(2);
    }
    assert.deepEqual(statuses(released.report), ['granted', 'granted', 'no-answer']);
    assert.equal(released.clean, true);
    // Node 2 answers NOSCRIPT once resumed; the release, still running, resends it as EVAL.
    await redlock.flush();
    assert.deepEqual(sent[2], ['EVALSHA', 'EVAL']);
    assert.deepEqual(await cluster.values('odd:9'), [null, null, null]);
    // Nothing is left running: a second flush resolves at once.
    await redlock.flush();
  });

  test('an extension decided without a node that lost its scripts still reaches it', async () => {
    const sent = [[], [], []];
    const recording = executors.map((executor, index) => (command) => {
      sent[index].push(command[0]);
      return executor(command);
    });
    const redlock = new Redlock(recording, { retryCount: 0, requestTimeout: 2000 });
    const lock = await redlock.acquire('odd:10', 5000);
    await eventually(async () => (await cluster.values('odd:10')).every((value) => value === lock.value));
    await cluster.command(2, 'SCRIPT', 'FLUSH');
    for (const commands of sent) commands.length = 0;
    cluster.pause(2);
    try {
      // Decided by the other two while node 2 is paused, its EVALSHA unanswered.
      await lock.extend(60_000);
    } finally {
      cluster.resume(2);
    }
    // Node 2 answers NOSCRIPT once resumed; the extension, still running, resends it as EVAL.
    await redlock.flush();
    assert.deepEqual(sent[2], ['EVALSHA', 'EVAL']);
    for (const index of [0, 1, 2]) {
      const ttl = await cluster.command(index, 'PTTL', 'odd:10');
      assert.ok(ttl > 30_000, `node ${index} kept the old TTL (${ttl} ms left)`);
    }
    await lock.release();
    await redlock.flush();
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

test('a release still waiting on a silent node keeps the process alive until its request timeout only', async () => {
  // Executors answer in memory: SET grants, the release script deletes; node 2 never answers.
  const script = `
    const { Redlock } = await import(${JSON.stringify(new URL('node.mjs', packageDir).href)});
    const answer = (command) => Promise.resolve(command[0] === 'SET' ? 'OK' : 1);
    const redlock = new Redlock([answer, answer, () => new Promise(() => {})], { retryCount: 0, requestTimeout: 400 });
    const lock = await redlock.acquire('tail:exit', 60_000);
    const start = performance.now();
    const { report } = await lock.release();
    console.log(report[2].status, Math.round(performance.now() - start));
    process.on('exit', () => console.log(Math.round(performance.now() - start)));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0);
  const [status, settled, exited] = output.trim().split(/\s+/);
  assert.equal(status, 'no-answer');
  assert.ok(Number(settled) < 300, `the release settled after ${settled} ms`);
  assert.ok(Number(exited) >= 390 && Number(exited) < 3000, `the process exited after ${exited} ms`);
});
