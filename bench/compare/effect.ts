/**
 * The workloads on Effect (fibers). Effect has no worker threads of its own
 * in the core package: those rows are left out. Channels are its
 * `Queue.bounded(capacity)` with the "suspend" strategy; with capacity 0 it
 * accepts an offer only while a taker waits (a rendezvous, as documented in
 * Effect 4's `Queue.offerUnsafe`); `Queue.end` closes it and a take then
 * fails with `Cause.Done`.
 *
 * @module
 */

import { type Cause, Deferred, Effect, Queue, Semaphore } from "effect";
import {
  bytesPerParked,
  channelRows,
  type Contender,
  SIZE,
  timeMs,
  timeVsFloor,
} from "./common.ts";

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

const producer = (q: Queue.Queue<number, Cause.Done>, n: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < n; i++) yield* Queue.offer(q, i);
  });

const consumer = (q: Queue.Queue<number, Cause.Done>) =>
  Effect.gen(function* () {
    let sum = 0;
    for (;;) {
      const taken = yield* Effect.exit(Queue.take(q)); // fails with Done once ended and drained
      if (taken._tag === "Failure") return sum;
      sum += taken.value;
    }
  });

const throughChannel = (capacity: number, width: number) =>
  Effect.gen(function* () {
    const q = yield* Queue.bounded<number, Cause.Done>(capacity);
    const producers = Array.from({ length: width }, () => producer(q, SIZE.channelValues / width));
    const consumers = Array.from({ length: width }, () => consumer(q));
    const [, sums] = yield* Effect.all([
      Effect.andThen(Effect.all(producers, { concurrency: "unbounded" }), Queue.end(q)),
      Effect.all(consumers, { concurrency: "unbounded" }),
    ], { concurrency: "unbounded" });
    return sums.reduce((a, b) => a + b, 0);
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
  ...channelRows((capacity, width) => Effect.runPromise(throughChannel(capacity, width))),
  // Parked: a fiber of `Effect.all` (unbounded) suspended in `Queue.take` on an empty queue.
  memoryReceive: () =>
    bytesPerParked(async (n) => {
      const q = Effect.runSync(Queue.bounded<number, Cause.Done>(0));
      let parked = 0;
      const waiter = Effect.suspend(() => {
        parked++;
        return Effect.exit(Queue.take(q));
      });
      const done = Effect.runPromise(
        Effect.all(Array.from({ length: n }, () => waiter), { concurrency: "unbounded" }),
      );
      while (parked < n) await new Promise((resolve) => setTimeout(resolve, 1));
      return { release: () => Queue.endUnsafe(q), done };
    }),
  // Parked: the same in `Queue.offer` on a queue nobody takes from (capacity 0).
  memorySend: () =>
    bytesPerParked(async (n) => {
      const q = Effect.runSync(Queue.bounded<number, Cause.Done>(0));
      let parked = 0;
      const waiter = Effect.suspend(() => {
        parked++;
        return Queue.offer(q, 0);
      });
      const done = Effect.runPromise(
        Effect.all(Array.from({ length: n }, () => waiter), { concurrency: "unbounded" }),
      );
      while (parked < n) await new Promise((resolve) => setTimeout(resolve, 1));
      const takeAll = () =>
        void Effect.runPromise(Effect.gen(function* () {
          for (let i = 0; i < n; i++) yield* Queue.take(q);
        }));
      return { release: takeAll, done };
    }),
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
