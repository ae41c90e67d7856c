/**
 * Isolation: a nested loop whose crash stays inside it (`isolate`), and the
 * pipe that carries an outer coroutine's result into it (`copy`).
 *
 * @module
 */

import { CancelledError } from "./errors.ts";
import { type Coro, isCoro } from "./coro.ts";
import { notACoroutine } from "./messages.ts";
import {
  atRunEnd,
  fail,
  type Nested,
  type Observer,
  primitive,
  resume,
  startNested,
  type Task,
  taskOf,
  unwatch,
  Wait,
  watch,
} from "./wait.ts";

/**
 * A coroutine parked on a nested loop. The nested loop has its own core (its
 * own coroutines, its own crash domain) but is stepped by the outer loop's
 * driver and reads its clock, so the two interleave fairly and share virtual
 * time. When the nested run ends, its result or error resumes the task.
 */
class Isolation<T> extends Wait {
  #nested: Nested | null = null;

  constructor(readonly coro: Coro<T>, readonly exceptionGroup: boolean | undefined) {
    super();
  }

  park(task: Task): void {
    if (taskOf(this.coro) !== undefined) {
      throw new TypeError(
        `isolate() takes a coroutine that no loop has seen yet, got one that already ran or ` +
          "is running (it cannot belong to two loops). Pass a fresh coroutine, or pass " +
          "`yield* copy(coro)`: a fresh coroutine that returns what `coro` returns.",
      );
    }
    this.#nested = startNested(task, this.coro, this.exceptionGroup, (end) => {
      if (end.ok) resume(task, this, [end.value, true]);
      // A cancellation is never captured: it goes on to the outer loop.
      else if (end.value instanceof CancelledError) fail(task, this, end.value);
      else resume(task, this, [end.rejection(), false]);
    });
  }

  unpark(): boolean {
    // The outer task stops waiting (cancelled, timed out): cancel the nested
    // coroutines; the outer run is held until they have stopped (their
    // `fromPromise` promises settled, their workers gone).
    return this.#nested!.cancel(
      "isolate(): the coroutine waiting on this isolated loop was cancelled",
    );
  }

  override waitingFor(_task: Task, idOf: (task: Task) => number | undefined): string {
    const root = this.#nested?.root;
    const id = root === undefined ? undefined : idOf(root);
    return id === undefined ? "isolated loop" : `isolated loop (coroutine ${id})`;
  }
}

/**
 * Runs `coro` on a nested loop, so that a crash inside cancels only the
 * coroutines of that loop: resumes with `[value, true]` when `coro` returns,
 * or `[error, false]` when it or a coroutine it started fails (`error` follows
 * `options.exceptionGroup`, as `run`'s rejection does). The outer loop carries
 * on either way.
 *
 * The nested loop is driven by the outer one and shares its clock (virtual
 * time included). `CancelledError` is never captured: cancelling the
 * coroutine that waits on `isolate` cancels every coroutine of the nested
 * loop, and the cancellation goes on.
 *
 * `coro`, and every coroutine it yields, must be new to the outer loop (a
 * coroutine belongs to one loop): to use an outer coroutine's result inside,
 * pass a copy, made by {@linkcode copy}.
 *
 * @example
 * ```ts
 * import { type Coro, isolate, Loop } from "@tinyio/core";
 *
 * function* flaky(): Coro<number> {
 *   yield;
 *   throw new Error("flaked");
 * }
 * function* main(): Coro<string> {
 *   const [error, ok] = yield* isolate(flaky());
 *   return ok ? "fine" : `recovered from ${(error as Error).message}`;
 * }
 * console.assert(await new Loop().run(main()) === "recovered from flaked");
 * ```
 */
export function isolate<T>(
  coro: Coro<T>,
  options: { exceptionGroup?: boolean } = {},
): Coro<[T, true] | [Error, false]> {
  if (!isCoro(coro)) throw notACoroutine("isolate()", coro);
  return isolating(new Isolation(coro, options.exceptionGroup));
}

function* isolating<T>(wait: Isolation<T>): Coro<[T, true] | [Error, false]> {
  return yield wait;
}

/**
 * A coroutine parked on the end of a task of possibly another loop: resumes
 * with its result, or throws its error.
 */
class Replay extends Wait {
  #observer: Observer | null = null;

  constructor(readonly original: Task) {
    super();
  }

  park(task: Task): void {
    this.#observer = (original) => {
      if (original.succeeded) resume(task, this, original.value);
      else fail(task, this, original.value);
    };
    watch(this.original, this.#observer);
    // The loop tells no observer of a failure while its run crashes; the end
    // of that run does tell this one (a stale call is ignored).
    if (!this.original.ended) atRunEnd(this.original, () => this.#observer!(this.original));
  }

  unpark(): void {
    unwatch(this.original, this.#observer!);
  }

  override waitingFor(_task: Task, idOf: (task: Task) => number | undefined): string {
    const id = idOf(this.original);
    return id === undefined ? "a coroutine of another loop (copy)" : `coroutine ${id} (copy)`;
  }
}

/**
 * Starts `coro` in the background, if it has not started, and returns at once
 * a fresh coroutine that waits for `coro` and returns the very same value (or
 * throws the very same error). The copy may run anywhere: inside
 * {@linkcode isolate}, on another loop, under `toPromise`. This is how an
 * isolated loop uses a result of the outer one.
 *
 * `coro` is started as a background coroutine of the caller's run: if it
 * fails while nothing else handles its failure, the run fails, as it would if
 * it had been yielded in a Set.
 *
 * @example
 * ```ts
 * import { copy, type Coro, isolate, join, Loop } from "@tinyio/core";
 *
 * function* config(): Coro<{ retries: number }> {
 *   yield;
 *   return { retries: 3 };
 * }
 * function* useConfig(get: Coro<{ retries: number }>): Coro<number> {
 *   const c = yield* join(get);
 *   return c.retries;
 * }
 * function* main(): Coro<number> {
 *   const shared = config(); // a coroutine of the outer loop
 *   const [retries, ok] = yield* isolate(useConfig(yield* copy(shared)));
 *   return ok ? retries : -1;
 * }
 * console.assert(await new Loop().run(main()) === 3);
 * ```
 */
export function copy<T>(coro: Coro<T>): Coro<Coro<T>> {
  if (!isCoro(coro)) throw notACoroutine("copy()", coro);
  return copying(coro);
}

function* copying<T>(coro: Coro<T>): Coro<Coro<T>> {
  // Starts it on this loop, unless it has started already; a coroutine of
  // another loop is a TypeError thrown in here.
  yield new Set([coro]);
  return replay<T>(new Replay(taskOf(coro)!));
}

function* replay<T>(wait: Replay): Coro<T> {
  return yield wait;
}
primitive(replay);
