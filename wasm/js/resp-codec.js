// RESP2, the Redis wire protocol: encoding commands and parsing replies incrementally.

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CR = 13;
const LF = 10;

/** Longest bulk string accepted in a reply; lock commands get small replies, so anything
 * larger means the stream is not what we think it is. */
const MAX_BULK = 64 * 1024 * 1024;
const MAX_ARRAY = 1024 * 1024;

/** An error reply from the server (`-NOSCRIPT No matching script`). */
export class ReplyError extends Error {}
Object.defineProperty(ReplyError.prototype, 'name', { value: 'ReplyError' });

/** The byte stream is not RESP. */
export class ProtocolError extends Error {}
Object.defineProperty(ProtocolError.prototype, 'name', { value: 'ProtocolError' });

/** A command as a RESP array of bulk strings. */
export function encodeCommand(args) {
  const chunks = [encoder.encode(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = encoder.encode(String(arg));
    chunks.push(encoder.encode(`$${bytes.length}\r\n`), bytes, encoder.encode('\r\n'));
  }
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

const INCOMPLETE = Symbol('incomplete');

/**
 * Feeds bytes in, takes complete replies out. `push` returns every reply the bytes completed,
 * in order (an error reply is a `ReplyError` value); it throws a `ProtocolError` on bytes that
 * are not RESP.
 */
export class ReplyParser {
  #buffer = new Uint8Array(0);
  #at = 0;

  push(chunk) {
    const rest = this.#buffer.subarray(this.#at);
    const joined = new Uint8Array(rest.length + chunk.length);
    joined.set(rest);
    joined.set(chunk, rest.length);
    this.#buffer = joined;
    this.#at = 0;
    const replies = [];
    for (;;) {
      const start = this.#at;
      const reply = this.#parse();
      if (reply === INCOMPLETE) {
        this.#at = start;
        return replies;
      }
      replies.push(reply);
    }
  }

  #line() {
    const buffer = this.#buffer;
    for (let i = this.#at; i + 1 < buffer.length; i++) {
      if (buffer[i] === CR && buffer[i + 1] === LF) {
        const line = decoder.decode(buffer.subarray(this.#at, i));
        this.#at = i + 2;
        return line;
      }
    }
    return INCOMPLETE;
  }

  #length(text, max) {
    if (!/^-?\d{1,10}$/.test(text)) throw new ProtocolError(`bad length ${JSON.stringify(text.slice(0, 20))}`);
    const n = Number(text);
    if (n < -1 || n > max) throw new ProtocolError(`length ${n} out of range`);
    return n;
  }

  #parse() {
    if (this.#at >= this.#buffer.length) return INCOMPLETE;
    const type = this.#buffer[this.#at];
    this.#at += 1;
    const line = this.#line();
    if (line === INCOMPLETE) return INCOMPLETE;
    switch (type) {
      case 0x2b: // '+'
        return line;
      case 0x2d: // '-'
        return new ReplyError(line);
      case 0x3a: // ':'
        if (!/^-?\d{1,19}$/.test(line)) throw new ProtocolError(`bad integer ${JSON.stringify(line.slice(0, 20))}`);
        return Number(line);
      case 0x24: {
        // '$'
        const n = this.#length(line, MAX_BULK);
        if (n === -1) return null;
        if (this.#buffer.length < this.#at + n + 2) return INCOMPLETE;
        const end = this.#at + n;
        if (this.#buffer[end] !== CR || this.#buffer[end + 1] !== LF) throw new ProtocolError('bulk string not terminated');
        const text = decoder.decode(this.#buffer.subarray(this.#at, end));
        this.#at = end + 2;
        return text;
      }
      case 0x2a: {
        // '*'
        const n = this.#length(line, MAX_ARRAY);
        if (n === -1) return null;
        const items = [];
        for (let i = 0; i < n; i++) {
          const item = this.#parse();
          if (item === INCOMPLETE) return INCOMPLETE;
          items.push(item);
        }
        return items;
      }
      default:
        throw new ProtocolError(`unexpected reply type byte ${type}`);
    }
  }
}
