/**
 * The core: the one place that steps coroutines and cancels them. Read top to
 * bottom: the driver and its run queue, stepping, what a yield does, the
 * waiter lists, how a task ends, and cancellation. docs/design.md explains
 * the algorithm, the hot-path rules and the designs that were measured and
 * rejected; the comments below point there instead of repeating it.
 *
 * A coroutine gets a {@linkcode Task} (src/task.ts) the first time a loop
 * sees it, stored on the generator object itself: that is how a diamond runs
 * once, how a finished coroutine's result is read again, and why results are
 * weak (the task dies with its generator). Runnable tasks wait in one FIFO
 * ring, the run queue. A task that yields coroutines waits for them with a
 * counter; each child keeps the list of its waiters and counts them down when
 * it ends. Everything else is a `Wait`: the loop parks the task on it and
 * forgets it until the wait resumes or fails it (src/wait.ts).
 *
 * @module
 */

import { CancelledError } from "./errors.ts";
import { type Clock, RealClock } from "./clock.ts";
import { type Coro, GeneratorPrototype, isCoro, isGenerator, TASK, WaitOn } from "./coro.ts";
import * as states from "./task.ts";
import { Gather, type Observer, Run, Task, Wait } from "./task.ts";
import {
  crashMessage,
  foreign,
  invalidElement,
  invalidYield,
  misbehavedWarning,
} from "./messages.ts";
import { cycleFailure, stitchTrace } from "./trace.ts";

// The core steps generators through these, not `gen.next(v)`, so that the
// compiled step survives the death of a generator function's last generator
// (docs/design.md, "Hidden classes").
const generatorNext = (GeneratorPrototype as Coro).next;
const generatorThrow = (GeneratorPrototype as Coro).throw;

// Local copies of the task states (defined, with their order, in task.ts): an
// imported binding is read through a cell at every use, and the hot path tests
// states several times a step (docs/design.md, "The hot path": 7 % of a step).
const { QUEUED, THROWING, RETURNING, FAILING, RUNNING } = states;
const { WAITING, PARKED, WAITON_PARKED, DONE, FAILED } = states;

const SLICE_MS = 4; // return to the host at least this often while tasks stay runnable
const MAX_STRIDE = 1024; // steps between clock reads, at most

/**
 * Steps tasks: the run queue, the runs it steps, and how it sleeps. A loop
 * has one; a nested loop (`isolate`) is stepped by its outer loop's driver.
 */
export class Driver {
  // The run queue: a ring.
  #queue: (Task | undefined)[] = new Array(256);
  #head = 0;
  #tail = 0;
  #mask = 255;
  #stride = 64;
  readonly runs: Set<Run> = new Set();
  holds = 0;
  #wakeUp: (() => void) | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  // While paused (see `pauseWhile`): how many pauses are on, the real run
  // queue kept aside, the tasks queued meanwhile, and what `drive` waits for.
  #pauses = 0;
  #kept: [(Task | undefined)[], number, number, number] | null = null;
  #queuedMeanwhile: Task[] = [];
  #paused: Promise<void> | null = null;
  #unpause: (() => void) | null = null;

  /**
   * Called, if set, whenever a driver comes to rest (no task is being
   * stepped): before it returns to the host, before it sleeps, and when its
   * top run has ended. Tests set it to the invariant checks of
   * src/invariants.ts; production leaves it null, one comparison per rest.
   */
  static atRest: ((driver: Driver) => void) | null = null;

  constructor(readonly clock: Clock) {}

