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
  // The first command of a tick goes out at once (a lone request waits for nothing); from the
  // second on, writes wait in the socket's buffer until the end of the tick, then leave together.
  let busy = false;
  let corked = null;
  const endOfTick = () => {
    busy = false;
    const stream = corked;
    corked = null;
    stream?.uncork();
  };
  return (args) => {
    if (!busy) {
      busy = true;
      later(endOfTick);
    } else if (corked === null && client.status === 'ready') {
      const stream = client.stream;
      if (typeof stream?.cork === 'function' && typeof stream.uncork === 'function') {
        stream.cork();
        corked = stream;
      }
    }
    return client.call(...args);
  };
}
