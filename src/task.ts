/**
 * The loop's records: a {@linkcode Task} per coroutine, a {@linkcode Run} per
 * crash domain, and the {@linkcode Wait} that everything other than a
 * coroutine is, with the task states in the order the loop relies on.
 * src/core.ts steps them, src/cancelling.ts cancels them; src/wait.ts is what
 * primitives may use of them.
 *
 * @module
 */

import type { Clock } from "./clock.ts";
import { type Coro, TASK } from "./coro.ts";
import { groupMessage } from "./messages.ts";
import type { Core } from "./core.ts";
import type { Cancellation, Stop } from "./cancelling.ts";

// Task states. The order matters: the loop tests states by range, so that a
// hot test is one comparison.
//   QUEUED..CLEANUP_THROWING  in the run queue (`<= CLEANUP_THROWING`): the driver steps it
//     QUEUED..THROWING        stepped as a generator (`<= THROWING`)
//     RETURNING..FAILING      a WaitOn's task, ended by `settle` (`> THROWING`)
//     CLEANUP..CLEANUP_THROWING  a cancelled task cleaning up (`> FAILING`): stepped on the cold path
//   RUNNING                   being stepped, or being cancelled
//   WAITING..WAITON_PARKED    waiting (`>= WAITING && <= WAITON_PARKED`): `waitingOn` says on what
//   DONE..FAILED              ended (`>= DONE`): `value` is the outcome
// The queued states come first because `#steps` tests every task it takes
// from the queue with `state <= CLEANUP_THROWING` (a task cancelled while
// queued is skipped), and `step` sends everything above THROWING to one cold
// function: only WaitOns and cancelled tasks pay for what they need.

/** In the run queue (or about to be): the next step sends `value` in. */
export const QUEUED = 0;
/** In the run queue: the next step throws `value` in. */
export const THROWING = 1;
// A WaitOn's task is never stepped as a generator: it parks on its wait when
// made, and once resumed (or failed) it waits in the run queue to end.
/** A WaitOn's, in the run queue: ends returning `value`. */
export const RETURNING = 2;
/** A WaitOn's, in the run queue: ends failing with `value`. */
export const FAILING = 3;
// A task that got its cancellation may clean up through `yield* shield(c)`:
// it is stepped by the core's cold path, which checks that each yield is a
// shield (src/cancelling.ts).
/** A cancelled task in the run queue: the next step sends `value` in (what its shield returned). */
export const CLEANUP = 4;
/** A cancelled task in the run queue: the next step throws `value` in (its cancellation, or what its shield threw). */
export const CLEANUP_THROWING = 5;
/** Being stepped (or cancelled): not in the queue, not waiting. */
export const RUNNING = 6;
/** Waiting for coroutines: `waitingOn` is the child task or the Gather. */
export const WAITING = 7;
/** Parked on a Wait: `waitingOn` is the Wait. */
export const PARKED = 8;
/** A WaitOn's, parked on its Wait: `waitingOn` is the Wait. */
export const WAITON_PARKED = 9;
/** Returned: `value` is the result. */
export const DONE = 10;
/** Threw or was cancelled: `value` is the error. */
export const FAILED = 11;

/** Called when a watched task ends; return true to take over its failure. */
export type Observer = ((task: Task) => boolean | void) & {
  /**
   * The task that waits on the watched one through this observer (a
   * `timeout`'s caller), if any: `stopWork` counts it among the waiters.
   */
  owner?: Task | null;
};

/**
 * Something a coroutine can wait on, other than coroutines. The loop calls
 * `park` when a coroutine yields it; from then on the wait owns that task
 * until it calls `resume` or `fail` (once, from anywhere) — or until the loop
 * calls `unpark` because the task stopped waiting (cancelled, timed out),
 * after which the wait must let go of it: drop its deadline, give up its
 * place, stop its work. Work that cannot stop at once (a promise's factory, a
 * worker) keeps its hold until it has, and `unpark` says so by returning
 * true: a `timeout`, `cancellable` or `race` that cancelled the task waits
 * for that release.
 */
export abstract class Wait {
  /** `task` yielded this and now waits on it. */
  abstract park(task: Task): void;
  /**
   * `task` no longer waits on this. True if outside work of it goes on, so
   * that a `release(task)` is still to come.
   */
  abstract unpark(task: Task): boolean | void;
  /**
   * The tasks that the parked task waits on through this wait (a timeout's
   * coroutine), for `stopWork` to follow; none for most waits.
   */
  children(): readonly Task[] {
    return NONE;
  }
  /**
   * What the parked `task` waits for, in a snapshot (`loop.snapshot()`) or a
   * cycle's error: "sleep (40 ms left)", "Event", "Semaphore(2)", "thread",
   * "promise". `idOf` gives the snapshot id of a coroutine of the loop (for
   * "coroutine 7"), or undefined for one of another loop. Only inspection
   * calls it, never the hot path. By default: the wait's class name.
   */
  waitingFor(_task: Task, _idOf: (task: Task) => number | undefined): string {
    return this.constructor.name;
  }
}

