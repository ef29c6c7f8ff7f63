// The error classes of the public API. Every failure carries a stable `code` (also the way to
// match errors across the ESM and CommonJS builds, whose classes are distinct objects) and,
// when a round ran, the per-node `report`.

/** Base class of every lock failure. */
export class RedlockError extends Error {
  constructor(message, { code, report = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.report = report;
  }
}

/** Another owner holds the resources on so many nodes that no quorum was possible. */
export class LockContendedError extends RedlockError {
  constructor(message, { retryAfter = null, ...rest } = {}) {
    super(message, rest);
    /** Milliseconds until the holder's keys expire on enough nodes for a quorum to be free, as
     * the nodes reported it (the holder may release or extend before then); `null` when too
     * few nodes answered. */
    this.retryAfter = retryAfter;
  }
}

/** Too few nodes granted in time: nodes down, slow or failing (`NO_QUORUM`), or the quorum came
 * so late that too little validity was left (`VALIDITY_TOO_SHORT`). */
export class QuorumError extends RedlockError {}

/** The lock is gone (`LOCK_LOST`: keys deleted or taken) or ran out before an extension was
 * confirmed (`LOCK_EXPIRED`). */
export class LockLostError extends RedlockError {}

/** The configured `maxExtensions` or `maxHold` is used up. */
export class ExtensionLimitError extends RedlockError {}

/** The lock was already released through this object. */
export class LockReleasedError extends RedlockError {}

/** A waiting acquire was cancelled through its `AbortSignal`; `cause` is the signal's reason. */
export class AbortError extends RedlockError {}

for (const type of [
  RedlockError,
  LockContendedError,
  QuorumError,
  LockLostError,
  ExtensionLimitError,
  LockReleasedError,
  AbortError,
]) {
  // On the prototype, so the name survives minifiers and shows in stack traces.
  Object.defineProperty(type.prototype, 'name', {
    value: type.name,
    writable: true,
    configurable: true,
  });
}

const TYPE_BY_CODE = {
  LOCK_CONTENDED: LockContendedError,
  NO_QUORUM: QuorumError,
  VALIDITY_TOO_SHORT: QuorumError,
  LOCK_LOST: LockLostError,
  LOCK_EXPIRED: LockLostError,
  EXTENSION_LIMIT: ExtensionLimitError,
  ABORTED: AbortError,
};

// Codes of the core's report (see the crate's to_js.rs).
const STATUS = ['granted', 'refused', 'timed-out', 'no-answer', 'failed'];
const ERROR_KIND = [null, 'io', 'auth', 'server', 'protocol'];

/** The per-node report as public objects: one `{ node, status, error, latency }` per node. The
 * core gives `[numbers, details]`: status, error kind and latency per node, and the error texts
 * of failed nodes. */
export function toReport(encoded) {
  if (!Array.isArray(encoded)) return null;
  return reportOf(encoded[0], encoded[1], 0);
}

/** The per-node report from its numbers (starting at index `start`) and the error texts. */
export function reportOf(numbers, details, start) {
  const report = [];
  for (let node = 0, at = start; at + 2 < numbers.length; node += 1, at += 3) {
    const kind = ERROR_KIND[numbers[at + 1]] ?? null;
    const latency = numbers[at + 2];
    report.push({
      node,
      status: STATUS[numbers[at]],
      error: kind === null ? null : { kind, message: details?.[node] ?? '' },
      latency: Number.isNaN(latency) ? null : latency,
    });
  }
  return report;
}

/** Turns what the core fails with (`[code, message, report, retryAfter]`) into an error
 * object; errors that already are errors (bad input) pass through. */
export function toError(failure, cause) {
  if (!Array.isArray(failure)) return failure;
  const [code, message, report, retryAfter] = failure;
  const Type = TYPE_BY_CODE[code] ?? RedlockError;
  const options = { code, report: toReport(report), cause };
  if (Type === LockContendedError) options.retryAfter = retryAfter ?? null;
  return new Type(message, options);
}
