// Executor for an @upstash/redis client: Redis over HTTPS, for runtimes that only have fetch.

/**
 * `upstashExecutor(redis)`: one executor for one `Redis` from `@upstash/redis`. Each command is
 * one REST request; the client's own retries may outlast the lock's per-request deadline, in
 * which case the late answer is ignored.
 */
export function upstashExecutor(redis) {
  if (!redis || typeof redis.exec !== 'function') {
    throw new TypeError('upstashExecutor needs a Redis client from @upstash/redis (with exec)');
  }
  return (args) => redis.exec(args);
}
