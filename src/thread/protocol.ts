/**
 * The message protocol between the loop and a pool's workers, defined once.
 *
 * Both sides read their numbers from one {@linkcode Protocol} object: the loop
 * side (thread.ts, pool.ts) from the object a pool was made with, the worker
 * side from a copy of it that `workerSource` writes into the worker's source
 * text. So the two cannot drift apart: renumber anything here and both sides
 * follow (tests/thread_portable_test.ts runs calls through a shuffled copy).
 *
 * Messages are arrays; their first element says what they are.
 *
 * To a worker:
 * - `[SETUP, slot buffer]`: first, once: the worker's shared slots (below).
 * - `[CALLS, ...triples]`: a call `(id, function ref, args)`, or the
 *   definition of a function ref `(DEFINE, ref, spec)` with spec
 *   `[SOURCE, text]` or `[MODULE, url, exportName]`. A function is defined once
 *   per worker and kept there (the latest `refs`), so that a call carries a
 *   small number instead of the function's text. The calls a worker is given
 *   during one turn of the loop travel in one message.
 * - `[STOP, id]`: call `id` was cancelled while it runs; answer STOPPED if it
 *   is awaiting (nothing of it runs now).
 *
 * From a worker:
 * - `[ANSWERS, ...pairs]`: one `(answer kind, payload)` per call, in the order
 *   the calls were sent: `(DONE, value)`, `(FAILED, Failure)`, `(SKIPPED, 0)`.
 * - `[STOPPED]`, `[STRAY, ErrorRecord]` (an error the last call left behind
 *   after it returned), `[CLOSING]` (the task closed its worker).
 *
 * Slots: each call sent has two Int32s in the worker's shared buffer, at
 * `(id % slot count) * 2`: its state, and whether the call saw `cancelled()`
 * true. The state goes QUEUED → STARTED → ENDED on the worker; the loop changes
 * QUEUED → SKIP (withdrawn: the worker will skip it) and STARTED → CANCEL (what
 * `cancelled()` reads), each with `Atomics.compareExchange`, so either the
 * worker starts a call or the loop withdraws it, never both.
 *
 * @module
 */

/**
 * The numbers of the protocol. Within a group they must differ; across groups
 * they may repeat (a message's place says which group it is read in).
 */
export const PROTOCOL = {
  /** The first element of a message to a worker. */
  toWorker: { SETUP: 0, CALLS: 1, STOP: 2 },
  /** The first element of a message from a worker. */
  fromWorker: { ANSWERS: 0, STOPPED: 1, STRAY: 2, CLOSING: 3 },
  /** The first element of a function's spec: how the worker makes it. */
  spec: { SOURCE: 1, MODULE: 2 },
  /** The kind of an answer to one call. */
  answer: { DONE: 0, FAILED: 1, SKIPPED: 2 },
  /** The state of a call's slot. */
  slot: { QUEUED: 1, STARTED: 2, CANCEL: 3, SKIP: 4, ENDED: 5 },
  /** In CALLS, the id in front of a definition: no call has it (call ids count from 1). */
  DEFINE: 0,
  /** Function refs a worker keeps; the loop starts afresh when it has defined this many. */
  refs: 256,
  /**
   * `Symbol.for` this: where `cancelled()` finds the worker's check, shared by
   * every copy of the library loaded in a worker.
   */
  cancelledKey: "tinyio.thread.cancelled",
};

/** A protocol's numbers: {@linkcode PROTOCOL}, or a renumbered copy of it. */
export type Protocol = typeof PROTOCOL;

/** A function's spec: `[SOURCE, text]` or `[MODULE, url, exportName]`. */
export type Spec = [kind: number, textOrUrl: string, exportName?: string];

/**
 * An error as it crosses to the loop: a structured clone of an `Error` loses
 * its class and its own properties, so the worker sends its parts.
 */
export interface ErrorRecord {
  name?: string;
  message?: string;
  stack?: string;
  cause?: ErrorRecord;
  props?: Record<string, unknown>;
  /** A thrown value that is not an Error, as it is. */
  thrown?: unknown;
}

/** A FAILED answer's payload: the error, and whether its call saw cancelled() true. */
export type Failure = [error: ErrorRecord, sawCancelled: boolean];
