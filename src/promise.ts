/**
 * Promises: waiting on a promise from a coroutine (`fromPromise`), and running
 * a coroutine from promise-based code (`toPromise`). The two nest either way,
 * to any depth: a cancelled coroutine aborts the signal of the promise it
 * waits on, and an aborted signal cancels the coroutines of a run.
 *
 * @module
 */

import { CancelledError } from "./errors.ts";
import type { Coro } from "./coro.ts";
import { describe } from "./messages.ts";
import { Loop, type RunOptions } from "./loop.ts";
import { crashCause, fail, hold, primitive, release, resume, type Task, Wait } from "./wait.ts";

/** A promise, or a function that starts one given an `AbortSignal`. */
type PromiseInput<T> = PromiseLike<T> | ((signal: AbortSignal) => PromiseLike<T>);

/**
 * A coroutine parked on a promise. The run is held while the promise is
 * pending, so that it does not end, nor its virtual clock jump, under it. A
 * promise made by a factory belongs to the coroutine: cancelling it aborts the
 * factory's signal and the hold stays until the promise has settled. A
 * promise given as it is belongs to someone else: cancelling lets go of it at
 * once.
 */
class PromiseWait<T> extends Wait {
  #held = false;
  #controller: AbortController | null = null;

  constructor(readonly input: PromiseInput<T>) {
    super();
  }

  park(task: Task): void {
    let promise: PromiseLike<T>;
    if (typeof this.input === "function") {
      this.#controller = new AbortController();
      // A factory that throws throws into the coroutine (the loop does that
      // with what `park` throws), before anything is held.
      promise = this.input(this.#controller.signal);
    } else {
      promise = this.input;
    }
    hold(task);
    this.#held = true;
    Promise.resolve(promise).then(
      (value) => {
        resume(task, this, value);
        this.#release(task);
      },
      (error) => {
        fail(task, this, error);
        this.#release(task);
      },
    );
  }

  unpark(task: Task): boolean {
    const controller = this.#controller;
    if (controller === null) {
      this.#release(task);
      return false;
    }
    controller.abort(
      new CancelledError("fromPromise(): the coroutine waiting on this promise was cancelled", {
        cause: crashCause(task),
      }),
    );
    // Held until the factory's promise has settled.
    return this.#held;
  }

  #release(task: Task): void {
    if (!this.#held) return;
    this.#held = false;
    release(task);
  }

  override waitingFor(): string {
    return "promise";
  }
}

/**
 * Waits, in a coroutine, for a promise: resumes with its value, or throws its
 * rejection in at the `yield`.
 *
 * Given a function instead, calls it with an `AbortSignal` when the coroutine
 * first runs, and waits for the promise it returns. If the coroutine is
 * cancelled (its run failed, its signal aborted, a `timeout` ran out) the
 * signal is aborted, and the run settles only after that promise has settled;
 * what it settles with is not reported. Pass the signal on (`fetch(url, {
 * signal })`, `toPromise(coro, { signal })`) so that the work really stops.
 *
 * While the promise is pending, a loop on the virtual clock does not jump.
 * A promise given as it is cannot be stopped: a cancelled coroutine just stops
 * waiting for it (and a rejection that comes later is ignored).
 *
 * @example
 * ```ts
 * import { type Coro, fromPromise, Loop } from "@tinyio/core";
 *
 * // A promise that stops when its signal aborts, as fetch() does.
 * function delay(ms: number, signal: AbortSignal): Promise<number> {
 *   return new Promise((resolve, reject) => {
 *     const id = setTimeout(() => resolve(ms), ms);
 *     signal.addEventListener("abort", () => {
 *       clearTimeout(id);
 *       reject(signal.reason);
 *     });
 *   });
 * }
 * function* main(): Coro<number> {
 *   const a: number = yield fromPromise(Promise.resolve(20));
 *   const b = yield* fromPromise((signal) => delay(22, signal));
 *   return a + b;
 * }
 * console.assert(await new Loop().run(main()) === 42);
 * ```
 */
export function fromPromise<T>(
  input: PromiseLike<T> | ((signal: AbortSignal) => PromiseLike<T>),
): Coro<T> {
  if (typeof input === "function") return waitFor(new PromiseWait(input));
  if (!isThenable(input)) {
    throw new TypeError(
      `fromPromise() takes a promise, or a function that takes an AbortSignal and returns a ` +
        `promise; got ${describe(input)}.`,
    );
  }
  // The coroutine may be cancelled before it ever waits on the promise; its
  // rejection must not then become an unhandled rejection that ends the process.
  Promise.resolve(input).catch(() => {});
  return waitFor(new PromiseWait(input));
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return (typeof x === "object" || typeof x === "function") && x !== null &&
    typeof (x as { then?: unknown }).then === "function";
}

function* waitFor<T>(wait: PromiseWait<T>): Coro<T> {
  return yield wait;
}
primitive(waitFor);

/**
 * Runs a coroutine on a fresh {@linkcode Loop} (real clock) and returns a
 * promise of its result: `new Loop().run(coro, options)`. With
 * `options.signal`, aborting the signal cancels every coroutine of the run and
 * the promise rejects with `signal.reason`; an already aborted signal rejects
 * at once without starting anything.
 *
 * @example
 * ```ts
 * import { type Coro, sleep, toPromise } from "@tinyio/core";
 *
 * function* addOne(x: number): Coro<number> {
 *   yield sleep(1);
 *   return x + 1;
 * }
 * async function main(): Promise<number> {
 *   return await toPromise(addOne(41));
 * }
 * console.assert(await main() === 42);
 * ```
 */
export function toPromise<T>(coro: Coro<T>, options?: RunOptions): Promise<T> {
  return new Loop().run(coro, options);
}
