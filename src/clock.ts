/**
 * The loop's clock: the time it reads and the one heap of deadlines that every
 * sleep and timeout of a loop shares. The real clock reads `performance.now()`;
 * the virtual clock is a number that moves only when the loop, finding nothing
 * to run and no outside work pending, jumps it to the next deadline. The loop
 * asks a clock only a few things — fire what is due, when is the next
 * deadline, jump (virtual only) — and reads the host time once for both
 * clocks, so the real clock pays nothing for the virtual one.
 *
 * @module
 */

/** Something due at a time: a sleep, an `Event.wait` timeout, a `timeout`. */
export interface Deadline {
  /** When it is due, on its clock. */
  at: number;
  /** Set order, so that equal deadlines fire in the order they were set. */
  seq: number;
  /** Its place in the heap, or -1 when not in it (so it is removed at once). */
  index: number;
  /** Called once, when due. */
  fire(): void;
}

/** A clock with its heap of deadlines. */
export abstract class Clock {
  /** True for the virtual clock. */
  abstract readonly virtual: boolean;
  #heap: Deadline[] = [];
  #seq = 0;

  /** The time now, in milliseconds. */
  abstract now(): number;

  /** Schedules `d` to fire `ms` from now; `Infinity` never fires. */
  add(d: Deadline, ms: number): void {
    d.at = this.now() + ms;
    d.seq = this.#seq++;
    if (ms === Infinity) return;
    const heap = this.#heap;
    d.index = heap.length;
    heap.push(d);
    this.#up(d.index);
  }

  /** Drops `d` if it is still waiting to fire. */
  remove(d: Deadline): void {
    const i = d.index;
    if (i < 0) return;
    d.index = -1;
    const heap = this.#heap;
    const last = heap.pop()!;
    if (i === heap.length) return;
    heap[i] = last;
    last.index = i;
    this.#down(i);
    this.#up(last.index);
  }

  /** When the next deadline is due, or `Infinity`. */
  next(): number {
    return this.#heap.length === 0 ? Infinity : this.#heap[0].at;
  }

  /**
   * Fires every deadline that is due. `hostNow` is `performance.now()` as the
   * loop just read it: the real clock's time (so it is not read twice); the
   * virtual clock ignores it and fires what is due at its own time, which
   * stands still while coroutines run.
   */
  abstract fireDue(hostNow: number): void;

  /**
   * The virtual clock moves to the next deadline and fires everything due
   * there; false if there is no deadline. The real clock cannot jump.
   */
  abstract jump(): boolean;

  /** Fires, in deadline order (ties in set order), every deadline due by `time`. */
  protected fireUpTo(time: number): void {
    const heap = this.#heap;
    while (heap.length > 0 && heap[0].at <= time) {
      const d = heap[0];
      this.remove(d);
      d.fire();
    }
  }

  #before(a: Deadline, b: Deadline): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const d = heap[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#before(d, heap[p])) break;
      heap[i] = heap[p];
      heap[i].index = i;
      i = p;
    }
    heap[i] = d;
    d.index = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const d = heap[i];
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && this.#before(heap[c + 1], heap[c])) c++;
      if (!this.#before(heap[c], d)) break;
      heap[i] = heap[c];
      heap[i].index = i;
      i = c;
    }
    heap[i] = d;
    d.index = i;
  }
}

/** Host time: `performance.now()`. */
export class RealClock extends Clock {
  readonly virtual = false;
  now(): number {
    return performance.now();
  }
  fireDue(hostNow: number): void {
    this.fireUpTo(hostNow);
  }
  jump(): boolean {
    return false;
  }
}

/** The loop's own time, moved only by jumps to the next deadline. */
export class VirtualClock extends Clock {
  readonly virtual = true;
  #time = 0;
  now(): number {
    return this.#time;
  }
  fireDue(): void {
    this.fireUpTo(this.#time);
  }
  jump(): boolean {
    const at = this.next();
    if (at === Infinity) return false;
    if (at > this.#time) this.#time = at;
    this.fireUpTo(this.#time);
    return true;
  }
}
