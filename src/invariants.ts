/**
 * The invariants of the task state machine (src/task.ts), as code: every
 * test switches them on (tests/_helper.ts), and the driver then checks them
 * each time it comes to rest — before it returns to the host, before it
 * sleeps, when its top run ends — points where no task is being stepped.
 * Production never calls this file: the driver pays one comparison per host
 * return (docs/design.md, "Invariants").
 *
 * @module
 */

import { isCoro, WaitOn } from "./coro.ts";
import { Driver } from "./core.ts";
import { Shield, Stop } from "./cancelling.ts";
import {
  CLEANUP,
  CLEANUP_THROWING,
  DONE,
  FAILED,
  FAILING,
  Gather,
  PARKED,
  QUEUED,
  RETURNING,
  type Run,
  RUNNING,
  Task,
  THROWING,
  Wait,
  WAITING,
  WAITON_PARKED,
} from "./task.ts";

const STATE_NAMES: Record<number, string> = {
  [QUEUED]: "QUEUED",
  [THROWING]: "THROWING",
  [RETURNING]: "RETURNING",
  [FAILING]: "FAILING",
  [CLEANUP]: "CLEANUP",
  [CLEANUP_THROWING]: "CLEANUP_THROWING",
  [RUNNING]: "RUNNING",
  [WAITING]: "WAITING",
  [PARKED]: "PARKED",
  [WAITON_PARKED]: "WAITON_PARKED",
  [DONE]: "DONE",
  [FAILED]: "FAILED",
};

/** From now on, every driver checks the invariants whenever it comes to rest. */
export function enableInvariantChecks(): void {
  Driver.atRest = checkDriver;
}

/** Throws an Error naming the first invariant that `driver` and its runs break. */
export function checkDriver(driver: Driver): void {
  // A task in a queued state is in the run queue exactly once; an ended one
  // may be there still (cancelled while queued: skipped when its turn comes).
  const inQueue = new Map<Task, number>();
  for (const t of driver.queued()) {
    inQueue.set(t, (inQueue.get(t) ?? 0) + 1);
    if (t.state >= DONE) checkEnded(t);
    else check(t.state <= CLEANUP_THROWING, t, "is in the run queue but not in a queued state");
  }
  let holds = 0;
  for (const run of driver.runs) {
    check(!run.ended, run.root, "belongs to a run that ended but is still driven");
    holds += run.holds;
    checkRun(run, inQueue);
  }
  check(holds === driver.holds, null, `driver holds ${driver.holds}, its runs ${holds}`);
}

function checkRun(run: Run, inQueue: Map<Task, number>): void {
  check(run.holds >= 0, run.root, `belongs to a run with ${run.holds} holds`);
  let live = 0;
  let prev: Task | null = null;
  for (let t = run.first; t !== null; prev = t, t = t.next) {
    live++;
    check(t.prev === prev, t, "has a broken link in its run's list");
    check(t.run === run, t, "is in the list of another run");
    check(t.state < DONE, t, "ended but is still in its run's list");
    check(t.state !== RUNNING, t, "is RUNNING while no task is being stepped");
    const queued = t.state <= CLEANUP_THROWING;
    check((inQueue.get(t) ?? 0) === (queued ? 1 : 0), t, "is not in the run queue once");
    // A WaitOn's task is never stepped as a generator, and a generator's
    // task never takes a WaitOn's states.
    const waitOn = t.gen instanceof WaitOn;
    const waitOnState = t.state === RETURNING || t.state === FAILING ||
      t.state === WAITON_PARKED;
    check(waitOn === waitOnState, t, "is a WaitOn's task in a generator's state, or the reverse");
    check(isCoro(t.gen), t, "is the task of neither a generator nor a WaitOn");
    if (queued) {
      check(t.waitingOn === null, t, "is queued but still waits on something");
    } else {
      check(t.value === undefined, t, "waits but has a value to send in");
      if (t.state === WAITING) checkWaiting(t);
      else check(t.waitingOn instanceof Wait, t, "is parked but not on a Wait");
    }
    checkCancelling(t, run);
    checkWaiters(t);
    if (t.starter !== null) {
      check(t.starter.run.core === run.core, t, "was started by a task of another loop");
    }
  }
  check(prev === run.last, run.root, "belongs to a run whose `last` is not its last task");
  check(live === run.live, run.root, `belongs to a run of ${live} tasks counting ${run.live}`);
}

