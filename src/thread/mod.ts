/**
 * Threads: blocking work on workers — `runInThread`, `threadFunction`,
 * `ThreadPool` and `cancelled`. The public face of src/thread/:
 *
 * - function.ts: what runs on a worker (`ThreadFn`, `threadFunction`);
 * - call.ts: a call, the Wait a coroutine of `runInThread` parks on;
 * - pool.ts: which worker runs which call; thread.ts: one worker, as the pool
 *   sees it;
 * - protocol.ts: the messages between the two sides, defined once;
 *   worker.ts: the worker's side, whose source text the worker runs;
 * - runtime.ts: how a worker starts on this runtime (Web Workers, or
 *   `node:worker_threads`); permissions.ts: Deno's worker permissions;
 *   errors.ts: errors crossing from the workers.
 *
 * Messages cost far more than tiny calls (each costs the loop's thread
 * microseconds), so they are few: the calls a worker is given in one turn of
 * the loop travel together, a function's text goes to a worker once, and a
 * worker answers quick calls together.
 *
 * @module
 */

import type { Coro } from "../coro.ts";
import { describe } from "../messages.ts";
import { callOn, gathering } from "./call.ts";
import { targetOf, type ThreadFn } from "./function.ts";
import { type ThreadPermissions, workerOptionsFor } from "./permissions.ts";
import { Pool } from "./pool.ts";
import { PROTOCOL } from "./protocol.ts";

export { type ThreadFn, type ThreadFunction, threadFunction } from "./function.ts";
export type { ThreadPermissions } from "./permissions.ts";

/** Where `cancelled()` finds the worker's check (worker.ts puts it there). */
const CANCELLED_KEY = Symbol.for(PROTOCOL.cancelledKey);

/**
 * Inside a thread task: true once the task's coroutine was cancelled (the run
 * failed, a timeout expired, the pool was closed). Elsewhere — on the loop's
 * thread, between tasks — false. It reads shared memory, cheap enough to poll
 * in a hot loop: a long synchronous task should poll it and return early, since
 * nothing else can stop it. A self-contained function calls it by the free name
 * `cancelled` (the worker provides it); a module run by `threadFunction`
 * imports it.
 *
 * @example
 * ```ts
 * import { cancelled, type Coro, Loop, runInThread } from "@tinyio/core";
 *
 * function countTo(n: number): number {
 *   let i = 0;
 *   while (i < n && !cancelled()) i++;
 *   return i;
 * }
 * function* main(): Coro<number> {
 *   return yield* runInThread(countTo, 1_000);
 * }
 * console.assert(await new Loop().run(main()) === 1_000);
 * ```
 */
export function cancelled(): boolean {
  const check = (globalThis as Record<symbol, (() => boolean) | undefined>)[CANCELLED_KEY];
  return check !== undefined && check();
}

let defaultPool: Pool | undefined;

/**
 * Runs `fn(...args)` on a worker, off the loop's thread, and resumes with
 * its result: blocking or CPU-heavy work runs in parallel while the loop goes
 * on. `fn` is a self-contained function — sent by its source text, so it may
 * use only its arguments, globals and `cancelled`; `async` functions are
 * awaited — or a {@linkcode threadFunction} naming a module export, which may
 * import anything. Arguments and results are structured-cloned; an error
 * thrown on the worker is rethrown here with its name, message and stack.
 * Workers are reused while the run goes on, and as many start as there are
 * calls at once; bound them with a {@linkcode ThreadPool}. A function that is
 * not one (or a generator function) is a `TypeError`, thrown at the call.
 *
 * Cancelling the coroutine raises `cancelled()` on the worker and stops it as
 * soon as it awaits or returns; `run` settles only once it has stopped.
 *
 * Workers are Web Workers on Deno, Bun and browsers (a browser page must be
 * cross-origin isolated: served with `Cross-Origin-Opener-Policy: same-origin`
 * and `Cross-Origin-Embedder-Policy: require-corp`, else the call fails with
 * an `Error` naming them), and `node:worker_threads` on Node. Where there are
 * no workers (Cloudflare Workers) the call fails with an `Error` that says so.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, runInThread } from "@tinyio/core";
 *
 * function slowSquare(x: number): number {
 *   const until = Date.now() + 50;
 *   while (Date.now() < until); // blocks its worker, not the loop
 *   return x * x;
 * }
 * function* main(): Coro<number[]> {
 *   return yield [runInThread(slowSquare, 2), runInThread(slowSquare, 3)];
 * }
 * const [four, nine] = await new Loop().run(main()); // ~50 ms, not 100
 * console.assert(four === 4 && nine === 9);
 * ```
 */
export function runInThread<A extends unknown[], R>(fn: ThreadFn<A, R>, ...args: A): Coro<R> {
  const label = "runInThread()";
  const target = targetOf(label, fn);
  defaultPool ??= new Pool(Infinity, {}, "runInThread");
  return callOn(defaultPool, target, args, label);
}

