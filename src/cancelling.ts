/**
 * Cancellation (docs/cancellation.md): how the core cancels tasks, and what
 * a cancelled task may do until it ends. It reads top to bottom: a crash and
 * `cancel`, the cleanup steps of a cancelled task and how it ends, shields,
 * and stops. src/core.ts steps the tasks and calls in here from its cold
 * paths only; nothing here runs per step of a task that was not cancelled.
 *
 * A crash cancels every task of its run; a stop (`stopWork`: a timeout ran
 * out, a signal aborted, a race was won) quietly cancels the work of some.
 * Both go through `cancel`, which throws a task's cancellation in once. What
 * the task does next is watched on the cold path: it is in `run.cancelling`
 * until it ends, and its steps go through `cleanupStep`, so that only a
 * cancelled task pays for "is this yield a shield?". A shield keeps its
 * coroutine, and everything that coroutine waits on when the cancellation
 * comes, out of it: those run on; the task waiting in the shield gets its
 * cancellation once the shield's coroutine has ended. Nothing of this is
 * kept per task or per step: who is shielded is computed when a cancellation
 * comes, from what the tasks wait on then.
 *
 * @module
 */

import { CancelledError, TimeoutError } from "./errors.ts";
import { type Coro, WaitOn } from "./coro.ts";
import {
  crashMessage,
  foreign,
  misbehavedWarning,
  stoppedMessage,
  waiterCancelledMessage,
} from "./messages.ts";
import { stitchTrace } from "./trace.ts";
// The task states are imported, not copied as in core.ts: nothing here is on
// the hot path (docs/design.md, "The hot path").
import {
  CLEANUP,
  CLEANUP_THROWING,
  DONE,
  FAILING,
  Gather,
  type Observer,
  PARKED,
  type Run,
  RUNNING,
  Task,
  taskOf,
  THROWING,
  Wait,
  WAITING,
  WAITON_PARKED,
} from "./task.ts";
import {
  addWaiter,
  endFailed,
  errorIsWaiters,
  finished,
  forEachWaiter,
  maybeEnd,
  park,
  removeWaiter,
  resume,
  spawn,
  throwInto,
  yielded,
} from "./core.ts";
import { waitsOn } from "./cycles.ts";

/** How a task that got its cancellation was cancelled (`run.cancelling`). */
export interface Cancellation {
  /** What is thrown in: a CancelledError, or a timeout's TimeoutError (its coroutine may go on). */
  readonly error: Error;
  /** The stop that cancelled it, or null for the run's crash. */
  readonly stop: Stop | null;
  /** True while it waits in a shield for its cancellation: thrown in once the shield has ended. */
  pending: boolean;
}

/** The errors a stop throws in: what yielding a coroutine it stopped throws later (it has no result). */
const stopErrors = new WeakSet<object>();

/** True if `error` is one that a stop threw in (see `errorIsWaiters` in src/core.ts). */
export function isStopError(error: unknown): boolean {
  return stopErrors.has(error as object);
}

// A race has no cause to name: its losers, and their work, all get one of
// these two, made once, without a stack (it would show where they were made).
let raceErrors: [Error, Error] | null = null;

/** A stop's CancelledError, saying what stopped the coroutine and that it has no result. */
function stopError(by: StopOptions["by"], root: boolean, cause: unknown): Error {
  if (by === "race") {
    if (raceErrors === null) {
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      raceErrors = [
        new CancelledError(stoppedMessage("race", true)),
        new CancelledError(stoppedMessage("race", false)),
      ];
      Error.stackTraceLimit = limit;
      for (const error of raceErrors) stopErrors.add(error);
    }
    return raceErrors[root ? 0 : 1];
  }
  const error = new CancelledError(stoppedMessage(by, root), { cause });
  stopErrors.add(error);
  return error;
}

/** Adds `error` to `run`'s other errors, unless it is recorded already. */
function record(run: Run, error: unknown): void {
  if (error !== run.error && !run.otherErrors.includes(error)) run.otherErrors.push(error);
}

/** A task failed with `error` during `run`'s crash: a CancelledError is listed as a cancellation. */
export function recordFailure(run: Run, error: unknown): void {
  if (error instanceof CancelledError) run.cancelErrors.push(error);
  else record(run, error);
}

