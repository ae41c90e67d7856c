/**
 * Soak: a stress run of every primitive, with random errors, for a minute.
 *
 * One loop runs waves of random jobs, each in its own isolated sub-loop
 * (`isolate`), some through `toPromise` and `fromPromise` on a loop of their
 * own. A job mixes gathers, background coroutines, sleeps, events set by
 * other coroutines, a semaphore, a lock, a barrier, `asCompleted`, `timeout`,
 * promises, `copy`, calls on a shared `ThreadPool` and on `runInThread`'s
 * workers — and, one time in four,
 * throws an injected error at a random step. Every job checks what the loop
 * promises: a job without an error returns the expected value; a job with
 * one fails with exactly that error; every coroutine that started ran its
 * `finally` once. The script prints, every five seconds, the operations done,
 * the errors handled and the heap after a garbage collection, and exits
 * non-zero if any check failed.
 *
 *     deno task soak                     # 60 s
 *     deno run --v8-flags=--expose-gc bench/soak.ts 10 1234   # 10 s, seed 1234
 *
 * Not part of the tests: it takes a minute and its figures are for reading.
 *
 * @module
 */

import {
  asCompleted,
  Barrier,
  CancelledError,
  copy,
  type Coro,
  Event,
  fromPromise,
  isolate,
  join,
  Lock,
  Loop,
  runInThread,
  Semaphore,
  sleep,
  ThreadPool,
  timeout,
  toPromise,
} from "../mod.ts";

const seconds = Number(Deno.args[0] ?? 60);
const seed = Number(Deno.args[1] ?? Date.now() % 1_000_000);

/** A small seeded generator (mulberry32), so that a failing soak can be replayed. */
function random(s: number): () => number {
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = random(seed);
const pick = (n: number) => Math.floor(rand() * n);

const stats = { operations: 0, jobs: 0, errorsHandled: 0, started: 0, finallies: 0, failures: 0 };
const failures = new Map<string, number>(); // what failed, and how often
function check(ok: boolean, what: string): void {
  if (ok) return;
  stats.failures++;
  failures.set(what, (failures.get(what) ?? 0) + 1);
}

const pool = new ThreadPool(2);

/** One job: a random mix of primitives; throws `injected` at step `failAt` (or never). */
function* job(width: number, failAt: number, injected: Error): Coro<number> {
  let step = 0;
  const event = new Event();
  const sem = new Semaphore(1 + pick(3));
  const barrier = new Barrier(width);
  const lock = new Lock();
  const maybeFail = () => {
    if (step++ === failAt) throw injected;
  };

  function* worker(i: number): Coro<number> {
    stats.started++;
    try {
      let acc = i;
      for (let k = 0; k < 4; k++) {
        maybeFail();
        switch (pick(13)) {
          case 0:
            yield sleep(pick(3));
            break;
          case 1:
            yield;
            break;
          case 2: {
            using _ = yield* sem.acquire();
            yield sleep(pick(2));
            break;
          }
          case 3:
            event.set();
            break;
          case 4:
            yield* event.wait(pick(3) + 1);
            break;
          case 5: {
            const [v, inTime] = yield* timeout(leaf(5), pick(2) === 0 ? 0 : 50);
            acc += inTime ? v - 5 : 0;
            break;
          }
          case 6:
            acc += (yield* fromPromise((signal) => delayed(1, signal))) - 1;
            break;
          case 7:
            acc += (yield* pool.runInThread((x: number) => x * 2, 3)) - 6;
            break;
          case 8: {
            let sum = 0;
            for (const next of yield* asCompleted([leaf(1), leaf(2)])) sum += yield next;
            acc += sum - 3;
            break;
          }
          case 9:
            yield new Set([leaf(0)]);
            break;
          case 10: {
            using _ = yield* lock.acquire();
            yield;
            break;
          }
          case 11: {
            // A job's coroutine used inside a nested isolated loop, through copy.
            const [v, ok] = yield* isolate(join(yield* copy(leaf(4))));
            acc += ok ? v - 4 : 0;
            break;
          }
          case 12:
            // Rarely: a free worker is started for a run and ended with it (~10 ms).
            if (pick(20) === 0) acc += yield* runInThread((x: number) => x - 7, 7);
            break;
        }
        stats.operations++;
      }
      yield* barrier.wait();
      stats.operations++;
      return acc;
    } finally {
      stats.finallies++;
    }
  }

  function* leaf(x: number): Coro<number> {
    stats.started++;
    try {
      yield sleep(pick(2));
      return x;
    } finally {
      stats.finallies++;
    }
  }

  const shared = worker(0); // a diamond: waited on by every gather below
  const results: number[] = yield [
    shared,
    ...Array.from({ length: width - 1 }, (_, i) => worker(i + 1)),
  ];
  const again: number = yield shared;
  return results.reduce((a, b) => a + b, 0) + again;
}

/** A promise that resolves after `ms` unless `signal` aborts first. */
function delayed(ms: number, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const id = setTimeout(() => resolve(ms), ms);
    signal.addEventListener("abort", () => {
      clearTimeout(id);
      reject(signal.reason);
    }, { once: true });
  });
}

