// Drives the WebAssembly core: starts operations, carries the commands it hands over to the
// executors, reports their replies, deadlines and cancellations back, and settles one promise
// per operation. The core never waits on JavaScript and JavaScript never waits inside the core:
// every call into it runs an operation as far as it goes and answers with one number.

import { RedlockCore, markerPrefix, releasedChannelPrefix, wasmMemory } from './quorumlock_wasm.js';
import { toError } from './errors.js';
import { releasedOutcome } from './lock.js';

// What a call into the core answers besides a deadline (see the crate's driver.rs).
const DONE = -1;
const FAILED = -2;
const IGNORED = -3;

// Reply tags (see the crate's reply.rs).
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

// Command names as literals: an executor's client may look the name up in its tables, and a
// literal is a string it has seen before rather than a fresh copy per command.
const COMMAND_NAMES = ['SET', 'EVALSHA', 'EVAL'];

function commandName(text, at, length) {
  for (const name of COMMAND_NAMES) {
    if (name.length === length && text.startsWith(name, at)) return name;
  }
  return text.slice(at, at + length);
}

/** A command as the core defines it: each argument as its UTF-16 length, `:`, the argument. */
export function parseArgs(text) {
  const args = [];
  let at = 0;
  while (at < text.length) {
    // The length's digits, read in place rather than sliced out and converted.
    let length = 0;
    let code = text.charCodeAt(at);
    while (code !== 58 && at < text.length) {
      length = length * 10 + (code - 48);
      at += 1;
      code = text.charCodeAt(at);
    }
    at += 1;
    args.push(args.length === 0 ? commandName(text, at, length) : text.slice(at, at + length));
    at += length;
  }
  return args;
}

// Command names by the number `defineShape` gives them (see the crate's template.rs).
const SHAPE_NAMES = ['SET', 'EVALSHA', 'EVAL'];
const EVAL = 2;

/**
 * The arguments of a command defined by its shape (see the crate's template.rs): the keys
 * are the operation's `names`, followed by their waiter markers when `markers`; `scriptText`
 * is the script's digest or source; `ttl` is -1 for none.
 */
export function buildCommand(name, scriptText, markers, ttl, names, token, markerPrefix) {
  const args = [SHAPE_NAMES[name]];
  if (scriptText === null) {
    args.push(names[0], token, 'NX', 'PX');
  } else {
    args.push(scriptText, String(markers ? names.length * 2 : names.length));
    for (const key of names) args.push(key);
    if (markers) for (const key of names) args.push(markerPrefix + key);
    args.push(token);
  }
  if (ttl >= 0) args.push(String(ttl));
  return args;
}

// Kinds of operation, for what they resolve with.
const OTHER = 0;
const ACQUIRE = 1;
const RELEASE = 2;

/** One operation in flight. */
class Operation {
  /** `names`: the keys it is about; `token`: the lock's token, when known at the start. */
  constructor(id, names, token) {
    this.id = id;
    this.names = names;
    this.token = token;
    /** Commands by the core's number for them. */
    this.commands = [];
    /** `performance.now()` reading at which the core wants `timeout`; Infinity for none. */
    this.deadline = Infinity;
    this.resolve = null;
    this.reject = null;
    this.dispose = null;
    /** Settled: its promise has its value, and what runs now is its tail. */
    this.settled = false;
    /** Whether the core may keep it past its outcome: only a release or an extension has a
     * tail (see the crate's lib.rs). */
    this.mayTail = false;
    /** What it resolves with: an acquire adds the lock's token, a release reads its outcome. */
    this.kind = OTHER;
  }
}

/**
 * The deadlines of every operation of one engine on a single host timer, armed for the
 * earliest. An operation that finishes early leaves the timer as it is: when it fires, due
 * operations get their timeout and the timer is armed for the next deadline. While nothing
 * waits on a deadline the timer does not keep the process alive.
 *
 * Which operations wait is read from their `deadline` when the timer fires, from the engine's
 * list of operations: only how many wait is kept, so that starting and ending an operation,
 * many times more frequent than a timer firing, adds it to no collection.
 */