  /** The tasks in the run queue, front first: for src/invariants.ts. */
  queued(): Task[] {
    const out: Task[] = [];
    for (let i = this.#head; i !== this.#tail; i = (i + 1) & this.#mask) out.push(this.#queue[i]!);
    return out;
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
    if (this.#kept !== null) {
      // Paused: the ring is one slot, full at every enqueue. Keep the task
      // aside, so that a step going on cannot take it (see `pauseWhile`).
      this.#queuedMeanwhile.push(this.#queue[0]!);
      this.#queue[0] = undefined;
      return;
    }
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

  /**
   * Steps nothing until `work` settles: a snapshot, a stitched trace or a
   * cycle's error is reading where suspended generators are (src/inspect.ts),
   * and a step would move them. Nothing is tested per step or per wake-up
   * for it: the run queue is swapped for an empty ring of one slot, so
   * `#steps` runs out of tasks (after the step going on, if one is) and
   * `drive` waits at its next turn; a task queued meanwhile (by that step, a
   * deadline, a host callback) fills the ring, and `#grow`, which a full ring
   * calls anyway, keeps it aside. Those go to the back of the real queue when
   * it comes back. Pauses may overlap; stepping resumes after the last.
   */
  pauseWhile(work: Promise<unknown>): void {
    if (this.#pauses++ === 0) {
      this.#kept = [this.#queue, this.#head, this.#tail, this.#mask];
      this.#queue = [undefined];
      this.#head = this.#tail = this.#mask = 0;
      this.#paused = new Promise<void>((resolve) => this.#unpause = resolve);
    }
    const resume = () => {
      if (--this.#pauses !== 0) return;
      [this.#queue, this.#head, this.#tail, this.#mask] = this.#kept!;
      this.#kept = this.#paused = null;
      const meanwhile = this.#queuedMeanwhile;
      this.#queuedMeanwhile = [];
      for (const task of meanwhile) this.enqueue(task);
      this.#unpause!();
      this.wake();
    };
    work.then(resume, resume);
  }

  /** Steps the runs of this driver until `top` has ended. */
  async drive(top: Run): Promise<void> {
    const clock = this.clock;
    let hopped = performance.now(); // when a run of virtual jumps last returned to the host
    for (;;) {
      if (this.#paused !== null) {
        await this.#paused; // see `pauseWhile`
        continue;
      }
      if (top.aborted && !top.crashed) crash(top, top.abortReason);
      this.#steps(clock);
      if (top.ended) break;
      if (this.#paused !== null) continue;
      // Aborted during those steps (its wake-up came while awake): crash now, don't sleep.
      if (top.aborted && !top.crashed) continue;
      if (this.#head !== this.#tail) {
        if (Driver.atRest !== null) Driver.atRest(this);
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
            if (Driver.atRest !== null) Driver.atRest(this);
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
      if (Driver.atRest !== null) Driver.atRest(this);
      await this.#sleep(clock);
    }
    if (Driver.atRest !== null) Driver.atRest(this);
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

  /**
   * Fails every run that has a cycle of tasks waiting on each other. The
   * error names them; with the inspector, reading their names pauses the
   * driver and the run fails after.
   */
  #failCycles(): boolean {
    let found = false;
    for (const run of this.runs) {
      const cycle = findCycle(run);
      if (cycle !== null) {
        found = true;
        const error = cycleFailure(cycle);
        if (error instanceof Promise) this.pauseWhile(error.then((e) => crash(run, e)));
        else crash(run, error);
      }
    }
    return found;
  }
}

/**
 * A loop's coroutines: a coroutine belongs to the core that first saw it. A
 * nested loop (`isolate`) has a core of its own but its outer loop's driver
 * and clock.
 */
export class Core {
  // Keeps the hidden classes of Task, Run, Core, Driver and Gather, and the
  // code compiled against them, alive between runs (docs/design.md, "Hidden
  // classes").
  static #keepShapes: [Task, Gather] = [
    new Task(
      (function* () {})(),
      new Run(new Core(new RealClock(), new Driver(new RealClock())), undefined, () => {}),
      null,
    ),
    new Gather([], 0),
  ];

  /** True while a `run` of this core's loop is in progress. */
  running = false;

  constructor(
    readonly clock: Clock,
    readonly driver: Driver,
    /** A nested loop's (`isolate`): the task of the outer loop that it runs for. */
    readonly host: Task | null = null,
  ) {}

  /** Starts `coro` as the root of a new run of this core. */
  startRun(coro: Coro, exceptionGroup: boolean | undefined, onEnd: (run: Run) => void): Run {
    const run = new Run(this, exceptionGroup, onEnd);
    this.driver.runs.add(run);
    run.root = spawn(run, coro, null);
    return run;
  }
}

// ---------------------------------------------------------------------------
// The cycle check: only when nothing at all can wake the loop.

/** Returns a waiting cycle among `run`'s tasks (each waits on the next, the last on the first), or null. */
function findCycle(run: Run): Task[] | null {
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
      } else if (d >= 0) return path.slice(d);
    }
  }
  return null;
}

/** The tasks that `t`, WAITING, waits on (for a gather, those not finished yet). */
function childrenOf(t: Task): Task[] {
  const on = t.waitingOn;
  if (on instanceof Task) return [on];
  if (on instanceof Gather) return on.slots.filter((x): x is Task => x instanceof Task);
  return [];
}

// ---------------------------------------------------------------------------
// Stepping: the hot path (docs/design.md, "The hot path").

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
    // Most likely first: a new generator, then a Wait (docs/design.md, "The hot path").
    if (isGenerator(y)) return waitOne(task, spawnGenerator(task.run, y, task), y);
    if (y instanceof Wait) return park(task, y);
    if (Array.isArray(y)) return gather(task, y);
    if (y instanceof Set) return background(task, y);
    if (y instanceof WaitOn) return waitOne(task, spawnWaitOn(task.run, y, task), y);
  }
  throwInto(task, new TypeError(invalidYield(y)));
}

