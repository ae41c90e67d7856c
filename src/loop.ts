/**
 * The loop: the one place that steps coroutines.
 *
 * A coroutine gets a {@linkcode Task} the first time a loop sees it, stored on
 * the generator object itself: that is how a diamond runs once, how a finished
 * coroutine's result is read again, and why results are weak (the task dies
 * with its generator). Runnable tasks wait in one FIFO ring, the run queue. A
 * task that yields coroutines waits for them with a counter (kept in its
 * `value` meanwhile); each child keeps the list of its waiters and counts them
 * down when it ends.
 *
 * Everything else — sleeps, events, semaphores, threads, promises — is a
 * {@linkcode Wait}: the loop parks the task on it and forgets it until the
 * wait calls {@linkcode resume} or {@linkcode fail}. Work outside the loop
 * that a run must not outlive (a worker, a promise) is announced with
 * {@linkcode hold} and {@linkcode release}.
 *
 * The waits that programs hold by the thousand (`sleep()`, `event.wait()`)
 * reach users as a `WaitOn` (src/coro.ts): a small coroutine that yields its
 * Wait once. With `yield*` the caller steps it; waited on as a coroutine it
 * gets a task, which the loop parks at once and ends once resumed, never
 * stepping it as a generator.
 *
 * @module
 */

import { CancelledError } from "./errors.ts";
import { type Clock, RealClock, VirtualClock } from "./clock.ts";
import { type Coro, isCoro, isGenerator, TASK, WaitOn, YIELD_HINT } from "./coro.ts";

/**
 * Options of {@linkcode Loop.prototype.run}.
 *
 * @example
 * ```ts
 * import { Loop, sleep } from "@tinyio/core";
 *
 * const options = { exceptionGroup: true, signal: AbortSignal.timeout(10) };
 * const error = await new Loop().run(sleep(1_000), options).catch((e) => e);
 * console.assert(error instanceof AggregateError); // errors[0] is the signal's reason
 * ```
 */
export interface RunOptions {
  /**
   * What `run` rejects with when a coroutine fails: `false`, that error;
   * `true`, an `AggregateError` of it, the errors raised while cancelling,
   * then the `CancelledError`s; unset, that error alone unless cancelling
   * raised other errors, else an `AggregateError` of it and them.
   */
  exceptionGroup?: boolean;
  /** Aborting it cancels every coroutine of the run; `run` rejects with its reason. */
  signal?: AbortSignal;
}

/**
 * Options of the {@linkcode Loop} constructor.
 *
 * @example
 * ```ts
 * import { Loop, sleep } from "@tinyio/core";
 *
 * const loop = new Loop({ clock: "virtual" });
 * await loop.run(sleep(60_000)); // at once
 * console.assert(loop.now() === 60_000);
 * ```
 */
export interface LoopOptions {
  /**
   * `"real"` (default): host time. `"virtual"`: the loop's own time, which
   * jumps to the next deadline whenever nothing can run and no outside work
   * (`runInThread`, `fromPromise`) is pending, for instant and exact tests of
   * code that sleeps.
   */
  clock?: "real" | "virtual";
}

// The loop steps generators through these, not `gen.next(v)`: V8 compiles a
// method call against the hidden class of the generator, and that class (a
// generator function's, plus TASK) is dropped when its last generator is
// collected, throwing the compiled hot path away with it. A loop started
// after such a collection then stepped in slow code until compiled again
// (measured: 33 against 17 ns per step).
const generatorPrototype = Object.getPrototypeOf(function* () {}).prototype as Coro;
const generatorNext = generatorPrototype.next;
const generatorThrow = generatorPrototype.throw;

// Task states.
const QUEUED = 0; // in the run queue (or about to be): the next step sends `value` in
const THROWING = 1; // in the run queue: the next step throws `value` in
// A WaitOn's task is never stepped as a generator: it parks on its wait when
// made, and once resumed (or failed) it waits in the run queue to end.
const RETURNING = 2; // a WaitOn's, in the run queue: returns `value`
const FAILING = 3; // a WaitOn's, in the run queue: fails with `value`
const RUNNING = 4; // being stepped
const WAITING = 5; // waiting for coroutines: `waitingOn` is the child task or the gather's slots
const PARKED = 6; // parked on a Wait: `waitingOn` is the Wait
const WAITON_PARKED = 7; // a WaitOn's, parked on its Wait: `waitingOn` is the Wait
const DONE = 8; // returned: `value` is the result
const FAILED = 9; // threw or was cancelled: `value` is the error

/** Called when a watched task ends; return true to take over its failure. */
export type Observer = (task: Task) => boolean | void;

/**
 * Something a coroutine can wait on, other than coroutines. The loop calls
 * `park` when a coroutine yields it; from then on the wait owns that task
 * until it calls `resume` or `fail` (once, from anywhere) — or until the loop
 * calls `unpark` because the task stopped waiting (cancelled, timed out),
 * after which the wait must let go of it: drop its deadline, give up its
 * place, stop its work.
 */
