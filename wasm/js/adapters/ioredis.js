// Executor for an ioredis client.

/** `ioredisExecutor(client)`: one executor for one ioredis client (`new Redis(…)`). */
export function ioredisExecutor(client) {
  if (!client || typeof client.call !== 'function') {
    throw new TypeError('ioredisExecutor needs an ioredis client (with call)');
  }
  return ([command, ...args]) => client.call(command, ...args);
}
