/**
 * The workloads on effection (structured concurrency on generators).
 * effection has no semaphore and no threads: those rows are left out.
 *
 * @module
 */

import {
  action,
  all,
  type Operation,
  race,
  run,
  sleep,
  spawn,
  until,
  withResolvers,
} from "effection";
import { bytesPerParked, type Contender, SIZE, timeMs, timeVsFloor } from "./common.ts";

/**
 * Suspends once and is resumed at once: an action resolved as it is entered,
 * which goes through effection's scheduler (its cheapest real suspension;
 * `call()` of a plain function does not suspend at all).
 */
function pause(): Operation<void> {
  return action<void>((resolve) => {
    resolve();
    return () => {};
  });
}

function* spin(n: number): Operation<void> {
  for (let i = 0; i < n; i++) yield* pause();
}

function* child(i: number): Operation<number> {
  yield* pause();
  return i;
}

function* fanout(n: number): Operation<number> {
  const children: Operation<number>[] = new Array(n);
  for (let i = 0; i < n; i++) children[i] = child(i);
  return (yield* all(children)).length;
}

// effection's way to wait for a sub-operation's result: `yield*` it.
function* chain(depth: number): Operation<number> {
  if (depth === 0) {
    yield* pause();
    return 0;
  }
  return (yield* chain(depth - 1)) + 1;
}

function* sleepers(n: number, ms: number): Operation<void> {
  const sleeps: Operation<void>[] = new Array(n);
  for (let i = 0; i < n; i++) sleeps[i] = sleep(ms);
  yield* all(sleeps);
}

/** The work of a racer: wait for an answer that is ready (a resolved promise). */
function* answer(i: number): Operation<number> {
  return yield* until(Promise.resolve(i));
}

function* races(n: number, width: number): Operation<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const racers: Operation<number>[] = new Array(width);
    for (let j = 0; j < width; j++) racers[j] = answer(i + j);
    sum += yield* race(racers);
  }
  return sum;
}

/** effection's way to make a coroutine stoppable: a spawned task, halted on demand; joined here. */
function* spawned(n: number): Operation<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const task = yield* spawn(() => answer(i));
    sum += yield* task;
  }
  return sum;
}

/** effection's side of the workloads it has. */
export const contender: Contender = {
  steps: () => timeVsFloor(() => run(() => spin(SIZE.steps))),
  fanout: () => timeMs(() => run(() => fanout(SIZE.fanout))),
  chain: () => timeMs(() => run(() => chain(SIZE.chain))),
  chainDeep: async () => {
    try {
      return await timeMs(() => run(() => chain(SIZE.chainDeep)));
    } catch (e) {
      if (e instanceof RangeError) return "stack overflow";
      throw e;
    }
  },
  sleepers: () => timeMs(() => run(() => sleepers(SIZE.sleepers, SIZE.sleepMs))),
  race2: () => timeMs(() => run(() => races(SIZE.races, 2))),
  race100: () => timeMs(() => run(() => races(SIZE.wideRaces, 100))),
  cancellable: () => timeMs(() => run(() => spawned(SIZE.races))),
  // Parked: a task of `all()` suspended in `yield*` on a pending `withResolvers()` operation.
  memory: () =>
    bytesPerParked(async (n) => {
      const gate = withResolvers<void>();
      let parked = 0;
      function* waiter(): Operation<void> {
        parked++;
        yield* gate.operation;
      }
      const waiters: Operation<void>[] = new Array(n);
      for (let i = 0; i < n; i++) waiters[i] = waiter();
      const done = run(() => all(waiters));
      while (parked < n) await new Promise((resolve) => setTimeout(resolve, 1));
      return { release: () => gate.resolve(), done };
    }),
};
