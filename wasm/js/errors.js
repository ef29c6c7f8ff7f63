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
export class LockContendedError extends RedlockError {}

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

/** The per-node report as public objects: one `{ node, status, error, latency }` per node. */
export function toReport(entries) {
  if (!Array.isArray(entries)) return null;
  return entries.map(([status, kind, detail, latency], node) => ({
    node,
    status,
    error: kind === null ? null : { kind, message: detail },
    latency,
  }));
}

/** Turns what the core rejects with (`[code, message, report]`) into an error object; errors
 * that already are errors (bad input) pass through. */
export function toError(failure, cause) {
  if (!Array.isArray(failure)) return failure;
  const [code, message, report] = failure;
  const Type = TYPE_BY_CODE[code] ?? RedlockError;
  return new Type(message, { code, report: toReport(report), cause });
}
