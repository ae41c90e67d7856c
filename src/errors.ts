/**
 * The errors that the loop throws into coroutines.
 *
 * @module
 */

/**
 * Thrown into every unfinished coroutine of a run when another coroutine fails
 * (or the run's `signal` aborts), so that its `finally` blocks and `using`
 * declarations run. `cause` is the error that started the cancellation.
 *
 * A coroutine that catches errors must re-throw this one; to wait while it
 * cleans up, it may `yield* shield(...)` first. A `timeout`, `cancellable` or
 * `race` throws one into the work it stops; yielding such a coroutine later
 * throws one that says it has no result.
 *
 * @example Cleaning up on cancellation
 * ```ts
 * import { CancelledError, Loop, sleep } from "@tinyio/core";
 *
 * function* worker(log: string[]) {
 *   try {
 *     yield sleep(1_000);
 *   } catch (e) {
 *     if (e instanceof CancelledError) log.push("cancelled");
 *     throw e;
 *   }
 * }
 * function* boom() {
 *   yield;
 *   throw new Error("boom");
 * }
 * const log: string[] = [];
 * await new Loop().run(function* () {
 *   yield [worker(log), boom()];
 * }()).catch(() => {});
 * console.assert(log[0] === "cancelled");
 * ```
 */
export class CancelledError extends Error {
  /** Makes a cancellation; `options.cause` is the error that caused it. */
  constructor(message = "cancelled", options?: ErrorOptions) {
    super(message, options);
    this.name = "CancelledError";
  }
}

/**
 * Thrown into a coroutine run by `timeout` when its time is up.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "@tinyio/core";
 *
 * const e = new TimeoutError("too slow");
 * console.assert(e.name === "TimeoutError");
 * ```
 */
export class TimeoutError extends Error {
  /** Makes a timeout error. */
  constructor(message = "timed out", options?: ErrorOptions) {
    super(message, options);
    this.name = "TimeoutError";
  }
}

/**
 * Thrown into a coroutine that sends on a closed {@linkcode Channel}: by
 * `send()` after `close()`, and by a `send()` that was waiting when the
 * channel was closed. Its value was not sent. A producer whose consumers
 * close the channel to say "enough" catches it to stop.
 *
 * @example
 * ```ts
 * import { Channel, ChannelClosedError, Loop } from "@tinyio/core";
 *
 * const ch = new Channel<number>(1);
 * ch.close();
 * const error = await new Loop().run(ch.send(1)).catch((e) => e);
 * console.assert(error instanceof ChannelClosedError);
 * ```
 */
export class ChannelClosedError extends Error {
  /** Makes the error; the message says which value was not sent. */
  constructor(message = "the channel is closed", options?: ErrorOptions) {
    super(message, options);
    this.name = "ChannelClosedError";
  }
}
