/**
 * Threads: runInThread, threadFunction, ThreadPool and cancelled(). Every test
 * also checks that no worker outlives it. Tests that need other Deno flags (no
 * permissions, --unstable-worker-options) run a fixture script in a child
 * `deno run`.
 */
import assert from "node:assert/strict";
import {
  cancelled,
  CancelledError,
  type Coro,
  Loop,
  runInThread,
  sleep,
  threadFunction,
  ThreadPool,
  timeout,
} from "../mod.ts";
import { THROWING } from "../src/task.ts";
import { taskOf } from "../src/wait.ts";
import { liveWorkers } from "../src/thread/thread.ts";
import { rejection, test } from "./_helper.ts";
import type { addTwo, addTwoLater, countUntilCancelled } from "./fixtures/tasks.ts";

const tasks = new URL("./fixtures/tasks.ts", import.meta.url);

/** A test that also fails if a worker is still alive at its end. */
function threadTest(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    await fn();
    assert.equal(liveWorkers(), 0, "a worker outlived the test");
  });
}

function* failAfter(ms: number, message: string): Coro<never> {
  yield sleep(ms);
  throw new Error(message);
}

const shared = (n: number) => new Int32Array(new SharedArrayBuffer(4 * n));

// ---------------------------------------------------------------------------
// Running functions

threadTest(
  "runInThread runs a self-contained function on a worker, and awaits async ones",
  async () => {
    function* main(): Coro<unknown[]> {
      const where = yield* runInThread(() => (globalThis as { name?: string }).name);
      const sum = yield* runInThread((a: number, b: number) => a + b, 2, 3);
      const later = yield* runInThread(async (s: string) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return s + "!";
      }, "hi");
      const bytes = yield* runInThread(
        (b: Uint8Array) => b.reduce((x, y) => x + y, 0),
        new Uint8Array([1, 2, 3]),
      );
      return [where, sum, later, bytes];
    }
    const [where, sum, later, bytes] = await new Loop().run(main());
    assert.match(String(where), /^tinyio thread \d+$/, "it ran on a worker");
    assert.deepEqual([sum, later, bytes], [5, "hi!", 6]);
  },
);

threadTest("threadFunction runs a module's export, which may import other modules", async () => {
  const add = threadFunction<typeof addTwo>(tasks, "addTwo");
  const addLater = threadFunction<typeof addTwoLater>(tasks.href, "addTwoLater");
  assert.deepEqual(add, { module: tasks.href, exportName: "addTwo" });
  function* main(): Coro<number[]> {
    const a: number = yield* runInThread(add, 1);
    const b: number = yield* runInThread(addLater, 2);
    return [a, b];
  }
  assert.deepEqual(await new Loop().run(main()), [3, 4]);
});

threadTest(
  "threadFunction wants an absolute URL; a missing export fails in the coroutine",
  async () => {
    assert.throws(() => threadFunction("./fixtures/tasks.ts", "addTwo"), {
      name: "TypeError",
      message: /absolute URL.*import\.meta\.url/,
    });
    assert.throws(() => threadFunction(tasks, ""), TypeError);
    function* attempt(name: string): Coro<unknown> {
      try {
        return yield* runInThread(threadFunction(tasks, name));
      } catch (error) {
        return error;
      }
    }
    const [missing, notFn] = await new Loop().run(
      function* (): Coro<unknown[]> {
        return yield [attempt("nope"), attempt("notAFunction")];
      }(),
    );
    assert.ok(missing instanceof TypeError);
    assert.match(missing.message, /tasks\.ts.*"nope".*no export named "nope".*"addTwo"/);
    assert.ok(notFn instanceof TypeError);
    assert.match(notFn.message, /"notAFunction" is 42 \(number\), not a function/);
  },
);

