// Executor for an ioredis client.

// After the current task and its promise reactions, like ioredis's own auto-pipelining.
const later =
  typeof process === 'object' && typeof process?.nextTick === 'function'
    ? (callback) => process.nextTick(callback)
    : (callback) => queueMicrotask(callback);

// One end-of-tick callback for every executor, rather than one per executor per tick: a lock
// round sends to every node in the same tick.
let tickScheduled = false;
let sentThisTick = [];
let corkedThisTick = [];
const endOfTick = () => {
  tickScheduled = false;
  const sent = sentThisTick;
  const corked = corkedThisTick;
  sentThisTick = [];
  corkedThisTick = [];
  for (const executor of sent) executor.busy = false;
  for (const stream of corked) stream.uncork();
};

/** ioredis looks each command name up in its flag tables in lower case, lower-casing it first:
 * a name already in lower case, and a literal, costs it no new string per command. */
function lowerCaseName(name) {
  switch (name) {
    case 'SET':
      return 'set';
    case 'EVALSHA':
      return 'evalsha';
    case 'EVAL':
      return 'eval';
    default:
      return name;
  }
}

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
  const state = { busy: false, corked: false };
  return (args) => {
    if (!state.busy) {
      state.busy = true;
      state.corked = false;
      sentThisTick.push(state);
      if (!tickScheduled) {
        tickScheduled = true;
        later(endOfTick);
      }
    } else if (!state.corked && client.status === 'ready') {
      const stream = client.stream;
      if (typeof stream?.cork === 'function' && typeof stream.uncork === 'function') {
        stream.cork();
        state.corked = true;
        corkedThisTick.push(stream);
      }
    }
    return client.call(lowerCaseName(args[0]), ...args.slice(1));
  };
}

/**
 * `ioredisSubscriber(client)`: the subscriber for the `subscribers` option of `Redlock` on the
 * node `client` reaches. It subscribes on a duplicate of the client (a connection in subscriber
 * mode can send nothing else), opened when it first subscribes; ioredis reconnects it and
 * subscribes again on its own. `close()` disconnects it for good. The client's `keyPrefix`,
 * which ioredis puts before the keys of commands but not before channel names, is handed on.
 */
export function ioredisSubscriber(client) {
  if (!client || typeof client.duplicate !== 'function') {
    throw new TypeError('ioredisSubscriber needs an ioredis client (with duplicate)');
  }
  const listeners = new Map();
  let connection = null;
  let closed = false;
  const open = () => {
    connection = client.duplicate();
    // Wake-ups only spare waiters their retry delay: a failing connection is not worth an
    // unhandled 'error' event, and ioredis keeps reconnecting.
    connection.on('error', () => {});
    connection.on('message', (channel, message) => listeners.get(channel)?.(message));
    return connection;
  };
  const keyPrefix = client.options?.keyPrefix;
  return {
    keyPrefix: typeof keyPrefix === 'string' ? keyPrefix : '',
    subscribe(channel, onMessage) {
      if (closed) return undefined;
      listeners.set(channel, onMessage);
      return (connection ?? open()).subscribe(channel);
    },
    unsubscribe(channel) {
      listeners.delete(channel);
      return connection?.unsubscribe(channel);
    },
    close() {
      closed = true;
      listeners.clear();
      connection?.disconnect();
      connection = null;
    },
  };
}
