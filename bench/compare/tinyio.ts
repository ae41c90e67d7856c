/**
 * The workloads on @tinyio/core.
 *
 * @module
 */

import {
  cancellable,
  Channel,
  type Coro,
  Event,
  fromPromise,
  Loop,
  race,
  runInThread,
  Semaphore,
  sleep,
  ThreadPool,
} from "../../mod.ts";
import { resume, type Task, Wait } from "../../src/wait.ts";
import {
  bytesPerParked,
  channelRows,
  type Contender,
  SIZE,
  timeMs,
  timeVs,
  timeVsFloor,
} from "./common.ts";

function* spin(n: number): Coro<void> {
  for (let i = 0; i < n; i++) yield;
}

/** One child of a gather: suspends once. */
function* child(i: number): Coro<number> {
  yield;
  return i;
}

export function* fanout(n: number): Coro<number> {
  const children: Coro<number>[] = new Array(n);
  for (let i = 0; i < n; i++) children[i] = child(i);
  const results: number[] = yield children;
  return results.length;
}

// Coroutine `depth` waits for coroutine `depth - 1`, scheduled on its own.
export function* chain(depth: number): Coro<number> {
  if (depth === 0) {
    yield;
    return 0;
  }
  return (yield chain(depth - 1)) + 1;
}

export function* sleepers(n: number, ms: number): Coro<void> {
  const sleeps: Coro<void>[] = new Array(n);
  for (let i = 0; i < n; i++) sleeps[i] = sleep(ms);
  yield sleeps;
}

function* guarded(sem: Semaphore): Coro<void> {
  using _permit = yield* sem.acquire();
  yield;
}

function* throughSemaphore(n: number, capacity: number): Coro<void> {
  const sem = new Semaphore(capacity);
  const tasks: Coro<void>[] = new Array(n);
  for (let i = 0; i < n; i++) tasks[i] = guarded(sem);
  yield tasks;
}

const inc = (x: number) => x + 1;

// Warm round trips: the first calls start the worker (which a run keeps
// until it ends), so the timed ones come later in the same run.
function* roundTrips(warm: number, n: number): Coro<number> {
  for (let i = 0; i < warm; i++) yield runInThread(inc, i);
  const start = performance.now();
  for (let i = 0; i < n; i++) yield runInThread(inc, i);
  return (performance.now() - start) * 1000 / n;
}

/** The least a wait can be: it keeps its tasks in an array until released. */
class Hold extends Wait {
  readonly tasks: Task[] = [];
  park(task: Task): void {
    this.tasks.push(task);
  }
  unpark(): void {}
  release(): void {
    for (const task of this.tasks) resume(task, this, undefined);
  }
}

/** Resolves with `parked` once `count()` reaches `n`, checking every millisecond. */
function whenParked<T>(n: number, count: () => number, parked: T): Promise<T> {
  return new Promise((resolve) => {
    const check = () => {
      if (count() === n) resolve(parked);
      else setTimeout(check, 1);
    };
    check();
  });
}

/**
 * Runs a gather of `n` coroutines made by `waiter` (each counts itself in
 * `parked`, then waits); resolves once all are parked, with how to end them.
 */
function parkInGather(
  n: number,
  waiter: () => Coro<void>,
  parked: () => number,
  release: () => void,
): Promise<{ release: () => void; done: Promise<unknown> }> {
  const done = new Loop().run(function* (): Coro<void> {
    const waiters: Coro<void>[] = new Array(n);
    for (let i = 0; i < n; i++) waiters[i] = waiter();
    yield waiters;
  }());
  return whenParked(n, parked, { release, done });
}

/** The work of a racer: wait for an answer that is ready (a resolved promise). */
function* answer(i: number): Coro<number> {
  return yield* fromPromise(Promise.resolve(i));
}

/** `n` answers, one after the other, each a plain `yield c`: the baseline of the races. */
function* answers(n: number): Coro<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += yield answer(i);
  return sum;
}

/** `n` races of `width` answers: the first wins, the others are cancelled, each time. */
function* races(n: number, width: number): Coro<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const racers: Coro<number>[] = new Array(width);
    for (let j = 0; j < width; j++) racers[j] = answer(i + j);
    sum += yield* race(racers);
  }
  return sum;
}

/** `n` answers, each under `cancellable` with a signal that never aborts. */
function* cancellables(n: number): Coro<number> {
  const signal = new AbortController().signal;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const [value] = yield* cancellable(answer(i), signal);
    sum += value!;
  }
  return sum;
}

function* producer(ch: Channel<number>, n: number): Coro<void> {
  for (let i = 0; i < n; i++) yield* ch.send(i);
}