threadTest(
  "100 gathered calls that block for 100 ms run in parallel, results in order",
  async () => {
    const block = (x: number) => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100); // sleeps the worker
      return 2 * x;
    };
    function* main(): Coro<number[]> {
      return yield Array.from({ length: 100 }, (_, i) => runInThread(block, i));
    }
    const start = performance.now();
    const out = await new Loop().run(main());
    const took = performance.now() - start;
    assert.deepEqual(out, Array.from({ length: 100 }, (_, i) => 2 * i));
    // Sequentially 10 s. In parallel, starting 100 workers on 2 cores dominates: 1.5–2 s
    // measured, ~5 s with two other busy processes on the machine.
    assert.ok(took < 7_000, `took ${took.toFixed(0)} ms`);
  },
);

threadTest("workers are reused: sequential calls of a run share one worker", async () => {
  const where = () => (globalThis as { name?: string }).name;
  function* main(): Coro<unknown[]> {
    const names = [];
    for (let i = 0; i < 5; i++) names.push(yield* runInThread(where));
    return [names, liveWorkers()];
  }
  const [names, live] = await new Loop().run(main());
  assert.equal(new Set(names as string[]).size, 1);
  assert.equal(live, 1);
});

threadTest("a virtual clock stands still while a call runs", async () => {
  const loop = new Loop({ clock: "virtual" });
  const blockFor = (ms: number) => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    return "done";
  };
  // 50 real ms of work inside a 10 virtual ms timeout: no time passes on the loop's clock.
  const result = await loop.run(timeout(runInThread(blockFor, 50), 10));
  assert.deepEqual(result, ["done", true]);
  assert.equal(loop.now(), 0);
});

threadTest(
  "cancelled() is false outside workers and in tasks that were not cancelled",
  async () => {
    assert.equal(cancelled(), false);
    function* main(): Coro<boolean[]> {
      return yield [
        runInThread(() => cancelled()),
        runInThread(threadFunction<() => boolean>(tasks, "wasCancelled")),
      ];
    }
    assert.deepEqual(await new Loop().run(main()), [false, false]);
  },
);

// ---------------------------------------------------------------------------
// Errors

threadTest(
  "errors thrown on a worker come back with their name, message, stack and cause",
  async () => {
    function* attempt(fn: () => unknown): Coro<unknown> {
      try {
        return yield* runInThread(fn);
      } catch (error) {
        return error;
      }
    }
    const [parse, type, withCause, plain] = await new Loop().run(
      function* (): Coro<unknown[]> {
        return yield [
          attempt(function parseConfig() {
            class ParseError extends Error {
              constructor(message: string) {
                super(message);
                this.name = "ParseError";
              }
            }
            throw new ParseError("line 3: unexpected '}'");
          }),
          attempt(() => {
            throw new TypeError("not a number", { cause: new RangeError("inner") });
          }),
          attempt(async () => {
            await null;
            const error = new Error("with a code") as Error & { code: number };
            error.code = 7;
            throw error;
          }),
          attempt(() => {
            throw 42; // not an Error: passed through as it is
          }),
        ];
      }(),
    );
    assert.ok(parse instanceof Error);
    assert.equal(parse.name, "ParseError");
    assert.equal(parse.message, "line 3: unexpected '}'");
    assert.match(String(parse.stack), /ParseError: line 3[^]*at parseConfig/);
    assert.ok(type instanceof TypeError);
    assert.ok(type.cause instanceof RangeError && type.cause.message === "inner");
    assert.equal((withCause as { code?: number }).code, 7);
    assert.equal(plain, 42);
  },
);