/** Runs one job in an isolated loop (or, one time in five, on a loop of its own) and checks it. */
function* isolatedJob(): Coro<void> {
  const width = 2 + pick(4);
  const fails = pick(4) === 0;
  const injected = new Error("injected");
  const failAt = fails ? pick(width * 4) : -1;
  const expected = width * (width - 1) / 2; // each worker returns its index; plus `shared` again (0)
  const own = pick(5) === 0;
  const coro = job(width, failAt, injected);
  let value: unknown;
  let ok: boolean;
  if (own) {
    // toPromise runs the job on a fresh loop; fromPromise waits for it here.
    [value, ok] = yield* fromPromise((signal) =>
      toPromise(coro, { signal }).then((v) => [v, true] as const, (e) => [e, false] as const)
    );
  } else {
    [value, ok] = yield* isolate(coro);
  }
  stats.jobs++;
  if (!ok) {
    stats.errorsHandled++;
    const others = value instanceof AggregateError ? `: ${value.errors.slice(1).join("; ")}` : "";
    check(fails && value === injected, `a job failed with ${String(value)}${others}`);
  } else {
    // An injected error may come at a step that is never reached.
    check(value === expected, `a job returned ${String(value)}, expected ${expected}`);
  }
}

function heapMB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return Deno.memoryUsage().heapUsed / 1024 / 1024;
}

function* soak(): Coro<void> {
  const start = performance.now();
  let nextReport = 0;
  console.log(`soak: ${seconds} s, seed ${seed}`);
  console.log("  time   operations   jobs   errors handled   heap after GC");
  for (;;) {
    const elapsed = (performance.now() - start) / 1000;
    if (elapsed >= nextReport) {
      const line = [
        `${elapsed.toFixed(0).padStart(4)} s`,
        String(stats.operations).padStart(12),
        String(stats.jobs).padStart(6),
        String(stats.errorsHandled).padStart(16),
        `${heapMB().toFixed(1).padStart(10)} MB`,
      ];
      console.log(line.join(" "));
      nextReport += 5;
    }
    if (elapsed >= seconds) break;
    yield Array.from({ length: 50 }, () => isolatedJob());
  }
}

const loop = new Loop();
try {
  await loop.run(soak());
} catch (error) {
  check(false, `the soak itself failed: ${error instanceof CancelledError ? "cancelled" : error}`);
} finally {
  pool.close();
}
check(stats.started === stats.finallies, `${stats.started} started, ${stats.finallies} finally`);
console.log(
  `done: ${stats.operations} operations, ${stats.jobs} jobs, ${stats.errorsHandled} errors ` +
    `handled, ${stats.started} coroutines started and as many finally blocks run: ` +
    `${stats.started === stats.finallies}; ${stats.failures} failed checks`,
);
for (const [what, n] of failures) console.log(`  FAILED ${n} time(s): ${what}`);
if (stats.failures > 0) Deno.exit(1);
