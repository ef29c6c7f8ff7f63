// The public entry point: a Redlock client over one executor per Redis node.

import { AbortError, LockLostError } from './errors.js';
import { Engine } from './engine.js';
import { Lock, RENEW_IN } from './lock.js';
import {
  ACQUIRE_OPTIONS,
  REDLOCK_OPTIONS,
  checkExecutors,
  checkOptions,
  checkResources,
  checkSubscribers,
  checkTtl,
} from './options.js';

function abortedError(signal) {
  return new AbortError('the acquire was aborted', { code: 'ABORTED', cause: signal.reason });
}

function hasAny(object) {
  for (const _ in object) return true;
  return false;
}

/** Options `checkOptions` would accept and reduce to `{}`: none, or an object without keys. */
function isEmpty(options) {
  if (options === undefined || options === null) return true;
  return typeof options === 'object' && !Array.isArray(options) && !hasAny(options);
}

export class Redlock {
  #engine;
  #settings;

  /**
   * @param executors one async function per Redis node (independent primaries, ideally an odd
   *   number): it receives a command as an array of strings and resolves with the reply.
   * @param options driftFactor, minValidity, requestTimeout, retryCount, retryDelay,
   *   retryJitter, retryDeadline, maxExtensions, maxHold (durations in milliseconds), and
   *   subscribers: one per executor (or null), through which acquires hear of releases made by
   *   other processes and retry at once instead of after their delay.
   */
  constructor(executors, options = {}) {
    const checked = checkExecutors(executors);
    const { subscribers, ...settings } = checkOptions(options, [...REDLOCK_OPTIONS, 'subscribers'], 'options');
    this.#settings = settings;
    this.#engine = new Engine(checked, settings, checkSubscribers(subscribers, checked.length));
  }

  /**
   * Locks `resources` (a key or an array of keys, all or nothing) for `ttl` milliseconds,
   * retrying per the retry options. Resolves with a `Lock`; rejects with a
   * `LockContendedError`, a `QuorumError`, or an `AbortError` when `options.signal` aborts
   * first (the keys are then released on every node).
   */
  async acquire(resources, ttl, options = {}) {
    const names = checkResources(resources);
    checkTtl(ttl);
    let signal;
    let settings;
    // No options (the common call) leaves nothing to check: the core uses its own settings.
    if (!isEmpty(options)) {
      let retry;
      ({ signal, ...retry } = checkOptions(options, ACQUIRE_OPTIONS, 'acquire options'));
      if (signal?.aborted) throw abortedError(signal);
      // Per-call retry options: the core reads every setting again; else it uses its own.
      settings = hasAny(retry) ? { ...this.#settings, ...retry } : undefined;
    }
    try {
      const [held, token] = await this.#engine.acquire(names, ttl, settings, signal);
      return new Lock(this.#engine, held, names, token);
    } catch (error) {
      if (error instanceof AbortError && signal) throw abortedError(signal);
      throw error;
    }
  }

  /**
   * Resolves once the work this client left running after a release settled is done. A
   * release settles as soon as a quorum of nodes has answered; the deletions sent to the slower
   * nodes carry on until each answers or reaches its request timeout, and a node that lost its
   * scripts (`NOSCRIPT`) is sent the script source then. Call it before the process exits or
   * the executors' connections are closed, so that no node keeps the keys until their TTL, or
   * in a test before looking at the nodes' keys. Never rejects; work started while it waits
   * may or may not be waited for.
   */
  flush() {
    return this.#engine.flush();
  }

  /**
   * Runs `routine(signal, lock)` while holding a lock on `resources`, extending it half-way
   * through each validity window. If an extension fails, `signal` aborts with a
   * `LockLostError`, and once the routine settles `using` rejects with that error (or with the
   * routine's own error). The lock is released at the end whatever happens.
   *
   * `using(resources, ttl, routine)` or `using(resources, ttl, options, routine)`.
   */
  async using(resources, ttl, optionsOrRoutine, maybeRoutine) {
    const [options, routine] =
      typeof optionsOrRoutine === 'function' ? [{}, optionsOrRoutine] : [optionsOrRoutine, maybeRoutine];
    if (typeof routine !== 'function') throw new TypeError('using needs a routine function as its last argument');
    const lock = await this.acquire(resources, ttl, options);
    const controller = new AbortController();
    let timer = null;
    let extending = null;
    let stopped = false;

    const schedule = () => {
      timer = setTimeout(renew, lock[RENEW_IN]());
    };
    const renew = () => {
      timer = null;
      extending = lock.extend(ttl).then(
        () => {
          if (!stopped) schedule();
        },
        (error) => {
          const lost =
            error instanceof LockLostError
              ? error
              : new LockLostError(`lock lost: ${error.message}`, {
                  code: 'LOCK_LOST',
                  report: error.report ?? null,
                  cause: error,
                });
          controller.abort(lost);
        },
      );
    };
    schedule();

    try {
      const value = await routine(controller.signal, lock);
      if (controller.signal.aborted) throw controller.signal.reason;
      return value;
    } finally {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      await extending;
      await lock.release();
    }
  }
}