class Deadlines {
  #ops;
  #waiting = 0;
  #timer = null;
  #at = Infinity;
  #held = false;
  #onDue;
  #fire = () => this.#fired();

  /** `ops`: the engine's operations by id (with holes). */
  constructor(ops, onDue) {
    this.#ops = ops;
    this.#onDue = onDue;
  }

  /** `op` waits until `at` (a `performance.now()` reading; Infinity for no deadline). */
  set(op, at) {
    if (at === Infinity) {
      this.remove(op);
      return;
    }
    if (op.deadline === Infinity) this.#waiting += 1;
    op.deadline = at;
    if (at < this.#at) this.#arm(at);
    else if (!this.#held) this.#hold();
  }

  /** `op` waits on no deadline any more. */
  remove(op) {
    if (op.deadline === Infinity) return;
    op.deadline = Infinity;
    this.#waiting -= 1;
    if (this.#waiting === 0) this.#release();
  }

  #arm(at) {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(this.#fire, Math.max(0, Math.ceil(at - performance.now())));
    this.#at = at;
    this.#held = true;
  }

  /** Keep the process alive for the armed timer again. */
  #hold() {
    if (typeof this.#timer?.ref === 'function') {
      this.#timer.ref();
      this.#held = true;
    } else {
      this.#arm(this.#at);
    }
  }

  /** Nothing waits: the timer may fire (and find nothing due) but must not keep the process
   * alive; where timers cannot be unreferenced, it is cleared. */
  #release() {
    if (typeof this.#timer?.unref === 'function') {
      this.#timer.unref();
      this.#held = false;
    } else {
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
      this.#at = Infinity;
      this.#held = false;
    }
  }

  #fired() {
    this.#timer = null;
    this.#at = Infinity;
    this.#held = false;
    const now = performance.now();
    const due = [];
    let next = Infinity;
    for (const op of this.#ops) {
      if (op === undefined || op.deadline === Infinity) continue;
      if (op.deadline <= now) due.push(op);
      else if (op.deadline < next) next = op.deadline;
    }
    for (const op of due) {
      op.deadline = Infinity;
      this.#waiting -= 1;
    }
    if (next !== Infinity) this.#arm(next);
    for (const op of due) this.#onDue(op);
  }
}

/** The core of one `Redlock`, with its executors. */
export class Engine {
  #core;
  #executors;
  #ops = [];
  #deadlines;
  /** Operations past their outcome that still await slower nodes. */
  #tails = 0;
  /** Resolvers of `flush()` calls waiting for the tails to end. */
  #flushed = [];
  /** `[digest, source]` of each script by the core's number for it. */
  #scriptTexts = [];
  /** What the core puts before a key to name its waiter marker. */
  #markerPrefix = markerPrefix();
  /** What the release script puts before a key to name the channel it publishes on. */
  #channelPrefix = releasedChannelPrefix();
  /** Where the core leaves a release's numbers, and a view on them (see `#readOutcome`). */
  #memory = wasmMemory();
  #outcomeAddress;
  #outcomeView = null;
  /** One subscriber or null per node, when any node has one (see `#subscribeAll`). */
  #subscribers = null;

