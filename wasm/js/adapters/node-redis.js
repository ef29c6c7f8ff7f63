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
