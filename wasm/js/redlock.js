// The public entry point: a Redlock client over one executor per Redis node.

import { RedlockCore } from './quorumlock_wasm.js';
import { AbortError, LockLostError, toError } from './errors.js';
import { Lock, RENEW_IN } from './lock.js';
import {
  ACQUIRE_OPTIONS,
  REDLOCK_OPTIONS,
  checkExecutors,
  checkOptions,
  checkResources,
  checkTtl,
} from './options.js';
import { createTransport } from './transport.js';

function abortedError(signal) {
  return new AbortError('the acquire was aborted', { code: 'ABORTED', cause: signal.reason });
}

/** A promise that resolves when `signal` aborts, and a way to stop listening. */
function onAbort(signal) {
  let listener;
  const aborted = new Promise((resolve) => {
    listener = () => resolve();
    signal.addEventListener('abort', listener, { once: true });
  });
  return { aborted, dispose: () => signal.removeEventListener('abort', listener) };
}

export class Redlock {
  #core;
  #settings;

  /**
   * @param executors one async function per Redis node (independent primaries, ideally an odd
   *   number): it receives a command as an array of strings and resolves with the reply.
   * @param options driftFactor, minValidity, requestTimeout, retryCount, retryDelay,
   *   retryJitter, retryDeadline, maxExtensions, maxHold (durations in milliseconds).
   */
  constructor(executors, options = {}) {
    const checked = checkExecutors(executors);
    this.#settings = checkOptions(options, REDLOCK_OPTIONS, 'options');
    this.#core = new RedlockCore(createTransport(checked), checked.length, this.#settings);
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
    const { signal, ...retry } = checkOptions(options, ACQUIRE_OPTIONS, 'acquire options');
    if (signal?.aborted) throw abortedError(signal);
    const settings = { ...this.#settings, ...retry, ttl };
    const cancel = signal ? onAbort(signal) : null;
    try {
      return new Lock(await this.#core.acquire(names, settings, cancel?.aborted));
    } catch (failure) {
      const error = toError(failure);
      if (error instanceof AbortError && signal) throw abortedError(signal);
      throw error;
    } finally {
      cancel?.dispose();
    }
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
