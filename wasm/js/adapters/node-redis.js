// Executor for a node-redis (`redis` package, v4 and later) client.

/**
 * `nodeRedisExecutor(client)`: one executor for one connected node-redis client. The client's
 * own offline queue and reconnects are fine: the lock's per-request deadline is what counts.
 */
export function nodeRedisExecutor(client) {
  if (!client || typeof client.sendCommand !== 'function') {
    throw new TypeError('nodeRedisExecutor needs a node-redis client (with sendCommand)');
  }
  return (args) => client.sendCommand(args);
}

/**
 * `nodeRedisSubscriber(client)`: the subscriber for the `subscribers` option of `Redlock` on the
 * node `client` reaches. It subscribes on `client.duplicate()` (a connection in subscriber mode
 * can send nothing else), connected when it first subscribes; node-redis reconnects it and
 * subscribes again on its own. `close()` disconnects it for good.
 */
export function nodeRedisSubscriber(client) {
  if (!client || typeof client.duplicate !== 'function') {
    throw new TypeError('nodeRedisSubscriber needs a node-redis client (with duplicate)');
  }
  let connection = null;
  let closed = false;
  // node-redis takes commands only once connected: each call waits for the one before, so the
  // node gets subscriptions and unsubscriptions in the order they were asked for. A failed
  // step does not stop the later ones.
  let last = Promise.resolve();
  const then = (step) => {
    const next = last.then(step);
    last = next.catch(() => {});
    return next;
  };
  const open = () => {
    connection = client.duplicate();
    // Wake-ups only spare waiters their retry delay: a failing connection is not worth an
    // unhandled 'error' event, and node-redis keeps reconnecting.
    connection.on('error', () => {});
    const connecting = connection;
    then(() => connecting.connect());
    return connection;
  };
  return {
    subscribe(channel, onMessage) {
      if (closed) return undefined;
      const subscriber = connection ?? open();
      return then(() => subscriber.subscribe(channel, (message) => onMessage(message)));
    },
    unsubscribe(channel) {
      const subscriber = connection;
      if (subscriber === null) return undefined;
      return then(() => subscriber.unsubscribe(channel));
    },
    close() {
      closed = true;
      const subscriber = connection;
      connection = null;
      if (subscriber === null) return undefined;
      // Closing a connection that never opened may reject: there is nothing left to close.
      return then(() => {
        if (typeof subscriber.destroy === 'function') subscriber.destroy();
        else return subscriber.disconnect();
        return undefined;
      }).catch(() => {});
    },
  };
}