/** True if `error` is `run`'s error or one of its other errors. */
export function isRecorded(run: Run, error: unknown): boolean {
  return error === run.error || run.otherErrors.includes(error);
}

/**
 * Fails `run` with `error`: every unfinished task of it gets a
 * `CancelledError` (cause: `error`) thrown in at its current yield — except
 * the shielded ones, and those waiting in a shield get theirs when it ends.
 * If it is failing already, `error` joins its other errors. The loop's frames
 * leave `error.stack` first, and given the failed task's only waiter (`from`),
 * the frames of the waiters up from it join it (src/trace.ts): with the
 * inspector, the driver pauses until their positions are read, since a
 * cancelled generator forgets where it was; then they are cancelled, and
 * then `then` runs.
 */
export function crash(
  run: Run,
  error: unknown,
  from: Task | Observer | null = null,
  then?: () => void,
): void {
  if (run.crashed) return record(run, error);
  run.crashed = true;
  run.error = error;
  const stitching = stitchTrace(run, error, from);
  const cancel = () => {
    cancelRun(run);
    if (then !== undefined) {
      then();
      maybeEnd(run);
    }
  };
  if (stitching === undefined) cancel();
  else run.core.driver.pauseWhile(stitching.then(cancel, cancel)); // cancelled whatever happens
}

/** Cancels every unfinished task of `run`, failing with `run.error`. */
function cancelRun(run: Run): void {
  const error = run.error;
  const message = crashMessage(error, run.aborted && error === run.abortReason);
  const tasks: Task[] = [];
  for (let t = run.first; t !== null; t = t.next) tasks.push(t);
  const shielded = shieldedAmong(tasks);
  // The tasks to cancel, fixed now: coroutines that cleanup starts (through a
  // shield) are not cancelled by this crash.
  const sweep = new Set(tasks.filter((t) => t.state !== RUNNING && !shielded.has(t)));
  run.sweep = sweep;
  for (const t of [...sweep]) {
    sweep.delete(t);
    cancel(t, new CancelledError(message, { cause: error }), null);
  }
  run.sweep = null;
  maybeEnd(run);
}

/** Stops `task` waiting on whatever it waits on; true if outside work of it goes on (see `Wait.unpark`). */
function detach(task: Task): boolean {
  const on = task.waitingOn;
  task.waitingOn = null;
  task.value = undefined;
  // Detached already: an unpark that fails the run (a nested loop whose
  // teardown raised errors) cancels this task again from inside its detach.
  if (on === null) return false;
  if (task.state === PARKED || task.state === WAITON_PARKED) {
    return (on as Wait).unpark(task) === true;
  }
  if (on instanceof Task) removeWaiter(on, task);
  else if (on instanceof Gather) {
    for (const c of on.slots) if (c instanceof Task) removeWaiter(c, task);
  }
  return false;
}

/** An error of `run` raised while cancelling: a stop's fails the run, a crash's joins its other errors. */
function report(run: Run, stop: Stop | null, error: unknown): void {
  if (stop === null) record(run, error);
  else crash(run, error);
}

/**
 * Cancels `task` with `error`, once: throws it in at its current yield, now
 * — or, if the task is in the run queue, at its turn there; if it waits in a
 * shield, once the shield's coroutine has ended. `stop` is the stop that
 * cancels it, or null for the run's crash. An error handed to the task that
 * it has not seen yet (a worker's error, a rejection, queued to be thrown in)
 * is thrown in instead, so that it is not lost: it comes back as an error of
 * the run. Not so a stop's error, nor one already reported as a cause of
 * this cancellation.
 */
function cancel(task: Task, error: Error, stop: Stop | null): void {
  // (A running task is being stepped: nothing cancels it from inside its own step.)
  if (task.state >= DONE || task.state === RUNNING) return;
  const run = task.run;
  const cancelling = run.cancelling ??= new Map();
  if (cancelling.has(task)) return;
  const cancellation: Cancellation = { error, stop, pending: false };
  cancelling.set(task, cancellation);
  if (inShield(task)) {
    cancellation.pending = true;
    return;
  }
  const unseen = (task.state === THROWING || task.state === FAILING) &&
    !(task.value instanceof CancelledError) && !stopErrors.has(task.value as object) &&
    !isCauseOf(task.value, error);
  const thrown = unseen ? task.value : error;
  if (task.state <= THROWING) {
    // Queued: it is in the run queue once already; throw at that step.
    task.value = thrown;
    task.state = CLEANUP_THROWING;
    return;
  }
  try {
    if (detach(task) && stop !== null) stop.holding(task);
  } catch (e) {
    report(run, stop, e);
  }
  cleanupResume(task, thrown, true);
}

