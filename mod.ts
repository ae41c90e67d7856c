/**
 * @module
 * A tiny, fast, crash-safe event loop for generator coroutines: the Python
 * library tinyio, on Deno. `yield coro` waits for a coroutine, `yield [a, b]`
 * gathers, `yield new Set([c])` starts one in the background, and one error
 * cancels every coroutine — each gets a `CancelledError` so its `finally`
 * blocks run — before `run` rejects with that very error.
 *
 * @example Quick start
 * ```ts
 * import { type Coro, Loop, sleep } from "@tinyio/core";
 *
 * function* slowAddOne(x: number): Coro<number> {
 *   yield sleep(10);
 *   return x + 1;
 * }
 * function* main(): Coro<number[]> {
 *   const [four, five] = yield [slowAddOne(3), slowAddOne(4)];
 *   return [four, five];
 * }
 * const out = await new Loop().run(main());
 * console.assert(out[0] === 4 && out[1] === 5);
 * ```
 */

export { all, type Coro, join, type Results } from "./src/coro.ts";
export { Loop, type LoopOptions, type RunOptions } from "./src/loop.ts";
export { CancelledError, ChannelClosedError, TimeoutError } from "./src/errors.ts";
export { sleep, timeout } from "./src/time.ts";
export { cancellable, race, shield } from "./src/cancel.ts";
export { asCompleted, Barrier, Event, Lock, type Permit, Semaphore } from "./src/sync.ts";
export { fromPromise, toPromise } from "./src/promise.ts";
export { Channel, fromAsyncIterable } from "./src/channel.ts";
export { copy, isolate } from "./src/isolate.ts";
export { main } from "./src/main.ts";
export { type CoroutineInfo, formatSnapshot } from "./src/snapshot.ts";
export {
  cancelled,
  runInThread,
  type ThreadFn,
  type ThreadFunction,
  threadFunction,
  type ThreadPermissions,
  ThreadPool,
} from "./src/thread/mod.ts";
