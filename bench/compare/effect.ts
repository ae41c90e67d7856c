/**
 * The workloads on Effect (fibers). Effect has no worker threads of its own
 * in the core package: those rows are left out.
 *
 * @module
 */

import { Deferred, Effect, Semaphore } from "effect";
import { bytesPerParked, type Contender, SIZE, timeMs, timeVsFloor } from "./common.ts";

const spin = (n: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < n; i++) yield* Effect.yieldNow;
  });

const child = (i: number) =>
  Effect.gen(function* () {
    yield* Effect.yieldNow;
    return i;
  });

const fanout = (n: number) =>
  Effect.gen(function* () {
    const children: Effect.Effect<number>[] = new Array(n);
    for (let i = 0; i < n; i++) children[i] = child(i);
    return (yield* Effect.all(children, { concurrency: "unbounded" })).length;
  });

// Effect's way to wait for a sub-effect's result: `yield*` it in the same fiber.
const chain = (depth: number): Effect.Effect<number> =>
  depth === 0 ? Effect.as(Effect.yieldNow, 0) : Effect.gen(function* () {
    return (yield* chain(depth - 1)) + 1;
  });

const sleepers = (n: number, ms: number) =>
  Effect.all(Array.from({ length: n }, () => Effect.sleep(ms)), { concurrency: "unbounded" });

const throughSemaphore = (n: number, capacity: number) =>
  Effect.gen(function* () {
    const sem = yield* Semaphore.make(capacity);
    const guarded = Semaphore.withPermit(sem)(Effect.yieldNow);
    yield* Effect.all(Array.from({ length: n }, () => guarded), { concurrency: "unbounded" });
  });

/** Effect's side of the workloads it has. */
export const contender: Contender = {
  steps: () => timeVsFloor(() => Effect.runPromise(spin(SIZE.steps))),
  fanout: () => timeMs(() => Effect.runPromise(fanout(SIZE.fanout))),
  chain: () => timeMs(() => Effect.runPromise(chain(SIZE.chain))),
  chainDeep: async () => {
    try {
      return await timeMs(() => Effect.runPromise(chain(SIZE.chainDeep)));
    } catch (e) {
      if (e instanceof RangeError || String(e).includes("call stack")) return "stack overflow";
      throw e;
    }
  },
  sleepers: () => timeMs(() => Effect.runPromise(sleepers(SIZE.sleepers, SIZE.sleepMs))),
  semaphore: () =>
    timeMs(() => Effect.runPromise(throughSemaphore(SIZE.semaphoreTasks, SIZE.semaphoreCapacity))),
  // Parked: a fiber of `Effect.all` (unbounded) suspended in `Deferred.await` on a pending Deferred.
  memory: () =>
    bytesPerParked(async (n) => {
      const gate = Deferred.makeUnsafe<void>();
      let parked = 0;
      const waiter = Effect.suspend(() => {
        parked++;
        return Deferred.await(gate);
      });
      const done = Effect.runPromise(
        Effect.all(Array.from({ length: n }, () => waiter), { concurrency: "unbounded" }),
      );
      while (parked < n) await new Promise((resolve) => setTimeout(resolve, 1));
      return { release: () => Deferred.doneUnsafe(gate, Effect.void), done };
    }),
};