threadTest(
  "a function using a variable of its enclosing scope fails, pointing to threadFunction",
  async () => {
    const factor = 3;
    const error = await rejection(new Loop().run(runInThread((x: number) => x * factor, 2)));
    assert.ok(error instanceof ReferenceError);
    assert.match(error.message, /factor.*enclosing scope.*argument.*threadFunction\(/);
    assert.match(String(error.stack), /^ReferenceError: factor is not defined: runInThread/);
  },
);

threadTest(
  "arguments and results that cannot be cloned are TypeErrors naming the problem",
  async () => {
    const arg = await rejection(
      new Loop().run(runInThread((_a: number, f: unknown) => f, 1, () => 1)),
    );
    assert.ok(arg instanceof TypeError);
    assert.match(
      arg.message,
      /argument 2 \(the function \(anonymous\)\) cannot be sent to a worker/,
    );
    const result = await rejection(new Loop().run(runInThread(() => () => 1)));
    assert.ok(result instanceof TypeError);
    assert.match(result.message, /the result \(a function\) cannot be sent back/);
  },
);

threadTest("a promise the task leaves rejected fails its call", async () => {
  const error = await rejection(
    new Loop().run(runInThread(async () => {
      Promise.reject(new SyntaxError("left behind"));
      await new Promise((resolve) => setTimeout(resolve, 50));
      return 1;
    })),
  );
  assert.ok(error instanceof SyntaxError && error.message === "left behind");
});

test("bad input: runInThread of a non-function, ThreadPool sizes and permissions", () => {
  // deno-lint-ignore no-explicit-any
  const anyRun = runInThread as any;
  assert.throws(() => anyRun(42), { name: "TypeError", message: /42 \(number\).*threadFunction/ });
  assert.throws(() => anyRun(function* () {}), {
    name: "TypeError",
    message: /generator function/,
  });
  assert.throws(() => anyRun(Math.max), { name: "TypeError", message: /built-in or bound/ });
  for (const n of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => new ThreadPool(n), RangeError, String(n));
  }
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new ThreadPool("2" as any), TypeError);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new ThreadPool(1, { permissions: "some" as any }), TypeError);
});

threadTest(
  "where Worker is missing, runInThread throws a clear error into the coroutine",
  async () => {
    const original = globalThis.Worker;
    // deno-lint-ignore no-explicit-any
    delete (globalThis as any).Worker;
    try {
      const message = await new Loop().run(function* (): Coro<string> {
        try {
          yield* runInThread(() => 1);
          return "ran";
        } catch (error) {
          return (error as Error).message;
        }
      }());
      assert.match(message, /no Web Workers \(globalThis\.Worker is missing\)/);
    } finally {
      globalThis.Worker = original;
    }
  },
);

// ---------------------------------------------------------------------------
// Cancellation

