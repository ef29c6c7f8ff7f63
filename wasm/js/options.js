// Checks every value that comes from the caller before it reaches WebAssembly, and turns
// mistakes into a TypeError (wrong kind of value) or a RangeError (right kind, wrong value).

/** Longest TTL the core accepts: one year. */
export const MAX_TTL = 365 * 24 * 3600 * 1000;

const MAX_COUNT = 2 ** 32 - 1;
const MAX_NODES = 1024;

const DURATIONS = ['minValidity', 'requestTimeout', 'retryDelay', 'retryJitter', 'retryDeadline', 'maxHold'];
const COUNTS = ['retryCount', 'maxExtensions'];
const RETRY = ['retryCount', 'retryDelay', 'retryJitter', 'retryDeadline'];

/** Options of `new Redlock(executors, options)`. */
export const REDLOCK_OPTIONS = [
  'driftFactor',
  'minValidity',
  'requestTimeout',
  'maxExtensions',
  'maxHold',
  ...RETRY,
];
/** Options of `acquire(resources, ttl, options)` and `using(resources, ttl, options, routine)`. */
export const ACQUIRE_OPTIONS = [...RETRY, 'signal'];

function kindOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

export function checkExecutors(executors) {
  if (!Array.isArray(executors)) {
    throw new TypeError(`executors must be an array of functions, got ${kindOf(executors)}`);
  }
  if (executors.length === 0) throw new RangeError('executors must name at least one Redis node');
  if (executors.length > MAX_NODES) {
    throw new RangeError(`at most ${MAX_NODES} executors are supported, got ${executors.length}`);
  }
  executors.forEach((executor, index) => {
    if (typeof executor !== 'function') {
      throw new TypeError(`executors[${index}] must be a function, got ${kindOf(executor)}`);
    }
  });
  return [...executors];
}

/**
 * Checks the `subscribers` option against the `nodes` executors: undefined, or an array with
 * one entry per executor, each a subscriber (an object or function with `subscribe` and
 * `unsubscribe` methods) or null for a node without one. Returns the subscribers with null for
 * the nodes without, or null when no node has one.
 */
export function checkSubscribers(subscribers, nodes) {
  if (subscribers === undefined) return null;
  if (!Array.isArray(subscribers)) {
    throw new TypeError(`options.subscribers must be an array, got ${kindOf(subscribers)}`);
  }
  if (subscribers.length !== nodes) {
    throw new RangeError(`options.subscribers must have one entry per executor (${nodes}), got ${subscribers.length}`);
  }
  const checked = subscribers.map((subscriber, index) => {
    if (subscriber === undefined || subscriber === null) return null;
    const shaped =
      (typeof subscriber === 'object' || typeof subscriber === 'function') &&
      typeof subscriber.subscribe === 'function' &&
      typeof subscriber.unsubscribe === 'function';
    if (!shaped) {
      throw new TypeError(
        `options.subscribers[${index}] must have subscribe(channel, onMessage) and unsubscribe(channel) methods, or be null`,
      );
    }
    const keyPrefix = subscriber.keyPrefix ?? '';
    if (typeof keyPrefix !== 'string') {
      throw new TypeError(`options.subscribers[${index}].keyPrefix must be a string, got ${kindOf(keyPrefix)}`);
    }
    // Read once, here: the engine names channels with it on every subscription.
    return { keyPrefix, subscribe: subscriber.subscribe.bind(subscriber), unsubscribe: subscriber.unsubscribe.bind(subscriber) };
  });
  return checked.some((subscriber) => subscriber !== null) ? checked : null;
}

export function checkResources(resources) {
  // One key, the common call: nothing to compare it with.
  if (typeof resources === 'string') {
    if (resources.length === 0) throw new RangeError('resources[0] is an empty string');
    return [resources];
  }
  const list = resources;
  if (!Array.isArray(list)) {
    throw new TypeError(`resources must be a string or an array of strings, got ${kindOf(resources)}`);
  }
  if (list.length === 0) throw new RangeError('resources must name at least one key');
  const seen = new Set();
  list.forEach((name, index) => {
    if (typeof name !== 'string') {
      throw new TypeError(`resources[${index}] must be a string, got ${kindOf(name)}`);
    }
    if (name.length === 0) throw new RangeError(`resources[${index}] is an empty string`);
    if (seen.has(name)) throw new RangeError(`resource ${JSON.stringify(name)} is given twice`);
    seen.add(name);
  });
  return [...list];
}

export function checkTtl(ttl, name = 'ttl') {
  if (typeof ttl !== 'number') throw new TypeError(`${name} must be a number of milliseconds, got ${kindOf(ttl)}`);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL) {
    throw new RangeError(`${name} must be a whole number of milliseconds from 1 to ${MAX_TTL}, got ${ttl}`);
  }
  return ttl;
}

function checkNumber(name, value) {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${kindOf(value)}`);
  if (!Number.isFinite(value)) throw new RangeError(`${name} must be finite, got ${value}`);
}

function isAbortSignal(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.aborted === 'boolean' &&
    typeof value.addEventListener === 'function' &&
    typeof value.removeEventListener === 'function'
  );
}

/**
 * Checks `options` against the `allowed` names and returns a fresh plain object holding only
 * those (so no getter of the caller's object runs later, inside WebAssembly).
 */
export function checkOptions(options, allowed, where) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${where} must be an object, got ${kindOf(options)}`);
  }
  const checked = {};
  for (const [name, value] of Object.entries(options)) {
    if (!allowed.includes(name)) {
      throw new TypeError(`unknown option ${JSON.stringify(name)} in ${where}; known: ${allowed.join(', ')}`);
    }
    if (value === undefined) continue;
    if (name === 'signal') {
      if (!isAbortSignal(value)) throw new TypeError(`${where}.signal must be an AbortSignal`);
    } else if (name === 'driftFactor') {
      checkNumber(name, value);
      if (value < 0 || value >= 1) throw new RangeError(`driftFactor must be in [0, 1), got ${value}`);
    } else if (DURATIONS.includes(name)) {
      checkNumber(name, value);
      if (value < 0 || value > MAX_TTL) {
        throw new RangeError(`${name} must be from 0 to ${MAX_TTL} milliseconds, got ${value}`);
      }
    } else if (COUNTS.includes(name)) {
      checkNumber(name, value);
      if (!Number.isInteger(value) || value < 0 || value > MAX_COUNT) {
        throw new RangeError(`${name} must be a whole number from 0 to ${MAX_COUNT}, got ${value}`);
      }
    }
    checked[name] = value;
  }
  return checked;
}
