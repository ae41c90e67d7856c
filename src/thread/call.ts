/**
 * The call: a thread task as a {@linkcode Wait}. A coroutine of `runInThread`
 * parks on its Call; parking gives the call to its pool, and the worker's
 * answer resumes or fails the coroutine. The coroutine's run holds from then
 * until the worker has really stopped for the call.
 *
 * This is the one file of the threads that uses the loop's interface for
 * waits (resume, fail, hold, release, run ends); the pool works on Calls.
 *
 * @module
 */

import type { Coro } from "../coro.ts";
import {
  atRunEnd,
  fail,
  hold,
  primitive,
  release,
  reportError,
  resume,
  runIsFailing,
  type Task,
  Wait,
} from "../wait.ts";
import type { Target } from "./function.ts";
import type { Pool } from "./pool.ts";
import type { Thread } from "./thread.ts";

// States of a call. NEW: made, not parked yet. QUEUED: its pool's, waiting for
// a worker. SENT: given to a worker, which has not answered. STOPPING: its
// coroutine stopped waiting while the worker runs it. ENDED: answered, failed
// or withdrawn: its answer, if one comes, is dropped.
export const NEW = 0, QUEUED = 1, SENT = 2, STOPPING = 3, ENDED = 4;

/** A call of a function on a worker: what a coroutine of `runInThread` parks on. */
export class Call extends Wait {
  state = NEW;
  task: Task | null = null;
  thread: Thread | null = null;
  /** Its number on its thread (its slot), while sent. */
  id = 0;

  constructor(
    readonly pool: Pool,
    readonly target: Target,
    readonly args: unknown[],
    /** Names the call in error messages: `runInThread()`, `ThreadPool.map()`… */
    readonly label: string,
  ) {
    super();
  }

  /** The coroutine waits for the call: its pool runs it when a worker can take it. */
  park(task: Task): void {
    this.pool.submit(this, task);
  }

  /**
   * The coroutine stopped waiting (cancelled, timed out): the pool withdraws or
   * stops the call; true if its worker has yet to stop (the run stays held).
   */
  unpark(): boolean {
    return this.pool.withdraw(this);
  }

  /** What a snapshot says its coroutine waits for. */
  override waitingFor(): string {
    return this.state === SENT
      ? "thread"
      : this.state === STOPPING
      ? "thread (stopping)"
      : "thread (waiting for a free worker)";
  }

  /** The pool has taken the call for `task`: its run holds until {@linkcode Call.releaseRun}. */
  holdRun(task: Task): void {
    this.task = task;
    hold(task);
  }

  /** The run of the call's coroutine: the pool keeps idle workers while a run that used it goes on. */
  get run(): object {
    return this.task!.run;
  }

  /** Calls `fn` once when the call's run has ended. */
  atRunEnd(fn: () => void): void {
    atRunEnd(this.task!, fn);
  }

  /** Resumes the coroutine with the worker's result. */
  succeed(value: unknown): void {
    resume(this.task!, this, value);
  }

  /** Throws `error` into the coroutine. */
  failWith(error: unknown): void {
    fail(this.task!, this, error);
  }

  /**
   * The call was stopping (its coroutine cancelled) when it threw `error`
   * without having seen `cancelled()` true: an error of its own, which a
   * failing run reports with its other errors.
   */
  reportOwnError(error: unknown): void {
    // The call's hold is released only after this, so the run has not ended.
    if (runIsFailing(this.task!)) reportError(this.task!, error);
  }

  /** The worker has stopped for this call: its run may end. */
  releaseRun(): void {
    release(this.task!);
  }
}

/** A coroutine that runs `target(...args)` on a worker of `pool`. */
export function callOn<R>(pool: Pool, target: Target, args: unknown[], label: string): Coro<R> {
  return calling(new Call(pool, target, args, label));
}

// A call whose worker's error had reached the loop when the run was cancelled
// reports that error instead of a CancelledError: the loop throws a pending
// error in first (see `cancel` in src/cancelling.ts).
function* calling<R>(call: Call): Coro<R> {
  return yield call;
}
primitive(calling);

/** A coroutine that gathers `calls` (a pool's `map`), handing their errors to its caller. */
export function* gathering<R>(calls: Coro<R>[]): Coro<R[]> {
  return yield calls;
}
primitive(gathering);
