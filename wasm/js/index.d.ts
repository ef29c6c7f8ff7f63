/** One Redis node: sends one command (an array of strings) and resolves with the reply, or
 * rejects. A rejection, a synchronous throw, a hang or an odd reply counts as a failed vote. */
export type Executor = (command: string[]) => unknown;

/** Settings of a `Redlock`. Durations are in milliseconds. */
export interface RedlockOptions {
  /** Share of the TTL set aside for clock drift. Default 0.01. */
  driftFactor?: number;
  /** A lock with less validity left than this counts as not acquired. Default 5. */
  minValidity?: number;
  /** How long to wait for one node's reply. Default: ttl / 20, between 5 and 200. */
  requestTimeout?: number;
  /** Attempts after the first. Default 10. */
  retryCount?: number;
  /** Pause between attempts. Default 200. */
  retryDelay?: number;
  /** Random spread added to or taken from the pause. Default 100. */
  retryJitter?: number;
  /** No attempt starts later than this after the acquire began. Default: none. */
  retryDeadline?: number;
  /** Most extensions one lock may get. Default: no limit. */
  maxExtensions?: number;
  /** Longest total hold time through extensions. Default: no limit. */
  maxHold?: number;
  /**
   * One per executor, in the same order (null for a node without one): through them, an
   * acquire waiting for a key hears of its release by another process and retries at once
   * rather than after its delay. Default: none; waiters then retry on their own.
   */
  subscribers?: (Subscriber | null)[];
}

/**
 * Pub/Sub on one Redis node, for the `subscribers` option. Both methods may return a promise;
 * a throw or a rejection only costs the wake-ups.
 */
export interface Subscriber {
  /** Starts calling `onMessage` with each message published on `channel`. */
  subscribe(channel: string, onMessage: (message: string | Uint8Array) => void): unknown;
  /** Stops the messages of `channel`. */
  unsubscribe(channel: string): unknown;
  /**
   * What the node's executor puts before every key (ioredis's `keyPrefix`): the release script
   * publishes on the key as stored, so the channel names include it. Default: none.
   */
  readonly keyPrefix?: string;
}

/** A subscriber on a connection of its own, which `close()` ends. */
export interface ClosableSubscriber extends Subscriber {
  close(): unknown;
}

/** Per-call options of `acquire` and `using`. */
export interface AcquireOptions {
  retryCount?: number;
  retryDelay?: number;
  retryJitter?: number;
  retryDeadline?: number;
  /** Cancels a waiting acquire; the keys are then released on every node. */
  signal?: AbortSignal;
}

/** What one node did in the round that decided an operation. */
export interface NodeReport {
  node: number;
  status: 'granted' | 'refused' | 'failed' | 'timed-out' | 'no-answer';
  error: { kind: 'io' | 'auth' | 'server' | 'protocol'; message: string } | null;
  /** Milliseconds from send to reply (or to giving up); null when unknown. */
  latency: number | null;
}

export interface Released {
  /** Every node answered (deleted our keys or had nothing of ours). */
  clean: boolean;
  report: NodeReport[] | null;
}

export class Lock {
  private constructor();
  /** The locked keys. */
  readonly resources: readonly string[];
  /** The random token stored under every key. */
  readonly value: string;
  /** Wall-clock time (ms since the epoch) after which the lock must not be relied on. */
  readonly expiresAt: number;
  /** Validity (ms) granted by the last acquire or extend round. */
  readonly validity: number;
  /** How many times the lock was extended. */
  readonly extensions: number;
  /** Per-node outcome of the last acquire or extend round. */
  readonly report: NodeReport[];
  /** Validity left now, in milliseconds (monotonic clock). */
  remaining(): number;
  isValid(): boolean;
  /** Sets the TTL to `ttl` ms from now if a quorum still holds the keys for us. */
  extend(ttl: number): Promise<this>;
  /** Deletes the keys where they still hold our token. Never rejects; idempotent. */
  release(): Promise<Released>;
  [Symbol.asyncDispose](): Promise<void>;
}

export class Redlock {
  constructor(executors: Executor[], options?: RedlockOptions);
  acquire(resources: string | string[], ttl: number, options?: AcquireOptions): Promise<Lock>;
  using<T>(
    resources: string | string[],
    ttl: number,
    routine: (signal: AbortSignal, lock: Lock) => Promise<T> | T,
  ): Promise<T>;
  using<T>(
    resources: string | string[],
    ttl: number,
    options: AcquireOptions,
    routine: (signal: AbortSignal, lock: Lock) => Promise<T> | T,
  ): Promise<T>;
  /**
   * Resolves once the deletions a settled release left running on slower nodes are done:
   * answered, resent as `EVAL` after `NOSCRIPT`, or timed out. Call it before closing the
   * executors' connections or exiting, or in a test before looking at the keys. Never
   * rejects.
   */
  flush(): Promise<void>;
}

export type ErrorCode =
  | 'LOCK_CONTENDED'
  | 'NO_QUORUM'
  | 'VALIDITY_TOO_SHORT'
  | 'LOCK_LOST'
  | 'LOCK_EXPIRED'
  | 'EXTENSION_LIMIT'
  | 'LOCK_RELEASED'
  | 'ABORTED'
  | 'FAILED';

export class RedlockError extends Error {
  readonly code: ErrorCode;
  /** Per-node outcome of the round that failed, when one ran. */
  readonly report: NodeReport[] | null;
}
export class LockContendedError extends RedlockError {
  /**
   * Milliseconds until the holder's keys expire on enough nodes for a quorum to be free, as the
   * nodes reported it (the holder may release or extend before then); `null` when too few nodes
   * answered.
   */
  readonly retryAfter: number | null;
}
export class QuorumError extends RedlockError {}
export class LockLostError extends RedlockError {}
export class ExtensionLimitError extends RedlockError {}
export class LockReleasedError extends RedlockError {}
export class AbortError extends RedlockError {}

export function nodeRedisExecutor(client: { sendCommand(args: string[]): Promise<unknown> }): Executor;
export function ioredisExecutor(client: { call(command: string, ...args: string[]): Promise<unknown> }): Executor;
/** A subscriber on `client.duplicate()`, connected at its first subscription. */
export function nodeRedisSubscriber(client: { duplicate(): unknown }): ClosableSubscriber;
/** A subscriber on `client.duplicate()`, opened at its first subscription. */
export function ioredisSubscriber(client: { duplicate(): unknown }): ClosableSubscriber;
export function upstashExecutor(redis: { exec(args: string[]): Promise<unknown> }): Executor;

/** A byte stream to one Redis node: a Cloudflare `Socket`, a `Deno.Conn`, or web streams. */
export interface ByteStream {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  close?(): unknown;
}
export interface RespExecutorOptions {
  connect: () => ByteStream | Promise<ByteStream>;
  username?: string;
  password?: string;
  db?: number;
  /** A node silent this long (ms) has its connection closed. Default 5000. */
  timeout?: number;
  /** Commands allowed in flight on one connection. Default 1000. */
  maxPending?: number;
}
export function respExecutor(options: RespExecutorOptions): Executor & { close(): void };
export interface RespSubscriberOptions {
  connect: () => ByteStream | Promise<ByteStream>;
  username?: string;
  password?: string;
}
/** A subscriber on a byte stream of its own, opened at its first subscription. */
export function respSubscriber(options: RespSubscriberOptions): ClosableSubscriber;
