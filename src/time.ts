/**
 * Time: `sleep` and `timeout`, on the loop's clock.
 *
 * @module
 */

import { type Coro, isCoro, WaitOn } from "./coro.ts";
import { TimeoutError } from "./errors.ts";
import { checkMs, describe } from "./messages.ts";
import {
  DeadlineWait,
  fail,
  interrupt,
  type Observer,
  resume,
  start,
  stopWork,
  type Task,
  unwatch,
  watch,
} from "./wait.ts";

/** A parked sleep: a deadline that resumes its task. */
class Sleep extends DeadlineWait {
  // Keeps Sleep's hidden class, and the code compiled against it, alive
  // between runs (docs/design.md, "Hidden classes").
  static #keepShape: Sleep = new Sleep(0);

  park(task: Task): void {
    this.setDeadline(task);
  }
  unpark(): void {
    this.clearDeadline();
  }
  fire(): void {
    resume(this.task!, this, undefined);
  }
}

/**
 * Pauses the coroutine for `ms` milliseconds of its loop's clock; `Infinity`
 * sleeps until cancelled. A negative or `NaN` time is a `RangeError`, thrown
 * at the call. All sleeps of a loop share one host timer.
 *
 * @example
 * ```ts
 * import { Loop, sleep } from "@tinyio/core";
 *
 * function* main() {
 *   yield sleep(5); // or: yield* sleep(5)
 *   return "rested";
 * }
 * console.assert(await new Loop().run(main()) === "rested");
 * ```
 */
export function sleep(ms: number): Coro<void> {
  checkMs("sleep()", ms);
  return new WaitOn<void>({ value: new Sleep(ms), done: false });
}

/**
 * Runs `coro` for at most `ms` milliseconds of its loop's clock. Finished in
 * time: `[value, true]`. Otherwise its work stops: the coroutines that `coro`
 * started by waiting on them (`yield c`, `yield [..]`), and recursively those
 * that they started so, are cancelled — except those that a coroutine outside
 * that set also waits on, which go on with their own work — then a
 * {@linkcode TimeoutError} is thrown into `coro` at its current `yield`, and
 * `timeout` resumes with `[undefined, false]`. A `TimeoutError` that escapes
 * `coro` is swallowed; if `coro` catches it and goes on, it goes on in the
 * background. An error that `coro` throws before the deadline is an error of
 * the run. `ms` negative or `NaN` is a `RangeError`, thrown at the call.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, sleep, timeout } from "@tinyio/core";
 *
 * function* slow(): Coro<string> {
 *   yield sleep(1_000);
 *   return "done";
 * }
 * function* main(): Coro<string> {
 *   const [value, inTime] = yield* timeout(slow(), 10);
 *   return inTime ? value : "gave up";
 * }
 * console.assert(await new Loop().run(main()) === "gave up");
 * ```
 */
export function timeout<T>(coro: Coro<T>, ms: number): Coro<[T, true] | [undefined, false]> {
  if (!isCoro(coro)) {
    throw new TypeError(
      `timeout(): the first argument is ${describe(coro)}; give a coroutine (a generator ` +
        "object, such as `f()` for `function* f`).",
    );
  }
  checkMs("timeout()", ms);
  return timingOut(coro, ms);
}

function* timingOut<T>(coro: Coro<T>, ms: number): Coro<[T, true] | [undefined, false]> {
  return yield new Timeout(coro, ms);
}

/**
 * A parked `timeout`: it starts `coro` as if its task had yielded it, watches
 * it end, and holds the deadline.
 */
class Timeout<T> extends DeadlineWait {
  /** The task of `coro`, once parked. */
  child: Task | null = null;
  #fired = false;
  // It carries the task that waits through it (`owner`): `stopWork` must know
  // who waits on a coroutine, and an observer is not a task. (A property, not
  // a WeakMap: ten thousand WeakMap entries cost more in garbage collection
  // than the rest of the timeouts.)
  #observer: Observer = Object.assign((child: Task) => this.#ended(child), {
    owner: null as Task | null,
  });

  constructor(readonly coro: Coro<T>, ms: number) {
    super(ms);
  }

  park(task: Task): void {
    const child = start(task, this.coro, true);
    this.child = child;
    if (child.ended) {
      if (child.succeeded) resume(task, this, [child.value, true]);
      else fail(task, this, child.value);
      return;
    }
    this.setDeadline(task);
    this.#observer.owner = task;
    watch(child, this.#observer);
  }

  unpark(): void {
    this.clearDeadline();
    unwatch(this.child!, this.#observer);
  }

  /** Its task waits on `coro` through it: a `stopWork` of that task stops `coro`'s work too. */
  override children(): readonly Task[] {
    return this.child === null ? [] : [this.child];
  }

  /** `coro` ended: before the deadline, that is the result; after it, swallow its TimeoutError. */
  #ended(child: Task): boolean {
    if (this.#fired) return !child.succeeded && child.value instanceof TimeoutError;
    this.clearDeadline();
    if (child.succeeded) resume(this.task!, this, [child.value, true]);
    else fail(this.task!, this, child.value); // the run crashes, unless someone took it over
    return false;
  }

  fire(): void {
    this.#fired = true;
    // From now on `coro` goes on, if it does, in the background: its task no
    // longer waits on it.
    this.#observer.owner = null;
    const child = this.child!;
    const error = new TimeoutError(
      `timeout(): the coroutine did not finish within ${this.ms} ms, so it was stopped.`,
    );
    stopWork(
      child,
      "cancelled because a timeout() around the coroutine that started it ran out",
      error,
    );
    interrupt(child, error);
    resume(this.task!, this, [undefined, false]);
  }
}
