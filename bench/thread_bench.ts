/**
 * Threads under `deno bench`: worker start-up, the round trip of a trivial
 * call on a warm worker next to a bare `postMessage` round trip (the floor:
 * what Deno's workers cost without this library), and the throughput of
 * 10 000 tiny tasks through `ThreadPool(2)` next to two bare workers sent all
 * 10 000 messages at once. Each bench starts and terminates its own workers,
 * so none outlives it.
 *
 * @module
 */

import { type Coro, Loop, runInThread, ThreadPool } from "../mod.ts";

const ROUND_TRIPS = 1_000;
const TASKS = 10_000;

const echo = "self.onmessage = (event) => self.postMessage(event.data);";
const echoUrl = URL.createObjectURL(new Blob([echo], { type: "text/javascript" }));

/** A bare worker that echoes messages, and a function that does one round trip. */
async function echoWorker(): Promise<
  { worker: Worker; roundTrip: (x: number) => Promise<unknown> }
> {
  const worker = new Worker(echoUrl, { type: "module" });
  let answer: (value: unknown) => void = () => {};
  worker.onmessage = (event) => answer(event.data);
  const roundTrip = (x: number) =>
    new Promise((resolve) => {
      answer = resolve;
      worker.postMessage([x]);
    });
  await roundTrip(0); // started
  return { worker, roundTrip };
}

const noop = (x: number) => x;

// --- start-up -----------------------------------------------------------------

Deno.bench(
  "floor: new Worker + first round trip",
  { group: "start-up", baseline: true },
  async () => {
    const { worker } = await echoWorker();
    worker.terminate();
  },
);

Deno.bench("a run with one runInThread call (worker started and terminated)", {
  group: "start-up",
}, async () => {
  await new Loop().run(runInThread(noop, 1));
});

// --- warm round trip ------------------------------------------------------------

Deno.bench(`floor: ${ROUND_TRIPS} bare postMessage round trips`, {
  group: "round trip",
  baseline: true,
}, async (b) => {
  const { worker, roundTrip } = await echoWorker();
  b.start();
  for (let i = 0; i < ROUND_TRIPS; i++) await roundTrip(i);
  b.end();
  worker.terminate();
});

Deno.bench(`${ROUND_TRIPS} sequential runInThread calls on a warm worker`, {
  group: "round trip",
}, async (b) => {
  await new Loop().run(function* (): Coro<void> {
    yield* runInThread(noop, 0); // warm
    b.start();
    for (let i = 0; i < ROUND_TRIPS; i++) yield* runInThread(noop, i);
    b.end();
  }());
});

Deno.bench(`${ROUND_TRIPS} sequential ThreadPool(1) calls on a warm worker`, {
  group: "round trip",
}, async (b) => {
  using pool = new ThreadPool(1);
  await new Loop().run(function* (): Coro<void> {
    yield* pool.runInThread(noop, 0);
    b.start();
    for (let i = 0; i < ROUND_TRIPS; i++) yield* pool.runInThread(noop, i);
    b.end();
  }());
});

// --- throughput -----------------------------------------------------------------

Deno.bench(`floor: ${TASKS} bare messages, 2 workers, all posted at once`, {
  group: "throughput",
  baseline: true,
}, async (b) => {
  const workers = [await echoWorker(), await echoWorker()];
  let answered = 0;
  const all = Promise.withResolvers<void>();
  for (const { worker } of workers) {
    worker.onmessage = () => ++answered === TASKS && all.resolve();
  }
  b.start();
  for (let i = 0; i < TASKS; i++) workers[i % 2].worker.postMessage([i]);
  await all.promise;
  b.end();
  for (const { worker } of workers) worker.terminate();
});

Deno.bench(`${TASKS} bare round trips, 2 workers, 1 in flight each`, {
  group: "throughput",
}, async (b) => {
  const workers = [await echoWorker(), await echoWorker()];
  b.start();
  let next = 0;
  await Promise.all(workers.map(async ({ roundTrip }) => {
    while (next < TASKS) await roundTrip(next++);
  }));
  b.end();
  for (const { worker } of workers) worker.terminate();
});

Deno.bench(`${TASKS} tiny tasks gathered through ThreadPool(2)`, {
  group: "throughput",
}, async (b) => {
  using pool = new ThreadPool(2);
  await new Loop().run(function* (): Coro<void> {
    yield [pool.runInThread(noop, 0), pool.runInThread(noop, 0)]; // both warm
    b.start();
    yield* pool.map(noop, Array.from({ length: TASKS }, (_, i) => i));
    b.end();
  }());
});