/** Makes a task for a coroutine the loop has not seen (a generator or a WaitOn), and starts it. */
export function spawn(run: Run, coro: Coro, starter: Task | null): Task {
  return coro instanceof WaitOn
    ? spawnWaitOn(run, coro, starter)
    : spawnGenerator(run, coro, starter);
}

/** Makes a task for a generator the loop has not seen, and queues it. */
function spawnGenerator(run: Run, gen: Coro, starter: Task | null): Task {
  // The hot path of every gather: written out, not shared with spawnWaitOn
  // (docs/design.md, "Hidden classes": a shared helper was deoptimized twice
  // as often).
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
      if (!isCoro(c)) return throwInto(task, new TypeError(invalidElement(coros, i, "an array")));
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
    task.waitingOn = new Gather(slots, pending); // counted down by `notify`
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

// ---------------------------------------------------------------------------
// Waiter lists.

/** Adds `waiter` to those told when `child` ends; `slot` is its gather slot, or -1. */
export function addWaiter(child: Task, waiter: Task | Observer, slot: number): void {
  if (child.waiter === null) {
    child.waiter = waiter;
    child.waiterSlot = slot;
  } else {
    (child.moreWaiters ??= []).push(waiter, slot);
  }
}

/** Removes `waiter` from those told when `child` ends. */
export function removeWaiter(child: Task, waiter: Task | Observer): void {
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

/** Calls `fn` with each waiter of `task`: tasks and observers. */
function forEachWaiter(task: Task, fn: (waiter: Task | Observer) => void): void {
  if (task.waiter !== null) fn(task.waiter);
  const more = task.moreWaiters;
  if (more !== null) { for (let i = 0; i < more.length; i += 2) fn(more[i] as Task | Observer); }
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
    const gather = waiter.waitingOn as Gather;
    gather.slots[slot] = child.value;
    if (--gather.pending !== 0) return;
    waiter.value = gather.slots;
  }
  waiter.waitingOn = null;
  waiter.run.core.driver.schedule(waiter);
}

// ---------------------------------------------------------------------------
// How a task ends.

/** Schedules `task` to have `error` thrown in at its current yield. */
export function throwInto(task: Task, error: unknown): void {
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

/** A step threw: the task failed. Unless an observer takes the failure over, the run crashes. */
function failed(task: Task, error: unknown): void {
  const run = task.run;
  if (run.crashed) {
    run.otherErrors.push(error);
    endFailed(task, error);
    maybeEnd(run);
    return;
  }
  // Its only waiter, if it has one, read before `endFailed` forgets it: the
  // stitched trace of the error goes up the waiters from there.
  const waiter = task.moreWaiters === null ? task.waiter : null;
  if (endFailed(task, error)) maybeEnd(run);
  else crash(run, error, waiter);
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

/** Ends `run` if nothing of it is left: no task, no hold. */
export function maybeEnd(run: Run): void {
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
// Cancellation.

/**
 * Fails `run` with `error`: every unfinished task of it gets a
 * `CancelledError` (cause: `error`) thrown in at its current yield. If it is
 * failing already, `error` joins its other errors. The loop's frames leave
 * `error.stack` first, and given the failed task's only waiter (`from`), the
 * frames of the waiters up from it join it (src/trace.ts): with the
 * inspector, the driver pauses until their positions are read, since a
 * cancelled generator forgets where it was; then they are cancelled.
 */
export function crash(run: Run, error: unknown, from: Task | Observer | null = null): void {
  if (run.crashed) {
    run.otherErrors.push(error);
    return;
  }
  run.crashed = true;
  run.error = error;
  const stitching = stitchTrace(run, error, from);
  const cancel = () => cancelRun(run);
  if (stitching === undefined) cancel();
  else run.core.driver.pauseWhile(stitching.then(cancel, cancel)); // cancelled whatever happens
}

/** Cancels every unfinished task of `run`, failing with `run.error`. */
function cancelRun(run: Run): void {
  const error = run.error;
  const message = crashMessage(error, run.aborted && error === run.abortReason);
  for (let t = run.first; t !== null;) {
    const next = t.next;
    if (t.state !== RUNNING) {
      cancelTask(
        t,
        new CancelledError(message, { cause: error }),
        run.otherErrors,
        run.cancelErrors,
      );
    }
    t = next;
  }
  maybeEnd(run);
}

/** Stops `task` waiting on whatever it waits on. */
function detach(task: Task): void {
  const on = task.waitingOn;
  task.waitingOn = null;
  if (task.state === PARKED || task.state === WAITON_PARKED) (on as Wait).unpark(task);
  else if (on instanceof Task) removeWaiter(on, task);
  else if (on instanceof Gather) {
    for (const c of on.slots) if (c instanceof Task) removeWaiter(c, task);
  }
  task.value = undefined;
}

/**
 * Throws `cancel` into `task` at its current yield, now, and ends it. A task
 * that throws a `CancelledError` back behaved (that error goes to
 * `cancelErrors`, unless null); one that throws another error adds it to
 * `otherErrors`; one that yields or returns is warned about and closed with
 * `return()`.
 */
function cancelTask(
  task: Task,
  cancel: CancelledError,
  otherErrors: unknown[],
  cancelErrors: unknown[] | null,
): void {
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
    otherErrors.push(error);
  }
  task.state = RUNNING;
  task.value = undefined;
  let r: IteratorResult<unknown, unknown>;
  try {
    r = task.gen.throw(thrown);
  } catch (error) {
    if (!(error instanceof CancelledError)) otherErrors.push(error);
    else if (cancelErrors !== null) cancelErrors.push(error);
    endFailed(task, error);
    maybeEnd(run);
    return;
  }
  console.warn(misbehavedWarning(r.done === true));
  // return() runs the pending finally blocks; one that yields again suspends
  // the generator once more, so repeat (a bounded number of times).
  for (let i = 0; i < 100 && !r.done; i++) {
    try {
      r = task.gen.return(undefined);
    } catch (error) {
      otherErrors.push(error);
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

/**
 * Cancels, quietly, the work of `root`: the coroutines that `root` started by
 * waiting on them, recursively, except those that a coroutine outside that
 * set waits on, and what those wait on — nothing left running waits on a
 * cancelled coroutine, so nothing can hang on one. Each gets a
 * `CancelledError` of `message` and `cause`. Quietly: it is not a crash, so
 * their CancelledErrors are reported nowhere; but an error that a cancelled
 * coroutine throws instead (its cleanup failed) is an error of the run.
 */
export function stopWork(root: Task, message: string, cause: unknown): void {
  const doomed = startedBy(root);
  // Spare a coroutine waited on from outside; repeat until nothing changes,
  // since a spared coroutine is outside too and spares what it waits on.
  const inside = (w: Task | Observer) => {
    const t = w instanceof Task ? w : w.owner;
    return t === root || (t != null && doomed.has(t));
  };
  let changed = true;
  while (changed) {
    changed = false;
    for (const t of doomed) {
      let spared = false;
      forEachWaiter(t, (w) => spared ||= !inside(w));
      if (spared) {
        doomed.delete(t);
        changed = true;
      }
    }
  }
  const errors: unknown[] = [];
  for (const t of doomed) cancelTask(t, new CancelledError(message, { cause }), errors, null);
  for (const error of errors) crash(root.run, error);
}

/**
 * The unfinished tasks that `root` started by waiting on them, recursively:
 * those it waits on (through a gather, or through a wait such as a timeout)
 * and was the first to yield.
 */
function startedBy(root: Task): Set<Task> {
  const found = new Set<Task>();
  const todo = [root];
  while (todo.length > 0) {
    const t = todo.pop()!;
    const on = t.waitingOn;
    const children = t.state === WAITING ? childrenOf(t) : on instanceof Wait ? on.children() : [];
    for (const c of children) {
      if (c.starter === t && c.state < DONE && !found.has(c)) {
        found.add(c);
        todo.push(c);
      }
    }
  }
  return found;
}
