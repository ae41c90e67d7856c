/**
 * The workloads on effection (structured concurrency on generators).
 * effection has no semaphore and no threads: those rows are left out.
 *
 * Nor has it a bounded channel: its `createChannel` is a broadcast without a
 * buffer (a value sent with no subscriber is dropped) and its `createQueue`
 * is unbounded and never makes a sender wait. The channel rows use a bounded
 * channel made of two of its queues — the values, and one token per place a
 * value may go — written as its documentation suggests building on queues.
 *
 * @module
 */

import {
  action,
  all,
  createQueue,
  type Operation,
  race,
  run,
  sleep,
  spawn,
  until,
  withResolvers,
} from "effection";
import {
  bytesPerParked,
  channelRows,
  type Contender,
  SIZE,
  timeMs,
  timeVsFloor,
} from "./common.ts";

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

/**
 * A bounded channel on effection queues: a send takes a token from `room`
 * (waiting while there is none) and adds the value; a receive takes a value
 * and gives a token back. With capacity 0 there is no token until a receiver
 * comes: it gives its token first, so a send waits for a receiver. A queue
 * hands its end to one waiter only (it serves one subscription), so whoever
 * gets it closes the queue again for the next.
 */
function boundedChannel<T>(capacity: number) {
  const values = createQueue<T, void>();
  const room = createQueue<null, void>();
  for (let i = 0; i < capacity; i++) room.add(null);
  return {
    *send(value: T): Operation<void> {
      const token = yield* room.next();
      if (token.done) {
        room.close();
        throw new Error("channel closed");
      }
      values.add(value);
    },
    *receive(): Operation<IteratorResult<T, void>> {
      if (capacity === 0) room.add(null);
      const result = yield* values.next();
      if (result.done) values.close();
      else if (capacity > 0) room.add(null);
      return result;
    },
    close(): void {
      values.close();
      room.close();
    },
  };
}

type Bounded = ReturnType<typeof boundedChannel<number>>;

function* producer(ch: Bounded, n: number): Operation<void> {
  for (let i = 0; i < n; i++) yield* ch.send(i);
}

function* consumer(ch: Bounded): Operation<number> {
  let sum = 0;
  for (let r; !(r = yield* ch.receive()).done;) sum += r.value;
  return sum;
}

function* throughChannel(capacity: number, width: number): Operation<number> {
  const ch = boundedChannel<number>(capacity);
  const consumers = [];
  for (let i = 0; i < width; i++) consumers.push(yield* spawn(() => consumer(ch)));
  const producers: Operation<void>[] = [];
  for (let i = 0; i < width; i++) producers.push(producer(ch, SIZE.channelValues / width));
  yield* all(producers);
  ch.close();
  let sum = 0;
  for (const task of consumers) sum += yield* task;
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
  ...channelRows((capacity, width) => run(() => throughChannel(capacity, width))),
  // Parked: a task of `all()` suspended in a receive on an empty channel (as above).
  memoryReceive: () =>
    bytesPerParked(async (n) => {
      const ch = boundedChannel<number>(0);
      let parked = 0;
      function* waiter(): Operation<void> {
        parked++;
        yield* ch.receive();
      }
      const waiters: Operation<void>[] = new Array(n);
      for (let i = 0; i < n; i++) waiters[i] = waiter();
      const done = run(() => all(waiters));
      while (parked < n) await new Promise((resolve) => setTimeout(resolve, 1));
      return { release: () => ch.close(), done };
    }),
  // Parked: the same in a send on a channel nobody receives from (capacity 0).
  memorySend: () =>
    bytesPerParked(async (n) => {
      const ch = boundedChannel<number>(0);
      let parked = 0;
      function* waiter(): Operation<void> {
        parked++;
        yield* ch.send(0);
      }
      const waiters: Operation<void>[] = new Array(n);
      for (let i = 0; i < n; i++) waiters[i] = waiter();
      const done = run(() => all(waiters));
      while (parked < n) await new Promise((resolve) => setTimeout(resolve, 1));
      const receiveAll = () =>
        void run(function* () {
          for (let i = 0; i < n; i++) yield* ch.receive();
        });
      return { release: receiveAll, done };
    }),
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
