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
  type Observer,
  resume,
  start,
  stopWork,
  type Task,
  timeLeft,
  unwatch,
  wakeLoop,
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
 * that set also waits on, which go on with their own work — and once they
 * have stopped (their cleanup through `shield`, their promises and workers
 * included) a {@linkcode TimeoutError} is thrown into `coro` at its current
 * `yield`; `timeout` resumes with `[undefined, false]` once `coro` has ended.
 * A `TimeoutError` that escapes `coro` is swallowed; if `coro` catches it and
 * goes on, it goes on in the background (and `timeout` resumes then). Shielded
 * work is waited for, so a `timeout` around it is no upper bound. An error
 * that `coro` throws before the deadline is an error of the run. `ms` negative
 * or `NaN` is a `RangeError`, thrown at the call.
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
  return yield new Timeout(coro, ms, null);
}

/**
 * A parked `timeout` — or `cancellable`, which is a timeout whose deadline is
 * its signal's abort: it starts `coro` as if its task had yielded it,
 * watches it end, and holds the deadline (for a signal, from the abort on,
 * due at once: so the work is stopped by the loop, between steps, whoever
 * aborts). When the deadline comes, `coro`'s work is stopped (`stopWork`),
 * then `coro` itself gets the TimeoutError (or, for a signal, a
 * CancelledError whose cause is its reason), and the task resumes with
 * `[undefined, false]` once all of that has stopped.
 */
export class Timeout<T> extends DeadlineWait {
  // Keeps Timeout's hidden class, and the code compiled against it, alive
  // between runs (docs/design.md, "Hidden classes"): a cancellable costs half
  // again as much without it, in runs that start after a garbage collection.
  static #keepShape: Timeout<void> = new Timeout((function* () {})(), 0, null);

  /** The task of `coro`, once parked. */
  child: Task | null = null;
  #fired = false;
  /** The cancellables waiting on its signal, once it listens (see `waitingOn`). */
  #waiting: Set<Timeout<unknown>> | null = null;
  // It carries the task that waits through it (`owner`): `stopWork` must know
  // who waits on a coroutine, and an observer is not a task. (A property, not
  // a WeakMap: ten thousand WeakMap entries cost more in garbage collection
  // than the rest of the timeouts.)
  #observer: Observer = Object.assign((child: Task) => this.#ended(child), {
    owner: null as Task | null,
  });

  /**
   * Runs `coro` for `ms` of the loop's clock or, with a `signal`, until it
   * aborts (then `ms` is 0: the deadline is due when it aborts).
   */
  constructor(readonly coro: Coro<T>, ms: number, readonly signal: AbortSignal | null) {
    super(ms);
  }

  park(task: Task): void {
    this.task = task;
    // Aborted already: `coro` is not started.
    if (this.signal?.aborted) return resume(task, this, [undefined, false]);
    const child = start(task, this.coro, true);
    this.child = child;
    if (child.ended) {
      if (child.succeeded) resume(task, this, [child.value, true]);
      else fail(task, this, child.value);
      return;
    }
    if (this.signal === null) this.setDeadline(task);
    else (this.#waiting = waitingOn(this.signal)).add(this);
    this.#observer.owner = task;
    watch(child, this.#observer);
  }

  unpark(): void {
    this.#stopWatching();
    unwatch(this.child!, this.#observer);
  }

  /** Its task waits on `coro` through it: a `stopWork` of that task stops `coro`'s work too. */
  override children(): readonly Task[] {
    return this.child === null ? [] : [this.child];
  }

  /** The signal aborted: the deadline is now, for the loop to stop the work between steps. */
  aborted(): void {
    this.setDeadline(this.task!);
    wakeLoop(this.task!);
  }

  /** The deadline goes: dropped from the clock, the abort no longer listened to. */
  #stopWatching(): void {
    this.clearDeadline();
    this.#waiting?.delete(this);
  }

  override waitingFor(task: Task, idOf: (task: Task) => number | undefined): string {
    const until = this.signal === null
      ? `timeout: ${timeLeft(task, this.at)}`
      : this.signal.aborted
      ? "cancellable: aborted, stopping"
      : "cancellable";
    return `coroutine ${idOf(this.child!)} (${until})`;
  }

  /** `coro` ended: before the deadline, that is the result; after it, swallow its TimeoutError. */
  #ended(child: Task): boolean {
    if (this.#fired) return !child.succeeded && child.value instanceof TimeoutError;
    this.#stopWatching();
    if (child.succeeded) resume(this.task!, this, [child.value, true]);
    else fail(this.task!, this, child.value); // the run crashes, unless someone took it over
    return false;
  }

  fire(): void {
    this.#fired = true;
    this.#stopWatching();
    const task = this.task!;
    const signal = this.signal;
    // A timeout's coroutine gets a TimeoutError, which is also the cause of
    // its work's cancellations; a signal's, a CancelledError of the stop's.
    const timedOut = signal !== null ? undefined : new TimeoutError(
      `timeout(): the coroutine did not finish within ${this.ms} ms, so it was stopped.`,
    );
    stopWork([this.child!], {
      by: signal === null ? "timeout" : "cancellable",
      cause: signal === null ? timedOut : signal.reason,
      owner: task,
      spareRoots: false,
      rootError: timedOut,
      done: () => {
        // From now on `coro` goes on, if it does, in the background: its task
        // no longer waits on it.
        this.#observer.owner = null;
        resume(task, this, [undefined, false]);
      },
    });
  }
}
// One abort listener per signal, for all the cancellables that wait on it:
// adding and removing a listener costs more than the rest of a cancellable
// (measured: 0.9–1.1 µs a cancellable with a listener of its own, 0.6 µs
// with one per signal, 0.45 µs a plain `yield c` of the same ready promise).
const waiting = new WeakMap<AbortSignal, Set<Timeout<unknown>>>();

/** The cancellables waiting on `signal`: its listener tells each that it aborted. */
function waitingOn(signal: AbortSignal): Set<Timeout<unknown>> {
  let set = waiting.get(signal);
  if (set === undefined) {
    const timeouts = set = new Set();
    waiting.set(signal, timeouts);
    signal.addEventListener("abort", () => {
      for (const t of timeouts) t.aborted();
      timeouts.clear();
    }, { once: true });
  }
  return set;
}
