/**
 * Time: `sleep` and `timeout`, on the loop's clock.
 *
 * @module
 */

import type { Clock, Deadline } from "./clock.ts";
import { type Coro, isCoro, WaitOn } from "./coro.ts";
import { TimeoutError } from "./errors.ts";
import { checkMs, describe } from "./messages.ts";
import {
  fail,
  interrupt,
  type Observer,
  resume,
  start,
  stopWork,
  type Task,
  timeLeft,
  unwatch,
  Wait,
  watch,
} from "./wait.ts";

/** A parked sleep: a deadline that resumes its task. */
class Sleep extends Wait implements Deadline {
  // Keeps Sleep's hidden class, and the code compiled against it, alive
  // between runs (see `Core.#keepShapes`).
  static #keepShape: Sleep = new Sleep(0);

  at = 0;
  seq = 0;
  index = -1;
  #task: Task | null = null;
  #clock: Clock | null = null;

  constructor(readonly ms: number) {
    super();
  }
  park(task: Task): void {
    this.#task = task;
    this.#clock = task.clock;
    this.#clock.add(this, this.ms);
  }
  unpark(): void {
    this.#clock!.remove(this);
  }
  fire(): void {
    resume(this.#task!, this, undefined);
  }
  override waitingFor(task: Task): string {
    return `sleep (${timeLeft(task, this.at)})`;
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
class Timeout<T> extends Wait implements Deadline {
  at = 0;
  seq = 0;
  index = -1;
  #task: Task | null = null;
  /** The task of `coro`, once parked. */
  child: Task | null = null;
  #clock: Clock | null = null;
  #fired = false;
  // It carries the task that waits through it (`owner`): `stopWork` must know
  // who waits on a coroutine, and an observer is not a task. (A property, not
  // a WeakMap: ten thousand WeakMap entries cost more in garbage collection
  // than the rest of the timeouts.)
  #observer: Observer = Object.assign((child: Task) => this.#ended(child), {
    owner: null as Task | null,
  });

  constructor(readonly coro: Coro<T>, readonly ms: number) {
    super();
  }

  park(task: Task): void {
    this.#task = task;
    this.#clock = task.clock;
    const child = start(task, this.coro, true);
    this.child = child;
    if (child.ended) {
      if (child.succeeded) resume(task, this, [child.value, true]);
      else fail(task, this, child.value);
      return;
    }
    this.#clock.add(this, this.ms);
    this.#observer.owner = task;
    watch(child, this.#observer);
  }

  unpark(): void {
    this.#clock!.remove(this);
    unwatch(this.child!, this.#observer);
  }

  /** Its task waits on `coro` through it: a `stopWork` of that task stops `coro`'s work too. */
  override children(): readonly Task[] {
    return this.child === null ? [] : [this.child];
  }

  override waitingFor(task: Task, idOf: (task: Task) => number | undefined): string {
    return `coroutine ${idOf(this.child!)} (timeout: ${timeLeft(task, this.at)})`;
  }

  /** `coro` ended: before the deadline, that is the result; after it, swallow its TimeoutError. */
  #ended(child: Task): boolean {
    if (this.#fired) return !child.succeeded && child.value instanceof TimeoutError;
    this.#clock!.remove(this);
    if (child.succeeded) resume(this.#task!, this, [child.value, true]);
    else fail(this.#task!, this, child.value); // the run crashes, unless someone took it over
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
    resume(this.#task!, this, [undefined, false]);
  }
}
