import assert from "node:assert/strict";
import {
  CancelledError,
  type Coro,
  Event,
  fromPromise,
  isolate,
  Loop,
  runInThread,
  sleep,
  timeout,
} from "../mod.ts";
import { hold, release, resume, type Task, Wait } from "../src/wait.ts";
import { BACK_OFF, flaky, retry } from "../examples/retry.ts";
import { test } from "./_helper.ts";

/**
 * Outside work of `ms` real milliseconds (a host timer) that holds its run, as
 * a thread task or a promise does: the virtual clock must not jump past it.
 */
class OutsideWork extends Wait {
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  constructor(readonly ms: number, readonly value: string) {
    super();
  }
  park(task: Task): void {
    hold(task);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      resume(task, this, this.value);
      release(task);
    }, this.ms);
  }
  unpark(task: Task): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    release(task);
  }
}

function* outside(ms: number, value: string): Coro<string> {
  return yield new OutsideWork(ms, value);
}

/** Runs `coro` on `loop`, failing instead of hanging if it takes more than `ms` real ms. */
async function runWithin<T>(loop: Loop, coro: Coro<T>, ms = 5_000): Promise<T> {
  const guard = new AbortController();
  const timer = setTimeout(() => guard.abort(new Error(`still running after ${ms} ms`)), ms);
  try {
    return await loop.run(coro, { signal: guard.signal });
  } finally {
    clearTimeout(timer);
  }
}

// --- Jumps ------------------------------------------------------------------

test("virtual clock: sleep(3_600_000) finishes at once and now() advances by exactly 3 600 000", async () => {
  const loop = new Loop({ clock: "virtual" });
  assert.equal(loop.now(), 0);
  const started = performance.now();
  await loop.run(sleep(3_600_000));
  const real = performance.now() - started;
  assert.equal(loop.now(), 3_600_000);
  assert.ok(real < 500, `an hour of virtual sleep took ${real} ms of real time`);
});

test("virtual clock: sleeps of 30, 10 and 20 wake in deadline order at exact times", async () => {
  const loop = new Loop({ clock: "virtual" });
  const woke: [string, number][] = [];
  function* sleeper(name: string, ms: number): Coro<number> {
    yield sleep(ms);
    woke.push([name, loop.now()]);
    return loop.now();
  }
  const times = await loop.run(function* (): Coro<number[]> {
    return yield [sleeper("30", 30), sleeper("10", 10), sleeper("20", 20)];
  }());
  assert.deepEqual(woke, [["10", 10], ["20", 20], ["30", 30]]);
  assert.deepEqual(times, [30, 10, 20]);
  assert.equal(loop.now(), 30);
});

test("virtual clock: deadlines at the same time fire together, in the order they were set", async () => {
  const loop = new Loop({ clock: "virtual" });
  const woke: [string, number][] = [];
  const never = new Event();
  function* a(): Coro<void> {
    yield sleep(10); // set at 0
    woke.push(["a", loop.now()]);
  }
  function* b(): Coro<void> {
    yield sleep(4);
    yield sleep(6); // set at 4: due at 10, after a's and c's
    woke.push(["b", loop.now()]);
  }
  function* c(): Coro<void> {
    const set: boolean = yield never.wait(10); // set at 0, after a's
    woke.push([`c ${set}`, loop.now()]);
  }
  function* d(): Coro<void> {
    yield sleep(3);
    yield sleep(7); // set at 3: due at 10, after a's and c's, before b's
    woke.push(["d", loop.now()]);
  }
  await loop.run(function* () {
    yield [a(), b(), c(), d()];
  }());
  assert.deepEqual(woke, [["a", 10], ["c false", 10], ["d", 10], ["b", 10]]);
});

test("virtual clock: time stands still while coroutines run", async () => {
  const loop = new Loop({ clock: "virtual" });
  const seen: number[] = [];
  await loop.run(function* () {
    yield sleep(5);
    for (let i = 0; i < 10_000; i++) yield;
    seen.push(loop.now());
    const t0 = performance.now();
    while (performance.now() - t0 < 10); // busy for 10 ms of real time
    yield;
    seen.push(loop.now());
  }());
  assert.deepEqual(seen, [5, 5]);
});

test("virtual clock: a dropped deadline does not move the clock", async () => {
  const loop = new Loop({ clock: "virtual" });
  const boom = new Error("boom");
  let cancelledAt = -1;
  function* long(): Coro<void> {
    try {
      yield sleep(1_000_000);
    } catch (e) {
      if (e instanceof CancelledError) cancelledAt = loop.now();
      throw e;
    }
  }
  function* failsAt10(): Coro<void> {
    yield sleep(10);
    throw boom;
  }
  await assert.rejects(
    loop.run(function* () {
      yield [long(), failsAt10()];
    }()),
    (e) => e === boom,
  );
  assert.equal(cancelledAt, 10);
  assert.equal(loop.now(), 10);
});