function* consumer(ch: Channel<number>): Coro<number> {
  let sum = 0;
  for (let r; !(r = yield* ch.receive()).done;) sum += r.value;
  return sum;
}

/** `width` producers to `width` consumers through one channel; the sum received. */
export function* throughChannel(capacity: number, width: number): Coro<number> {
  const ch = new Channel<number>(capacity);
  const consumers: Coro<number>[] = [];
  for (let i = 0; i < width; i++) consumers.push(consumer(ch));
  yield new Set(consumers);
  const producers: Coro<void>[] = [];
  for (let i = 0; i < width; i++) producers.push(producer(ch, SIZE.channelValues / width));
  yield producers;
  ch.close();
  const sums: number[] = yield consumers;
  return sums.reduce((a, b) => a + b, 0);
}

/** @tinyio/core's side of every workload. */
export const contender: Contender = {
  steps: () => timeVsFloor(() => new Loop().run(spin(SIZE.steps))),
  fanout: () => timeMs(() => new Loop().run(fanout(SIZE.fanout))),
  chain: () => timeMs(() => new Loop().run(chain(SIZE.chain))),
  chainDeep: () => timeMs(() => new Loop().run(chain(SIZE.chainDeep))),
  sleepers: () => timeMs(() => new Loop().run(sleepers(SIZE.sleepers, SIZE.sleepMs))),
  semaphore: () =>
    timeMs(() => new Loop().run(throughSemaphore(SIZE.semaphoreTasks, SIZE.semaphoreCapacity))),
  // Parked: a coroutine started by a gather, suspended in `yield* event.wait()`.
  memory: () =>
    bytesPerParked((n) => {
      const event = new Event();
      let parked = 0;
      return parkInGather(n, function* () {
        parked++;
        yield* event.wait();
      }, () =>
        parked, () =>
        event.set());
    }),
  // Parked: the same, suspended in `yield hold` on a Wait that only keeps its
  // tasks in an array: what the loop itself keeps per coroutine.
  memoryBare: () =>
    bytesPerParked((n) => {
      const hold = new Hold();
      let parked = 0;
      return parkInGather(n, function* () {
        parked++;
        yield hold;
      }, () =>
        parked, () =>
        hold.release());
    }),
  ...channelRows((capacity, width) => new Loop().run(throughChannel(capacity, width))),
  // Parked: a coroutine started by a gather, suspended in `yield* ch.receive()` on an empty channel.
  memoryReceive: () =>
    bytesPerParked((n) => {
      const ch = new Channel<number>();
      let parked = 0;
      return parkInGather(n, function* () {
        parked++;
        yield* ch.receive();
      }, () =>
        parked, () =>
        ch.close());
    }),
  // Parked: the same in `yield* ch.send(v)` on a channel nobody receives from (capacity 0).
  // Released by closing the channel: every send then throws ChannelClosedError, which ends the
  // run. (Receiving them from another loop would make the senders' loop go idle, and look for a
  // cycle among its 200 000 coroutines, after each value.)
  memorySend: () =>
    bytesPerParked((n) => {
      const ch = new Channel<number>();
      let parked = 0;
      return parkInGather(n, function* () {
        parked++;
        yield* ch.send(0);
      }, () =>
        parked, () =>
        ch.close()).then(({ release, done }) => ({ release, done: done.catch(() => {}) }));
    }),
  roundTrip: () => new Loop().run(roundTrips(SIZE.roundTripsWarmUp, SIZE.roundTrips)),
  startUp: async () => {
    const start = performance.now();
    await new Loop().run(runInThread(inc, 1));
    return performance.now() - start;
  },
  // Against the same answers, each a plain `yield c`, in alternation in this process.
  race2: () =>
    timeVs(
      () => new Loop().run(races(SIZE.races, 2)),
      () => new Loop().run(answers(SIZE.races)),
    ),
  race100: () => timeMs(() => new Loop().run(races(SIZE.wideRaces, 100))),
  cancellable: () =>
    timeVs(
      () => new Loop().run(cancellables(SIZE.races)),
      () => new Loop().run(answers(SIZE.races)),
    ),
  pool: async () => {
    const pool = new ThreadPool(2);
    // The bare workers are started before the timing and reused; so are the
    // pool's: a pool ends its workers when the last run that used it ends, so
    // one run that used it stays open around the timed ones.
    const end = new Event();
    const keeper = new Loop().run(function* (): Coro<void> {
      yield* pool.runInThread(inc, 0);
      yield* end.wait();
    }());
    try {
      const xs = Array.from({ length: SIZE.poolTasks }, (_, i) => i);
      const ms = await timeMs(() => new Loop().run(pool.map(inc, xs)));
      return SIZE.poolTasks / ms * 1000;
    } finally {
      end.set();
      await keeper;
      pool.close();
    }
  },
};
