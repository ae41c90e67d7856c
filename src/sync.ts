/**
 * Synchronisation between coroutines: `Event`, `Semaphore`, `Lock`,
 * `Barrier` and `asCompleted`.
 *
 * @module
 */

import { type Coro, hintWhenYielded, isCoro, WaitOn } from "./coro.ts";
import { checkMs, describe } from "./messages.ts";
import {
  DeadlineWait,
  isParkedOn,
  resume,
  type Task,
  taskOf,
  timeLeft,
  Wait,
  watch,
} from "./wait.ts";

/** Waits on an event without a timeout: one shared by all such waiters of the event. */
class EventWait extends Wait {
  constructor(readonly event: Event) {
    super();
  }
  park(task: Task): void {
    if (this.event.isSet()) resume(task, this, true);
    else waitersOf(this.event).push(task);
  }
  unpark(): void {
    // Left in the list: `resume` ignores a task that no longer waits here.
    dropStale(this.event);
  }
  override waitingFor(): string {
    return eventLabel(this.event);
  }
}

/** Waits on an event with a timeout: its own deadline. */
class TimedEventWait extends DeadlineWait {
  constructor(readonly event: Event, ms: number) {
    super(ms);
  }
  park(task: Task): void {
    if (this.event.isSet()) return resume(task, this, true);
    this.setDeadline(task);
    waitersOf(this.event).push(this);
  }
  unpark(): void {
    this.clearDeadline();
    dropStale(this.event);
  }
  fire(): void {
    resume(this.task!, this, false);
    // Timed out: its place in the list is stale now, as after unpark (else a
    // never-set event would keep every timed-out waiter).
    dropStale(this.event);
  }
  override waitingFor(task: Task): string {
    return `${eventLabel(this.event)} (${timeLeft(task, this.at)})`;
  }
}

/** The barriers whose opening is the event (a snapshot says "Barrier", not "Event"). */
const barrierOf = new WeakMap<Event, Barrier>();
let arrivals: (barrier: Barrier) => string;

function eventLabel(event: Event): string {
  const barrier = barrierOf.get(event);
  return barrier === undefined ? "Event" : arrivals(barrier);
}

let waitersOf: (event: Event) => (Task | TimedEventWait)[];
let dropStale: (event: Event) => void;

/**
 * A flag that coroutines can wait for. `set()` wakes every waiter and may be
 * called from anywhere: another coroutine, another loop, a timer callback, an
 * HTTP handler.
 *
 * @example
 * ```ts
 * import { Event, Loop } from "@tinyio/core";
 *
 * const ready = new Event();
 * const log: string[] = [];
 * function* waiter() {
 *   yield ready.wait();
 *   log.push("woken");
 * }
 * function* setter() {
 *   log.push("setting");
 *   yield;
 *   ready.set();
 * }
 * await new Loop().run(function* () {
 *   yield [waiter(), setter()];
 * }());
 * console.assert(log.join() === "setting,woken");
 * ```
 */
export class Event {
  #set = false;
  // The waiters: a task parked on the shared `#wait`, or a timed wait (which
  // knows its task). One entry each, not (task, wait) pairs: 8 bytes less per
  // waiter, for events that thousands wait on.
  #waiters: (Task | TimedEventWait)[] = [];
  #stale = 0;
  #wait: EventWait = new EventWait(this);
  // What `wait()`'s first step yields: one for all its waiters (see WaitOn).
  #waitStep = Object.freeze({ value: this.#wait, done: false as const });

  static {
    waitersOf = (event) => event.#waiters;
    dropStale = (event) => {
      // Unparked tasks stay in the list (removing each would cost O(n)); compact
      // once they are half of it, so a never-set event does not grow forever.
      if (++event.#stale * 2 > event.#waiters.length) {
        event.#waiters = event.#waiters.filter((w) =>
          w instanceof TimedEventWait ? isParkedOn(w.task!, w) : isParkedOn(w, event.#wait)
        );
        event.#stale = 0;
      }
    };
  }

  /** True if set and not cleared since. */
  isSet(): boolean {
    return this.#set;
  }

