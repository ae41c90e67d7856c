/**
 * Synchronisation between coroutines.
 *
 * @module
 */

import type { Clock, Deadline } from "./clock.ts";
import type { Coro } from "./coro.ts";
import { resume, type Task, Wait } from "./loop.ts";
import { checkMs } from "./time.ts";

/** Waits on an event without a timeout: one shared by all such waiters of the event. */
class EventWait extends Wait {
  constructor(readonly event: Event) {
    super();
  }
  park(task: Task): void {
    waitersOf(this.event).push(task, this);
  }
  unpark(): void {
    // Left in the list: `resume` ignores a task that no longer waits here.
    dropStale(this.event);
  }
}

/** Waits on an event with a timeout: its own deadline. */
class TimedEventWait extends Wait implements Deadline {
  at = 0;
  seq = 0;
  index = -1;
  #task: Task | null = null;
  #clock: Clock | null = null;

  constructor(readonly event: Event, readonly ms: number) {
    super();
  }
  park(task: Task): void {
    this.#task = task;
    this.#clock = task.clock;
    this.#clock.add(this, this.ms);
    waitersOf(this.event).push(task, this);
  }
  unpark(): void {
    this.#clock!.remove(this);
    dropStale(this.event);
  }
  fire(): void {
    resume(this.#task!, this, false);
  }
  /** Woken by `set()`: the deadline goes. */
  cancelDeadline(): void {
    this.#clock?.remove(this);
  }
}

let waitersOf: (event: Event) => (Task | Wait)[];
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
  // Parked tasks and the wait each is parked on, as pairs.
  #waiters: (Task | Wait)[] = [];
  #stale = 0;
  #wait: EventWait = new EventWait(this);

  static {
    waitersOf = (event) => event.#waiters;
    dropStale = (event) => {
      // Unparked tasks stay in the list (removing each would cost O(n)); compact
      // once they are half of it, so a never-set event does not grow forever.
      if (++event.#stale * 4 > event.#waiters.length) {
        const live: (Task | Wait)[] = [];
        const ws = event.#waiters;
        for (let i = 0; i < ws.length; i += 2) {
          const task = ws[i] as Task;
          if (!task.ended && task.waitingOn === ws[i + 1]) live.push(task, ws[i + 1]);
        }
        event.#waiters = live;
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
    for (let i = 0; i < ws.length; i += 2) {
      const wait = ws[i + 1] as Wait;
      if (wait instanceof TimedEventWait) wait.cancelDeadline();
      resume(ws[i] as Task, wait, true);
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
    return this.#waiting(timeoutMs);
  }

  *#waiting(ms: number): Coro<boolean> {
    if (this.#set) return true;
    return yield ms === Infinity ? this.#wait : new TimedEventWait(this, ms);
  }
}
