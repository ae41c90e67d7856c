/**
 * The workloads in plain JavaScript: async functions, `Promise.all`,
 * `setTimeout`, a hand-written FIFO promise semaphore, a hand-written bounded
 * promise channel and bare Workers.
 *
 * @module
 */

import {
  blobUrl,
  bytesPerParked,
  channelRows,
  type Contender,
  ECHO_WORKER,
  SIZE,
  timeMs,
  timeVsFloor,
} from "./common.ts";

async function spin(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await null;
}

async function child(i: number): Promise<number> {
  await null;
  return i;
}

async function fanout(n: number): Promise<number> {
  const children: Promise<number>[] = new Array(n);
  for (let i = 0; i < n; i++) children[i] = child(i);
  return (await Promise.all(children)).length;
}

async function chain(depth: number): Promise<number> {
  if (depth === 0) {
    await null;
    return 0;
  }
  return (await chain(depth - 1)) + 1;
}

async function sleepers(n: number, ms: number): Promise<void> {
  const sleeps: Promise<void>[] = new Array(n);
  for (let i = 0; i < n; i++) sleeps[i] = new Promise((resolve) => setTimeout(resolve, ms));
  await Promise.all(sleeps);
}

/** A FIFO semaphore on promises: a released permit goes straight to the longest waiter. */
class FifoSemaphore {
  #free: number;
  #waiters: ((() => void) | undefined)[] = [];
  #head = 0;

  constructor(permits: number) {
    this.#free = permits;
  }
  acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
  release(): void {
    if (this.#head === this.#waiters.length) {
      this.#free++;
      return;
    }
    const next = this.#waiters[this.#head]!;
    this.#waiters[this.#head++] = undefined;
    next();
  }
}

async function guarded(sem: FifoSemaphore): Promise<void> {
  await sem.acquire();
  try {
    await null;
  } finally {
    sem.release();
  }
}

async function throughSemaphore(n: number, capacity: number): Promise<void> {
  const sem = new FifoSemaphore(capacity);
  const tasks: Promise<void>[] = new Array(n);
  for (let i = 0; i < n; i++) tasks[i] = guarded(sem);
  await Promise.all(tasks);
}

/** A first in, first out queue on an array read from `head` (compacted as it is consumed). */
class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }
  push(x: T): void {
    this.#items.push(x);
  }
  shift(): T | undefined {
    if (this.#head === this.#items.length) return undefined;
    const x = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024 && 2 * this.#head >= this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    }
    return x;
  }
}

const DONE: IteratorReturnResult<undefined> = { value: undefined, done: true };
const SENT: Promise<void> = Promise.resolve();

/**
 * A bounded channel on promises, as one writes it by hand, with the same
 * semantics as tinyio's: `capacity` values buffered (0: a send waits for a
 * receiver), waiting senders and receivers served first come first served,
 * a send that must wait resolves once its value is taken into the buffer or
 * by a receiver (back-pressure), `close()` drains then ends and rejects
 * waiting and later sends. A send or receive that need not wait returns a
 * settled promise.
 */
class PromiseChannel<T> {
  #buffer = new Fifo<T>();
  #receivers = new Fifo<(result: IteratorResult<T, undefined>) => void>();
  #senders = new Fifo<{ value: T; resolve: () => void; reject: (e: Error) => void }>();
  #closed = false;

  constructor(readonly capacity: number) {}

  send(value: T): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("channel closed"));
    const receiver = this.#receivers.shift();
    if (receiver !== undefined) {
      receiver({ value, done: false });
      return SENT;
    }
    if (this.#buffer.length < this.capacity) {
      this.#buffer.push(value);
      return SENT;
    }
    return new Promise((resolve, reject) => this.#senders.push({ value, resolve, reject }));
  }

  receive(): Promise<IteratorResult<T, undefined>> {
    if (this.#buffer.length > 0) {
      const value = this.#buffer.shift()!;
      const sender = this.#senders.shift();
      if (sender !== undefined) {
        this.#buffer.push(sender.value);
        sender.resolve();
      }
      return Promise.resolve({ value, done: false });
    }
    const sender = this.#senders.shift(); // capacity 0: straight from a waiting sender
    if (sender !== undefined) {
      sender.resolve();
      return Promise.resolve({ value: sender.value, done: false });
    }
    if (this.#closed) return Promise.resolve(DONE);
    return new Promise((resolve) => this.#receivers.push(resolve));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let s; (s = this.#senders.shift()) !== undefined;) s.reject(new Error("channel closed"));
    for (let r; (r = this.#receivers.shift()) !== undefined;) r(DONE);
  }
}

async function producer(ch: PromiseChannel<number>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await ch.send(i);
}

async function consumer(ch: PromiseChannel<number>): Promise<number> {
  let sum = 0;
  for (let r; !(r = await ch.receive()).done;) sum += r.value;
  return sum;
}

async function throughChannel(capacity: number, width: number): Promise<number> {
  const ch = new PromiseChannel<number>(capacity);
  const consumers: Promise<number>[] = [];
  for (let i = 0; i < width; i++) consumers.push(consumer(ch));
  const producers: Promise<void>[] = [];
  for (let i = 0; i < width; i++) producers.push(producer(ch, SIZE.channelValues / width));
  await Promise.all(producers);
  ch.close();
  return (await Promise.all(consumers)).reduce((a, b) => a + b, 0);
}

/** An echo worker and a way to wait for its next reply. */
function echoWorker(): { worker: Worker; call: (x: number) => Promise<unknown> } {
  const worker = new Worker(blobUrl(ECHO_WORKER), { type: "module" });
  let reply: ((value: unknown) => void) | null = null;
  worker.onmessage = (e) => reply!(e.data);
  const call = (x: number) =>
    new Promise((resolve) => {
      reply = resolve;
      worker.postMessage(x);
    });
  return { worker, call };
}

/**
 * Sends `n` tasks to `workers`: all at once, round robin (`inFlight`
 * Infinity), or at most `inFlight` per worker, the next one on each reply.
 */
function spread(workers: Worker[], n: number, inFlight: number): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0;
    let received = 0;
    for (const w of workers) {
      w.onmessage = () => {
        if (++received === n) resolve();
        else if (inFlight !== Infinity && sent < n) w.postMessage(sent++);
      };
    }
    const first = inFlight === Infinity ? n : Math.min(n, inFlight * workers.length);
    while (sent < first) workers[sent % workers.length].postMessage(sent++);
  });
}