  /** Sets the flag and wakes every coroutine waiting on it. */
  set(): void {
    if (this.#set) return;
    this.#set = true;
    const ws = this.#waiters;
    this.#waiters = [];
    this.#stale = 0;
    for (const w of ws) {
      if (w instanceof TimedEventWait) {
        w.clearDeadline(); // woken by set(): the deadline goes
        resume(w.task!, w, true);
      } else {
        resume(w, this.#wait, true);
      }
    }
  }

  /** Clears the flag: later `wait()`s block until the next `set()`. */
  clear(): void {
    this.#set = false;
  }

  /**
   * Waits until the flag is set, or at most `timeoutMs` milliseconds: `true`
   * when set, `false` when timed out. Returns at once if already set.
   * `timeoutMs` negative or `NaN` is a `RangeError`, thrown at the call.
   *
   * @example
   * ```ts
   * import { Event, Loop } from "@tinyio/core";
   *
   * const never = new Event();
   * const woken = await new Loop().run(never.wait(10));
   * console.assert(woken === false);
   * ```
   */
  wait(timeoutMs: number = Infinity): Coro<boolean> {
    checkMs("Event.wait()", timeoutMs);
    // Set already: done at once. (One set between now and the first step is
    // seen by `park`, which resumes at once.)
    if (this.#set) return new WaitOn(null, true);
    return new WaitOn(
      timeoutMs === Infinity
        ? this.#waitStep
        : { value: new TimedEventWait(this, timeoutMs), done: false },
    );
  }
}

hintWhenYielded(
  Event,
  "Event",
  "An Event is not a coroutine: wait for it with `yield* event.wait()`.",
);

/** Checks the count given to `what`: a positive integer. */
function checkCount(what: string, value: unknown): asserts value is number {
  if (typeof value !== "number") {
    throw new TypeError(`${what}: the value is ${describe(value)}; give a positive integer.`);
  }
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${what}: the value is ${value}; give a positive integer (1, 2, 3, …).`);
  }
}

/**
 * The right to hold a {@linkcode Semaphore} or {@linkcode Lock}, given by
 * `acquire()`. Release it once, by `release()` or by disposing it (a `using`
 * declaration): a second `release()` is an `Error`; disposing a released
 * permit does nothing.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, Semaphore } from "@tinyio/core";
 *
 * const sem = new Semaphore(1);
 * function* once(): Coro<void> {
 *   const permit = yield* sem.acquire();
 *   try {
 *     yield; // hold it across a pause
 *   } finally {
 *     permit.release();
 *   }
 * }
 * await new Loop().run(once());
 * ```
 */
export interface Permit extends Disposable {
  /** Gives the permit back, to the longest waiter if there is one. */
  release(): void;
}

/**
 * The free permits of a semaphore and its waiters, first come first served:
 * a linked list through the waits, so that a waiter that gives up leaves it
 * in O(1).
 */
class Permits {
  first: Acquire | null = null;
  last: Acquire | null = null;
  constructor(
    public free: number,
    /** What a snapshot calls it: "Semaphore(2)", "Lock". */
    readonly label: string = `Semaphore(${free})`,
  ) {}

  enqueue(wait: Acquire): void {
    wait.prev = this.last;
    if (this.last === null) this.first = wait;
    else this.last.next = wait;
    this.last = wait;
  }

  remove(wait: Acquire): void {
    if (wait.prev === null) this.first = wait.next;
    else wait.prev.next = wait.next;
    if (wait.next === null) this.last = wait.prev;
    else wait.next.prev = wait.prev;
    wait.prev = wait.next = null;
  }

  /** A permit came back: straight to the longest waiter, else free. */
  giveBack(): void {
    const wait = this.first;
    if (wait === null) {
      this.free++;
      return;
    }
    this.remove(wait);
    wait.granted = new SemaphorePermit(this);
    resume(wait.task!, wait, wait.granted);
  }
}

class SemaphorePermit implements Permit {
  #permits: Permits | null;
  constructor(permits: Permits) {
    this.#permits = permits;
  }
  release(): void {
    const permits = this.#permits;
    if (permits === null) {
      throw new Error(
        "Permit.release(): this permit was already released. Release each permit once " +
          "(`using permit = yield* sem.acquire()` does it for you).",
      );
    }
    this.#permits = null;
    permits.giveBack();
  }
  [Symbol.dispose](): void {
    if (this.#permits !== null) this.release();
  }
}

/** A coroutine waiting for a permit: in the queue until granted or it stops waiting. */
class Acquire extends Wait {
  task: Task | null = null;
  granted: SemaphorePermit | null = null;
  prev: Acquire | null = null;
  next: Acquire | null = null;
  constructor(readonly permits: Permits) {
    super();
  }
  park(task: Task): void {
    this.task = task;
    this.permits.enqueue(this);
  }
  unpark(): void {
    this.permits.remove(this);
  }
  override waitingFor(): string {
    return this.permits.label;
  }
}

/**
 * Lets at most `value` coroutines hold it at once. `acquire()` waits for a
 * permit; waiters are served first come, first served, and a released permit
 * passes straight to the longest waiter, so a coroutine that comes later
 * cannot jump the queue. A coroutine that stops waiting (cancelled, timed
 * out) takes no permit with it. `value` must be a positive integer, else
 * `RangeError`.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, Semaphore, sleep } from "@tinyio/core";
 *
 * const sem = new Semaphore(2);
 * let inside = 0;
 * let most = 0;
 * function* job(): Coro<void> {
 *   using _ = yield* sem.acquire(); // released when the block ends, even by an error
 *   most = Math.max(most, ++inside);
 *   yield sleep(5);
 *   inside--;
 * }
 * await new Loop().run(function* () {
 *   yield [job(), job(), job(), job(), job()];
 * }());
 * console.assert(most === 2);
 * ```
 */
export class Semaphore {
  // V8 drops compiled code along with the hidden classes it was compiled
  // against, once their last object is collected (docs/design.md, "Hidden classes"):
  // one of each kept here spares every new semaphore's run the slow start.
  static #keepShapes: unknown[] = [
    new Semaphore(1),
    new Acquire(new Permits(1)),
    new SemaphorePermit(new Permits(1)),
  ];

  #permits: Permits;

  /** Makes a semaphore with `value` permits (a positive integer). */
  constructor(value: number) {
    checkCount("new Semaphore()", value);
    this.#permits = new Permits(value);
  }

  /**
   * Waits for a permit and returns it; release it once, best with `using`.
   *
   * @example
   * ```ts
   * import { type Coro, Loop, Semaphore } from "@tinyio/core";
   *
   * const sem = new Semaphore(1);
   * function* critical(): Coro<string> {
   *   using _ = yield* sem.acquire();
   *   return "alone here";
   * }
   * console.assert(await new Loop().run(critical()) === "alone here");
   * ```
   */
  acquire(): Coro<Permit> {
    return acquiring(this.#permits);
  }
}

hintWhenYielded(
  Semaphore,
  "Semaphore",
  "A Semaphore is not a coroutine: take a permit with `using _ = yield* sem.acquire();`.",
);

function* acquiring(permits: Permits): Coro<Permit> {
  // A free permit means nobody waits: permits pass straight to waiters.
  if (permits.free > 0) {
    permits.free--;
    return new SemaphorePermit(permits);
  }
  const wait = new Acquire(permits);
  try {
    return yield wait;
  } catch (error) {
    // Granted a permit but stopped (cancelled, timed out) before receiving it:
    // pass it on, or it would be lost.
    wait.granted?.release();
    throw error;
  }
}

/**
 * Lets one coroutine at a time hold it: a `Semaphore(1)`, with the same
 * first come, first served guarantee.
 *
 * @example
 * ```ts
 * import { type Coro, Lock, Loop } from "@tinyio/core";
 *
 * const lock = new Lock();
 * const log: string[] = [];
 * function* writer(name: string): Coro<void> {
 *   using _ = yield* lock.acquire();
 *   log.push(`${name} in`);
 *   yield;
 *   log.push(`${name} out`);
 * }
 * await new Loop().run(function* () {
 *   yield [writer("a"), writer("b")];
 * }());
 * console.assert(log.join() === "a in,a out,b in,b out");
 * ```
 */
export class Lock {
  #permits = new Permits(1, "Lock");

  /** Waits until the lock is free and returns the permit to hold it. */
  acquire(): Coro<Permit> {
    return acquiring(this.#permits);
  }
}

hintWhenYielded(
  Lock,
  "Lock",
  "A Lock is not a coroutine: hold it with `using _ = yield* lock.acquire();`.",
);

/**
 * Holds coroutines back until `value` of them have arrived at `wait()`; then
 * all pass, and later arrivals pass at once. `wait()` returns the arrival
 * index, from 0. A coroutine that stops waiting (cancelled, timed out) before
 * the barrier opens withdraws its arrival. `value` must be a positive
 * integer, else `RangeError`.
 *
 * @example
 * ```ts
 * import { Barrier, type Coro, Loop } from "@tinyio/core";
 *
 * const barrier = new Barrier(3);
 * function* party(): Coro<number> {
 *   return yield* barrier.wait();
 * }
 * const indices = await new Loop().run(function* () {
 *   return yield [party(), party(), party()];
 * }());
 * console.assert(indices.join() === "0,1,2");
 * ```
 */
export class Barrier {
  #value: number;
  #arrived = 0;
  #open = new Event();

  static {
    arrivals = (b) => `Barrier(${b.#value}): ${b.#arrived} arrived`;
  }

  /** Makes a barrier that opens once `value` coroutines (a positive integer) have arrived. */
  constructor(value: number) {
    checkCount("new Barrier()", value);
    this.#value = value;
    barrierOf.set(this.#open, this);
  }

  /**
   * Arrives, waits until `value` coroutines have arrived, and returns this
   * arrival's index.
   *
   * @example
   * ```ts
   * import { Barrier, Loop } from "@tinyio/core";
   *
   * const solo = new Barrier(1);
   * console.assert(await new Loop().run(solo.wait()) === 0);
   * ```
   */
  wait(): Coro<number> {
    return this.#waiting();
  }

  *#waiting(): Coro<number> {
    const index = this.#arrived++;
    if (this.#arrived >= this.#value) {
      this.#open.set();
      return index;
    }
    let passed = false;
    try {
      yield* this.#open.wait();
      passed = true;
    } finally {
      if (!passed && !this.#open.isSet()) this.#arrived--;
    }
    return index;
  }
}

hintWhenYielded(
  Barrier,
  "Barrier",
  "A Barrier is not a coroutine: wait at it with `yield* barrier.wait()`.",
);

/**
 * Starts every coroutine of `coros` in the background and resumes with
 * coroutines that produce their results in the order they finish: the first
 * one handed back gives the first result to come, whichever coroutine that
 * is. Takes a `Set`, an array or any iterable. An error in one of them is an
 * error of the run, as for any background coroutine.
 *
 * @example
 * ```ts
 * import { asCompleted, type Coro, join, Loop, sleep } from "@tinyio/core";
 *
 * function* after(ms: number): Coro<number> {
 *   yield sleep(ms);
 *   return ms;
 * }
 * function* main(): Coro<number[]> {
 *   const order: number[] = [];
 *   for (const next of yield* asCompleted(new Set([after(30), after(10), after(20)]))) {
 *     order.push(yield* join(next));
 *   }
 *   return order;
 * }
 * console.assert((await new Loop().run(main())).join() === "10,20,30");
 * ```
 */
export function asCompleted<T>(coros: Iterable<Coro<T>>): Coro<Iterable<Coro<T>>> {
  if (typeof (coros as { [Symbol.iterator]?: unknown })?.[Symbol.iterator] !== "function") {
    throw new TypeError(
      `asCompleted(): the argument is ${describe(coros)}; give an iterable of coroutines ` +
        "(a Set or an array).",
    );
  }
  const items = [...coros];
  items.forEach((c, i) => {
    if (!isCoro(c)) {
      throw new TypeError(
        `asCompleted(): element ${i} is ${describe(c)}, not a coroutine (a generator object, ` +
          "such as `f()` for `function* f`).",
      );
    }
  });
  return completing(items);
}

function* completing<T>(coros: Coro<T>[]): Coro<Iterable<Coro<T>>> {
  yield new Set(coros);
  // Slot k holds the k-th result to come, and wakes whoever waits for it.
  const outcomes: { ok: boolean; value: unknown }[] = [];
  const arrived = coros.map(() => new Event());
  const observer = (task: Task) => {
    const k = outcomes.length;
    outcomes.push({ ok: task.succeeded, value: task.value });
    arrived[k].set();
    return false; // a failure stays an error of the run
  };
  for (const c of coros) watch(taskOf(c)!, observer);

  function* nth(k: number): Coro<T> {
    yield* arrived[k].wait();
    const { ok, value } = outcomes[k];
    if (!ok) throw value;
    return value as T;
  }
  return coros.map((_, k) => nth(k));
}
