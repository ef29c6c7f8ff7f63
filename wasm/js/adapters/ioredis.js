// Executor for an ioredis client.

// After the current task and its promise reactions, like ioredis's own auto-pipelining.
const later =
  typeof process === 'object' && typeof process?.nextTick === 'function'
    ? (callback) => process.nextTick(callback)
    : (callback) => queueMicrotask(callback);

/**
 * `ioredisExecutor(client)`: one executor for one ioredis client (`new Redis(…)`). Commands
 * issued in the same tick — the requests of many locks taken or released at once — leave in one
 * write to the socket rather than one write each, whatever the client's `enableAutoPipelining`.
 */
export function ioredisExecutor(client) {
  if (!client || typeof client.call !== 'function') {
    throw new TypeError('ioredisExecutor needs an ioredis client (with call)');
  }
  let corked = null;
  const uncork = () => {
    const stream = corked;
    corked = null;
    stream.uncork();
  };
  return (args) => {
    if (corked === null && client.status === 'ready') {
      // Writes wait in the socket's buffer until the end of the tick, then go out together.
      const stream = client.stream;
      if (typeof stream?.cork === 'function' && typeof stream.uncork === 'function') {
        stream.cork();
        corked = stream;
        later(uncork);
      }
    }
    return client.call(...args);
  };
}
