// A Cloudflare Worker using the package through its `workerd` entry and the RESP executor over
// `connect()` sockets. Each route is one scenario; the Node test checks Redis around it.

import { connect } from 'cloudflare:sockets';
import { Redlock, respExecutor } from './quorumlock/workerd.mjs';

function executorsFor(env) {
  return env.REDIS_PORTS.split(',').map((port) =>
    respExecutor({ connect: () => connect({ hostname: '127.0.0.1', port: Number(port) }) }),
  );
}

const routes = {
  // Acquire, be refused a second time, extend, lock several keys, release everything.
  async cycle(redlock) {
    const lock = await redlock.acquire('worker:1', 5000);
    const refused = await redlock.acquire('worker:1', 5000).catch((error) => error);
    await lock.extend(8000);
    const multi = await redlock.acquire(['worker:a', 'worker:b'], 5000);
    const released = [await multi.release(), await lock.release()];
    // The slower nodes' deletions, before the executors close.
    await redlock.flush();
    return {
      value: lock.value,
      extensions: lock.extensions,
      validity: lock.validity,
      refused: { name: refused.name, code: refused.code, message: refused.message },
      released: released.map((r) => r.clean),
    };
  },
  // Keeps the lock (no release) so the test can see it on the nodes.
  async hold(redlock) {
    const lock = await redlock.acquire('worker:held', 30_000);
    return { value: lock.value };
  },
  // Tries a resource the test holds from Node.
  async contend(redlock) {
    const error = await redlock.acquire('node:held', 5000).catch((e) => e);
    return { name: error.name, code: error.code, report: error.report };
  },
  // `using` with automatic extension across more than two TTLs.
  async using(redlock, executors) {
    const patient = new Redlock(executors, { retryCount: 0, requestTimeout: 300 });
    const result = await patient.using('worker:using', 1000, async (signal, lock) => {
      await new Promise((resolve) => setTimeout(resolve, 2600));
      return { aborted: signal.aborted, extensions: lock.extensions };
    });
    await patient.flush();
    return result;
  },
};

export default {
  async fetch(request, env) {
    const route = routes[new URL(request.url).pathname.slice(1)];
    if (!route) return new Response('no such route', { status: 404 });
    const executors = executorsFor(env);
    try {
      return Response.json(await route(new Redlock(executors, { retryCount: 0, requestTimeout: 1000 }), executors));
    } catch (error) {
      return Response.json({ error: `${error.name}: ${error.message}` }, { status: 500 });
    } finally {
      for (const executor of executors) executor.close();
    }
  },
};