test("virtual clock: a deadline due now fires while another coroutine stays runnable", async () => {
  const loop = new Loop({ clock: "virtual" });
  let done = false;
  function* spinner(): Coro<number> {
    let steps = 0;
    while (!done) {
      steps++;
      yield;
    }
    return steps;
  }
  function* sleepsZero(): Coro<number> {
    yield sleep(0);
    done = true;
    return loop.now();
  }
  const [steps, at] = await runWithin(
    loop,
    function* (): Coro<number[]> {
      return yield [spinner(), sleepsZero()];
    }(),
  );
  assert.ok(steps > 0);
  assert.equal(at, 0);
});

test("virtual clock: a coroutine that sleeps in a loop forever does not starve host timers", async () => {
  const loop = new Loop({ clock: "virtual" });
  const stop = new AbortController();
  const reason = new Error("stopped by a host timer");
  const timer = setTimeout(() => stop.abort(reason), 20);
  let ticks = 0;
  function* ticker(): Coro<void> {
    for (;;) {
      yield sleep(1_000);
      ticks++;
    }
  }
  await assert.rejects(loop.run(ticker(), { signal: stop.signal }), (e) => e === reason);
  clearTimeout(timer);
  assert.ok(ticks > 0);
  // The abort may come after a jump, before the ticker woke from that sleep.
  assert.ok([ticks * 1_000, (ticks + 1) * 1_000].includes(loop.now()), `${loop.now()}, ${ticks}`);
});

test("virtual clock: timeout() runs out at exactly its time; one met in time leaves no deadline", async () => {
  const loop = new Loop({ clock: "virtual" });
  assert.deepEqual(await loop.run(timeout(sleep(1_000), 250)), [undefined, false]);
  assert.equal(loop.now(), 250);
  assert.deepEqual(await loop.run(timeout(sleep(100), 250)), [undefined, true]);
  // The timeout's own deadline (at 600) went when the sleep finished in time.
  assert.equal(loop.now(), 350);
});

test("virtual clock: an isolated coroutine sleeps on its outer loop's clock", async () => {
  const loop = new Loop({ clock: "virtual" });
  const [inner, ok] = await loop.run(function* (): Coro<[number, boolean]> {
    yield sleep(10);
    return yield isolate(function* (): Coro<number> {
      yield sleep(500);
      return loop.now();
    }());
  }());
  assert.equal(ok, true);
  assert.equal(inner, 510);
  assert.equal(loop.now(), 510);
});

// --- Events -----------------------------------------------------------------

test("virtual clock: Event.wait(timeout) times out at exactly the timeout, or wakes at set()", async () => {
  const loop = new Loop({ clock: "virtual" });
  const never = new Event();
  assert.equal(await loop.run(never.wait(250)), false);
  assert.equal(loop.now(), 250);

  const ready = new Event();
  function* setter(): Coro<void> {
    yield sleep(100);
    ready.set();
  }
  function* waiter(): Coro<[boolean, number]> {
    const set: boolean = yield ready.wait(1_000);
    return [set, loop.now()];
  }
  const [, result] = await loop.run(function* (): Coro<unknown[]> {
    return yield [setter(), waiter()];
  }());
  assert.deepEqual(result, [true, 350]);
  // The wait's deadline went with the set(): the clock did not jump on to 1250.
  assert.equal(loop.now(), 350);
});

test("virtual clock: a timeout-free Event set from a real host timer wakes the loop", async () => {
  const loop = new Loop({ clock: "virtual" });
  const ready = new Event();
  const timer = setTimeout(() => ready.set(), 20);
  const started = performance.now();
  try {
    assert.equal(await runWithin(loop, ready.wait()), true);
  } finally {
    clearTimeout(timer);
  }
  assert.ok(performance.now() - started >= 15);
  assert.equal(loop.now(), 0);
});

// --- The clocks ---------------------------------------------------------------

test("real clock: now() is monotonic milliseconds, as performance.now()", async () => {
  const loop = new Loop();
  const before = performance.now();
  const first = loop.now();
  const after = performance.now();
  assert.ok(before <= first && first <= after, `${before} <= ${first} <= ${after}`);
  let last = first;
  for (let i = 0; i < 10_000; i++) {
    const t = loop.now();
    assert.ok(t >= last);
    last = t;
  }
  await loop.run(sleep(20));
  const slept = loop.now() - first;
  assert.ok(slept >= 15 && slept < 2_000, `sleep(20) took ${slept} ms by loop.now()`);
});

test("virtual clock: now() persists across runs of one loop; each loop has its own", async () => {
  const loop = new Loop({ clock: "virtual" });
  await loop.run(sleep(100));
  assert.equal(loop.now(), 100);
  await loop.run(sleep(50));
  assert.equal(loop.now(), 150);
  const other = new Loop({ clock: "virtual" });
  assert.equal(other.now(), 0);
  // Two virtual loops running side by side do not move each other's clocks.
  await Promise.all([loop.run(sleep(1_000)), other.run(sleep(5))]);
  assert.equal(loop.now(), 1_150);
  assert.equal(other.now(), 5);
});

// --- Outside work holds the clock ---------------------------------------------

