/**
 * The plug-in interface for primitives: everything a sleep, an event, a
 * semaphore, a thread call, a promise, a nested loop or a channel may use of
 * the loop. Primitives import from here (and from coro.ts, errors.ts,
 * clock.ts and messages.ts), never from the core.
 *
 * The protocol: a primitive's coroutine yields a {@linkcode Wait}; the loop
 * calls its `park(task)`, and from then on the wait owns the task until it
 * calls {@linkcode resume} or {@linkcode fail} — once, from anywhere: a timer,
 * another loop, a host callback — or until the loop calls `unpark(task)`
 * because the task stopped waiting (cancelled, timed out), after which the
 * wait must let go of it. Work outside the loop that a run must not outlive
 * (a worker, a promise) is announced with {@linkcode hold} and
 * {@linkcode release} (an `unpark` that leaves it running returns true, so
 * that a stop waits for the release); a wait that waits on coroutines does it
 * through {@linkcode start} and {@linkcode watch}, and stops their work with
 * {@linkcode stopWork} (a timeout, a cancellable, a race). `shielding` makes
 * the coroutine of `shield()`, which the core itself handles. A wait says what
 * its task waits for in a snapshot with its `waitingFor` method (default: its
 * class name; {@linkcode timeLeft} words a deadline).
 *
 * Of a {@linkcode Task}, a primitive reads only `ended`, `succeeded`, `value`
 * once ended (the result, or the error), `clock`, and `run` as an identity
 * (a key: which run a task belongs to). Everything else is the core's.
 *
 * @module
 */

import type { Clock, Deadline } from "./clock.ts";
import { CancelledError } from "./errors.ts";
import type { Coro } from "./coro.ts";
import { foreign } from "./messages.ts";
import { addWaiter, Core, maybeEnd, removeWaiter, spawn, throwInto } from "./core.ts";
import { cancelShielded, crash, isRecorded, releasedInStops } from "./cancelling.ts";
import { DONE, type Observer, type Run, type Task, taskOf, Wait } from "./task.ts";

export { type Observer, type Run, type Task, taskOf, Wait };
// `resume` lives in the core, which needs it too (a shield resumes its
// caller); it reads the core's local copies of the states there.
export { errorIsWaiters, primitive, resume } from "./core.ts";
export { shielding, type StopOptions, stopWork } from "./cancelling.ts";

/** Throws `error` into `task`, parked on `wait`. Ignored if it no longer waits there. */
export function fail(task: Task, wait: Wait, error: unknown): void {
  if (task.waitingOn !== wait) return;
  const run = task.run;
  if (run.crashed) {
    // While a crash cancels the run's tasks, an error that the cancellation
    // itself caused (a pool closed by a `using` in a finally) is not the
    // task's own: a task it is about to cancel stays parked and gets its
    // CancelledError like every other.
    if (run.sweep?.has(task)) return;
    // Shielded work that a recorded error of the run (or a cancellation)
    // reaches through a wait gets a CancelledError whose cause it is: the
    // error is recorded once.
    if (isRecorded(run, error) || error instanceof CancelledError) {
      return cancelShielded(task, error);
    }
  }
  task.waitingOn = null;
  throwInto(task, error);
}

/**
 * Wakes `task`'s loop if it sleeps: for a deadline added from outside the
 * loop (an abort handler sets one due now).
 */
export function wakeLoop(task: Task): void {
  task.run.core.driver.wake();
}

/**
 * A Wait with a deadline on its task's clock: a sleep, a timed event wait, a
 * timeout. Its `park` calls `setDeadline(task)`, and then `fire()` is called
 * once, `ms` later, unless `clearDeadline()` came first (the wait ended
 * otherwise, or was unparked). All deadlines of a loop share one heap and one
 * host timer (src/clock.ts).
 */
export abstract class DeadlineWait extends Wait implements Deadline {
  /** When it is due, on the clock (the clock's heap keeps `at`, `seq` and `index`). */
  at = 0;
  /** Set order, for the clock's heap. */
  seq = 0;
  /** Its place in the clock's heap, or -1. */
  index = -1;
  /** The parked task, once its deadline is set. */
  task: Task | null = null;
  #clock: Clock | null = null;

  constructor(readonly ms: number) {
    super();
  }

  /** Starts the deadline for `task`, parked on this: `fire` comes `ms` from now on its clock. */
  setDeadline(task: Task): void {
    this.task = task;
    this.#clock = task.clock;
    this.#clock.add(this, this.ms);
  }

  /** Drops the deadline if it has not fired. */
  clearDeadline(): void {
    this.#clock?.remove(this);
  }

  /** The deadline is due. */
  abstract fire(): void;
}

/**
 * How long until `at`, on `task`'s clock, for a wait's `waitingFor`:
 * "40 ms left", or "forever" for a deadline of `Infinity`.
 */
export function timeLeft(task: Task, at: number): string {
  if (at === Infinity) return "forever";
  return `${Math.max(0, Math.round(at - task.clock.now()))} ms left`;
}

/** True while `task` is parked on `wait` (neither resumed, failed nor unparked). */
export function isParkedOn(task: Task, wait: Wait): boolean {
  return task.waitingOn === wait;
}

/** Outside work for `task`'s run has started: the run does not end, nor the virtual clock jump, before it is released. */
export function hold(task: Task): void {
  task.run.holds++;
  task.run.core.driver.holds++;
}

