// Durations in milliseconds, read out as percentiles in microseconds, by nearest rank: the
// same rule as bench/src/stats.rs.

export class Samples {
  #values = [];

  record(ms) {
    this.#values.push(ms);
  }

  get length() {
    return this.#values.length;
  }

  percentiles() {
    const sorted = Float64Array.from(this.#values).sort();
    if (sorted.length === 0) return { count: 0, p50_us: 0, p99_us: 0 };
    const rank = (q) => sorted[Math.min(Math.max(Math.ceil(q * sorted.length), 1), sorted.length) - 1];
    return { count: sorted.length, p50_us: rank(0.5) * 1000, p99_us: rank(0.99) * 1000 };
  }
}