export abstract class Wait {
  /** `task` yielded this and now waits on it. */
  abstract park(task: Task): void;
  /** `task` no longer waits on this. */
  abstract unpark(task: Task): void;
}

/**
 * The loop's record of one coroutine. It lives as long as its generator, so it
 * is kept small: every field costs 8 bytes per coroutine.
 */
export class Task {
  /**
   * What the next step sends in (or throws); the result or error once ended;
   * while waiting on a gather, how many of its children have not ended yet.
   */
  value: unknown = undefined;
  state = QUEUED;
  /** The child task, the gather's slots, or the Wait this task is waiting on. */
  waitingOn: Task | unknown[] | Wait | null = null;
  // Who waits for this task: the first inline (most tasks have one), the rest
  // as (waiter, slot) pairs. A slot of -1 means a single `yield coro`.
  waiter: Task | Observer | null = null;
  waiterSlot = -1;
  moreWaiters: (Task | Observer | number)[] | null = null;
  // The run's list of unfinished tasks, for cancellation and cycle checks.
  prev: Task | null = null;
  next: Task | null = null;

  constructor(
    readonly gen: Coro,
    readonly run: Run,
    /** The task that started this one by waiting on it; null if started in the background. */
    readonly starter: Task | null,
  ) {}

  /** True while queued to have `value` thrown in at its next step (tests watch for it). */
  get throwing(): boolean {
    return this.state === THROWING;
  }
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
  /** Called once when the run has ended (see {@linkcode atRunEnd}). */
  atEnd: (() => void)[] | null = null;

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

function groupMessage(error: unknown): string {
  const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return `a coroutine failed (${what}); errors[0] is that error, the rest came while cancelling`;
}

const SLICE_MS = 4; // return to the host at least this often while tasks stay runnable
const MAX_STRIDE = 1024; // steps between clock reads, at most

/**
 * A loop's internals. A nested loop (`isolate`) has its own core — its own
 * coroutines — but is stepped by its outer loop's `driver` and shares its clock.
 */
export class Core {
  // V8 compiles the hot path against the hidden classes of Task, Run and Core,
  // and drops a hidden class once no object has it: when a run ends and a
  // collection takes its last task, the compiled loop is thrown away and the
  // next run steps in slow code until it is compiled again (see `TASK`). One
  // task kept here for good keeps those classes alive.
  static #keepShapes: Task = new Task(
    (function* () {})(),
    new Run(new Core(new RealClock()), undefined, () => {}),
    null,
  );

  running = false;
  readonly driver: Core;
  // The driver's state: the run queue (a ring), the runs it steps, how it sleeps.
  #queue: (Task | undefined)[] = new Array(256);
  #head = 0;
  #tail = 0;
  #mask = 255;
  #stride = 64;
  readonly runs: Set<Run> = new Set();
  holds = 0;
  #wakeUp: (() => void) | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;

  constructor(readonly clock: Clock, driver?: Core) {
    this.driver = driver ?? this;
  }

  /** Starts `coro` as the root of a new run of this core. */
  startRun(coro: Coro, exceptionGroup: boolean | undefined, onEnd: (run: Run) => void): Run {
    const run = new Run(this, exceptionGroup, onEnd);
    this.driver.runs.add(run);
    run.root = spawn(run, coro, null);
    return run;
  }

  /** Puts `task` at the back of the run queue and wakes the loop if it sleeps. */
  schedule(task: Task): void {
    task.state = QUEUED;
    this.enqueue(task);
  }

