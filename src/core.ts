/**
 * The core: the one place that steps coroutines. It reads top to bottom: the
 * driver and its run queue, a step, what a yield does, the waiter lists, and
 * how a task ends. How tasks are cancelled (a crash, a
 * stop, shields, a cancelled task's cleanup steps) is in src/cancelling.ts,
 * which the core calls from its cold paths only. The records it works on are
 * in src/task.ts; primitives reach it only through src/wait.ts.
 * docs/design.md explains the algorithm, the rules of the hot path and the
 * designs that were measured and rejected: the comments here point there.
 *
 * @module
 */

import { CancelledError } from "./errors.ts";
import { type Clock, RealClock } from "./clock.ts";
import { type Coro, GeneratorPrototype, isCoro, isGenerator, TASK, WaitOn } from "./coro.ts";
import { toHost } from "./host.ts";
import * as states from "./task.ts";
import { Gather, type Observer, Run, Task, Wait } from "./task.ts";
import { foreign, invalidElement, invalidYield } from "./messages.ts";
import { cycleFailure } from "./trace.ts";
import { findCycle } from "./cycles.ts";
import {
  cancelAtNextTurn,
  cancelWaiters,
  cleanupStep,
  crash,
  isRecorded,
  isStopError,
  recordFailure,
  startedInShield,
  throwIntoWaiter,
  wakeCleanup,
} from "./cancelling.ts";

// The core steps generators through these, not `gen.next(v)`, so that the
// compiled step survives the death of a generator function's last generator
// (docs/design.md, "Hidden classes").
const generatorNext = (GeneratorPrototype as Coro).next;
const generatorThrow = (GeneratorPrototype as Coro).throw;

// Local copies of the task states (defined, with their order, in task.ts): an
// imported binding is read through a cell at every use, and the hot path tests
// states several times a step (docs/design.md, "The hot path": 7 % of a step).
const { QUEUED, THROWING, RETURNING, FAILING, CLEANUP_THROWING, RUNNING } = states;
const { WAITING, PARKED, WAITON_PARKED, DONE, FAILED } = states;

