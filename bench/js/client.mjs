// One JavaScript client running one lock scenario, one measured round per go from the
// orchestrator: `node client.mjs CLIENT PARAMS_JSON`, where CLIENT is `npm-redlock` (npm redlock
// 5.0.0-beta.2) or `quorumlock-npm` (the quorumlock npm package, from $QUORUMLOCK_PKG_DIR).
// Both use the same ioredis clients, one per node, with ioredis's defaults. The conversation
// with the orchestrator is the one of the Rust clients (bench/src/protocol.rs): print `ready`,
// then for each line on standard input run a round and print `result {json}`, until standard
// input closes.

import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

import Redis from 'ioredis';
import NpmRedlock from 'redlock';

import { Baton } from './baton.mjs';
import { Samples } from './samples.mjs';

const [clientName, paramsJson] = process.argv.slice(2);
if (!clientName || !paramsJson) {
  console.error('usage: node client.mjs CLIENT PARAMS_JSON');
  process.exit(2);
}
const params = JSON.parse(paramsJson);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A client behind the same two calls the Rust clients offer: lock and release. */
async function makeClient(name, redises) {
  const retry = `retry pause ${params.retry_delay_ms} ms ± ${params.retry_jitter_ms} ms, unlimited attempts`;
  if (name === 'npm-redlock') {
    const redlock = new NpmRedlock(redises, {
      retryCount: -1,
      retryDelay: params.retry_delay_ms,
      retryJitter: params.retry_jitter_ms,
    });
    return {
      settings: `node ${process.version}, ioredis; ${retry}`,
      lock: (resource) => redlock.acquire([resource], params.ttl_ms),
      // Its release rejects when it finds no quorum of keys to delete; that is not our concern.
      release: (lock) => lock.release().catch(() => {}),
    };
  }
  if (name === 'quorumlock-npm') {
    const dir = process.env.QUORUMLOCK_PKG_DIR;
    if (!dir) throw new Error('QUORUMLOCK_PKG_DIR is not set');
    const { Redlock, ioredisExecutor } = await import(pathToFileURL(join(dir, 'node.mjs')).href);
    const redlock = new Redlock(redises.map(ioredisExecutor), {
      retryCount: 1_000_000,
      retryDelay: params.retry_delay_ms,
      retryJitter: params.retry_jitter_ms,
    });
    return {
      settings: `node ${process.version}, ioredis executors; ${retry}`,
      lock: (resource) => redlock.acquire(resource, params.ttl_ms),
      release: (lock) => lock.release(),
    };
  }
  throw new Error(`unknown client ${JSON.stringify(name)}`);
}

function newTally() {
  return { ops: 0, lock: new Samples(), release: new Samples(), gaps: null, failures: 0, overlaps: 0 };
}

async function pair(client, resource, tally) {
  const started = performance.now();
  let held;
  try {
    held = await client.lock(resource);
  } catch {
    tally.failures += 1;
    return;
  }
  const locked = performance.now();
  tally.lock.record(locked - started);
  await client.release(held);
  tally.release.record(performance.now() - locked);
  tally.ops += 1;
}

async function latency(client, prefix, pairs) {
  const tally = newTally();
  for (let n = 0; n < pairs; n += 1) {
    await pair(client, `${prefix}:${n}`, tally);
  }
  return tally;
}

async function throughput(client, prefix, tasks, durationMs) {
  const tally = newTally();
  const deadline = performance.now() + durationMs;
  await Promise.all(
    Array.from({ length: tasks }, async (_, task) => {
      for (let n = 0; performance.now() < deadline; n += 1) {
        await pair(client, `${prefix}:${task}:${n}`, tally);
      }
    }),
  );
  return tally;
}

async function handoff(client, resource, contenders, holdMs, durationMs) {
  const tally = newTally();
  const deadline = performance.now() + durationMs;
  const baton = new Baton();
  await Promise.all(
    Array.from({ length: contenders }, async () => {
      while (performance.now() < deadline) {
        const started = performance.now();
        let held;
        try {
          held = await client.lock(resource);
        } catch {
          tally.failures += 1;
          continue;
        }
        const locked = performance.now();
        tally.lock.record(locked - started);
        const mine = baton.enter(locked);
        await sleep(holdMs);
        baton.leave();
        const releasing = performance.now();
        await client.release(held);
        tally.release.record(performance.now() - releasing);
        await baton.waitTurn(mine, deadline);
      }
    }),
  );
  tally.ops = baton.acquisitions;
  tally.overlaps = baton.overlaps;
  tally.gaps = baton.gaps;
  return tally;
}

function runScenario(client, phase) {
  switch (params.scenario) {
    case 'latency':
      return latency(client, phase.prefix, phase.pairs);
    case 'throughput':
      return throughput(client, phase.prefix, params.tasks, phase.durationMs);
    case 'handoff':
      return handoff(client, phase.prefix, params.tasks, params.hold_us / 1000, phase.durationMs);
    default:
      throw new Error(`unknown scenario ${params.scenario}`);
  }
}

async function main() {
  const redises = params.nodes.map((url) => new Redis(url));
  try {
    const client = await makeClient(clientName, redises);
    const warmup = await runScenario(client, {
      prefix: `${params.prefix}:warmup`,
      pairs: params.warmup_pairs,
      durationMs: params.warmup_ms,
    });
    if (warmup.ops === 0) {
      throw new Error(`no lock acquired during warm-up (${warmup.failures} failures)`);
    }
    process.stdout.write('ready\n');
    let round = 0;
    for await (const _go of createInterface({ input: process.stdin })) {
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      const tally = await runScenario(client, {
        prefix: `${params.prefix}:round${round}`,
        pairs: params.pairs,
        durationMs: params.duration_ms,
      });
      const elapsedMs = performance.now() - started;
      const cpu = process.cpuUsage(cpuBefore);
      const measured = {
        ops: tally.ops,
        elapsed_s: elapsedMs / 1000,
        lock: tally.lock.percentiles(),
        release: tally.release.percentiles(),
        gap: tally.gaps ? tally.gaps.percentiles() : null,
        cpu_us: cpu.user + cpu.system,
        failures: tally.failures,
        overlaps: tally.overlaps,
        settings: client.settings,
      };
      process.stdout.write(`result ${JSON.stringify(measured)}\n`);
      round += 1;
    }
  } finally {
    for (const redis of redises) redis.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`${clientName}: ${error?.stack ?? error}`);
    process.exit(1);
  },
);