/**
 * The outside work announced by `hold(task)` has stopped. Call `resume` or
 * `fail` first (or in the same synchronous callback): a release in an earlier
 * callback lets a virtual clock jump before the task is runnable again.
 */
export function release(task: Task): void {
  const run = task.run;
  run.holds--;
  run.core.driver.holds--;
  // A timeout, cancellable or race that cancelled the task may wait for this.
  if (run.awaited !== null) releasedInStops(task);
  maybeEnd(run);
  run.core.driver.wake();
}

/**
 * Calls `fn` once when `task`'s run has ended (its tasks finished, its holds
 * released), just before `run` settles: for resources a primitive keeps for as
 * long as a run uses them (threads keep their idle workers). `fn` must not throw.
 */
export function atRunEnd(task: Task, fn: () => void): void {
  (task.run.atEnd ??= []).push(fn);
}

/**
 * Starts `coro` in `task`'s run, as if `task` had yielded it in a Set; returns
 * its task. With `waited`, `task` becomes its starter, as if `task` had
 * yielded it to wait on it (a wait that waits on a coroutine through an
 * observer, such as `timeout`), so that `stopWork` of `task` stops it too.
 * A coroutine of another loop is a TypeError.
 */
export function start(task: Task, coro: Coro, waited = false): Task {
  const seen = taskOf(coro);
  if (seen !== undefined) {
    if (seen.run.core !== task.run.core) throw foreign(coro);
    return seen;
  }
  return spawn(task.run, coro, waited ? task : null);
}

/** Calls `observer` when `child` ends (or at once if it has). */
export function watch(child: Task, observer: Observer): void {
  if (child.state >= DONE) observer(child);
  else addWaiter(child, observer, -1);
}

/** Stops calling `observer` for `child`. */
export function unwatch(child: Task, observer: Observer): void {
  removeWaiter(child, observer);
}

/**
 * The error `task`'s run is failing with (the cause of its cancellation), or
 * undefined if it is not failing: the cause for the CancelledError of work a
 * primitive stops (an aborted promise, a nested loop).
 */
export function crashCause(task: Task): unknown {
  return task.run.crashed ? task.run.error : undefined;
}

/** True once `task`'s run is failing (a coroutine failed, or its signal aborted). */
export function runIsFailing(task: Task): boolean {
  return task.run.crashed;
}

/**
 * An error of `task`'s run that no coroutine can catch (the own error of a
 * worker whose call was cancelled): fails the run, or, if it is failing
 * already, joins its other errors.
 */
export function reportError(task: Task, error: unknown): void {
  crash(task.run, error);
}

/** How a nested loop ended, given to `startNested`'s `onEnd`. */
export interface NestedEnd {
  /** True if its coroutine returned. */
  readonly ok: boolean;
  /** Its coroutine's result if `ok`; otherwise the error the nested run failed with. */
  readonly value: unknown;
  /** What `run` would reject with for this failure, following `exceptionGroup`. */
  rejection(): unknown;
}

/** A nested loop, as `startNested` returns it. */
export interface Nested {
  /** The task of its coroutine. */
  readonly root: Task;
  /**
   * The task waiting on it stopped waiting (cancelled, timed out): cancel
   * every coroutine of the nested loop with a CancelledError of `message`.
   * `onEnd` is not called then; `task`'s run is held until they have all
   * stopped, and the errors they raise meanwhile are errors of `task`'s run.
   * Nothing happens if the nested loop has ended. True if the outer run is
   * held (see `Wait.unpark`).
   */
  cancel(message: string): boolean;
}

/**
 * Starts `coro` (new to every loop) on a nested loop for `task`: a crash
 * domain of its own, with its own coroutines, stepped by `task`'s driver and
 * reading its clock, so the two interleave fairly and share virtual time.
 * `onEnd` is called once the nested loop has ended (all its coroutines and
 * outside work stopped).
 */
export function startNested(
  task: Task,
  coro: Coro,
  exceptionGroup: boolean | undefined,
  onEnd: (end: NestedEnd) => void,
): Nested {
  const core = new Core(task.clock, task.run.core.driver, task);
  let abandoned = false; // `cancel` was called: the nested run is being torn down
  let reportErrors = false; // the errors of that teardown are the outer run's
  const nested = core.startRun(coro, exceptionGroup, (run: Run) => {
    if (abandoned) {
      // Errors raised while cancelling the nested coroutines are errors raised
      // while cancelling the outer task, as they would be on one loop.
      if (reportErrors) { for (const error of run.otherErrors) reportError(task, error); }
      release(task);
    } else if (run.crashed) {
      onEnd({ ok: false, value: run.error, rejection: () => run.rejection() });
    } else {
      onEnd({ ok: true, value: run.root!.value, rejection: () => undefined });
    }
  });
  return {
    root: nested.root!,
    cancel(message: string): boolean {
      if (nested.ended) return false;
      abandoned = true;
      hold(task);
      // Already crashed on its own and still tearing down: that failure, which
      // nobody waits for now, is dropped, and so are the errors of its teardown;
      // crashing it again would report this cancellation as one of them.
      if (nested.crashed) return true;
      reportErrors = true;
      crash(nested, new CancelledError(message, { cause: crashCause(task) }));
      // A nested loop whose coroutines all stopped at once has released the
      // outer run already: nothing is left for a stop to wait for.
      return !nested.ended;
    },
  };
}
