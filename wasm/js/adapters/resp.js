// Executor speaking RESP over a raw byte stream, for runtimes that give sockets but no Redis
// client: Cloudflare Workers (`connect()` from `cloudflare:sockets`), Deno (`Deno.connect`),
// or Node (`Duplex.toWeb(net.connect(…))`).

import { ProtocolError, ReplyError, ReplyParser, encodeCommand } from '../resp-codec.js';

const DEFAULT_TIMEOUT = 5000;
const DEFAULT_MAX_PENDING = 1000;

class ConnectionError extends Error {}
Object.defineProperty(ConnectionError.prototype, 'name', { value: 'ConnectionError' });

/** The replies read from `reader`, parsed, a chunk's worth at a time (one await per chunk,
 * not per reply), until the stream ends. */
async function* repliesFrom(reader) {
  const parser = new ReplyParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    yield parser.push(value);
  }
}

function closeQuietly(socket) {
  try {
    const closing = socket?.close?.();
    if (closing && typeof closing.catch === 'function') closing.catch(() => {});
  } catch {
    // Already closed.
  }
}

/** One open connection; it fails as a whole (every pending command rejects) on any error. */
class Connection {
  #socket;
  #writer;
  #pending = [];
  #timeout;
  #onFail;
  failed = false;

  constructor(socket, timeout, onFail) {
    this.#socket = socket;
    this.#timeout = timeout;
    this.#onFail = onFail;
    this.#writer = socket.writable.getWriter();
    // Cloudflare sockets report failures on these too; the read loop already handles them.
    socket.opened?.catch?.(() => {});
    socket.closed?.catch?.(() => {});
    this.#read(socket.readable.getReader());
  }

  get pending() {
    return this.#pending.length;
  }

  send(args) {
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null };
      entry.timer = setTimeout(() => {
        this.fail(new ConnectionError(`no reply within ${this.#timeout} ms`));
      }, this.#timeout);
      this.#pending.push(entry);
      this.#writer.write(encodeCommand(args)).catch((error) => this.fail(error));
    });
  }

  fail(error) {
    if (this.failed) return;
    this.failed = true;
    this.#onFail(this);
    const reason = error instanceof Error ? error : new ConnectionError(String(error));
    for (const entry of this.#pending.splice(0)) {
      clearTimeout(entry.timer);
      entry.reject(reason);
    }
    this.#writer.abort?.(reason)?.catch?.(() => {});
    closeQuietly(this.#socket);
  }

  async #read(reader) {
    try {
      for await (const replies of repliesFrom(reader)) {
        for (const reply of replies) {
          const entry = this.#pending.shift();
          if (!entry) throw new ProtocolError('reply without a request');
          clearTimeout(entry.timer);
          if (reply instanceof ReplyError) entry.reject(reply);
          else entry.resolve(reply);
        }
      }
      this.fail(new ConnectionError('connection closed by the server'));
    } catch (error) {
      this.fail(error);
    } finally {
      reader.releaseLock?.();
    }
  }
}

/**
 * `respExecutor({ connect, username, password, db, timeout, maxPending })`: one executor for
 * one Redis node. `connect()` returns (or resolves to) an object with a `readable` and a
 * `writable` byte stream and optionally `close()`. The connection opens on first use and again
 * after any failure; commands are pipelined; a node that stops answering for `timeout` ms (default
 * 5000) has its connection closed, so nothing waits forever. `executor.close()` closes the
 * connection (the next command opens a new one).
 */
export function respExecutor({
  connect,
  username,
  password,
  db,
  timeout = DEFAULT_TIMEOUT,
  maxPending = DEFAULT_MAX_PENDING,
} = {}) {
  if (typeof connect !== 'function') throw new TypeError('respExecutor needs a connect function');
  if (!Number.isFinite(timeout) || timeout <= 0) throw new RangeError('timeout must be a positive number');
  let current = null;

  const open = async () => {
    const socket = await connect();
    if (!socket?.readable || !socket?.writable) {
      closeQuietly(socket);
      throw new TypeError('connect() must give an object with readable and writable streams');
    }
    const connection = new Connection(socket, timeout, (failed) => {
      if (current?.connection === failed) current = null;
    });
    // Sent ahead of the first command on the same pipeline; their failure fails it too.
    const setup = [];
    if (password !== undefined) {
      setup.push(connection.send(username === undefined ? ['AUTH', password] : ['AUTH', username, password]));
    }
    if (db !== undefined) setup.push(connection.send(['SELECT', String(db)]));
    await Promise.all(setup).catch((error) => {
      connection.fail(error);
      throw error;
    });
    return connection;
  };

  const execute = async (args) => {
    if (!current) {
      const opening = open();
      current = { opening, connection: null };
      opening.then(
        (connection) => {
          if (current?.opening === opening) current.connection = connection;
        },
        () => {
          if (current?.opening === opening) current = null;
        },
      );
    }
    const connection = current.connection ?? (await current.opening);
    if (connection.failed) throw new ConnectionError('connection failed');
    if (connection.pending >= maxPending) throw new ConnectionError('too many commands in flight');
    return connection.send(args);
  };
  /** Closes the connection; the next command opens a new one. */
  execute.close = () => {
    const closing = current;
    current = null;
    closing?.connection?.fail(new ConnectionError('closed'));
    closing?.opening.then((connection) => connection.fail(new ConnectionError('closed')), () => {});
  };
  return execute;
}