/** True if `error` is `cancel`'s cause, or its cause's cause … */
function isCauseOf(error: unknown, cancel: Error): boolean {
  for (let c: unknown = cancel.cause; c !== undefined; c = (c as Error).cause) {
    if (c === error) return true;
    if (!(c instanceof Error)) break;
  }
  return false;
}

/** A cancelled task's step, from the run queue: it goes on cleaning up (CLEANUP, CLEANUP_THROWING). */
export function cleanupStep(task: Task): false {
  const value = task.value;
  task.value = undefined;
  cleanupResume(task, value, task.state === CLEANUP_THROWING);
  return false;
}

/**
 * Sends (or throws) `value` into `task`, cancelled, and sees what it does:
 * the one place a cancelled task's generator is resumed. (Stepped on the
 * cold path, through `gen.next`: see `step` in src/core.ts for the hot one.)
 */
function cleanupResume(task: Task, value: unknown, throwing: boolean): void {
  task.state = RUNNING;
  let r: IteratorResult<unknown, unknown>;
  try {
    r = throwing ? task.gen.throw(value) : task.gen.next(value);
  } catch (error) {
    return cancelEnded(task, error);
  }
  cleanupYielded(task, task.run.cancelling!.get(task)!, r);
}

/**
 * A cancelled task stepped and came back with `r`. A shield it yields runs
 * (`yield* shield(c)`: its cleanup waits); any other yield, or a return, did
 * not respond properly: it is warned about and closed with `return()`. A
 * timeout's coroutine, which got a TimeoutError, is not cancelled: if it
 * yields anything but a shield, or returns, it goes on as it pleases.
 */
function cleanupYielded(task: Task, cancellation: Cancellation, r: IteratorResult<unknown>): void {
  const mayGoOn = !(cancellation.error instanceof CancelledError);
  if (r.done !== true) {
    const shield = r.value instanceof Shield ? r.value : shieldOfWaitOn.get(r.value as object);
    if (shield !== undefined) return park(task, shield);
    if (mayGoOn) {
      wentOn(task);
      if (r.value === undefined) task.run.core.driver.schedule(task);
      else yielded(task, r.value);
      return;
    }
  } else if (mayGoOn) {
    wentOn(task);
    return finished(task, r.value);
  }
  console.warn(misbehavedWarning(r.done === true));
  // return() runs the pending finally blocks; one that yields again suspends
  // the generator once more, so repeat (a bounded number of times).
  for (let i = 0; i < 100 && r.done !== true; i++) {
    try {
      r = task.gen.return(undefined);
    } catch (error) {
      report(task.run, cancellation.stop, error);
      break;
    }
  }
  cancelEnded(task, cancellation.error, true);
}

/** A timeout's coroutine goes on after its TimeoutError: it is not cancelled any more. */
function wentOn(task: Task): void {
  const cancelling = task.run.cancelling!;
  const { stop } = cancelling.get(task)!;
  cancelling.delete(task);
  endedInStops(task, stop);
}

/** Wakes `task`, cancelled and waiting in a shield, to go on cleaning up with `value` sent or thrown in. */
export function wakeCleanup(task: Task, value: unknown, throwing: boolean): void {
  task.waitingOn = null;
  // A WaitOn (`yield shield(c)` waits in one) has no cleanup of its own: it
  // ends now, returning what it is sent or throwing what it is thrown. A
  // generator goes through the run queue, so that its finally blocks do not
  // run inside another coroutine's step.
  if (task.gen instanceof WaitOn) return cleanupResume(task, value, throwing);
  task.value = value;
  task.state = throwing ? CLEANUP_THROWING : CLEANUP;
  task.run.core.driver.enqueue(task);
}

/**
 * A cancelled task ended by throwing `thrown` (or, `misbehaved`, closed with
 * its cancellation after it did not respond properly). A CancelledError back:
 * it behaved (a crash lists it for `exceptionGroup: true`; a stop's records
 * the stop's error, which says it has no result). A timeout's coroutine's
 * TimeoutError back: swallowed. Another error: its cleanup failed, an error
 * of the run. Tasks that came to wait on it since get its outcome thrown in;
 * during a crash, a cancellation.
 */