threadTest(
  "a busy task that polls cancelled() stops, and the run rejects within a second",
  async () => {
    const counter = shared(1);
    const count = threadFunction<typeof countUntilCancelled>(tasks, "countUntilCancelled");
    const start = performance.now();
    const error = await rejection(
      new Loop().run(function* () {
        yield [runInThread(count, counter, 10_000), failAfter(100, "stop")];
      }()),
    );
    const took = performance.now() - start;
    assert.equal((error as Error).message, "stop");
    assert.ok(took < 1_500, `took ${took.toFixed(0)} ms`);
    const counted = Atomics.load(counter, 0);
    assert.ok(counted > 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(Atomics.load(counter, 0), counted, "the worker went on counting");
  },
);

threadTest("an awaiting task stops at once when cancelled", async () => {
  const marks = shared(2);
  const start = performance.now();
  const error = await rejection(
    new Loop().run(function* () {
      yield [
        runInThread(async (marks: Int32Array) => {
          marks[0] = 1;
          await new Promise((resolve) => setTimeout(resolve, 10_000));
          marks[1] = 1; // never: the worker is terminated while it awaits
        }, marks),
        failAfter(50, "stop"),
      ];
    }()),
  );
  assert.equal((error as Error).message, "stop");
  assert.ok(performance.now() - start < 1_000);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual([...marks], [1, 0]);
});

threadTest("a task that never polls is waited for, and its result discarded", async () => {
  const done = shared(1);
  const start = performance.now();
  const error = await rejection(
    new Loop().run(function* () {
      yield [
        runInThread((done: Int32Array) => {
          const until = Date.now() + 300;
          while (Date.now() < until); // does not poll cancelled()
          done[0] = 1;
          return "late";
        }, done),
        failAfter(30, "stop"),
      ];
    }()),
  );
  assert.equal((error as Error).message, "stop");
  assert.equal(done[0], 1, "the run settled before the call returned");
  assert.ok(performance.now() - start >= 250);
});

threadTest(
  "a task whose own error had reached the loop reports it instead of a CancelledError",
  async () => {
    const call = runInThread(() => {
      throw new RangeError("its own");
    });
    function* watcher(): Coro<never> {
      // Fails right after the call's error reached the loop, before the call's coroutine resumed:
      // its task is queued to have that error thrown in.
      while (taskOf(call)?.state !== THROWING) yield;
      throw new Error("watcher");
    }
    const error = await rejection(
      new Loop().run(
        function* () {
          yield [watcher(), call];
        }(),
        { exceptionGroup: true },
      ),
    );
    assert.ok(error instanceof AggregateError);
    const [first, second, ...rest] = error.errors;
    assert.equal(first.message, "watcher");
    assert.ok(second instanceof RangeError && second.message === "its own");
    assert.equal(rest.length, 1); // the CancelledError of the gathering coroutine
    assert.ok(rest[0] instanceof CancelledError);
  },
);

threadTest(
  "several workers failing at once give an AggregateError holding their errors",
  async () => {
    const arrived = shared(1);
    const failAll = (arrived: Int32Array, i: number) => {
      Atomics.add(arrived, 0, 1);
      while (Atomics.load(arrived, 0) < 3); // all three throw at the same time
      throw new Error(`worker ${i}`);
    };
    const error = await rejection(
      new Loop().run(
        function* () {
          yield [0, 1, 2].map((i) => runInThread(failAll, arrived, i));
        }(),
        { exceptionGroup: true },
      ),
    );
    assert.ok(error instanceof AggregateError);
    const messages = error.errors.filter((e) => !(e instanceof CancelledError)).map((e) =>
      e.message
    );
    assert.deepEqual(messages.sort(), ["worker 0", "worker 1", "worker 2"]);
  },
);

threadTest(
  "a timed-out task keeps its pool place until its worker stops; the timeout waits for that",
  async () => {
    using pool = new ThreadPool(1);
    const busy = () => {
      const until = Date.now() + 300;
      while (Date.now() < until);
      return "late";
    };
    function* main(): Coro<unknown[]> {
      // The worker started first: a call that has not started by the deadline
      // would be withdrawn instead (a loaded machine can take 30 ms to start one).
      yield* pool.runInThread(() => 0);
      const start = Date.now();
      const [, inTime] = yield* timeout(pool.runInThread(busy), 30);
      const timedOutAt = Date.now() - start;
      const startedAt: number = (yield* pool.runInThread(() => Date.now())) - start;
      return [inTime, timedOutAt, startedAt];
    }
    const [inTime, timedOutAt, startedAt] = await new Loop().run(main()) as number[];
    assert.equal(inTime, false);
    // The busy worker cannot stop before its 300 ms are up: the timeout
    // resumes once it has (what it cancelled has stopped), not at 30 ms.
    assert.ok(timedOutAt >= 250, `timed out at ${timedOutAt} ms`);
    assert.ok(startedAt >= 280, `the next call started at ${startedAt} ms`);
  },
);

// ---------------------------------------------------------------------------
// ThreadPool

threadTest("a ThreadPool runs at most n tasks at once", async () => {
  using pool = new ThreadPool(3);
  const counts = shared(2); // running now, most at once
  const task = (counts: Int32Array, x: number) => {
    const now = Atomics.add(counts, 0, 1) + 1;
    for (let most = Atomics.load(counts, 1); now > most; most = Atomics.load(counts, 1)) {
      Atomics.compareExchange(counts, 1, most, now);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 40);
    Atomics.sub(counts, 0, 1);
    return x;
  };
  const out = await new Loop().run(function* (): Coro<number[]> {
    return yield Array.from({ length: 12 }, (_, i) => pool.runInThread(task, counts, i));
  }());
  assert.deepEqual(out, Array.from({ length: 12 }, (_, i) => i));
  assert.equal(Atomics.load(counts, 1), 3);
});

// Calls sent ahead: a pool's worker holds several calls and runs them one at a time.

/** Calls `fn(log, id)` on `pool` for each id, gathered, once the caller's first call was sent. */
function* later<R>(
  pool: ThreadPool,
  fn: (log: Int32Array, id: number) => R,
  log: Int32Array,
  ...ids: number[]
): Coro<R[]> {
  yield sleep(5);
  return yield ids.map((id) => pool.runInThread(fn, log, id));
}

threadTest(
  "cancelled() is per task: calls queued behind a cancelled one never see it",
  async () => {
    using pool = new ThreadPool(1);
    const log = shared(8); // [0]: next free index; then the ids of the calls, in start order
    const spin = (log: Int32Array, id: number) => {
      log[Atomics.add(log, 0, 1) + 1] = id;
      const until = Date.now() + 2_000;
      while (Date.now() < until) if (cancelled()) return "stopped";
      return "not cancelled";
    };
    const report = (log: Int32Array, id: number) => {
      log[Atomics.add(log, 0, 1) + 1] = id;
      return cancelled();
    };
    function* main(): Coro<unknown[]> {
      // 1 is cancelled while it runs; 2 and 3 were sent ahead to its worker.
      return yield [timeout(pool.runInThread(spin, log, 1), 150), later(pool, report, log, 2, 3)];
    }
    const start = performance.now();
    const [[, inTime], [second, third]] = await new Loop().run(main()) as [
      [unknown, boolean],
      boolean[],
    ];
    assert.equal(inTime, false);
    assert.equal(second, false, "a queued call saw the cancellation of the one before it");
    assert.equal(third, false);
    assert.deepEqual([...log.slice(0, 4)], [3, 1, 2, 3], "each ran once, in order");
    assert.ok(performance.now() - start < 1_800, "the cancelled call stopped early");
  },
);

threadTest("a call withdrawn while queued on a worker never runs; the others do", async () => {
  using pool = new ThreadPool(1);
  const ran = shared(4);
  const busy = (ran: Int32Array, i: number, ms: number) => {
    Atomics.add(ran, i, 1);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    return i;
  };
  function* main(): Coro<unknown[]> {
    // 1 runs 150 ms; 2, sent ahead behind it, times out after 20 ms; 3 runs after 1.
    return yield [
      pool.runInThread(busy, ran, 1, 150),
      timeout(pool.runInThread(busy, ran, 2, 0), 20),
      pool.runInThread(busy, ran, 3, 0),
    ];
  }
  const [first, [, inTime], third] = await new Loop().run(main()) as [
    number,
    [unknown, boolean],
    number,
  ];
  assert.equal(first, 1);
  assert.equal(inTime, false);
  assert.equal(third, 3);
  assert.deepEqual([...ran], [0, 1, 0, 1], "the withdrawn call never ran; the others once");
});

threadTest(
  "calls queued behind a cancelled running call go back to the pool: run once, in order",
  async () => {
    using pool = new ThreadPool(2);
    const log = shared(32); // [0]: next free index; then the ids, in start order
    const stuck = async (log: Int32Array, id: number) => {
      log[Atomics.add(log, 0, 1) + 1] = id;
      await new Promise(() => {}); // never settles: only stopping the worker ends it
    };
    const record = (log: Int32Array, id: number) => {
      log[Atomics.add(log, 0, 1) + 1] = id;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      return id;
    };
    function* main(): Coro<unknown[]> {
      const ids = Array.from({ length: 20 }, (_, i) => i + 1);
      return yield [
        timeout(pool.runInThread(stuck, log, 0), 150),
        later(pool, record, log, ...ids),
      ];
    }
    const [[, inTime], rest] = await new Loop().run(main()) as [[unknown, boolean], number[]];
    assert.equal(inTime, false);
    assert.deepEqual(rest, Array.from({ length: 20 }, (_, i) => i + 1));
    const started = [...log.slice(1, Atomics.load(log, 0) + 1)];
    assert.equal(started.length, 21, `each call started once: ${started}`);
    assert.deepEqual(started.toSorted((a, b) => a - b), Array.from({ length: 21 }, (_, i) => i));
  },
);

threadTest("an idle worker takes over calls sent ahead to a busy one", async () => {
  using pool = new ThreadPool(2);
  const block = (ms: number) => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    return ms;
  };
  const start = performance.now();
  // Sent alternately: without taking over, four 50 ms calls wait behind the 500 ms one.
  const out = await new Loop().run(pool.map(block, [500, 50, 50, 50, 50, 50, 50, 50, 50]));
  const took = performance.now() - start;
  assert.deepEqual(out, [500, 50, 50, 50, 50, 50, 50, 50, 50]);
  assert.ok(took < 660, `took ${Math.round(took)} ms; 700 without taking over, 500 with`);
});