/** Pause before a subscriber opens its connection again after a failure: wake-ups only spare
 * waiters their retry delay, and a node that is down is not worth hammering. */
const REOPEN_PAUSE = 1000;

/**
 * `respSubscriber({ connect, username, password })`: the subscriber for the `subscribers` option
 * of `Redlock` on one node, over a byte stream of its own (`connect()` as for `respExecutor`) in
 * RESP subscriber mode. It opens at the first subscription; after a failure it opens again a
 * second later and subscribes to every channel still wanted. `close()` ends it for good.
 */
export function respSubscriber({ connect, username, password } = {}) {
  if (typeof connect !== 'function') throw new TypeError('respSubscriber needs a connect function');
  const listeners = new Map();
  /** The open connection: `{ socket, writer }`. */
  let link = null;
  let opening = false;
  let reopen = null;
  let closed = false;

  const drop = (current) => {
    current.writer.abort?.()?.catch?.(() => {});
    closeQuietly(current.socket);
  };
  const later = () => {
    if (closed || reopen !== null || listeners.size === 0) return;
    reopen = setTimeout(() => {
      reopen = null;
      start();
    }, REOPEN_PAUSE);
    // Only waiters keep the process alive, not their wake-ups.
    reopen.unref?.();
  };
  const lost = (current) => {
    if (link !== current) return;
    link = null;
    drop(current);
    later();
  };
  const write = (current, args) => {
    current.writer.write(encodeCommand(args)).catch(() => lost(current));
  };
  const read = async (current, reader) => {
    try {
      for await (const replies of repliesFrom(reader)) {
        for (const reply of replies) {
          // Besides messages, only the confirmations of AUTH and of (un)subscriptions come.
          if (Array.isArray(reply) && reply[0] === 'message') listeners.get(reply[1])?.(reply[2]);
          else if (reply instanceof ReplyError) throw reply;
        }
      }
    } catch {
      // The connection is lost either way.
    } finally {
      reader.releaseLock?.();
    }
    lost(current);
  };
  // Whatever is subscribed to while the connection opens is subscribed to once it is open.
  const start = () => {
    if (closed || opening || link !== null || listeners.size === 0) return;
    opening = true;
    Promise.resolve()
      .then(connect)
      .then((socket) => {
        opening = false;
        if (!socket?.readable || !socket?.writable) {
          closeQuietly(socket);
          throw new TypeError('connect() must give an object with readable and writable streams');
        }
        const current = { socket, writer: socket.writable.getWriter() };
        if (closed || listeners.size === 0) {
          drop(current);
          return;
        }
        link = current;
        socket.opened?.catch?.(() => {});
        socket.closed?.catch?.(() => {});
        if (password !== undefined) write(current, username === undefined ? ['AUTH', password] : ['AUTH', username, password]);
        write(current, ['SUBSCRIBE', ...listeners.keys()]);
        read(current, socket.readable.getReader());
      })
      .catch(() => {
        opening = false;
        later();
      });
  };
  return {
    subscribe(channel, onMessage) {
      if (closed) return;
      listeners.set(channel, onMessage);
      if (link !== null) write(link, ['SUBSCRIBE', channel]);
      else start();
    },
    unsubscribe(channel) {
      if (listeners.delete(channel) && link !== null) write(link, ['UNSUBSCRIBE', channel]);
    },
    close() {
      closed = true;
      listeners.clear();
      if (reopen !== null) clearTimeout(reopen);
      reopen = null;
      const current = link;
      link = null;
      if (current !== null) drop(current);
    },
  };
}