const SLICE_MS = 4; // return to the host at least this often while tasks stay runnable
const MAX_STRIDE = 1024; // steps between clock reads, at most
// The host also gets its turn every MAX_READS clock reads, not only every
// SLICE_MS, because a clock may not move while the loop computes (deployed
// Cloudflare Workers advance it only with I/O). On a live clock the stride
// keeps a read every 0.25–1 ms, so a 4 ms slice reads it 4–16 times; only
// steps as cheap as bare `yield`s (1024 steps in 15 µs) read it more often,
// about 260 times in 4 ms, so 256 leaves every live-clock slice as it was
// (measured: 64 cut bare-yield slices to 1 ms and cost 8 % in the steps bench;
// 256 costs nothing that shows). On a frozen clock the stride grows to
// MAX_STRIDE, so the host gets its turn at least every 256 × 1024 = 262 144
// steps (about 4 ms of bare yields). Counted per read: a step costs nothing more.
const MAX_READS = 256;
// The same for virtual jumps with nothing runnable in between (a coroutine
// that sleeps in a loop): a jump costs about a microsecond, so 1024 of them
// take about 1 ms.
const MAX_JUMPS = 1024;

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
   * stepped): before a host turn, before it sleeps, when its top run ended.
   * Tests set it to src/invariants.ts; null in production (docs/design.md).
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
    let jumps = 0; // virtual jumps since then
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
        await this.#hostTurn();
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
          if (++jumps === MAX_JUMPS || performance.now() - hopped >= SLICE_MS) {
            await this.#hostTurn();
            hopped = performance.now();
            jumps = 0;
          }
          continue;
        }
      } else {
        clock.fireDue(performance.now());
        // What fired may have released the last hold (a stop cancelling a
        // promise's coroutine): then a virtual clock may jump again.
        if (this.#head !== this.#tail || (clock.virtual && this.holds === 0)) continue;
      }
      if (this.holds === 0 && clock.next() === Infinity && this.#failCycles()) continue;
      await this.#sleep(clock);
    }
    if (Driver.atRest !== null) Driver.atRest(this);
    // No timer to clear: every sleep ended by its wake-up, which cleared it. A
    // run that ended from a host callback (a release) has already settled, so
    // the next run may have set a timer of its own before this line runs.
  }

  /** Gives the host a turn (its callbacks, timers, I/O) while tasks stay runnable. */
  #hostTurn(): Promise<void> {
    if (Driver.atRest !== null) Driver.atRest(this);
    return toHost();
  }

  /** Sleeps until the next deadline's host timer or a wake-up. */
  #sleep(clock: Clock): Promise<void> {
    if (Driver.atRest !== null) Driver.atRest(this);
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
    let reads = 0;
    while (this.#head !== this.#tail) {
      const task = this.#queue[this.#head]!;
      this.#queue[this.#head] = undefined;
      this.#head = (this.#head + 1) & this.#mask;
      // A task cancelled while queued is skipped here; one that only paused
      // (a bare `yield`, the commonest step) goes straight to the back.
      if (task.state <= CLEANUP_THROWING && step(task)) this.schedule(task);
      if (--countdown === 0) {
        // Reading the clock costs ten steps, so read it every `stride` steps,
        // with `stride` adapted so that a read comes about every 0.25–1 ms.
        const now = performance.now();
        clock.fireDue(now); // the virtual clock fires what is due at its own time
        if (now - start >= SLICE_MS || ++reads === MAX_READS) break;
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
// Stepping: the hot path (docs/design.md, "The hot path").

/** Steps `task` once; true if it only paused, for the caller to queue it again. */
function step(task: Task): boolean {
  if (task.state > THROWING) return stepCold(task);
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

/**
 * The states that `step` sends here: the task of a WaitOn, resumed or failed
 * by its wait (RETURNING, FAILING), ends; a cancelled task's cleanup goes on
 * (CLEANUP, CLEANUP_THROWING).
 */
function stepCold(task: Task): false {
  if (task.state > FAILING) return cleanupStep(task);
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
export function yielded(task: Task, y: unknown): void {
  if (typeof y === "object" && y !== null) {
    const child = (y as { [TASK]?: Task })[TASK];
    if (child !== undefined) return waitOne(task, child, y);
    // Most likely first: a new generator, then a Wait (docs/design.md, "The hot path").
    if (isGenerator(y)) return waitOne(task, spawnGenerator(task.run, y, task), y);
    if (y instanceof Wait) return park(task, y);
    if (Array.isArray(y)) return gather(task, y);
    if (y instanceof Set) return background(task, y);
    // The last kind of coroutine: a WaitOn (`yield sleep(5)`).
    if (isCoro(y)) return waitOne(task, spawnWaitOn(task.run, y as WaitOn<unknown>, task), y);
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
    throwOutcome(task, child.value);
  } else {
    task.state = WAITING;
    task.waitingOn = child;
    addWaiter(child, task, -1);
  }
}

export function park(task: Task, wait: Wait, state = PARKED): void {
  task.state = state;
  task.waitingOn = wait;
  try {
    wait.park(task);
  } catch (error) {
    task.waitingOn = null;
    // (A cancelled task parks only on a shield: it goes on cleaning up.)
    if (task.run.cancelling?.has(task)) wakeCleanup(task, error, true);
    else throwInto(task, error);
  }
}

function gather(task: Task, coros: unknown[]): void {
  const n = coros.length;
  // Check everything before starting anything, so a bad element starts nothing.
  let waitOns = false; // any WaitOn among them (most gathers have none: they skip that check)
  for (let i = 0; i < n; i++) {
    const c = coros[i];
    if (!isGenerator(c)) {
      if (!isCoro(c)) {
        return throwInto(task, new TypeError(invalidElement(coros, i, "an array")));
      }
      waitOns = true;
    }
    const seen = (c as { [TASK]?: Task })[TASK];
    if (seen !== undefined) {
      if (seen.run.core !== task.run.core) return throwInto(task, foreign(c));
      if (seen.state === FAILED) return throwOutcome(task, seen.value);
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
    if (!isCoro(c)) {
      return throwInto(task, new TypeError(invalidElement(items, i, "a Set")));
    }
    const seen = (c as { [TASK]?: Task })[TASK];
    if (seen !== undefined && seen.run.core !== task.run.core) {
      return throwInto(task, foreign(c));
    }
  }
  // During a crash, the coroutines a shield's work starts in the background
  // are stopped when that shield ends: note which shield they belong to.
  const crashed = task.run.crashed;
  for (const c of items) {
    if ((c as { [TASK]?: Task })[TASK] === undefined) {
      const child = spawn(task.run, c as Coro, null);
      if (crashed) startedInShield(task, child);
    }
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
export function forEachWaiter(task: Task, fn: (waiter: Task | Observer) => void): void {
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

/**
 * `task` yielded a coroutine that failed with `error`: it gets the error
 * thrown in — or, during a crash, for an error of the run or a cancellation,
 * its own cancellation (shielded work that waits on what the crash stopped).
 */
function throwOutcome(task: Task, error: unknown): void {
  const run = task.run;
  if (run.crashed && (error instanceof CancelledError || isRecorded(run, error))) {
    cancelAtNextTurn(task, error);
  } else {
    throwInto(task, error);
  }
}

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

export function finished(task: Task, value: unknown): void {
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
 * True if `task` failed (or fails) with an error for the coroutines waiting on
 * it to catch, not an error of the run: it is one of the library's (see
 * `primitive`), or a stop cancelled it (it has no result).
 */
export function errorIsWaiters(task: Task): boolean {
  return primitives.has(Object.getPrototypeOf(task.gen)) ||
    (task.state === FAILED && isStopError(task.value));
}

/** Ends `task` with `error`; returns its waiters, as (waiter, slot) pairs, taken off it. */
export function endFailed(task: Task, error: unknown): (Task | Observer | number)[] {
  task.state = FAILED;
  task.value = error;
  task.waitingOn = null;
  unlink(task);
  const waiters = task.waiter === null
    ? []
    : [task.waiter, task.waiterSlot, ...(task.moreWaiters ?? [])];
  task.waiter = task.moreWaiters = null;
  return waiters;
}

/**
 * A step threw `error`, the task's own: it failed. Its observers are told
 * first; if one takes the failure over (a timeout swallowing its own
 * `TimeoutError`), or the task is one of the library's and tasks wait on it,
 * the waiting tasks get the error thrown in. Otherwise it is an error of the
 * run: the run crashes (or, crashing already, records it, once), which
 * cancels the waiters; those that a shield keeps out of the crash get a
 * CancelledError whose cause it is.
 */
function failed(task: Task, error: unknown): void {
  const run = task.run;
  // Its only waiter, if it has one, read before `endFailed` forgets it: the
  // stitched trace of the error goes up the waiters from there.
  const waiter = task.moreWaiters === null ? task.waiter : null;
  const waiters = endFailed(task, error);
  const callers = errorIsWaiters(task);
  // Recorded before the waiters hear of it, so that a wait that passes it on
  // (a timeout around it) is seen to pass on a recorded error (see `fail`).
  if (run.crashed && !callers) recordFailure(run, error);
  let handled = false;
  for (let i = 0; i < waiters.length; i += 2) {
    const w = waiters[i];
    if (typeof w === "function" && w(task) === true) handled = true;
  }
  if (!handled && callers) handled = waiters.some((w) => w instanceof Task);
  if (handled) {
    for (let i = 0; i < waiters.length; i += 2) {
      const w = waiters[i];
      if (w instanceof Task && w.state === WAITING) throwIntoWaiter(w, error);
    }
  } else if (!run.crashed) {
    // Its waiters that a shield keeps out of the crash hear of it once the
    // crash has cancelled the rest (after the stitched trace is read, if one is).
    crash(run, error, waiter, () => cancelWaiters(waiters, task, error));
  } else {
    if (callers) recordFailure(run, error);
    cancelWaiters(waiters, task, error);
  }
  maybeEnd(run);
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