const NONE: readonly Task[] = Object.freeze([]);

/**
 * The loop's record of one coroutine. It lives as long as its generator, so it
 * is kept small: every field costs 8 bytes per coroutine (11 fields, 112 B).
 */
export class Task {
  /**
   * The value passing through the task, by state: what the next step sends
   * in (QUEUED, RETURNING) or throws in (THROWING, FAILING); undefined while
   * it runs or waits; its outcome once ended (DONE: the result, FAILED: the
   * error). One field for the two, because they never overlap in time: an
   * outcome is set when the last step ends, and nothing is sent in after it
   * (a field of its own would cost 8 B a task).
   */
  value: unknown = undefined;
  /** One of the states above. */
  state = QUEUED;
  /** WAITING: the child task or the Gather; PARKED, WAITON_PARKED: the Wait; else null. */
  waitingOn: Task | Gather | Wait | null = null;
  // Who waits for this task: the first inline (most tasks have one), the rest
  // as (waiter, slot) pairs. A slot of -1 means a single `yield coro`, else the
  // waiter's gather slot. Emptied when the task ends.
  waiter: Task | Observer | null = null;
  waiterSlot = -1;
  moreWaiters: (Task | Observer | number)[] | null = null;
  // The run's list of unfinished tasks, for cancellation and cycle checks;
  // a task leaves it when it ends.
  prev: Task | null = null;
  next: Task | null = null;

  constructor(
    readonly gen: Coro,
    readonly run: Run,
    /** The task that started this one by waiting on it; null if started in the background. */
    readonly starter: Task | null,
  ) {}

  /** True once the coroutine returned or failed. */
  get ended(): boolean {
    return this.state >= DONE;
  }
  /** True if the coroutine returned (its result is `value`). */
  get succeeded(): boolean {
    return this.state === DONE;
  }
  /** The clock of the task's loop. */
  get clock(): Clock {
    return this.run.core.clock;
  }
}

/** What a task WAITING on `yield [a, b, …]` waits on. */
export class Gather {
  constructor(
    /** Slot i: the i-th child's task until that child ends, then its result. */
    readonly slots: unknown[],
    /** How many children have not ended yet: the task runs again at 0. */
    public pending: number,
  ) {}
}

/** The task of a coroutine, if a loop has seen it. */
export function taskOf(coro: Coro): Task | undefined {
  return (coro as { [TASK]?: Task })[TASK];
}

/**
 * One call of `run` (or one `isolate`): a crash domain. A failure cancels
 * every task of its run and no other.
 */
export class Run {
  first: Task | null = null;
  last: Task | null = null;
  live = 0;
  holds = 0;
  crashed = false;
  ended = false;
  error: unknown = undefined;
  readonly otherErrors: unknown[] = [];
  readonly cancelErrors: unknown[] = [];
  abortReason: unknown = undefined;
  aborted = false;
  root: Task | null = null;
  /** Called once when the run has ended (see `atRunEnd`). */
  atEnd: (() => void)[] | null = null;
  // Cold side tables of cancellation (src/cancelling.ts), created on first
  // use, so that a run that cancels nothing pays nothing for them.
  /** The tasks that got their cancellation and have not ended, with how they were cancelled. */
  cancelling: Map<Task, Cancellation> | null = null;
  /**
   * The cancelled tasks that a stop in progress (a timeout ran out, a signal
   * aborted, a race was won) waits for, to end or to release their outside
   * work, with those stops.
   */
  awaited: Map<Task, Stop[]> | null = null;
  /** While a crash cancels the run's tasks: those it has not reached yet. */
  sweep: Set<Task> | null = null;

  constructor(
    readonly core: Core,
    readonly exceptionGroup: boolean | undefined,
    readonly onEnd: (run: Run) => void,
  ) {}

  /** The error `run` rejects with, following `exceptionGroup`. */
  rejection(): unknown {
    const { error, otherErrors, cancelErrors } = this;
    if (this.exceptionGroup === false) return error;
    if (this.exceptionGroup === true) {
      return new AggregateError([error, ...otherErrors, ...cancelErrors], groupMessage(error));
    }
    return otherErrors.length === 0
      ? error
      : new AggregateError([error, ...otherErrors], groupMessage(error));
  }
}
