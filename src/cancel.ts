/**
 * Cancellation you control: `shield` keeps work out of a cancellation (and
 * lets a cancelled coroutine clean up asynchronously), `cancellable` stops
 * one coroutine when a signal aborts, `race` keeps the first result and
 * stops the rest. `cancellable` and `race` stop work the way `timeout` does
 * (`stopWork`, src/cancelling.ts): one mechanism for the three.
 *
 * @module
 */

import { type Coro, isCoro, WaitOn } from "./coro.ts";
import { badCancellableSignal, badRace, notACoroutine } from "./messages.ts";
import { Timeout } from "./time.ts";
import {
  errorIsWaiters,
  fail,
  type Observer,
  resume,
  shielding,
  start,
  stopWork,
  type Task,
  taskOf,
  unwatch,
  Wait,
  watch,
} from "./wait.ts";

/**
 * Waits for `coro` like `yield coro` (same result, same errors) and keeps it
 * out of every cancellation while it runs — a crash of the run, the run's
 * signal, a `timeout`, `cancellable` or `race` around the caller — together
 * with every coroutine it waits on, directly or through others, when the
 * cancellation comes. The caller gets its cancellation (a `CancelledError`,
 * or a `TimeoutError`) at this `yield` once `coro` has ended; an error `coro`
 * throws meanwhile is not lost: it is an error of the run.
 *
 * After its `CancelledError` a coroutine may `yield* shield(c)` in `catch` or
 * `finally` as often as it likes: each `c` runs to its end (sleeps, promises,
 * threads, child coroutines all work) and resumes it with `c`'s result. `run`,
 * `timeout`, `cancellable` and `race` wait for shielded work: bound it with
 * `yield* shield(timeout(close(), 1_000))`. Coroutines that shielded work
 * starts in the background during a crash are cancelled when the shield
 * ends. `yield shield(c)` works as well as `yield*` (which saves a
 * coroutine). A shield never waits for itself: a cycle through a shield is
 * still a cycle.
 *
 * @example A finally that waits for the connection to close
 * ```ts
 * import { CancelledError, type Coro, Loop, shield, sleep } from "@tinyio/core";
 *
 * const log: string[] = [];
 * function* close(): Coro<void> {
 *   yield sleep(5); // say goodbye to the server
 *   log.push("closed");
 * }
 * function* query(): Coro<void> {
 *   try {
 *     yield sleep(1_000);
 *   } finally {
 *     yield* shield(close()); // runs to its end, even after a CancelledError
 *   }
 * }
 * function* boom(): Coro<void> {
 *   yield sleep(1);
 *   throw new Error("boom");
 * }
 * const error = await new Loop().run(function* () {
 *   yield [query(), boom()];
 * }()).catch((e) => e);
 * console.assert(error.message === "boom" && log[0] === "closed");
 * console.assert(!(error instanceof CancelledError));
 * ```
 */
export function shield<T>(coro: Coro<T>): Coro<T> {
  if (!isCoro(coro)) throw notACoroutine("shield()", coro);
  return shielding(coro);
}

/**
 * Runs `coro` until it finishes (`[value, true]`) or `signal` aborts
 * (`[undefined, false]`): `timeout` with an `AbortSignal` for the deadline.
 * On abort, the coroutines `coro` started by waiting on them are cancelled
 * as a timeout cancels them (spared: those that a coroutine outside also
 * waits on, and background ones), then `coro` gets a `CancelledError` whose
 * `cause` is `signal.reason`; none of this fails the run, and `cancellable`
 * resumes once they have all stopped (their shielded cleanup included). A
 * signal that is already aborted: `coro` is not started. An abort after
 * `coro` finished does nothing. `coro` must not swallow its CancelledError.
 *
 * @example Stopping a background reporter
 * ```ts
 * import { cancellable, type Coro, Loop, sleep } from "@tinyio/core";
 *
 * let reports = 0;
 * function* reporter(): Coro<void> {
 *   for (;;) {
 *     yield sleep(10);
 *     reports++;
 *   }
 * }
 * const stop = new AbortController();
 * await new Loop({ clock: "virtual" }).run(function* () {
 *   yield new Set([cancellable(reporter(), stop.signal)]);
 *   yield sleep(35);
 *   stop.abort();
 * }());
 * console.assert(reports === 3);
 * ```
 */
