/**
 * The public face of the loop: {@linkcode Loop}, its options, and `runOn`,
 * which starts a run on a core and settles its promise. The stepping itself is
 * in src/core.ts.
 *
 * @module
 */

import { RealClock, VirtualClock } from "./clock.ts";
import { type Coro, isCoro } from "./coro.ts";
import { Core, Driver } from "./core.ts";
import {
  alreadyRunning,
  badClock,
  badExceptionGroup,
  badSignal,
  foreign,
  runNotACoroutine,
} from "./messages.ts";
import { DONE, FAILED, taskOf } from "./task.ts";
import { type CoroutineInfo, snapshot } from "./snapshot.ts";

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
    const kind = options.clock ?? "real";
    if (kind !== "real" && kind !== "virtual") throw badClock(kind);
    const clock = kind === "virtual" ? new VirtualClock() : new RealClock();
    this.#core = new Core(clock, new Driver(clock));
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

  /**
   * Every unfinished coroutine of this loop's run, and of the `isolate` loops
   * within it (their coroutines listed like the others; the coroutine of
   * each is `startedBy` the outer coroutine waiting on it): its state, what
   * it waits for, who waits on it. Print it with {@linkcode formatSnapshot}.
   * Empty when the loop is not running. Costs nothing until called.
   *
   * Names and locations (in the TypeScript as written) come from V8's
   * inspector: in Deno they need `--allow-sys` (and, for `.ts` files,
   * `--allow-read` and `--allow-env` to find the source maps in Deno's
   * cache); without them they are absent, never prompted for. While they are
   * read, about 50 µs a coroutine, the loop steps nothing, so that they agree
   * with the states.
   *
   * @example
   * ```ts
   * import { type Coro, Event, formatSnapshot, Loop } from "@tinyio/core";
   *
   * const never = new Event(); // nobody sets it: the run hangs
   * function* stuck(): Coro<void> {
   *   yield* never.wait();
   * }
   * const loop = new Loop();
   * const running = loop.run(stuck(), { signal: AbortSignal.timeout(100) });
   * const infos = await loop.snapshot();
   * console.assert(infos.length === 1 && infos[0].waitingFor === "Event");
   * console.log(formatSnapshot(infos)); // #1 stuck: waiting for Event (at file:///…:5:3)
   * await running.catch(() => {}); // the signal ends it
   * ```
   */
  snapshot(): Promise<CoroutineInfo[]> {
    return snapshot(this.#core);
  }
}

/** Runs `coro` on `core` (a loop's `run`). */
function runOn<T>(core: Core, coro: Coro<T>, options?: RunOptions): Promise<T> {
  options ??= {};
  const group = options.exceptionGroup;
  if (group !== undefined && typeof group !== "boolean") {
    return Promise.reject(badExceptionGroup(group));
  }
  if (!isCoro(coro)) return Promise.reject(runNotACoroutine(coro));
  if (core.running) return Promise.reject(alreadyRunning());
  const seen = taskOf(coro);
  if (seen !== undefined) {
    if (seen.run.core !== core) return Promise.reject(foreign(coro));
    if (seen.state === DONE) return Promise.resolve(seen.value as T);
    if (seen.state === FAILED) return Promise.reject(seen.value);
  }
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    return Promise.reject(badSignal(signal));
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
        core.driver.wake();
      };
      signal.addEventListener("abort", onAbort, { once: true });
    }
    core.driver.drive(run).catch((error) => {
      core.running = false;
      reject(error);
    });
  });
}