/**
 * Runs functions on at most `maxThreads` workers at a time (on the runtimes
 * {@linkcode runInThread} names); further calls wait in order for a free
 * worker. `permissions` narrows what its workers may do, on Deno only (Deno's
 * worker permissions: `"none"`, or a {@linkcode ThreadPermissions} object such
 * as `{ read: ["./data"] }`); that needs Deno's `--unstable-worker-options`
 * flag, and the constructor throws an `Error` naming it when it can tell the
 * flag is missing. Off Deno, any `permissions` but `"inherit"` is an `Error`.
 * `maxThreads` not a positive integer is a `RangeError`. `close()` (or
 * `using`) terminates the workers; the pool cannot be used after that.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, ThreadPool } from "@tinyio/core";
 *
 * function* main(): Coro<number[]> {
 *   using pool = new ThreadPool(2);
 *   return yield* pool.map((x: number) => x * x, [1, 2, 3, 4]);
 * }
 * console.assert((await new Loop().run(main())).join() === "1,4,9,16");
 * ```
 */
export class ThreadPool implements Disposable {
  #pool: Pool;

  /** Makes a pool of at most `maxThreads` workers, with the given permissions (default `"inherit"`). */
  constructor(
    maxThreads: number,
    options: { permissions?: "inherit" | "none" | ThreadPermissions } = {},
  ) {
    const label = `new ThreadPool(${
      typeof maxThreads === "number" ? maxThreads : describe(maxThreads)
    })`;
    if (typeof maxThreads !== "number") {
      throw new TypeError(`${label}: maxThreads is a number of workers, a positive integer.`);
    }
    if (!Number.isInteger(maxThreads) || maxThreads < 1) {
      throw new RangeError(
        `${label}: maxThreads is ${maxThreads}; give a positive integer, the most calls run at once.`,
      );
    }
    const workerOptions = workerOptionsFor(label, options?.permissions ?? "inherit");
    this.#pool = new Pool(maxThreads, workerOptions, `This ThreadPool(${maxThreads})`);
  }

  /**
   * Runs `fn(...args)` on one of the pool's workers, as the free function
   * {@linkcode runInThread} does, waiting for a free worker first.
   *
   * @example
   * ```ts
   * import { type Coro, Loop, ThreadPool } from "@tinyio/core";
   *
   * function* main(): Coro<string> {
   *   using pool = new ThreadPool(1);
   *   return yield* pool.runInThread((s: string) => s.toUpperCase(), "hi");
   * }
   * console.assert(await new Loop().run(main()) === "HI");
   * ```
   */
  runInThread<A extends unknown[], R>(fn: ThreadFn<A, R>, ...args: A): Coro<R> {
    const label = "ThreadPool.runInThread()";
    if (this.#pool.closed) throw this.#pool.closedError();
    return callOn(this.#pool, targetOf(label, fn), args, label);
  }

  /**
   * Runs `fn(x)` for every `x` of `xs` on the pool's workers and resumes with
   * the results in the order of `xs`.
   *
   * @example
   * ```ts
   * import { type Coro, Loop, ThreadPool } from "@tinyio/core";
   *
   * function* main(): Coro<number[]> {
   *   using pool = new ThreadPool(2);
   *   return yield* pool.map((n: number) => n + 1, new Set([1, 2, 3]));
   * }
   * console.assert((await new Loop().run(main())).join() === "2,3,4");
   * ```
   */
  map<X, R>(fn: ThreadFn<[X], R>, xs: Iterable<X>): Coro<R[]> {
    const label = "ThreadPool.map()";
    if (this.#pool.closed) throw this.#pool.closedError();
    if (xs === null || typeof (xs as Partial<Iterable<X>>)?.[Symbol.iterator] !== "function") {
      throw new TypeError(`${label}: xs is ${describe(xs)}; give an iterable (an array, a Set…).`);
    }
    const target = targetOf(label, fn); // checks fn now, not at the first element
    const calls: Coro<R>[] = [];
    for (const x of xs) calls.push(callOn(this.#pool, target, [x], label));
    return gathering(calls);
  }

  /**
   * Terminates the pool's workers: running calls see `cancelled()` turn true
   * and, like calls still waiting for a worker, fail with an `Error` saying the
   * pool is closed (their runs wait until those workers have stopped). Every
   * later use is an `Error`. A second `close()` does nothing.
   *
   * @example
   * ```ts
   * import { ThreadPool } from "@tinyio/core";
   *
   * const pool = new ThreadPool(4);
   * pool.close();
   * ```
   */
  close(): void {
    this.#pool.close();
  }

  /** Same as {@linkcode ThreadPool.prototype.close}, for `using pool = new ThreadPool(n)`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