export function cancellable<T>(
  coro: Coro<T>,
  signal: AbortSignal,
): Coro<[T, true] | [undefined, false]> {
  if (!isCoro(coro)) throw notACoroutine("cancellable()", coro);
  if (!(signal instanceof AbortSignal)) throw badCancellableSignal(signal);
  return new WaitOn({ value: new Timeout(coro, 0, signal), done: false });
}

/**
 * Starts every coroutine of `coros` (or joins those already running) and
 * resumes with the result of the first to return; the others are cancelled
 * as by `timeout` (with their work; spared: coroutines others also wait on),
 * and `race` resumes only once they have stopped. A coroutine that had
 * already finished wins at once (the first such in array order; the others
 * are then not started, running ones are left alone); one that had already
 * failed is thrown in, as in a gather. An error thrown by any of them before
 * a winner is an error of the run, as in a gather. `race([])` is a
 * `RangeError`; an element that is not a coroutine, a `TypeError`.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, race, sleep } from "@tinyio/core";
 *
 * function* answer(ms: number, value: string): Coro<string> {
 *   yield sleep(ms);
 *   return value;
 * }
 * function* fastest(): Coro<string | number> {
 *   return yield* race([answer(30, "slow"), answer(10, "fast")]);
 * }
 * const loop = new Loop({ clock: "virtual" });
 * console.assert(await loop.run(fastest()) === "fast");
 * console.assert(loop.now() === 10);
 * ```
 */
export function race<const C extends readonly Coro<unknown>[]>(
  coros: C,
): Coro<C[number] extends Coro<infer R> ? R : never> {
  if (!Array.isArray(coros) || coros.length === 0 || !coros.every(isCoro)) throw badRace(coros);
  return new WaitOn({ value: new Race([...coros]), done: false });
}

/** A parked `race`: it watches every coroutine; the first to end decides. */
class Race extends Wait {
  #task: Task | null = null;
  #children: Task[] = [];
  #decided = false;
  // (`owner`: see Timeout's observer.)
  #observer: Observer = Object.assign((child: Task) => this.#ended(child), {
    owner: null as Task | null,
  });

  constructor(readonly coros: Coro[]) {
    super();
  }

  park(task: Task): void {
    this.#task = task;
    // One that has ended already decides at once, the first in array order.
    for (const coro of this.coros) {
      const seen = taskOf(coro);
      if (seen === undefined || !seen.ended) continue;
      start(task, coro); // a coroutine of another loop is a TypeError
      this.#decided = true;
      if (seen.succeeded) resume(task, this, seen.value);
      else fail(task, this, seen.value);
      return;
    }
    for (const coro of this.coros) {
      const child = start(task, coro, true);
      if (!this.#children.includes(child)) this.#children.push(child);
    }
    this.#observer.owner = task;
    for (const child of this.#children) watch(child, this.#observer);
  }

  unpark(): void {
    this.#unwatch();
  }

  override children(): readonly Task[] {
    return this.#children.filter((c) => !c.ended);
  }

  #unwatch(): void {
    for (const child of this.#children) unwatch(child, this.#observer);
  }

  /**
   * The first to end: its result wins, once the others have stopped. An
   * error meant for the caller (a library coroutine's) is thrown in, once
   * the others have stopped; any other error is an error of the run.
   */
  #ended(child: Task): boolean {
    if (this.#decided) return false;
    this.#decided = true;
    const task = this.#task!;
    this.#unwatch();
    if (!child.succeeded && !errorIsWaiters(child)) {
      fail(task, this, child.value); // the run crashes, and cancels the others
      return false;
    }
    const settle = () => {
      if (child.succeeded) resume(task, this, child.value);
      else fail(task, this, child.value);
    };
    const losers = this.#children.filter((c) => c !== child && !c.ended);
    if (losers.length === 0) {
      settle();
    } else {
      stopWork(losers, {
        by: "race",
        cause: undefined,
        owner: task,
        spareRoots: true,
        done: settle,
      });
    }
    return !child.succeeded;
  }
}