threadTest("a pool of one starts 200 calls in submission order, sent ahead or not", async () => {
  using pool = new ThreadPool(1);
  const log = shared(201);
  const record = (log: Int32Array, id: number) => {
    log[Atomics.add(log, 0, 1) + 1] = id;
    return id;
  };
  const out = await new Loop().run(
    pool.map((id: number) => id * 2, Array.from({ length: 200 }, (_, i) => i)),
  );
  assert.deepEqual(out, Array.from({ length: 200 }, (_, i) => i * 2));
  await new Loop().run(function* (): Coro<unknown> {
    return yield Array.from({ length: 200 }, (_, i) => pool.runInThread(record, log, i));
  }());
  assert.deepEqual([...log.slice(1)], Array.from({ length: 200 }, (_, i) => i));
});

// Calls given to a worker in one turn go in one message; their answers come back together.

/** Runs `call`, resolving to what it returned or threw, and when (ms after `start`). */
function* timed<R>(call: Coro<R>, start: number): Coro<[R | Error, number]> {
  try {
    const value = yield* call;
    return [value, performance.now() - start];
  } catch (error) {
    return [error as Error, performance.now() - start];
  }
}

threadTest(
  "answers of quick calls do not wait for a long call sent with them in one message",
  async () => {
    using pool = new ThreadPool(1);
    const quick = (x: number) => x * 2;
    const slow = (ms: number) => {
      const until = Date.now() + ms;
      while (Date.now() < until);
      return "slow";
    };
    const start = performance.now();
    // The first call goes at once; the other four in one message behind it.
    const out = await new Loop().run(function* (): Coro<[unknown, number][]> {
      return yield [
        ...[1, 2, 3, 4].map((x) => timed(pool.runInThread(quick, x), start)),
        timed(pool.runInThread(slow, 300), start),
      ];
    }());
    assert.deepEqual(out.map(([value]) => value), [2, 4, 6, 8, "slow"]);
    const [quickest, ...others] = out.map(([, at]) => at);
    const slowAt = others.pop()!;
    assert.ok(slowAt >= 290, `the long call ended at ${Math.round(slowAt)} ms`);
    for (const at of [quickest, ...others]) {
      assert.ok(at < slowAt - 200, `a quick answer came at ${Math.round(at)} ms`);
    }
  },
);

