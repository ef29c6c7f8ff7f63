// Everything the package exports, whatever the runtime. The runtime entries (node.mjs,
// workerd.mjs, web.mjs) load the WebAssembly module first, then re-export this.

export { Redlock } from './redlock.js';
export { Lock } from './lock.js';
export {
  RedlockError,
  LockContendedError,
  QuorumError,
  LockLostError,
  ExtensionLimitError,
  LockReleasedError,
  AbortError,
} from './errors.js';
export { nodeRedisExecutor, nodeRedisSubscriber } from './adapters/node-redis.js';
export { ioredisExecutor, ioredisSubscriber } from './adapters/ioredis.js';
export { upstashExecutor } from './adapters/upstash.js';
export { respExecutor, respSubscriber } from './adapters/resp.js';