function cancelEnded(task: Task, thrown: unknown, misbehaved = false): void {
  const run = task.run;
  const { error, stop } = run.cancelling!.get(task)!;
  run.cancelling!.delete(task);
  let outcome = thrown;
  let own = false;
  if (thrown instanceof CancelledError) {
    if (stop !== null) outcome = error;
    else if (!misbehaved) run.cancelErrors.push(thrown);
  } else if (!(thrown instanceof TimeoutError && error instanceof TimeoutError)) {
    own = true;
  }
  const waiters = endFailed(task, outcome);
  if (own) report(run, stop, thrown);
  for (let i = 0; i < waiters.length; i += 2) {
    const w = waiters[i];
    if (typeof w === "function") w(task);
  }
  if (run.crashed) cancelWaiters(waiters, task, own ? thrown : run.error);
  else {
    for (let i = 0; i < waiters.length; i += 2) {
      const w = waiters[i];
      if (w instanceof Task && w.state === WAITING) throwIntoWaiter(w, outcome);
    }
  }
  endedInStops(task, stop);
  maybeEnd(run);
}

/** Throws `error` into `w`, which waits on coroutines, at its yield (a waiting cancelled task: its cancellation). */
export function throwIntoWaiter(w: Task, error: unknown): void {
  detach(w);
  const cancellation = w.run.cancelling?.get(w);
  if (cancellation === undefined) return throwInto(w, error);
  // Waiting in `yield shield(c)` for its cancellation, which it gets now.
  cancellation.pending = false;
  wakeCleanup(w, cancellation.error, true);
}

/**
 * During a crash: the tasks among `waiters` still waiting on `task` (a shield
 * kept them out of the crash, or they came to wait later) get a
 * CancelledError whose cause is `cause` (what `task` failed with), and the
 * work they started stops with them.
 */
export function cancelWaiters(
  waiters: (Task | Observer | number)[],
  task: Task,
  cause: unknown,
): void {
  for (let i = 0; i < waiters.length; i += 2) {
    const w = waiters[i] as Task | Observer;
    if (typeof w === "function") {
      // A caller still in a shield whose coroutine failed before the crash
      // began (its observer left it to the crash, which a shield around the
      // caller kept off): it hears of it now, as shielded work.
      const shield = shieldOfObserver.get(w);
      if (shield !== undefined && shield.caller!.waitingOn === shield) {
        shieldEnded(shield, task, false);
      }
      continue;
    }
    if (w.state !== WAITING) continue;
    const on = w.waitingOn;
    if (on !== task && !(on instanceof Gather && on.slots.includes(task))) continue;
    if (w.run.cancelling?.has(w)) throwIntoWaiter(w, cause);
    else cancelShielded(w, cause);
  }
}

/**
 * During a crash: cancels `task`, which a shield kept out of it, because
 * what it waited on failed with `cause` (recorded already) or was cancelled;
 * the work it started goes with it (except what others still wait on).
 */
export function cancelShielded(task: Task, cause: unknown): void {
  cause = causeOf(cause);
  const message = waiterCancelledMessage(cause);
  const { roots, work } = workOf([task], null, false);
  // The task first, so that it stops waiting before its work ends.
  for (const t of [...roots, ...work]) cancel(t, new CancelledError(message, { cause }), null);
}

/**
 * During a crash: `task`, being stepped, yielded a coroutine that the crash
 * cancelled or that failed with an error of the run (shielded work waiting on
 * what the crash stopped). Its cancellation, whose cause that error is, comes
 * at its next turn in the run queue.
 */
export function cancelAtNextTurn(task: Task, error: unknown): void {
  const run = task.run;
  const cause = causeOf(error);
  const cancellation: Cancellation = {
    error: new CancelledError(waiterCancelledMessage(cause), { cause }),
    stop: null,
    pending: false,
  };
  (run.cancelling ??= new Map()).set(task, cancellation);
  task.value = cancellation.error;
  task.state = CLEANUP_THROWING;
  run.core.driver.enqueue(task);
}

/** What a cancellation passed on is caused by: a CancelledError's cause, or the error itself. */
function causeOf(error: unknown): unknown {
  return error instanceof CancelledError ? error.cause : error;
}