threadTest(
  "an argument that cannot be cloned fails only its own call among calls sent together",
  async () => {
    using pool = new ThreadPool(1);
    const echo = (x: unknown) => typeof x;
    const out = await new Loop().run(function* (): Coro<[unknown, number][]> {
      return yield [1, () => 2, 3, 4].map((x) => timed(pool.runInThread(echo, x), 0));
    }());
    const [first, bad, ...rest] = out.map(([value]) => value);
    assert.deepEqual([first, ...rest], ["number", "number", "number"]);
    assert.ok(bad instanceof TypeError);
    assert.match(bad.message, /argument 1 \(the function \(anonymous\)\) cannot be sent/);
  },
);

threadTest(
  "a result that cannot be cloned fails only its own call among answers sent together",
  async () => {
    using pool = new ThreadPool(1);
    const maybeFn = (x: number) => (x === 3 ? () => x : x);
    const out = await new Loop().run(function* (): Coro<[unknown, number][]> {
      return yield [1, 2, 3, 4, 5].map((x) => timed(pool.runInThread(maybeFn, x), 0));
    }());
    const values = out.map(([value]) => value);
    assert.deepEqual([...values.slice(0, 2), ...values.slice(3)], [1, 2, 4, 5]);
    assert.ok(values[2] instanceof TypeError);
    assert.match(values[2].message, /the result \(a function\) cannot be sent back/);
  },
);