/**
 * A task cleaning up after its cancellation (CLEANUP states) is listed as
 * cancelling; a cancelling task is queued to clean up, or waits in a shield
 * (or, for a root of a stop, waits in the stop for its work to end: never
 * listed then), or waits on the coroutine of `yield shield(c)`.
 */
function checkCancelling(t: Task, run: Run): void {
  const cancelling = run.cancelling?.get(t);
  const cleanup = t.state === CLEANUP || t.state === CLEANUP_THROWING;
  if (cleanup) check(cancelling !== undefined, t, "cleans up but is not listed as cancelling");
  if (cancelling === undefined) return;
  const on = t.waitingOn;
  check(
    cleanup || on instanceof Shield || (t.state === WAITING && on instanceof Task),
    t,
    "is cancelling but neither queued to clean up nor waiting in a shield",
  );
  check(!(on instanceof Stop), t, "is cancelling but parked on a stop");
  if (cancelling.pending) check(on !== null, t, "waits for its cancellation but waits on nothing");
}

/** `t` waits on a child or a gather, and each child lists it as a waiter at its slot. */
function checkWaiting(t: Task): void {
  const on = t.waitingOn;
  if (on instanceof Task) {
    check(on.state < DONE && hasWaiter(on, t, -1), t, "waits on a child that does not list it");
    return;
  }
  check(on instanceof Gather, t, "is WAITING on neither a task nor a Gather");
  const { slots, pending } = on as Gather;
  let open = 0;
  for (let i = 0; i < slots.length; i++) {
    const c = slots[i];
    if (c instanceof Task && c.state < DONE) {
      open++;
      check(hasWaiter(c, t, i), t, `waits on gather slot ${i}, whose child does not list it`);
    }
  }
  check(
    open === pending && pending > 0,
    t,
    `waits on a gather of ${open} open, ${pending} counted`,
  );
}

/** Every task that `t` lists as a waiter waits on `t`, at that slot. */
function checkWaiters(t: Task): void {
  const entries = t.waiter === null ? [] : [t.waiter, t.waiterSlot, ...(t.moreWaiters ?? [])];
  check(entries.length > 0 || t.moreWaiters === null, t, "has more waiters but no first one");
  for (let i = 0; i < entries.length; i += 2) {
    const w = entries[i];
    if (typeof w === "function") continue; // an observer
    const slot = entries[i + 1] as number;
    check(w instanceof Task && w.state === WAITING, t, "lists a waiter that is not WAITING");
    const on = (w as Task).waitingOn;
    const waits = slot < 0 ? on === t : on instanceof Gather && on.slots[slot] === t;
    check(waits, t, `lists a waiter (slot ${slot}) that does not wait on it`);
  }
}

function hasWaiter(child: Task, waiter: Task, slot: number): boolean {
  if (child.waiter === waiter && child.waiterSlot === slot) return true;
  const more = child.moreWaiters ?? [];
  for (let i = 0; i < more.length; i += 2) {
    if (more[i] === waiter && more[i + 1] === slot) return true;
  }
  return false;
}

/** An ended task keeps its outcome and nothing else. */
function checkEnded(t: Task): void {
  check(
    t.waitingOn === null && t.waiter === null && t.moreWaiters === null &&
      t.prev === null && t.next === null,
    t,
    "ended but still waits, has waiters or is linked in its run",
  );
}

function check(ok: boolean, task: Task | null, what: string): void {
  if (ok) return;
  const state = task === null ? "" : ` (${STATE_NAMES[task.state] ?? task.state})`;
  throw new Error(`tinyio invariant broken: a task${state} ${what}`);
}
