/**
 * Synchronisation under `deno bench`: 20 000 coroutines through a
 * `Semaphore(8)` with one suspension inside (next to the same with plain
 * promises), 10 000 `timeout`s around coroutines that finish in time, and
 * `asCompleted` over 10 000 coroutines.
 *
 * `deno bench bench/sync_bench.ts` runs it.
 *
 * @module
 */

import { asCompleted, type Coro, Loop, Semaphore, timeout } from "../mod.ts";

const HOLDERS = 20_000;
const PERMITS = 8;
const TIMEOUTS = 10_000;
const COMPLETED = 10_000;

// --- semaphore: HOLDERS coroutines, PERMITS at a time, one pause inside -------

function* holder(sem: Semaphore): Coro<void> {
  using _ = yield* sem.acquire();
  yield;
}

Deno.bench("tinyio: 20 000 through Semaphore(8), one yield inside", {
  group: "semaphore",
}, async () => {
  const sem = new Semaphore(PERMITS);
  await new Loop().run(function* () {
    yield Array.from({ length: HOLDERS }, () => holder(sem));
  }());
});

/** The usual promise semaphore: a counter and a FIFO of resolvers. */
class PromiseSemaphore {
  #waiting: (() => void)[] = [];
  #head = 0;
  constructor(private free: number) {}
  acquire(): Promise<void> | void {
    if (this.free > 0) {
      this.free--;
      return;
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  release(): void {
    if (this.#head < this.#waiting.length) this.#waiting[this.#head++]();
    else this.free++;
  }
}

Deno.bench("plain async: 20 000 through a promise semaphore(8), one await inside", {
  group: "semaphore",
  baseline: true,
}, async () => {
  const sem = new PromiseSemaphore(PERMITS);
  await Promise.all(Array.from({ length: HOLDERS }, async () => {
    await sem.acquire();
    try {
      await null;
    } finally {
      sem.release();
    }
  }));
});

// --- timeout: TIMEOUTS coroutines that finish in time -----------------------------

function* quick(): Coro<number> {
  yield;
  return 1;
}

Deno.bench("tinyio: 10 000 timeout(quick(), 1000) in a gather", { group: "timeout" }, async () => {
  await new Loop().run(function* () {
    yield Array.from({ length: TIMEOUTS }, () => timeout(quick(), 1_000));
  }());
});

Deno.bench("tinyio: 10 000 quick() in a gather, no timeout", {
  group: "timeout",
  baseline: true,
}, async () => {
  await new Loop().run(function* () {
    yield Array.from({ length: TIMEOUTS }, () => quick());
  }());
});

// --- asCompleted: COMPLETED results in finishing order -----------------------------

Deno.bench("tinyio: asCompleted over 10 000, read in order", { group: "asCompleted" }, async () => {
  await new Loop().run(function* () {
    let sum = 0;
    for (const next of yield* asCompleted(Array.from({ length: COMPLETED }, () => quick()))) {
      sum += yield next;
    }
    return sum;
  }());
});
