/**
 * Time: `sleep`, on the loop's clock.
 *
 * @module
 */

import type { Clock, Deadline } from "./clock.ts";
import type { Coro } from "./coro.ts";
import { describe, resume, type Task, Wait } from "./loop.ts";

/**
 * Checks a time in milliseconds given to `what`: a number, not negative, not
 * `NaN` (`Infinity` means forever).
 */
export function checkMs(what: string, ms: unknown): asserts ms is number {
  if (typeof ms !== "number") {
    throw new TypeError(`${what}: the time is ${describe(ms)}; give a number of milliseconds.`);
  }
  if (Number.isNaN(ms) || ms < 0) {
    throw new RangeError(
      `${what}: the time is ${ms}; give a number of milliseconds ≥ 0 (Infinity waits forever).`,
    );
  }
}

/** A parked sleep: a deadline that resumes its task. */
class Sleep extends Wait implements Deadline {
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
  return sleeping(ms);
}

function* sleeping(ms: number): Coro<void> {
  yield new Sleep(ms);
}