  /** Puts `task`, its state set, at the back of the run queue; wakes the loop if it sleeps. */
  enqueue(task: Task): void {
    const queue = this.#queue;
    queue[this.#tail] = task;
    this.#tail = (this.#tail + 1) & this.#mask;
    if (this.#tail === this.#head) this.#grow();
    if (this.#wakeUp !== null) this.#wakeUp();
  }

  #grow(): void {
    const old = this.#queue;
    const n = old.length;
    // The ring is full: head === tail. Unroll it into a twice larger array.
    this.#queue = old.slice(this.#head).concat(old.slice(0, this.#head), new Array(n));
    this.#head = 0;
    this.#tail = n;
    this.#mask = 2 * n - 1;
  }

  /** Wakes the loop if it sleeps (an event from outside, a released hold). */
  wake(): void {
    if (this.#wakeUp !== null) this.#wakeUp();
  }

  /** Steps the runs of this driver until `top` has ended. */
  async drive(top: Run): Promise<void> {
    const clock = this.clock;
    let hopped = performance.now(); // when a run of virtual jumps last returned to the host
    for (;;) {
      if (top.aborted && !top.crashed) crash(top, top.abortReason);
      this.#steps(clock);
      if (top.ended) break;
      // Aborted during those steps (its wake-up came while awake): crash now, don't sleep.
      if (top.aborted && !top.crashed) continue;
      if (this.#head !== this.#tail) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      // Nothing runnable. On the virtual clock with no outside work pending,
      // jump to the next deadline, returning to the host at least every slice
      // (a coroutine that sleeps in a loop forever must not starve host timers
      // and signals). Otherwise fire what is due (a virtual clock held by
      // outside work still fires what is due at its time); then, if nothing at
      // all can wake us, look for a cycle; else sleep until a deadline or a wake-up.
      if (clock.virtual && this.holds === 0) {
        if (clock.jump()) {
          if (performance.now() - hopped >= SLICE_MS) {
            await new Promise<void>((resolve) => setImmediate(resolve));
            hopped = performance.now();
          }
          continue;
        }
      } else {
        clock.fireDue(performance.now());
        if (this.#head !== this.#tail) continue;
      }
      if (this.holds === 0 && clock.next() === Infinity && this.#failCycles()) continue;
      await this.#sleep(clock);
    }
    // No timer to clear: every sleep ended by its wake-up, which cleared it. A
    // run that ended from a host callback (a release) has already settled, so
    // the next run may have set a timer of its own before this line runs.
  }

  #sleep(clock: Clock): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wakeUp = () => {
        this.#wakeUp = null;
        clearTimeout(this.#timer);
        resolve();
      };
      const next = clock.next();
      if (!clock.virtual && next !== Infinity) {
        this.#timer = setTimeout(this.#wakeUp, Math.max(0, next - clock.now()));
      }
    });
  }

  /** Steps queued tasks until none is left or the time slice is used up. */
  #steps(clock: Clock): void {
    const start = performance.now();
    let last = start;
    let countdown = this.#stride;
    while (this.#head !== this.#tail) {
      const task = this.#queue[this.#head]!;
      this.#queue[this.#head] = undefined;
      this.#head = (this.#head + 1) & this.#mask;
      // A task cancelled while queued is skipped here; one that only paused
      // (a bare `yield`, the commonest step) goes straight to the back.
      if (task.state <= FAILING && step(task)) this.schedule(task);
      if (--countdown === 0) {
        // Reading the clock costs ten steps, so read it every `stride` steps,
        // with `stride` adapted so that a read comes about every 0.25–1 ms.
        const now = performance.now();
        clock.fireDue(now); // the virtual clock fires what is due at its own time
        if (now - start >= SLICE_MS) break;
        const took = now - last;
        if (took > 1) this.#stride = Math.max(1, this.#stride >> 1);
        else if (took < 0.25 && this.#stride < MAX_STRIDE) this.#stride <<= 1;
        last = now;
        countdown = this.#stride;
        for (const run of this.runs) if (run.aborted && !run.crashed) return;
      }
    }
  }

  /** Fails every run that has a cycle of tasks waiting on each other. */
  #failCycles(): boolean {
    let found = false;
    for (const run of this.runs) {
      const cycle = findCycle(run);
      if (cycle !== 0) {
        found = true;
        crash(
          run,
          new Error(
            `Cycle detected: ${cycle} coroutine(s) wait on each other (a coroutine waits, ` +
              `directly or through others, on itself), so none can finish. Cancelling the run.`,
          ),
        );
      }
    }
    return found;
  }
}

/** Returns the length of a waiting cycle among `run`'s tasks, or 0. */
function findCycle(run: Run): number {
  const depth = new Map<Task, number>(); // on the current path: its depth; done: -1
  for (let t = run.first; t !== null; t = t.next) {
    if (t.state !== WAITING || depth.has(t)) continue;
    // Iterative depth-first search, so that a deep chain cannot overflow the stack.
    const path: Task[] = [t];
    const todo: Task[][] = [childrenOf(t)];
    depth.set(t, 0);
    while (path.length > 0) {
      const children = todo[todo.length - 1];
      const child = children.pop();
      if (child === undefined) {
        depth.set(path.pop()!, -1);
        todo.pop();
        continue;
      }
      const d = depth.get(child);
      if (d === undefined) {
        depth.set(child, path.length);
        path.push(child);
        todo.push(child.state === WAITING ? childrenOf(child) : []);
      } else if (d >= 0) return path.length - d;
    }
  }
  return 0;
}

function childrenOf(t: Task): Task[] {
  const on = t.waitingOn;
  if (on instanceof Task) return [on];
  if (Array.isArray(on)) return on.filter((x): x is Task => x instanceof Task);
  return [];
}

// ---------------------------------------------------------------------------
// Stepping: the hot path.

/** Steps `task` once; true if it only paused, for the caller to queue it again. */
function step(task: Task): boolean {
  if (task.state > THROWING) return settle(task);
  const value = task.value;
  const throwing = task.state === THROWING;
  task.value = undefined;
  task.state = RUNNING;
  let r: IteratorResult<unknown, unknown>;
  try {
    r = throwing ? generatorThrow.call(task.gen, value) : generatorNext.call(task.gen, value);
  } catch (error) {
    failed(task, error);
    return false;
  }
  if (r.done === true) finished(task, r.value);
  else if (r.value === undefined) return true;
  else yielded(task, r.value);
  return false;
}

/** Ends the task of a WaitOn, resumed or failed by its wait (state RETURNING or FAILING). */
function settle(task: Task): false {
  const value = task.value;
  const failing = task.state === FAILING;
  task.value = undefined;
  task.state = RUNNING; // so that a crash that follows does not cancel it again
  // A WaitOn returns what it is sent and throws what it is thrown: end it (as
  // a generator would be at its last step) and take the outcome from here.
  task.gen.return(undefined);
  if (failing) failed(task, value);
  else finished(task, value);
  return false;
}

/** `task` yielded `y`, not a bare `yield` (its stepper queues those itself). */
function yielded(task: Task, y: unknown): void {
  if (typeof y === "object" && y !== null) {
    const child = (y as { [TASK]?: Task })[TASK];
    if (child !== undefined) return waitOne(task, child, y);
    if (isGenerator(y)) return waitOne(task, spawnGenerator(task.run, y, task), y);
    if (y instanceof Wait) return park(task, y);
    if (Array.isArray(y)) return gather(task, y);
    if (y instanceof Set) return background(task, y);
    if (y instanceof WaitOn) return waitOne(task, spawnWaitOn(task.run, y, task), y);
  }
  throwInto(task, new TypeError(invalidYield(y)));
}

/** Makes a task for a coroutine the loop has not seen (a generator or a WaitOn), and starts it. */
function spawn(run: Run, coro: Coro, starter: Task | null): Task {
  return coro instanceof WaitOn
    ? spawnWaitOn(run, coro, starter)
    : spawnGenerator(run, coro, starter);
}

/** Makes a task for a generator the loop has not seen, and queues it. */
function spawnGenerator(run: Run, gen: Coro, starter: Task | null): Task {
  // The hot path of every gather: written out, not shared with spawnWaitOn.
  // V8 drops code that stores TASK on generators whenever their shapes die,
  // and a shared helper is dropped twice as often (semaphore bench in fresh
  // processes: 5.1 ms written out, 6.7 ms with a helper).
  const task = new Task(gen, run, starter);
  (gen as { [TASK]?: Task })[TASK] = task;
  task.prev = run.last;
  if (run.last === null) run.first = task;
  else run.last.next = task;
  run.last = task;
  run.live++;
  run.core.driver.schedule(task);
  return task;
}

/**
 * Makes a task for a WaitOn the loop has not seen, and steps it once, now: it
 * parks on its wait (or, ended already, waits in the queue to return what it
 * returned).
 */
function spawnWaitOn(run: Run, coro: WaitOn<unknown>, starter: Task | null): Task {
  const task = new Task(coro, run, starter);
  coro[TASK] = task;
  task.prev = run.last;
  if (run.last === null) run.first = task;
  else run.last.next = task;
  run.last = task;
  run.live++;
  const r = coro.next();
  if (r.done === true) {
    task.value = r.value;
    task.state = RETURNING;
    run.core.driver.enqueue(task);
  } else {
    park(task, r.value as Wait, WAITON_PARKED);
  }
  return task;
}

function waitOne(task: Task, child: Task, gen: object): void {
  if (child.run.core !== task.run.core) return throwInto(task, foreign(gen));
  if (child.state === DONE) {
    task.value = child.value;
    task.run.core.driver.schedule(task);
  } else if (child.state === FAILED) {
    throwInto(task, child.value);
  } else {
    task.state = WAITING;
    task.waitingOn = child;
    addWaiter(child, task, -1);
  }
}

function park(task: Task, wait: Wait, state = PARKED): void {
  task.state = state;
  task.waitingOn = wait;
  try {
    wait.park(task);
  } catch (error) {
    task.waitingOn = null;
    throwInto(task, error);
  }
}

function gather(task: Task, coros: unknown[]): void {
  const n = coros.length;
  // Check everything before starting anything, so a bad element starts nothing.
  let waitOns = false; // any WaitOn among them (most gathers have none: they skip that check)
  for (let i = 0; i < n; i++) {
    const c = coros[i];
    if (!isGenerator(c)) {
      if (!(c instanceof WaitOn)) {
        return throwInto(task, new TypeError(invalidElement(coros, i, "an array")));
      }
      waitOns = true;
    }
    const seen = (c as { [TASK]?: Task })[TASK];
    if (seen !== undefined) {
      if (seen.run.core !== task.run.core) return throwInto(task, foreign(c));
      if (seen.state === FAILED) return throwInto(task, seen.value);
    }
  }
  const slots: unknown[] = new Array(n);
  let pending = 0;
  for (let i = 0; i < n; i++) {
    const c = coros[i] as Coro;
    const child = (c as { [TASK]?: Task })[TASK] ??
      (waitOns ? spawn(task.run, c, task) : spawnGenerator(task.run, c, task));
    if (child.state === DONE) {
      slots[i] = child.value;
    } else {
      slots[i] = child;
      addWaiter(child, task, i);
      pending++;
    }
  }
  if (pending === 0) {
    task.value = slots;
    task.run.core.driver.schedule(task);
  } else {
    task.state = WAITING;
    task.waitingOn = slots;
    task.value = pending; // counted down by `notify`
  }
}

function background(task: Task, coros: Set<unknown>): void {
  const items = [...coros];
  for (let i = 0; i < items.length; i++) {
    const c = items[i];
    if (!isCoro(c)) return throwInto(task, new TypeError(invalidElement(items, i, "a Set")));
    const seen = (c as { [TASK]?: Task })[TASK];
    if (seen !== undefined && seen.run.core !== task.run.core) return throwInto(task, foreign(c));
  }
  for (const c of items) {
    if ((c as { [TASK]?: Task })[TASK] === undefined) spawn(task.run, c as Coro, null);
  }
  task.run.core.driver.schedule(task);
}

function addWaiter(child: Task, waiter: Task | Observer, slot: number): void {
  if (child.waiter === null) {
    child.waiter = waiter;
    child.waiterSlot = slot;
  } else {
    (child.moreWaiters ??= []).push(waiter, slot);
  }
}

function removeWaiter(child: Task, waiter: Task | Observer): void {
  const more = child.moreWaiters;
  if (more !== null) {
    for (let i = more.length - 2; i >= 0; i -= 2) if (more[i] === waiter) more.splice(i, 2);
    if (more.length === 0) child.moreWaiters = null;
  }
  if (child.waiter === waiter) {
    const rest = child.moreWaiters;
    if (rest === null) {
      child.waiter = null;
    } else {
      child.waiter = rest.shift() as Task | Observer;
      child.waiterSlot = rest.shift() as number;
      if (rest.length === 0) child.moreWaiters = null;
    }
  }
}

/** Schedules `task` to have `error` thrown in at its current yield. */
function throwInto(task: Task, error: unknown): void {
  task.value = error;
  // A WaitOn's task is only ever parked (or queued to end): it fails.
  task.state = task.state === WAITON_PARKED ? FAILING : THROWING;
  task.run.core.driver.enqueue(task);
}

function unlink(task: Task): void {
  const run = task.run;
  if (task.prev === null) run.first = task.next;
  else task.prev.next = task.next;
  if (task.next === null) run.last = task.prev;
  else task.next.prev = task.prev;
  task.prev = task.next = null;
  run.live--;
}

function finished(task: Task, value: unknown): void {
  task.state = DONE;
  task.value = value;
  task.waitingOn = null;
  unlink(task);
  const waiter = task.waiter;
  if (waiter !== null) {
    notify(task, waiter, task.waiterSlot);
    const more = task.moreWaiters;
    if (more !== null) {
      for (let i = 0; i < more.length; i += 2) {
        notify(task, more[i] as Task | Observer, more[i + 1] as number);
      }
    }
    task.waiter = task.moreWaiters = null;
  }
  maybeEnd(task.run);
}

function notify(child: Task, waiter: Task | Observer, slot: number): void {
  if (typeof waiter === "function") {
    waiter(child);
    return;
  }
  if (waiter.state !== WAITING) return;
  if (slot < 0) {
    waiter.value = child.value;
  } else {
    const slots = waiter.waitingOn as unknown[];
    slots[slot] = child.value;
    const pending = (waiter.value as number) - 1;
    if (pending !== 0) {
      waiter.value = pending;
      return;
    }
    waiter.value = slots;
  }
  waiter.waitingOn = null;
  waiter.run.core.driver.schedule(waiter);
}

/** A step threw: the task failed. Unless an observer takes the failure over, the run crashes. */
function failed(task: Task, error: unknown): void {
  const run = task.run;
  if (run.crashed) {
    run.otherErrors.push(error);
    endFailed(task, error);
    maybeEnd(run);
  } else if (endFailed(task, error)) {
    maybeEnd(run);
  } else {
    crash(run, error);
  }
}

/**
 * Ends `task` with `error`. Observers are told; if one takes the failure over
 * (returns true), the task's other waiters get the error thrown in and this
 * returns true. Otherwise the caller crashes the run, which cancels them.
 */
function endFailed(task: Task, error: unknown): boolean {
  task.state = FAILED;
  task.value = error;
  task.waitingOn = null;
  unlink(task);
  const entries: (Task | Observer | number)[] = task.waiter === null
    ? []
    : [task.waiter, task.waiterSlot, ...(task.moreWaiters ?? [])];
  task.waiter = task.moreWaiters = null;
  let handled = false;
  if (!task.run.crashed) {
    for (let i = 0; i < entries.length; i += 2) {
      const w = entries[i];
      if (typeof w === "function" && w(task) === true) handled = true;
    }
    // A coroutine of the library (`fromPromise`, `runInThread` …) hands its
    // error to the coroutines waiting on it, so that `yield p` and `yield* p`
    // behave alike: `try { yield fromPromise(p) } catch {}` catches.
    if (!handled && primitives.has(Object.getPrototypeOf(task.gen))) {
      handled = entries.some((w) => w instanceof Task);
    }
    if (handled) {
      for (let i = 0; i < entries.length; i += 2) {
        const w = entries[i];
        if (w instanceof Task && w.state === WAITING) {
          detach(w);
          throwInto(w, error);
        }
      }
    }
  }
  return handled;
}

// ---------------------------------------------------------------------------
// Errors and cancellation.

/**
 * Fails `run` with `error`: every unfinished task of it gets a
 * `CancelledError` (cause: `error`) thrown in at its current yield, at once.
 */
export function crash(run: Run, error: unknown): void {
  if (run.crashed) {
    run.otherErrors.push(error);
    return;
  }
  run.crashed = true;
  run.error = error;
  for (let t = run.first; t !== null;) {
    const next = t.next;
    if (t.state !== RUNNING) {
      cancelTask(t, new CancelledError(cancelMessage(run, error), { cause: error }));
    }
    t = next;
  }
  maybeEnd(run);
}

function cancelMessage(run: Run, error: unknown): string {
  const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return run.aborted && error === run.abortReason
    ? `cancelled because the run's signal was aborted (${what})`
    : `cancelled because another coroutine failed (${what})`;
}

/** Stops `task` waiting on whatever it waits on. */
function detach(task: Task): void {
  const on = task.waitingOn;
  task.waitingOn = null;
  if (task.state === PARKED || task.state === WAITON_PARKED) (on as Wait).unpark(task);
  else if (on instanceof Task) removeWaiter(on, task);
  else if (Array.isArray(on)) { for (const c of on) if (c instanceof Task) removeWaiter(c, task); }
  task.value = undefined;
}

/**
 * Throws `cancel` into `task` at its current yield, now, and ends it. A task
 * that throws a `CancelledError` back behaved; one that throws another error
 * adds it to its run's other errors; one that yields or returns is warned
 * about and closed with `return()`.
 */
export function cancelTask(task: Task, cancel: CancelledError): void {
  const run = task.run;
  if (task.state >= DONE) return;
  // An error handed to the task that it has not seen yet (queued to be thrown
  // in: a worker's error, a rejection) is thrown in instead of the
  // cancellation, so that it is not lost: it comes back as an other error.
  // Not so an interruption (a timeout's TimeoutError, which the cancellation
  // supersedes), nor an error already reported as a cause of this cancellation.
  const pending = (task.state === THROWING || task.state === FAILING) &&
    !(task.value instanceof CancelledError) &&
    !interruptions.has(task.value as object) && !isCauseOf(task.value, cancel);
  const thrown = pending ? task.value : cancel;
  try {
    detach(task);
  } catch (error) {
    run.otherErrors.push(error);
  }
  task.state = RUNNING;
  task.value = undefined;
  let r: IteratorResult<unknown, unknown>;
  try {
    r = task.gen.throw(thrown);
  } catch (error) {
    if (error instanceof CancelledError) run.cancelErrors.push(error);
    else run.otherErrors.push(error);
    endFailed(task, error);
    maybeEnd(run);
    return;
  }
  console.warn(
    `tinyio: a coroutine did not respond properly to cancellation: it ${
      r.done ? "returned" : "yielded again"
    } instead of throwing the CancelledError it received (re-throw it: ` +
      "`if (e instanceof CancelledError) throw e`). It was closed with return(); " +
      "a resource may have leaked.",
  );
  // return() runs the pending finally blocks; one that yields again suspends
  // the generator once more, so repeat (a bounded number of times).
  for (let i = 0; i < 100 && !r.done; i++) {
    try {
      r = task.gen.return(undefined);
    } catch (error) {
      run.otherErrors.push(error);
      break;
    }
  }
  endFailed(task, cancel);
  maybeEnd(run);
}

/** Errors thrown in by `interrupt`: not reported again when a cancellation overtakes them. */
const interruptions = new WeakSet<object>();

/** True if `error` is `cancel`'s cause, or its cause's cause … */
function isCauseOf(error: unknown, cancel: Error): boolean {
  for (let c: unknown = cancel.cause; c !== undefined; c = (c as Error).cause) {
    if (c === error) return true;
    if (!(c instanceof Error)) break;
  }
  return false;
}

/** Stops `task` waiting and throws `error` into it at its current yield (a timeout). */
export function interrupt(task: Task, error: object): void {
  interruptions.add(error);
  if (task.state >= WAITING && task.state <= WAITON_PARKED) detach(task);
  if (task.state <= FAILING) {
    // Already in the queue: throw at that step instead of queueing it twice.
    task.state = task.state <= THROWING ? THROWING : FAILING;
    task.value = error;
  } else if (task.state < DONE) {
    throwInto(task, error);
  }
}

function maybeEnd(run: Run): void {
  if (run.live !== 0 || run.holds !== 0 || run.ended) return;
  run.ended = true;
  const driver = run.core.driver;
  driver.runs.delete(run);
  if (run.atEnd !== null) {
    for (const fn of run.atEnd) fn();
  }
  run.onEnd(run);
  driver.wake();
}

// ---------------------------------------------------------------------------
// The interface for waits and outside work.

/** Resumes `task`, parked on `wait`, with `value`. Ignored if it no longer waits there. */
export function resume(task: Task, wait: Wait, value: unknown): void {
  // Only a parked task waits on a Wait (waits on coroutines are not Waits).
  if (task.waitingOn !== wait) return;
  task.waitingOn = null;
  task.value = value;
  if (task.state === PARKED) {
    task.run.core.driver.schedule(task);
  } else {
    task.state = RETURNING;
    task.run.core.driver.enqueue(task);
  }
}

/** Throws `error` into `task`, parked on `wait`. Ignored if it no longer waits there. */
export function fail(task: Task, wait: Wait, error: unknown): void {
  if (task.waitingOn !== wait) return;
  // While its run is being cancelled, an error that the cancellation itself
  // caused (a pool closed by a `using` in a finally) is not the task's own:
  // the task stays parked and gets its CancelledError like every other.
  if (task.run.crashed) return;
  task.waitingOn = null;
  throwInto(task, error);
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

const primitives = new WeakSet<object>();

/**
 * Marks a generator function of this library whose coroutines may fail with
 * an error meant for their caller (a rejected promise, an error in a worker):
 * when such a coroutine fails while coroutines wait on it, the error is thrown
 * into them, as it would be with `yield*`, instead of failing the run.
 */
// deno-lint-ignore no-explicit-any
export function primitive(fn: (...args: any[]) => Coro): void {
  primitives.add(fn.prototype);
}
primitives.add(WaitOn.prototype); // a WaitOn's error is its caller's, as with `yield*`

/** The task of a coroutine, if a loop has seen it. */
export function taskOf(coro: Coro): Task | undefined {
  return (coro as { [TASK]?: Task })[TASK];
}

/**
 * Starts `coro` in `task`'s run, as if `task` had yielded it in a Set; returns
 * its task. With `waited`, `task` becomes its starter, as if `task` had
 * yielded it to wait on it (a wait that waits on a coroutine through an
 * observer, such as `timeout`), so that a timeout around `task` stops it too.
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

/** The tasks `task` waits on right now (for a gather, those not finished yet). */
export function waitedOn(task: Task): Task[] {
  return task.state === WAITING ? childrenOf(task) : [];
}

/** Who waits on `task`: tasks and observers. */
export function waitersOf(task: Task): (Task | Observer)[] {
  const out: (Task | Observer)[] = [];
  if (task.waiter !== null) out.push(task.waiter);
  const more = task.moreWaiters;
  if (more !== null) {
    for (let i = 0; i < more.length; i += 2) {
      out.push(more[i] as Task | Observer);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Messages for usage errors.

function foreign(coro: unknown): TypeError {
  return new TypeError(
    `This coroutine (${describe(coro)}) belongs to another loop: a coroutine is run by the ` +
      "first loop that sees it. To use its result here, yield a fresh coroutine made by " +
      "`yield* copy(coro)`.",
  );
}

const ALLOWED = "A coroutine may yield: nothing (`yield`, to pause), a coroutine (`yield f()`), " +
  "an array of coroutines (`yield [f(), g()]`, to gather) or a Set of coroutines " +
  "(`yield new Set([f()])`, to start them in the background).";

/** Names a value for an error message, with a hint for the common slips. */
export function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x === "function") {
    const kind = Object.getPrototypeOf(x)?.constructor?.name;
    return kind === "GeneratorFunction"
      ? `the generator function ${x.name || "(anonymous)"}`
      : `the function ${x.name || "(anonymous)"}`;
  }
  if (typeof x === "string") return JSON.stringify(x.length > 40 ? x.slice(0, 40) + "…" : x);
  if (typeof x !== "object") return `${String(x)} (${typeof x})`;
  if (isGenerator(x)) return "a generator object";
  if (x instanceof WaitOn) return "a coroutine of the library";
  if (YIELD_HINT in x) return `an instance of ${x.constructor.name}`; // an Event, a Channel…
  if (typeof (x as { then?: unknown }).then === "function") return "a Promise";
  if (Symbol.asyncIterator in x) return "an async generator";
  if (Array.isArray(x)) return `an array of length ${x.length}`;
  return `an object (${Object.prototype.toString.call(x)})`;
}

function hint(x: unknown): string {
  if (x === null) return " To pause, use a bare `yield`.";
  // A library object that is not a coroutine (an Event, a Channel…) says how to wait on it.
  const said = (x as { [YIELD_HINT]?: unknown } | undefined)?.[YIELD_HINT];
  if (typeof said === "string") return ` ${said}`;
  if (typeof x === "function") {
    return Object.getPrototypeOf(x)?.constructor?.name === "GeneratorFunction"
      ? " Call it: `yield f()`."
      : " If it returns a coroutine, call it: `yield f()`.";
  }
  if (typeof x === "object" && typeof (x as { then?: unknown }).then === "function") {
    return " Wrap it: `yield fromPromise(p)`.";
  }
  if (typeof x === "object" && Symbol.asyncIterator in x) {
    return " Async generators are not coroutines: use `function*`, and `fromPromise` for promises.";
  }
  return "";
}

function invalidYield(y: unknown): string {
  return `Invalid yield: a coroutine yielded ${describe(y)}.${hint(y)} ${ALLOWED}`;
}

function invalidElement(items: unknown[], i: number, what: string): string {
  const x = items[i];
  return `Invalid yield: element ${i} of ${what} of ${items.length} is ${describe(x)}, ` +
    `not a coroutine.${hint(x)} ${ALLOWED}`;
}

// ---------------------------------------------------------------------------
// The public face.

/**
 * An event loop for generator coroutines. `run` drives a coroutine and
 * everything it yields to completion; one error cancels every coroutine.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, sleep } from "@tinyio/core";
 *
 * function* slowAddOne(x: number): Coro<number> {
 *   yield sleep(10);
 *   return x + 1;
 * }
 * function* main(): Coro<number> {
 *   const [four, five] = yield [slowAddOne(3), slowAddOne(4)];
 *   return four + five;
 * }
 * console.assert(await new Loop().run(main()) === 9);
 * ```
 */
export class Loop {
  #core: Core;

  /** Makes a loop on the real clock, or with `{ clock: "virtual" }` on a virtual one. */
  constructor(options: LoopOptions = {}) {
    const clock = options.clock ?? "real";
    if (clock !== "real" && clock !== "virtual") {
      throw new TypeError(
        `new Loop({ clock: ${describe(clock)} }): the clock is "real" or "virtual".`,
      );
    }
    this.#core = new Core(clock === "virtual" ? new VirtualClock() : new RealClock());
  }

  /**
   * Runs `coro` and everything it starts to completion; resolves with `coro`'s
   * result. On a failure every coroutine is cancelled and the promise rejects
   * (see {@linkcode RunOptions}). It settles only once all of them, and all
   * outside work they started, have stopped.
   *
   * @example
   * ```ts
   * import { Loop } from "@tinyio/core";
   *
   * function* answer() {
   *   yield;
   *   return 42;
   * }
   * const loop = new Loop();
   * const c = answer();
   * console.assert(await loop.run(c) === 42);
   * console.assert(await loop.run(c) === 42); // a finished coroutine: its recorded result
   * ```
   */
  run<T>(coro: Coro<T>, options?: RunOptions): Promise<T> {
    return runOn(this.#core, coro, options);
  }

  /**
   * This loop's time in milliseconds: `performance.now()` on the real clock;
   * on the virtual clock, the time it has jumped to (0 at the start).
   *
   * @example
   * ```ts
   * import { Loop, sleep } from "@tinyio/core";
   *
   * const loop = new Loop({ clock: "virtual" });
   * await loop.run(sleep(3_600_000));
   * console.assert(loop.now() === 3_600_000);
   * ```
   */
  now(): number {
    return this.#core.clock.now();
  }
}

/** Runs `coro` on `core` (a loop's `run`). */
function runOn<T>(core: Core, coro: Coro<T>, options?: RunOptions): Promise<T> {
  options ??= {};
  const group = options.exceptionGroup;
  if (group !== undefined && typeof group !== "boolean") {
    return Promise.reject(
      new TypeError(
        `run(coro, { exceptionGroup }): exceptionGroup is ${describe(group)}; ` +
          "give true, false or leave it out.",
      ),
    );
  }
  if (!isCoro(coro)) {
    return Promise.reject(
      new TypeError(
        `run() takes a coroutine (a generator object, such as main() for function* main), ` +
          `got ${describe(coro)}.${hint(coro)}`,
      ),
    );
  }
  if (core.running) {
    return Promise.reject(
      new Error(
        "This loop is already running: a loop runs one coroutine at a time. Yield the coroutine " +
          "from the running one instead, or run it on another `new Loop()`.",
      ),
    );
  }
  const seen = taskOf(coro);
  if (seen !== undefined) {
    if (seen.run.core !== core) return Promise.reject(foreign(coro));
    if (seen.state === DONE) return Promise.resolve(seen.value as T);
    if (seen.state === FAILED) return Promise.reject(seen.value);
  }
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    return Promise.reject(
      new TypeError(
        `run(coro, { signal }): the signal is ${describe(signal)}; give an AbortSignal ` +
          "(from an AbortController, AbortSignal.timeout(ms) or a Request's signal).",
      ),
    );
  }
  if (signal?.aborted) return Promise.reject(signal.reason);
  core.running = true;
  return new Promise<T>((resolve, reject) => {
    let onAbort: (() => void) | undefined;
    const run = core.startRun(coro, options.exceptionGroup, (run) => {
      core.running = false;
      if (onAbort !== undefined) signal!.removeEventListener("abort", onAbort);
      if (run.crashed) reject(run.rejection());
      else resolve(run.root!.value as T);
    });
    if (signal !== undefined) {
      onAbort = () => {
        if (run.ended) return;
        run.aborted = true;
        run.abortReason = signal.reason;
        core.wake();
      };
      signal.addEventListener("abort", onAbort, { once: true });
    }
    core.drive(run).catch((error) => {
      core.running = false;
      reject(error);
    });
  });
}