test("virtual clock: outside work holds the clock: a sleep(1000) racing 50 ms of real work finishes second", async () => {
  const loop = new Loop({ clock: "virtual" });
  const log: [string, number][] = [];
  const started = performance.now();
  let real = 0;
  await loop.run(function* () {
    yield [
      function* () {
        yield sleep(1_000);
        log.push(["sleep", loop.now()]);
      }(),
      function* () {
        const v: string = yield outside(50, "outside");
        real = performance.now() - started;
        log.push([v, loop.now()]);
      }(),
    ];
  }());
  assert.deepEqual(log, [["outside", 0], ["sleep", 1_000]]);
  assert.ok(real >= 40, `the outside work took ${real} ms`);
});

test("virtual clock: held by outside work, it still fires what is due at its time", async () => {
  const loop = new Loop({ clock: "virtual" });
  const log: [string, number][] = [];
  await loop.run(function* () {
    yield sleep(7);
    yield [
      function* () {
        log.push([yield outside(100, "outside"), loop.now()]);
      }(),
      function* () {
        yield sleep(0);
        log.push(["sleep(0)", loop.now()]);
      }(),
    ];
  }());
  assert.deepEqual(log, [["sleep(0)", 7], ["outside", 7]]);
});

test("virtual clock: a fromPromise holds the clock: a sleep(1000) racing a 50 ms promise finishes second", async () => {
  const loop = new Loop({ clock: "virtual" });
  const log: [string, number][] = [];
  function realWork(ms: number, signal: AbortSignal): Promise<string> {
    return new Promise((resolve, reject) => {
      const id = setTimeout(() => resolve("promise"), ms);
      signal.addEventListener("abort", () => {
        clearTimeout(id);
        reject(signal.reason);
      });
    });
  }
  await loop.run(function* () {
    yield [
      function* () {
        yield sleep(1_000);
        log.push(["sleep", loop.now()]);
      }(),
      function* () {
        log.push([yield fromPromise((signal) => realWork(50, signal)), loop.now()]);
      }(),
    ];
  }());
  assert.deepEqual(log, [["promise", 0], ["sleep", 1_000]]);
});

test(
  "virtual clock: a runInThread task holds the clock: a sleep(1000) racing 50 ms of thread work finishes second",
  ["threads"],
  async () => {
    const loop = new Loop({ clock: "virtual" });
    const log: [string, number][] = [];
    // Busy for `ms` of real time on the worker: synchronous work, not a timer.
    const work = (ms: number) => {
      const end = performance.now() + ms;
      while (performance.now() < end);
      return "thread";
    };
    const started = performance.now();
    let real = 0;
    await loop.run(function* () {
      yield [
        function* () {
          yield sleep(1_000);
          log.push(["sleep", loop.now()]);
        }(),
        function* () {
          log.push([yield runInThread(work, 50), loop.now()]);
          real = performance.now() - started;
        }(),
      ];
    }());
    assert.deepEqual(log, [["thread", 0], ["sleep", 1_000]]);
    assert.ok(real >= 45, `the thread task took ${real} ms`);
  },
);

// --- The retry example ----------------------------------------------------------

test("retry example: fails 4 times, backs off 1, 2, 4, 8 s, lands at exactly 15 s, in under 50 ms", async () => {
  const loop = new Loop({ clock: "virtual" });
  const calls: number[] = [];
  const started = performance.now();
  const result = await loop.run(retry(flaky(4, () => calls.push(loop.now()))));
  const real = performance.now() - started;
  assert.equal(result, "200 OK (call 5)");
  assert.deepEqual(calls, [0, 1_000, 3_000, 7_000, 15_000]);
  assert.equal(loop.now(), 15_000);
  assert.ok(real < 50, `15 s of virtual back-off took ${real} ms of real time`);
});

test("retry example: gives up after 5 attempts with the last error; delays stop doubling at 16 s", async () => {
  const loop = new Loop({ clock: "virtual" });
  const calls: number[] = [];
  await assert.rejects(
    loop.run(retry(flaky(Infinity, () => calls.push(loop.now())))),
    { message: "server busy (call 5)" },
  );
  assert.deepEqual(calls, [0, 1_000, 3_000, 7_000, 15_000]);

  const longer = new Loop({ clock: "virtual" });
  const more: number[] = [];
  const result = await longer.run(
    retry(flaky(6, () => more.push(longer.now())), { ...BACK_OFF, attempts: 7 }),
  );
  assert.equal(result, "200 OK (call 7)");
  // Pauses of 1, 2, 4, 8, 16 and 16 s: the cap holds.
  assert.deepEqual(more, [0, 1_000, 3_000, 7_000, 15_000, 31_000, 47_000]);
});

test("retry example: under an overall timeout of 5 s it stops at exactly 5 s", async () => {
  const loop = new Loop({ clock: "virtual" });
  const calls: number[] = [];
  const result = await loop.run(timeout(retry(flaky(4, () => calls.push(loop.now()))), 5_000));
  assert.deepEqual(result, [undefined, false]);
  assert.deepEqual(calls, [0, 1_000, 3_000]);
  assert.equal(loop.now(), 5_000);
});
