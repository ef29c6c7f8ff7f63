// The shared state of the hand-off scenario (S3), as in bench/src/handoff.rs: who entered,
// when the last holder let go, and a check that no two contenders are ever inside at once.

import { Samples } from './samples.mjs';

export class Baton {
  inside = 0;
  overlaps = 0;
  acquisitions = 0;
  gaps = new Samples();
  #releasedAt = null;
  #waiters = [];

  /** A contender holds the lock since `lockedAt`; returns the number of this acquisition. */
  enter(lockedAt) {
    if (this.inside !== 0) this.overlaps += 1;
    this.inside += 1;
    this.acquisitions += 1;
    if (this.#releasedAt !== null) {
      this.gaps.record(lockedAt - this.#releasedAt);
      this.#releasedAt = null;
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
    return this.acquisitions;
  }

  /** The holder leaves the critical section and is about to call release. */
  leave() {
    this.inside -= 1;
    this.#releasedAt = performance.now();
  }

  /** Resolves once someone else acquired after acquisition `mine`, or at `deadline`. */
  async waitTurn(mine, deadline) {
    while (this.acquisitions <= mine) {
      const left = deadline - performance.now();
      if (left <= 0) return;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}