async function throughput(inFlight: number): Promise<number> {
  const url = blobUrl(ECHO_WORKER);
  const workers = [0, 1].map(() => new Worker(url, { type: "module" }));
  try {
    const ms = await timeMs(() => spread(workers, SIZE.poolTasks, inFlight));
    return SIZE.poolTasks / ms * 1000;
  } finally {
    for (const w of workers) w.terminate();
  }
}

/** The work of a racer: wait for an answer that is ready; it could stop on `signal`. */
async function answer(i: number, _signal?: AbortSignal): Promise<number> {
  return await Promise.resolve(i);
}

/** `Promise.race`, then an abort to tell the losers to stop (they must listen for it). */
async function races(n: number, width: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const stop = new AbortController();
    const racers: Promise<number>[] = new Array(width);
    for (let j = 0; j < width; j++) racers[j] = answer(i + j, stop.signal);
    sum += await Promise.race(racers);
    stop.abort();
  }
  return sum;
}

/** `cancellable` by hand: the work raced against the signal's abort event. */
async function cancellable<T>(
  work: (signal: AbortSignal) => Promise<T>,
  signal: AbortSignal,
): Promise<[T, true] | [undefined, false]> {
  if (signal.aborted) return [undefined, false];
  let onAbort!: () => void;
  const aborted = new Promise<[undefined, false]>((resolve) => {
    onAbort = () => resolve([undefined, false]);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([work(signal).then((v): [T, true] => [v, true]), aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

async function cancellables(n: number): Promise<number> {
  const signal = new AbortController().signal;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const [value] = await cancellable((s) => answer(i, s), signal);
    sum += value!;
  }
  return sum;
}

/** Plain JavaScript's side of every workload. */
export const contender: Contender = {
  steps: () => timeVsFloor(() => spin(SIZE.steps)),
  fanout: () => timeMs(() => fanout(SIZE.fanout)),
  chain: () => timeMs(() => chain(SIZE.chain)),
  chainDeep: async () => {
    try {
      return await timeMs(() => chain(SIZE.chainDeep));
    } catch (e) {
      if (e instanceof RangeError) return "stack overflow";
      throw e;
    }
  },
  sleepers: () => timeMs(() => sleepers(SIZE.sleepers, SIZE.sleepMs)),
  semaphore: () => timeMs(() => throughSemaphore(SIZE.semaphoreTasks, SIZE.semaphoreCapacity)),
  // Parked: an async function awaiting a pending promise, gathered by Promise.all.
  memory: () =>
    bytesPerParked((n) => {
      let open!: () => void;
      const gate = new Promise<void>((resolve) => open = resolve);
      const waiter = async () => {
        await gate;
      };
      const waiters: Promise<void>[] = new Array(n);
      for (let i = 0; i < n; i++) waiters[i] = waiter();
      return Promise.resolve({ release: open, done: Promise.all(waiters) });
    }),
  ...channelRows(throughChannel),
  // Parked: an async function awaiting a receive on an empty channel, gathered by Promise.all.
  memoryReceive: () =>
    bytesPerParked((n) => {
      const ch = new PromiseChannel<number>(0);
      const waiter = async () => {
        await ch.receive();
      };
      const waiters: Promise<void>[] = new Array(n);
      for (let i = 0; i < n; i++) waiters[i] = waiter();
      return Promise.resolve({ release: () => ch.close(), done: Promise.all(waiters) });
    }),
  // Parked: an async function awaiting a send on a channel nobody receives from (capacity 0).
  memorySend: () =>
    bytesPerParked((n) => {
      const ch = new PromiseChannel<number>(0);
      const waiter = async () => {
        await ch.send(0);
      };
      const waiters: Promise<void>[] = new Array(n);
      for (let i = 0; i < n; i++) waiters[i] = waiter();
      const receiveAll = async () => {
        for (let i = 0; i < n; i++) await ch.receive();
      };
      return Promise.resolve({ release: () => void receiveAll(), done: Promise.all(waiters) });
    }),
  roundTrip: async () => {
    const { worker, call } = echoWorker();
    try {
      for (let i = 0; i < SIZE.roundTripsWarmUp; i++) await call(i);
      const start = performance.now();
      for (let i = 0; i < SIZE.roundTrips; i++) await call(i);
      return (performance.now() - start) * 1000 / SIZE.roundTrips;
    } finally {
      worker.terminate();
    }
  },
  startUp: async () => {
    const start = performance.now();
    const { worker, call } = echoWorker();
    await call(1);
    const ms = performance.now() - start;
    worker.terminate();
    return ms;
  },
  race2: () => timeMs(() => races(SIZE.races, 2)),
  race100: () => timeMs(() => races(SIZE.wideRaces, 100)),
  cancellable: () => timeMs(() => cancellables(SIZE.races)),
  pool: () => throughput(Infinity),
  poolLockstep: () => throughput(1),
};