threadTest(
  "a call that closes its worker fails alone: answers before it arrive, calls after it rerun",
  async () => {
    using pool = new ThreadPool(1);
    const runs = shared(6);
    const closeAt3 = (runs: Int32Array, x: number) => {
      Atomics.add(runs, x, 1);
      if (x === 3) self.close();
      return x;
    };
    const out = await new Loop().run(function* (): Coro<[unknown, number][]> {
      return yield [1, 2, 3, 4, 5].map((x) => timed(pool.runInThread(closeAt3, runs, x), 0));
    }());
    const values = out.map(([value]) => value);
    assert.deepEqual([...values.slice(0, 2), ...values.slice(3)], [1, 2, 4, 5]);
    assert.ok(values[2] instanceof Error);
    assert.match(values[2].message, /closed itself/);
    assert.deepEqual([...runs], [0, 1, 1, 1, 1, 1], "each call ran once");
  },
);

threadTest(
  "a worker keeps the functions it was sent by text: 300 of them, each called again",
  async () => {
    using pool = new ThreadPool(1);
    const fns = Array.from(
      { length: 300 },
      (_, k) => new Function("x", `return x * 1000 + ${k};`) as (x: number) => number,
    );
    // The loop remembers what it defined on a worker up to 256 functions, then starts afresh.
    const range = (n: number) => Array.from({ length: n }, (_, k) => k);
    const order = [...range(256), ...range(256), ...range(300), ...range(300)];
    const out = await new Loop().run(function* (): Coro<number[]> {
      return yield order.map((k, i) => pool.runInThread(fns[k], i));
    }());
    assert.deepEqual(out, order.map((k, i) => i * 1000 + k));
  },
);

threadTest("a ThreadPool queues calls in order, and map keeps input order", async () => {
  using pool = new ThreadPool(1);
  const log = shared(11);
  const record = (log: Int32Array, x: number) => {
    log[1 + Atomics.add(log, 0, 1)] = x;
  };
  const slowFirst = (x: number) => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5 * (4 - x));
    return x * 10;
  };
  using wide = new ThreadPool(4);
  const mapped = await new Loop().run(function* (): Coro<number[]> {
    yield Array.from({ length: 10 }, (_, i) => pool.runInThread(record, log, i));
    return yield* wide.map(slowFirst, [0, 1, 2, 3]);
  }());
  assert.deepEqual([...log.slice(1)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(mapped, [0, 10, 20, 30]);
});

threadTest("close() fails running and queued calls, and every later use", async () => {
  const pool = new ThreadPool(1);
  function* attempt(call: Coro<unknown>): Coro<string> {
    try {
      return String(yield* call); // inline, so that its error can be caught here
    } catch (error) {
      return (error as Error).message;
    }
  }
  function* closeSoon(): Coro<void> {
    yield sleep(50);
    pool.close();
  }
  const waiting = pool.runInThread(async () => {
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    return "finished";
  });
  const start = performance.now();
  const [running, queued] = await new Loop().run(function* (): Coro<string[]> {
    const results = yield [
      attempt(waiting),
      attempt(pool.runInThread(() => "queued")),
      closeSoon(),
    ];
    return results.slice(0, 2);
  }());
  assert.ok(performance.now() - start < 1_000);
  assert.match(running, /ThreadPool\(1\) is closed/);
  assert.match(queued, /ThreadPool\(1\) is closed/);
  assert.throws(() => pool.runInThread(() => 1), { name: "Error", message: /is closed/ });
  assert.throws(() => pool.map((x: number) => x, [1]), { name: "Error", message: /is closed/ });
  pool.close(); // a second close does nothing
});

