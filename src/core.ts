/**
 * The core: the one place that steps coroutines and cancels them. It reads
 * top to bottom: the driver and its run queue, a step, what a yield does, the
 * waiter lists, how a task ends, and cancellation. The records it works on
 * are in src/task.ts; primitives reach it only through src/wait.ts.
 * docs/design.md explains the algorithm, the rules of the hot path and the
 * designs that were measured and rejected: the comments here point there.
 *
 * @module
 */

import { CancelledError, TimeoutError } from "./errors.ts";
import { type Clock, RealClock } from "./clock.ts";
import { type Coro, GeneratorPrototype, isCoro, isGenerator, TASK, WaitOn } from "./coro.ts";
import { toHost } from "./host.ts";
import * as states from "./task.ts";
import { Gather, type Observer, Run, Task, taskOf, Wait } from "./task.ts";
import {
  crashMessage,
  foreign,
  invalidElement,
  invalidYield,
  misbehavedWarning,
  stoppedMessage,
  waiterCancelledMessage,
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
const { QUEUED, THROWING, RETURNING, FAILING, CLEANUP, CLEANUP_THROWING, RUNNING } = states;
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
// The cycle check: only when nothing at all can wake the loop.

/**
 * Returns a waiting cycle among `run`'s tasks (each waits on the next, the
 * last on the first), or null. It follows every wait on coroutines: a single
 * one, a gather, and the waits that wait on coroutines for their task (a
 * timeout's, a shield's), so a cycle through a shield is a cycle too.
 */
function findCycle(run: Run): Task[] | null {
  const depth = new Map<Task, number>(); // on the current path: its depth; done: -1
  for (let t = run.first; t !== null; t = t.next) {
    if (depth.has(t)) continue;
    const start = waitsOn(t);
    if (start.length === 0) continue;
    // Iterative depth-first search, so that a deep chain cannot overflow the stack.
    const path: Task[] = [t];
    const todo: Task[][] = [start];
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
        todo.push(waitsOn(child));
      } else if (d >= 0) return path.slice(d);
    }
  }
  return null;
}

/**
 * The unfinished tasks that `t` waits on now: its child, its gather's open
 * children, or those of the Wait it is parked on (a timeout's coroutine, a
 * shield's, the coroutines a stop waits for). A fresh array.
 */
function waitsOn(t: Task): Task[] {
  const on = t.waitingOn;
  if (t.state === WAITING) {
    if (on instanceof Task) return [on];
    return (on as Gather).slots.filter((x): x is Task => x instanceof Task && x.state < DONE);
  }
  if (t.state === PARKED || t.state === WAITON_PARKED) {
    return (on as Wait).children().filter((x) => x.state < DONE);
  }
  return [];
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
function yielded(task: Task, y: unknown): void {
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

function park(task: Task, wait: Wait, state = PARKED): void {
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
  if (!run.crashed || !(error instanceof CancelledError || isRecorded(run, error))) {
    return throwInto(task, error);
  }
  // It is being stepped: its cancellation comes at its next turn.
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
    (task.state === FAILED && stopErrors.has(task.value as object));
}

/** Ends `task` with `error`; returns its waiters, as (waiter, slot) pairs, taken off it. */
function endFailed(task: Task, error: unknown): (Task | Observer | number)[] {
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

// ---------------------------------------------------------------------------
// Cancellation (docs/cancellation.md).
//
// A crash cancels every task of its run; a stop (`stopWork`: a timeout ran
// out, a signal aborted, a race was won) quietly cancels the work of some.
// Both go through `cancel`, which throws a task's cancellation in once. What
// the task does next is watched on the cold path: it is in `run.cancelling`
// until it ends, and its steps go through `cleanupStep`, so that only a
// cancelled task pays for "is this yield a shield?". A shield keeps its
// coroutine, and everything that coroutine waits on when the cancellation
// comes, out of it: those run on; the task waiting in the shield gets its
// cancellation once the shield's coroutine has ended. Nothing of this is
// kept per task or per step: who is shielded is computed when a cancellation
// comes, from what the tasks wait on then.

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
function recordFailure(run: Run, error: unknown): void {
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
  task.state = RUNNING;
  let r: IteratorResult<unknown, unknown>;
  try {
    r = task.gen.throw(thrown);
  } catch (e) {
    cancelEnded(task, e);
    return;
  }
  cleanupYielded(task, cancellation, r);
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
function cleanupStep(task: Task): false {
  const value = task.value;
  const throwing = task.state === CLEANUP_THROWING;
  task.value = undefined;
  task.state = RUNNING;
  let r: IteratorResult<unknown, unknown>;
  try {
    r = throwing ? task.gen.throw(value) : task.gen.next(value);
  } catch (error) {
    cancelEnded(task, error);
    return false;
  }
  cleanupYielded(task, task.run.cancelling!.get(task)!, r);
  return false;
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
function wakeCleanup(task: Task, value: unknown, throwing: boolean): void {
  task.waitingOn = null;
  task.value = value;
  if (task.gen instanceof WaitOn) {
    // A WaitOn (`yield shield(c)` waits in one) has no cleanup: it ends now.
    task.state = RUNNING;
    task.value = undefined;
    if (!throwing) {
      return cleanupYielded(task, task.run.cancelling!.get(task)!, { done: true, value });
    }
    try {
      task.gen.throw(value);
    } catch (error) {
      cancelEnded(task, error);
    }
    return;
  }
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
function throwIntoWaiter(w: Task, error: unknown): void {
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
function cancelWaiters(waiters: (Task | Observer | number)[], task: Task, cause: unknown): void {
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
function startedInShield(task: Task, child: Task): void {
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