  /** `subscribers`: as `checkSubscribers` returns them, or null. */
  constructor(executors, settings, subscribers = null) {
    this.#executors = executors;
    const ops = this.#ops;
    this.#deadlines = new Deadlines(ops, (op) => this.#advance(op.id, this.#core.timeout(op.id)));
    const transport = {
      define(id, number, text) {
        ops[id].commands[number] = parseArgs(text);
      },
      defineShape: (id, number, name, script, markers, ttl) => {
        const op = ops[id];
        const text = name === 0 ? null : this.#scriptTexts[script][name === EVAL ? 1 : 0];
        op.commands[number] = buildCommand(name, text, markers, ttl, op.names, op.token, this.#markerPrefix);
      },
      script: (number, sha1, source) => {
        this.#scriptTexts[number] = [sha1, source];
      },
      token(id, token) {
        ops[id].token = token;
      },
      send: (id, node, ticket, number) => this.#send(id, node, ticket, ops[id].commands[number]),
      // A release woke a waiting acquire (see the crate's waits.rs). Stepped in a microtask:
      // the core is still running the operation that woke it, and cannot be called into now;
      // a microtask still runs before any timer or reply could reach the acquire.
      wake: (id) => {
        const op = ops[id];
        queueMicrotask(() => {
          if (ops[id] === op) this.#advance(id, this.#core.step(id));
        });
      },
      // Somebody here started or stopped waiting for a resource (only called after `listen`).
      watch: (resource) => this.#subscribeAll(resource, true),
      unwatch: (resource) => this.#subscribeAll(resource, false),
    };
    this.#core = new RedlockCore(transport, executors.length, settings);
    this.#outcomeAddress = this.#core.outcomeAddress();
    if (subscribers !== null) {
      this.#subscribers = subscribers;
      this.#core.listen();
    }
  }

  /**
   * Subscribes every node's subscriber to the channel on which other processes' releases of
   * `resource` are published, or unsubscribes them. The core asks once per resource, when its
   * first waiter pauses and when its last waiter is gone. Done in a microtask, in the order
   * asked: the core is running now and cannot be called into, which a subscriber delivering a
   * message at once would do. A subscriber that throws or rejects costs only the wake-ups:
   * waiters still retry on their own.
   */
  #subscribeAll(resource, subscribe) {
    queueMicrotask(() => {
      this.#subscribers.forEach((subscriber, node) => {
        if (subscriber === null) return;
        // The script publishes on the key as the node stores it: after the client's prefix.
        const channel = this.#channelPrefix + subscriber.keyPrefix + resource;
        try {
          const done = subscribe
            ? subscriber.subscribe(channel, (message) => this.#heard(node, resource, message))
            : subscriber.unsubscribe(channel);
          if (typeof done?.then === 'function') done.then(undefined, () => {});
        } catch {
          // Ignored: see above.
        }
      });
    });
  }

  /** Node `node` published a release of `resource`; `message` is the released lock's token. */
  #heard(node, resource, message) {
    let token;
    if (typeof message === 'string') token = message;
    else if (message instanceof Uint8Array) token = new TextDecoder().decode(message);
    else return;
    // Later: a subscriber may call back at any moment, even while the core runs (say, from
    // inside an executor sharing its client), when the core cannot be called into.
    queueMicrotask(() => this.#core.releasedElsewhere(node, resource, token));
  }

  /** What operation `op`'s promise resolves with, from the value the core finished it with. */
  #resolution(op, value) {
    // The token came with the lock's first command, unless that crossed in full.
    if (op.kind === ACQUIRE) return [value, op.token ?? value.value()];
    if (op.kind === RELEASE) return releasedOutcome(typeof value === 'number' ? this.#readOutcome(value) : value);
    return value;
  }

  /** The `count` numbers the core left at its outcome address, valid until the next call into
   * the core: read them before making one. */
  #readOutcome(count) {
    let view = this.#outcomeView;
    // A view on memory that has grown since is detached and reads as empty.
    if (view === null || view.length !== count) {
      view = new Float64Array(this.#memory.buffer, this.#outcomeAddress, count);
      this.#outcomeView = view;
    }
    return view;
  }



  /**
   * Acquires `names` for `ttl` ms; `options` holds every setting when the call overrides
   * retry options (else undefined). Resolves with `[held, token]`: the core's `HeldLock` and
   * the lock's token; rejects with a `RedlockError`. When `signal` aborts first, the keys are
   * deleted on every node and the promise rejects with code `ABORTED`.
   */
  acquire(names, ttl, options, signal) {
    // A single key crosses as a string argument, without an array to walk through.
    const id =
      names.length === 1 ? this.#core.acquireKey(names[0], ttl, options) : this.#core.acquire(names, ttl, options);
    const op = new Operation(id, names, null);
    op.kind = ACQUIRE;
    if (signal) {
      // Later, not inside the abort event: whoever aborted may be running inside the core.
      const onAbort = () =>
        queueMicrotask(() => {
          if (this.#ops[id] !== op) return;
          this.#advance(id, this.#core.cancel(id));
        });
      signal.addEventListener('abort', onAbort, { once: true });
      op.dispose = () => signal.removeEventListener('abort', onAbort);
    }
    return this.#start(op);
  }

  /** Extends `held` (on `names`, under `token`) to `ttl` ms from now. Resolves with `true`;
   * rejects with a `RedlockError`. */
  extend(held, names, token, ttl) {
    const op = new Operation(this.#core.extend(held, ttl), names, token);
    op.mayTail = true;
    return this.#start(op);
  }

  /** Deletes `held`'s keys (`names`, under `token`). Resolves with `{ clean, report }`; never
   * rejects. */
  release(held, names, token) {
    const op = new Operation(this.#core.release(held), names, token);
    op.kind = RELEASE;
    op.mayTail = true;
    return this.#start(op);
  }

  /**
   * Resolves once no operation is left running past its outcome: every release has heard from
   * its slower nodes (or given up on them at their deadline), including the `EVAL` resent to a
   * node that answered `NOSCRIPT`.
   */
  flush() {
    if (this.#tails === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushed.push(resolve));
  }

  #start(op) {
    this.#ops[op.id] = op;
    const settled = new Promise((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
    this.#advance(op.id, this.#core.step(op.id));
    return settled;
  }

  #send(id, node, ticket, args) {
    let reply;
    try {
      // A copy each: an executor may keep or change the array it gets.
      reply = this.#executors[node](args.slice());
    } catch (error) {
      reply = Promise.reject(error);
    }
    Promise.resolve(reply).then(
      (value) => this.#resolved(id, ticket, value),
      (error) => this.#rejected(id, ticket, error),
    );
  }

  #resolved(id, ticket, value) {
    const core = this.#core;
    let code;
    if (value === 'OK') code = core.reply(id, ticket, OK, 0);
    else if (value === null || value === undefined) code = core.reply(id, ticket, NIL, 0);
    else if (typeof value === 'number') {
      code = Number.isSafeInteger(value)
        ? core.reply(id, ticket, INTEGER, value)
        : core.reply(id, ticket, UNEXPECTED, 0, `the number ${value}`);
    } else if (typeof value === 'bigint') {
      const n = Number(value);
      code = Number.isSafeInteger(n)
        ? core.reply(id, ticket, INTEGER, n)
        : core.reply(id, ticket, UNEXPECTED, 0, 'a bigint out of range');
    } else if (value instanceof Error) {
      // Some clients resolve with the error object of a failed command instead of rejecting.
      code = core.reply(id, ticket, SERVER_ERROR, 0, messageOf(value));
    } else {
      code = core.reply(id, ticket, UNEXPECTED, 0, describe(value));
    }
    this.#advance(id, code);
  }

  #rejected(id, ticket, error) {
    const message = messageOf(error);
    const server = SERVER_ERROR_NAMES.has(error?.name) || SERVER_ERROR_CODE.test(message);
    this.#advance(id, this.#core.reply(id, ticket, server ? SERVER_ERROR : IO_ERROR, 0, message));
  }

  /**
   * Acts on what the core answered for operation `id`. Once it has its outcome, the promise
   * settles at once; an operation that still awaits slower nodes (a release decided by a
   * quorum) then goes on as a tail, off the caller's path, until the core is done with it.
   */
  #advance(id, code) {
    if (code === IGNORED) return;
    const op = this.#ops[id];
    if (code >= 0) {
      this.#deadlines.set(op, code);
      return;
    }
    this.#deadlines.remove(op);
    const value = this.#core.finish(id);
    if (!op.settled) {
      op.settled = true;
      op.dispose?.();
      op.dispose = null;
      if (code === DONE) op.resolve(this.#resolution(op, value));
      else if (code === FAILED) op.reject(toError(value));
      // The tail, if any: its first step sends what it still has to (a resent `EVAL`).
      const next = op.mayTail ? this.#core.step(id) : IGNORED;
      if (next !== IGNORED) {
        this.#tails += 1;
        this.#advance(id, next);
        return;
      }
    } else {
      this.#tails -= 1;
      if (this.#tails === 0 && this.#flushed.length > 0) {
        for (const resolve of this.#flushed.splice(0)) resolve();
      }
    }
    this.#ops[id] = undefined;
  }
}