threadTest("using a pool disposes it at the end of its scope", async () => {
  let kept: ThreadPool;
  await new Loop().run(function* () {
    using pool = new ThreadPool(2);
    kept = pool;
    yield* pool.map((x: number) => x, [1, 2]);
  }());
  assert.throws(() => kept.runInThread(() => 1), /is closed/);
});

// ---------------------------------------------------------------------------
// Under other flags: child processes

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

/** Runs `deno run <flags> <fixture>`; returns its exit code, output and when it exited. */
async function denoRun(flags: string[], name: string) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, fixture(name)],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const exitedAt = Date.now();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr), exitedAt };
}

test("with no permission flags, threads work and the script exits as soon as its work is done", async () => {
  const { code, stdout, stderr, exitedAt } = await denoRun([], "no_permissions.ts");
  assert.equal(code, 0, stderr);
  const out = JSON.parse(stdout);
  assert.deepEqual(
    [out.sum, out.squares, out.later, out.error, out.stopped, out.sawCancel],
    [3, [1, 4, 9], "OK", "RangeError: thrown on the worker", "stop", 1],
  );
  assert.ok(out.stopMs < 1_500, `stopping took ${out.stopMs} ms`);
  // An unclosed ThreadPool and runInThread's workers do not keep the process alive.
  assert.ok(exitedAt - out.doneAt < 1_000, `exited ${exitedAt - out.doneAt} ms after its work`);
});

test("ThreadPool permissions none: tasks get Deno's permission errors", async () => {
  const flags = ["--unstable-worker-options", "--allow-read", "--allow-net=127.0.0.1"];
  const { code, stdout, stderr } = await denoRun(flags, "pool_permissions.ts");
  assert.equal(code, 0, stderr);
  const out = JSON.parse(stdout);
  assert.match(out.read, /^NotCapable: Requires read access/);
  assert.match(out.net, /^NotCapable: Requires net access/);
  assert.equal(out.plain, 42);
});

test("without --unstable-worker-options a narrowed ThreadPool throws an Error naming it", async () => {
  // With -A the pool can read the command line and tell beforehand.
  const told = await denoRun(["-A"], "pool_permissions.ts");
  assert.equal(told.code, 0, told.stderr);
  assert.match(JSON.parse(told.stdout).thrown, /^Error: .*--unstable-worker-options/);
  // With less it cannot tell (Deno guards /proc): Deno itself ends the process,
  // naming the flag, before any worker runs with more permissions than asked.
  const untold = await denoRun(["--allow-read"], "pool_permissions.ts");
  assert.equal(untold.code, 70);
  assert.match(untold.stderr, /--unstable-worker-options/);
});

test("a threadFunction module the worker may not read fails naming --allow-read", async () => {
  const { code, stdout, stderr } = await denoRun([], "unreadable_module.ts");
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^TypeError: threadFunction\(".*tasks\.ts", "addTwo"\).*--allow-read/);
});

threadTest(
  "a pool closed by `using` in a failing coroutine adds no errors: its calls are cancelled",
  async () => {
    const boom = new Error("boom");
    const spin = (ms: number) => {
      const end = performance.now() + ms;
      while (performance.now() < end) if (cancelled()) return -1;
      return ms;
    };
    function* failing(): Coro<void> {
      yield sleep(20);
      throw boom;
    }
    function* job(): Coro<void> {
      using pool = new ThreadPool(1);
      yield [pool.runInThread(spin, 5_000), pool.runInThread(spin, 5_000), failing()];
    }
    const start = performance.now();
    await assert.rejects(new Loop().run(job()), (e) => e === boom);
    assert.ok(performance.now() - start < 3_000, "the busy call saw cancelled() and stopped");
  },
);