// --- Shields ------------------------------------------------------------------

/**
 * What `shield(coro)` yields: the task waiting in it (its caller) waits for
 * `coro` like `yield coro`, and a cancellation that comes meanwhile leaves
 * `coro`, and what it waits on then, alone (see `shieldedAmong`); the caller
 * gets it once `coro` has ended (`shieldEnded`).
 */
export class Shield extends Wait {
  /** The task waiting in it, once parked. */
  caller: Task | null = null;
  /** The task of its coroutine, once parked. */
  child: Task | null = null;
  /**
   * During a crash: the coroutines that its work started in the background,
   * cancelled when it ends (`startedInShield`).
   */
  background: Task[] | null = null;
  readonly #observer: Observer = Object.assign((child: Task) => shieldEnded(this, child, false), {
    owner: null as Task | null,
  });

  constructor(readonly coro: Coro) {
    super();
    shieldOfObserver.set(this.#observer, this);
  }

  park(task: Task): void {
    this.caller = task;
    const seen = taskOf(this.coro);
    if (seen !== undefined && seen.run.core !== task.run.core) throw foreign(this.coro);
    const child = seen ?? spawn(task.run, this.coro, task);
    this.child = child;
    if (child.state >= DONE) {
      shieldEnded(this, child, true);
      return;
    }
    this.#observer.owner = task;
    addWaiter(child, this.#observer, -1);
  }

  unpark(): void {
    removeWaiter(this.child!, this.#observer);
  }

  override children(): readonly Task[] {
    return this.child === null ? [] : [this.child];
  }
  override waitingFor(_task: Task, idOf: (task: Task) => number | undefined): string {
    return `shield (coroutine ${this.child === null ? "?" : idOf(this.child)})`;
  }

  /** True if it keeps a cancellation off now: its coroutine runs, and does not wait on its caller (a cycle). */
  protects(): boolean {
    const child = this.child;
    return child !== null && child.state < DONE && !reachable([child]).has(this.caller!);
  }
}

/** `shield(coro)`'s WaitOns, for a cancelled task's `yield shield(c)` (without `*`). */
const shieldOfWaitOn = new WeakMap<object, Shield>();
/** The shields' observers: `startedInShield` finds a shield above a task by them. */
const shieldOfObserver = new WeakMap<Observer, Shield>();

/** The coroutine `shield(coro)` returns. */
export function shielding<T>(coro: Coro<T>): Coro<T> {
  const shield = new Shield(coro);
  const waitOn = new WaitOn<T>({ value: shield, done: false });
  shieldOfWaitOn.set(waitOn, shield);
  return waitOn;
}

/**
 * A shield's coroutine ended: its caller goes on. A caller that has not been
 * cancelled gets what `yield child` gives: the result; an error meant for it
 * (see `errorIsWaiters`); or, for an error of the run, the crash's
 * cancellation (crashing already, a CancelledError whose cause it is). A
 * caller whose cancellation waited in the shield gets it now; one cleaning up
 * goes on with the result, or the error meant for it, or a CancelledError
 * whose cause is the error of the run. Returns true if the error was handed
 * to the caller (it is not an error of the run). A coroutine that had ended
 * before it was shielded (`late`) gives its outcome as `yield child` would.
 */
function shieldEnded(shield: Shield, child: Task, late: boolean): boolean {
  const caller = shield.caller!;
  if (caller.waitingOn !== shield) return false; // it stopped waiting
  const run = caller.run;
  const background = shield.background;
  if (background !== null) {
    shield.background = null;
    const message = crashMessage(run.error, run.aborted && run.error === run.abortReason);
    const { roots, work } = workOf(background.filter((t) => t.state < DONE), null, true);
    for (const t of [...roots, ...work]) {
      cancel(t, new CancelledError(message, { cause: run.error }), null);
    }
  }
  const cancellation = run.cancelling?.get(caller);
  const ok = child.state === DONE;
  const handed = !ok && (late || errorIsWaiters(child));
  // An error of the run while crashing, or a cancellation: shielded work gets a cancellation.
  const cancelled = !ok && run.crashed && (!handed || child.value instanceof CancelledError);
  if (cancellation === undefined) {
    if (ok) resume(caller, shield, child.value);
    else if (cancelled) cancelShielded(caller, child.value);
    else if (handed) {
      caller.waitingOn = null;
      throwInto(caller, child.value);
    } else return false; // an error of the run: the crash cancels the caller
    return handed;
  }
  if (cancellation.pending) {
    cancellation.pending = false;
    wakeCleanup(caller, cancellation.error, true);
    return false;
  }
  if (ok) wakeCleanup(caller, child.value, false);
  else if (handed && !cancelled) wakeCleanup(caller, child.value, true);
  else {
    const cause = causeOf(child.value);
    wakeCleanup(caller, new CancelledError(waiterCancelledMessage(cause), { cause }), true);
  }
  return handed;
}

/**
 * The tasks that `roots` wait on, directly or through others (`waitsOn`),
 * the roots included.
 */
function reachable(roots: readonly Task[]): Set<Task> {
  const found = new Set<Task>();
  const todo = [...roots];
  while (todo.length > 0) {
    const t = todo.pop()!;
    if (found.has(t) || t.state >= DONE) continue;
    found.add(t);
    for (const c of waitsOn(t)) todo.push(c);
  }
  return found;
}

/**
 * The tasks that the shields whose callers are among `tasks` keep out of a
 * cancellation coming now: each shield's coroutine and everything it waits
 * on then, directly or through others. A shield whose coroutine waits on its
 * own caller protects nothing: a cycle through a shield is still a cycle.
 */
export function shieldedAmong(tasks: Iterable<Task>): Set<Task> {
  const shielded = new Set<Task>();
  for (const t of tasks) {
    const on = t.waitingOn;
    if (on instanceof Shield && on.caller === t && on.protects()) {
      for (const s of reachable([on.child!])) shielded.add(s);
    }
  }
  return shielded;
}

/**
 * True if `task` waits in a shield that protects its work now: parked in it
 * (`yield* shield(c)`), or waiting on the shield's own coroutine
 * (`yield shield(c)`).
 */
function inShield(task: Task): boolean {
  const on = task.waitingOn;
  if (on instanceof Shield) return on.caller === task && on.protects();
  return task.state === WAITING && on instanceof Task && on.gen instanceof WaitOn && inShield(on);
}

/** The shield each coroutine started in the background during a crash belongs to. */
const backgroundOf = new WeakMap<Task, Shield>();

/**
 * During a crash, `task` started `child` in the background: it belongs to
 * the shield `task` works for (found up the waiters, or by the coroutine
 * that started `task` in the background), and stops when that shield ends.
 * Started outside any shield, it is cancelled at once.
 */
export function startedInShield(task: Task, child: Task): void {
  const seen = new Set<Task>();
  const todo = [task];
  let found: Shield | undefined;
  while (found === undefined && todo.length > 0) {
    const t = todo.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    found = backgroundOf.get(t);
    forEachWaiter(t, (w) => {
      if (typeof w !== "function") todo.push(w);
      else if (shieldOfObserver.has(w)) found ??= shieldOfObserver.get(w);
      else if (w.owner != null) todo.push(w.owner);
    });
  }
  if (found === undefined) {
    const run = task.run;
    const message = crashMessage(run.error, run.aborted && run.error === run.abortReason);
    cancel(child, new CancelledError(message, { cause: run.error }), null);
    return;
  }
  backgroundOf.set(child, found);
  (found.background ??= []).push(child);
}

// --- Stops: cancelling the work of some tasks, quietly -------------------------

/** What `stopWork` is told by the primitive that stops work. */
export interface StopOptions {
  /** Which primitive stops it: what its cancellations say. */
  readonly by: "timeout" | "cancellable" | "race";
  /** The cause of the cancellations (the TimeoutError, the signal's reason; none for a race). */
  readonly cause: unknown;
  /** The task that waits through the primitive: its waits on the roots are not "outside". */
  readonly owner: Task;
  /** Roots that a coroutine outside the stopped work also waits on are spared (a race's losers). */
  readonly spareRoots: boolean;
  /**
   * What the roots get thrown in once their work has stopped: a timeout's
   * TimeoutError; by default a CancelledError that says what stopped them.
   */
  readonly rootError?: Error;
  /** Called once everything cancelled has stopped: their cleanup and their outside work. */
  done(): void;
}

/**
 * Cancels, quietly, `roots` and their work: the coroutines the roots started
 * by waiting on them, recursively, except those that a coroutine outside
 * that set waits on, and what those wait on — nothing left running waits on
 * a cancelled coroutine, so nothing can hang on one. The work gets a
 * CancelledError (which says what stopped it, and that it has no result)
 * first; each root gets the root error once its work has stopped. Shielded
 * work runs on, and the roots waiting on it wait for it. Quietly: it is not
 * a crash, so the CancelledErrors are reported nowhere; but an error that a
 * cancelled coroutine throws instead (its cleanup failed) is an error of the
 * run. `done` comes once all of them have ended — or gone on, for a
 * timeout's coroutine — and their outside work has stopped.
 */
export function stopWork(roots: readonly Task[], options: StopOptions): void {
  const stop = new Stop(options.owner.run, options);
  const { roots: stopped, work } = workOf(roots, options.owner, options.spareRoots);
  const shielded = shieldedAmong([...work, ...stopped]);
  // The roots first: each stops waiting on its work and waits for it to stop
  // (parked on the stop), or, if it waits on none (queued) or waits in a
  // shield, gets its error at its turn or once the shield has ended.
  for (const r of stopped) {
    if (r.state >= DONE || r.state === RUNNING) continue;
    if (r.run.cancelling?.has(r)) {
      stop.waitFor(r); // being cancelled already
    } else if (r.state <= FAILING || inShield(r)) {
      stop.cancelRoot(r);
    } else {
      if (detach(r)) stop.holding(r);
      r.state = r.gen instanceof WaitOn ? WAITON_PARKED : PARKED;
      r.waitingOn = stop;
      stop.roots.push(r);
    }
  }
  for (const t of work) {
    if (shielded.has(t)) continue;
    cancel(t, stop.error(false), stop);
    stop.waitFor(t);
  }
  stop.started();
}

/**
 * A stop in progress: what it still waits for, and where its roots wait for
 * their work to stop. The run finds the stops waiting for a task through
 * `run.awaited`, so that an end or a release costs a look-up, not a pass
 * over every stop in progress (ten thousand timeouts may run out at once).
 */
export class Stop extends Wait {
  /** The cancelled tasks that have not ended. */
  readonly #pending = new Set<Task>();
  /** The cancelled tasks whose outside work goes on, with how many releases are to come. */
  #held: Map<Task, number> | null = null;
  /** The roots parked here until their work has stopped. */
  roots: Task[] = [];
  #starting = true;
  #rootsCancelled = false;

  constructor(readonly run: Run, readonly options: StopOptions) {
    super();
  }

  park(): void {
    throw new Error("tinyio: a Stop is never yielded");
  }
  /** A root taken by another cancellation (a crash), or cancelled by this stop. */
  unpark(task: Task): void {
    const i = this.roots.indexOf(task);
    if (i >= 0) this.roots.splice(i, 1);
  }
  override children(): readonly Task[] {
    return [...this.#pending];
  }
  override waitingFor(_task: Task, idOf: (task: Task) => number | undefined): string {
    const ids = [...this.#pending].map(idOf).filter((id) => id !== undefined);
    return ids.length === 1
      ? `stopping (coroutine ${ids[0]})`
      : `stopping (coroutines ${ids.join(", ")})`;
  }

  /** Waits for `task` to end, if it is being cancelled. */
  waitFor(task: Task): void {
    const cancellation = this.run.cancelling?.get(task);
    if (task.state >= DONE || cancellation === undefined) return;
    this.#pending.add(task);
    // Cancelled by another stop: found through the run (the one that
    // cancelled it is told directly).
    if (cancellation.stop !== this) this.#await(task);
  }
  /** Cancels root `r` with the root error. */
  cancelRoot(r: Task): void {
    cancel(r, this.error(true), this);
    this.waitFor(r);
  }

  // One error for all the roots, and one for all their work: a stop's errors
  // say the same to each coroutine, and an Error costs about a microsecond to
  // make, more than the rest of a race of two.
  #rootError: Error | null = null;
  #workError: Error | null = null;

  /** The error that the roots (`root`), or their work, get: what yielding them later throws. */
  error(root: boolean): Error {
    const { by, cause, rootError } = this.options;
    if (!root) return this.#workError ??= stopError(by, false, cause);
    if (this.#rootError === null) {
      if (rootError !== undefined) stopErrors.add(rootError);
      this.#rootError = rootError ?? stopError(by, true, cause);
    }
    return this.#rootError;
  }
  /** `task`'s outside work goes on: a release is still to come. */
  holding(task: Task): void {
    const held = this.#held ??= new Map();
    held.set(task, (held.get(task) ?? 0) + 1);
    this.#await(task);
  }
  /** `task` ended, or went on. */
  ended(task: Task): void {
    if (!this.#pending.delete(task)) return;
    if (this.#held === null || !this.#held.has(task)) this.#unawait(task);
    this.#check();
  }
  /** A hold of `task` was released. */
  released(task: Task): void {
    const held = this.#held;
    const n = held?.get(task);
    if (n === undefined) return;
    if (n > 1) return void held!.set(task, n - 1);
    held!.delete(task);
    if (!this.#pending.has(task)) this.#unawait(task);
    this.#check();
  }
  started(): void {
    this.#starting = false;
    this.#check();
  }

  #await(task: Task): void {
    const awaited = this.run.awaited ??= new Map();
    const stops = awaited.get(task);
    if (stops === undefined) awaited.set(task, [this]);
    else if (!stops.includes(this)) stops.push(this);
  }
  #unawait(task: Task): void {
    const awaited = this.run.awaited;
    const stops = awaited?.get(task);
    const i = stops === undefined ? -1 : stops.indexOf(this);
    if (i < 0) return;
    if (stops!.length > 1) stops!.splice(i, 1);
    else awaited!.delete(task);
    if (awaited!.size === 0) this.run.awaited = null;
  }

  #check(): void {
    if (this.#starting || this.#pending.size > 0 || (this.#held?.size ?? 0) > 0) return;
    if (!this.#rootsCancelled) {
      // The work has stopped: now the roots.
      this.#rootsCancelled = true;
      this.#starting = true;
      for (const r of [...this.roots]) this.cancelRoot(r);
      this.roots = [];
      this.started();
      return;
    }
    this.options.done();
  }
}

/** Tells the stops waiting for `task`, cancelled by `stop` (or by the crash: null), that it ended or went on. */
function endedInStops(task: Task, stop: Stop | null): void {
  stop?.ended(task);
  const stops = task.run.awaited?.get(task);
  if (stops === undefined) return;
  if (stops.length === 1) stops[0].ended(task);
  else for (const stop of [...stops]) stop.ended(task);
}

/** Tells the stops waiting for `task`'s outside work that a hold of it was released. */
export function releasedInStops(task: Task): void {
  const stops = task.run.awaited?.get(task);
  if (stops !== undefined) { for (const stop of [...stops]) stop.released(task); }
}

/**
 * The work of `roots`: the unfinished tasks they started by waiting on them,
 * recursively (`waitsOn`, and `starter`), except those that a coroutine
 * outside the roots and their work waits on — and, repeatedly, what those
 * wait on. `owner`'s waits count as inside (the task waiting through the
 * primitive that stops them). With `spareRoots`, roots waited on from
 * outside are spared too, with their work.
 */
function workOf(
  roots: readonly Task[],
  owner: Task | null,
  spareRoots: boolean,
): { roots: Task[]; work: Task[] } {
  let work: Set<Task> | null = null; // most roots have none: made when one is found
  const todo = [...roots];
  while (todo.length > 0) {
    const t = todo.pop()!;
    for (const c of waitsOn(t)) {
      if (c.starter === t && !roots.includes(c) && !work?.has(c)) {
        (work ??= new Set()).add(c);
        todo.push(c);
      }
    }
  }
  const stopped = new Set(roots.filter((t) => t.state < DONE));
  if (work === null && !spareRoots) return { roots: [...stopped], work: [] };
  const found = work ?? new Set<Task>();
  const inside = (w: Task | Observer) => {
    const t = w instanceof Task ? w : w.owner;
    return t != null && (t === owner || stopped.has(t) || found.has(t));
  };
  // Spare a coroutine waited on from outside; repeat until nothing changes,
  // since a spared coroutine is outside too and spares what it waits on.
  let changed = true;
  while (changed) {
    changed = false;
    for (const set of spareRoots ? [found, stopped] : [found]) {
      for (const t of set) {
        let spared = false;
        forEachWaiter(t, (w) => spared ||= !inside(w));
        if (spared) {
          set.delete(t);
          changed = true;
        }
      }
    }
  }
  return { roots: [...stopped], work: [...found] };
}
