// Runs the user's executors for the core and reduces whatever they do to a tagged reply:
// resolve, reject, throw synchronously, answer garbage. The core then only ever sees a promise
// that resolves with `[tag, payload]` (tags as in the crate's reply.rs).

const OK = 0;
const NIL = 1;
const INTEGER = 2;
const SERVER_ERROR = 3;
const IO_ERROR = 4;
const UNEXPECTED = 5;

// Redis error replies start with an upper-case code: `NOSCRIPT No matching script`, `WRONGPASS …`.
const SERVER_ERROR_CODE = /^[A-Z][A-Z0-9_]+(\s|$)/;
const SERVER_ERROR_NAMES = new Set(['ReplyError', 'ErrorReply', 'SimpleError', 'UpstashError']);

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 60))}`;
  return `a value of type ${typeof value}`;
}

function messageOf(error) {
  try {
    if (error && typeof error.message === 'string') return error.message;
    return String(error);
  } catch {
    return 'the executor failed with an unprintable value';
  }
}

function isServerError(error, message) {
  return SERVER_ERROR_NAMES.has(error?.name) || SERVER_ERROR_CODE.test(message);
}

function fromValue(value) {
  if (value === 'OK') return [OK, null];
  if (value === null || value === undefined) return [NIL, null];
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) ? [INTEGER, value] : [UNEXPECTED, `the number ${value}`];
  }
  if (typeof value === 'bigint') {
    const n = Number(value);
    return Number.isSafeInteger(n) ? [INTEGER, n] : [UNEXPECTED, 'a bigint out of range'];
  }
  // Some clients resolve with the error object of a failed command instead of rejecting.
  if (value instanceof Error) return [SERVER_ERROR, messageOf(value)];
  return [UNEXPECTED, describe(value)];
}

function fromRejection(error) {
  const message = messageOf(error);
  return [isServerError(error, message) ? SERVER_ERROR : IO_ERROR, message];
}

async function settle(executor, args) {
  let value;
  try {
    value = await executor(args);
  } catch (error) {
    return fromRejection(error);
  }
  return fromValue(value);
}

/** The transport object the core calls: `send(node, args)` → `Promise<[tag, payload]>`. */
export function createTransport(executors) {
  return {
    send(node, args) {
      const executor = executors[node];
      if (typeof executor !== 'function') return Promise.resolve([IO_ERROR, 'no such node']);
      return settle(executor, args);
    },
  };
}
