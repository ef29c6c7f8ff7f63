// Compiled (not run) by types.test.mjs against wasm/pkg: the declarations must accept what the
// README shows and reject misuse (each `@ts-expect-error` fails the build if its line compiles).

import {
  Redlock,
  Lock,
  LockContendedError,
  RedlockError,
  respExecutor,
  ioredisExecutor,
  ioredisSubscriber,
  type Executor,
  type NodeReport,
} from 'quorumlock';

declare const executors: Executor[];
declare const ioredisClient: { call(command: string, ...args: string[]): Promise<unknown> };

async function main(): Promise<void> {
  const redlock = new Redlock([...executors, ioredisExecutor(ioredisClient)], { retryCount: 3, driftFactor: 0.01 });
  const lock: Lock = await redlock.acquire(['a', 'b'], 10_000, { signal: AbortSignal.timeout(1000) });
  const value: string = lock.value;
  const report: NodeReport[] = lock.report;
  const remaining: number = lock.remaining();
  await lock.extend(5000);
  const { clean } = await lock.release();
  await redlock.flush();

  const total: number = await redlock.using('r', 5000, async (signal: AbortSignal, held: Lock) => {
    if (signal.aborted) throw signal.reason;
    return held.extensions;
  });

  try {
    await redlock.acquire('r', 1000);
  } catch (error) {
    if (error instanceof LockContendedError) {
      const code: RedlockError['code'] = error.code;
      void code;
    }
  }

  const resp = respExecutor({ connect: () => ({ readable: new ReadableStream(), writable: new WritableStream() }) });
  resp.close();

  const subscriber = ioredisSubscriber({ duplicate: () => ({}) });
  const withSubscribers = new Redlock([executors[0]], { subscribers: [subscriber] });
  void withSubscribers;
  subscriber.close();
  // @ts-expect-error a subscriber needs subscribe and unsubscribe
  new Redlock(executors, { subscribers: [{ subscribe() {} }] });

  // @ts-expect-error resources are strings
  await redlock.acquire(5, 1000);
  // @ts-expect-error the TTL is a number of milliseconds
  await redlock.acquire('r', '10s');
  // @ts-expect-error unknown option
  new Redlock(executors, { retries: 3 });
  // @ts-expect-error a lock value is read-only
  lock.value = "x";

  void [value, report, remaining, clean, total];
}

void main;
