// A held lock as JavaScript sees it: plain data plus extend and release.

import { LockReleasedError, reportOf, toReport } from './errors.js';
import { checkTtl } from './options.js';

/**
 * What `Lock#release` resolves with, `{ clean, report }`, from what the core gives: a
 * `Float64Array` of `clean` (1 or 0) and the report's numbers when no node failed, else
 * `[clean, [numbers, details]]` (see the crate's to_js.rs). The numbers are read at once:
 * the array may be a view the core writes over later.
 */
export function releasedOutcome(value) {
  if (value instanceof Float64Array) return { clean: value[0] === 1, report: reportOf(value, null, 1) };
  const clean = value[0] === undefined ? false : value[0];
  const encoded = value[1] === undefined ? null : value[1];
  return { clean, report: toReport(encoded) };
}

function releaseNow(engine, held, names, token) {
  try {
    return engine.release(held, names, token);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Milliseconds until an automatic extension is due; for `Redlock#using` only. */
export const RENEW_IN = Symbol('quorumlock.renewIn');

export class Lock {
  #engine;
  #held;
  // The keys and token the core's commands are built from, out of the caller's reach (the
  // public `resources` and `value` are plain properties).
  #names;
  #token;
  #released = null;
  #extending = null;
  /** Worked out when first asked for (null until then), rather than for every lock. */
  #expiresAt = null;

  /** @internal Locks are made by `Redlock#acquire`. */
  constructor(engine, held, resources, token) {
    this.#engine = engine;
    this.#held = held;
    this.#names = resources;
    this.#token = token;
    /** The locked keys. */
    this.resources = Object.freeze(resources);
    /** The random token stored under every key. */
    this.value = token;
  }

  /** Wall-clock time (ms since the epoch) after which the lock must not be relied on. For
   * decisions prefer `remaining()`, which reads the monotonic clock. */
  get expiresAt() {
    if (this.#expiresAt === null) this.#expiresAt = Date.now() + this.#held.validForMs();
    return this.#expiresAt;
  }

  /** Validity (ms) granted by the last acquire or extend round: `ttl − elapsed − drift`. */
  get validity() {
    return this.#held.validityMs();
  }

  /** How many times the lock was extended. */
  get extensions() {
    return this.#held.extensions();
  }

  /** Per node: `{ node, status, error, latency }` of the last acquire or extend round. */
  get report() {
    return toReport(this.#held.report());
  }

  /** Validity left now, in milliseconds (0 once expired or released). */
  remaining() {
    return this.#released ? 0 : this.#held.remainingMs();
  }

  /** Whether the lock can still be relied on now. */
  isValid() {
    return this.remaining() > 0;
  }

  [RENEW_IN]() {
    return this.#held.renewInMs();
  }

  /**
   * Sets the keys' TTL to `ttl` ms from now, if a quorum still holds them for us. Rejects with
   * a `LockLostError` (the keys are gone or expired), a `QuorumError` or an
   * `ExtensionLimitError`; the lock keeps its previous validity then.
   */
  async extend(ttl) {
    checkTtl(ttl);
    if (this.#released) throw new LockReleasedError('the lock was already released', { code: 'LOCK_RELEASED' });
    const extending = this.#engine.extend(this.#held, this.#names, this.#token, ttl);
    this.#extending = extending.catch(() => {});
    await extending;
    this.#expiresAt = null;
    return this;
  }

  /**
   * Deletes the keys on every node that still holds them for us. Never rejects and never
   * hangs; resolves with `{ clean, report }`, where `clean` says every node answered.
   * Calling it again returns the first result.
   */
  release() {
    if (this.#released === null) {
      // An extension still in flight could set the TTL again after the delete: let it finish.
      this.#released =
        this.#extending === null
          ? releaseNow(this.#engine, this.#held, this.#names, this.#token)
          : this.#extending.then(() => releaseNow(this.#engine, this.#held, this.#names, this.#token));
    }
    return this.#released;
  }

  /** `await using lock = await redlock.acquire(…)` releases at the end of the block. */
  async [Symbol.asyncDispose ?? Symbol.for('Symbol.asyncDispose')]() {
    await this.release();
  }
}
