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
  toPromise,
} from "../mod.ts";
import { liveWorkers } from "../src/thread/thread.ts";
import { captureWarnings, delay, test } from "./_helper.ts";

/** A promise and its resolve function. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

function* failAfter(event: Event, error: Error): Coro<never> {
  yield event.wait();
  throw error;
}

// ---------------------------------------------------------------------------
// fromPromise

test("fromPromise resumes with the promise's value", async () => {
  const value = { big: "object" };
  function* main(): Coro<unknown> {
    return yield fromPromise(delay(1).then(() => value));
  }
  assert.equal(await new Loop().run(main()), value);
});

test("fromPromise throws the rejection into the coroutine; yield* catches it", async () => {
  const error = new RangeError("no");
  function* main(): Coro<unknown> {
    try {
      // With `yield*` the rejection is thrown in here; with `yield` it would fail
      // the coroutine made by fromPromise, and so the run.
      yield* fromPromise(Promise.reject(error));
    } catch (e) {
      return e;
    }
  }
  assert.equal(await new Loop().run(main()), error);
});

test("an uncaught rejection fails the run with that very error", async () => {
  const error = new Error("rejected");
  let cancelled = false;
  function* other(): Coro<void> {
    try {
      yield sleep(10_000);
    } finally {
      cancelled = true;
    }
  }
  function* main(): Coro<void> {
    yield [other(), fromPromise(delay(1).then(() => Promise.reject(error)))];
  }
  await assert.rejects(new Loop().run(main()), (e) => e === error);
  assert.ok(cancelled);
});

test("fromPromise accepts any thenable, and yield* works like yield", async () => {
  const thenable: PromiseLike<number> = {
    then(onFulfilled) {
      return Promise.resolve(onFulfilled!(7));
    },
  } as PromiseLike<number>;
  function* main(): Coro<number> {
    const a = yield* fromPromise(thenable);
    const b: number = yield fromPromise(Promise.resolve(3));
    return a + b;
  }
  assert.equal(await new Loop().run(main()), 10);
});

test("fromPromise of something that is not a promise nor a function is a TypeError", () => {
  assert.throws(() => fromPromise(42 as never), (e) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /42/);
    assert.match(e.message, /promise/);
    return true;
  });
});

test("the factory is called once, when the coroutine first runs, with a live AbortSignal", async () => {
  const signals: AbortSignal[] = [];
  const p = fromPromise((signal) => {
    signals.push(signal);
    return delay(1).then(() => 5);
  });
  assert.equal(signals.length, 0); // not called yet
  function* twice(c: Coro<number>): Coro<number> {
    return (yield c) * 2;
  }
  function* main(): Coro<number[]> {
    return yield [p, twice(p), p];
  }
  assert.deepEqual(await new Loop().run(main()), [5, 10, 5]);
  assert.equal(signals.length, 1);
  assert.ok(signals[0] instanceof AbortSignal);
  assert.equal(signals[0].aborted, false);
});

test("a factory that throws throws into the coroutine and holds nothing", async () => {
  const error = new Error("factory broke");
  function* main(): Coro<unknown> {
    try {
      yield* fromPromise(() => {
        throw error;
      });
    } catch (e) {
      return e;
    }
  }
  assert.equal(await new Loop().run(main()), error);
});

test("cancelling aborts the factory's signal, and the run waits for its promise", async () => {
  const boom = new Error("boom");
  const started = new Event();
  const log: string[] = [];
  let signal: AbortSignal | undefined;
  function* waiting(): Coro<void> {
    yield fromPromise((s) => {
      signal = s;
      started.set();
      // Lets go only 30 ms after the abort, and then resolves: neither the
      // late settling nor its value is reported.
      return new Promise<string>((resolve) => {
        s.addEventListener("abort", () => {
          log.push("aborted");
          setTimeout(() => {
            log.push("settled");
            resolve("ignored");
          }, 30);
        });
      });
    });
  }
  const t0 = performance.now();
  await assert.rejects(
    new Loop().run(function* (): Coro<void> {
      yield [waiting(), failAfter(started, boom)];
    }()),
    (e) => e === boom,
  );
  log.push("rejected");
  assert.deepEqual(log, ["aborted", "settled", "rejected"]);
  assert.ok(performance.now() - t0 >= 25);
  assert.ok(signal!.reason instanceof CancelledError);
  assert.equal((signal!.reason as CancelledError).cause, boom);
});

test("a factory's rejection after the abort is not reported", async () => {
  const boom = new Error("boom");
  const started = new Event();
  function* waiting(): Coro<void> {
    yield fromPromise((signal) => {
      started.set();
      return delay(10_000, signal).catch(() => {
        throw new Error("late rejection");
      });
    });
  }
  await assert.rejects(
    new Loop().run(
      function* (): Coro<void> {
        yield [waiting(), failAfter(started, boom)];
      }(),
      { exceptionGroup: true },
    ),
    (e) => {
      assert.ok(e instanceof AggregateError);
      assert.equal(e.errors[0], boom);
      // Only the cancellations of main, waiting and its fromPromise follow.
      assert.equal(e.errors.length, 4);
      for (const c of e.errors.slice(1)) assert.ok(c instanceof CancelledError);
      return true;
    },
  );
});

test("a timeout aborts the factory's signal and waits for its promise", async () => {
  const log: string[] = [];
  function* main(): Coro<unknown> {
    const result = yield* timeout(
      fromPromise((signal) => {
        signal.addEventListener("abort", () => log.push("aborted"));
        return delay(10_000, signal).catch(async (e) => {
          await delay(20);
          log.push("settled");
          throw e;
        });
      }),
      10,
    );
    log.push("timed out");
    return result;
  }
  assert.deepEqual(await new Loop().run(main()), [undefined, false]);
  log.push("run resolved");
  // The timeout resumes once the promise of what it cancelled has settled.
  assert.deepEqual(log, ["aborted", "settled", "timed out", "run resolved"]);
});

test("a cancelled coroutine lets go of a plain promise at once", async () => {
  const boom = new Error("boom");
  const started = new Event();
  const never = new Promise<never>(() => {});
  const late = deferred<void>();
  const rejectsLater = late.promise.then(() => Promise.reject(new Error("late, ignored")));
  function* waiting(p: Promise<unknown>): Coro<void> {
    started.set();
    yield fromPromise(p);
  }
  await assert.rejects(
    new Loop().run(function* (): Coro<void> {
      yield [waiting(never), waiting(rejectsLater), failAfter(started, boom)];
    }()),
    (e) => e === boom,
  );
  // The rejection that comes after the cancellation is not unhandled.
  late.resolve();
  await delay(1);
});

test("a plain promise whose coroutine never ran does not become an unhandled rejection", async () => {
  const boom = new Error("boom");
  let ran = false;
  function* waiting(): Coro<void> {
    ran = true;
    yield fromPromise(Promise.reject(new Error("never looked at")));
  }
  function* fails(): Coro<void> {
    throw boom;
  }
  function* main(): Coro<void> {
    yield [fails(), waiting()]; // fails first, before waiting ever runs
  }
  await assert.rejects(new Loop().run(main()), (e) => e === boom);
  assert.equal(ran, false);
  await delay(1);
});

test("the virtual clock does not jump while a fromPromise is pending", async () => {
  const loop = new Loop({ clock: "virtual" });
  const log: string[] = [];
  function* outside(): Coro<void> {
    yield fromPromise(delay(20));
    log.push(`promise at ${loop.now()}`);
  }
  function* sleeper(): Coro<void> {
    yield sleep(1_000);
    log.push(`sleep at ${loop.now()}`);
  }
  await loop.run(function* (): Coro<void> {
    yield [outside(), sleeper()];
  }());
  assert.deepEqual(log, ["promise at 0", "sleep at 1000"]);
});

test("fetch with the factory's signal: cancelling aborts the request and the server sees it", [
  "deno",
], async () => {
  const arrived = new Event(); // set from the HTTP handler, outside the loop
  const serverSawClose = deferred<void>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      arrived.set();
      // Answers only after 10 s, unless the client goes away first.
      return new Promise<Response>((resolve) => {
        const id = setTimeout(() => resolve(new Response("too late")), 10_000);
        request.signal.addEventListener("abort", () => {
          clearTimeout(id);
          serverSawClose.resolve();
          resolve(new Response("nobody listens"));
        });
      });
    },
  );
  async function fetchAndCrash(server: Deno.HttpServer<Deno.NetAddr>): Promise<void> {
    const url = `http://127.0.0.1:${server.addr.port}/slow`;
    const boom = new Error("stop everything");
    let fetchSettled = false;
    function* download(): Coro<string> {
      return yield fromPromise((signal) =>
        fetch(url, { signal }).then((r) => r.text()).finally(() => fetchSettled = true)
      );
    }
    const t0 = performance.now();
    await assert.rejects(
      new Loop().run(function* (): Coro<void> {
        yield [download(), failAfter(arrived, boom)];
      }()),
      (e) => e === boom,
    );
    assert.ok(fetchSettled, "the run settled before fetch did");
    assert.ok(performance.now() - t0 < 5_000);
    let guard: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<string>((r) => guard = setTimeout(() => r("timed out"), 5_000));
    const seen = await Promise.race([serverSawClose.promise.then(() => "closed"), timedOut]);
    clearTimeout(guard);
    assert.equal(seen, "closed");
  }
  // Deno 2.9 prints a one-time deprecation warning when a handler that read
  // request.signal answers (its legacy abort-on-success); the loop prints none.
  const warnings = await captureWarnings(() =>
    fetchAndCrash(server).finally(() => server.shutdown())
  );
  assert.deepEqual(warnings.filter((w) => !w.startsWith("Deno.serve: request.signal")), []);
});

// ---------------------------------------------------------------------------
// toPromise, and the two nested (ported from tinyio's asyncio-integration tests)

test("toPromise runs a coroutine on a fresh loop, many at a time", async () => {
  function* addOne(x: number): Coro<number> {
    yield sleep(5);
    return x + 1;
  }
  assert.deepEqual(await Promise.all([toPromise(addOne(1)), toPromise(addOne(2))]), [2, 3]);
});

test("toPromise rejects with the error of a failed coroutine, and honours exceptionGroup", async () => {
  const error = new Error("inside");
  function* bad(): Coro<void> {
    for (let i = 0; i < 5; i++) yield;
    throw error;
  }
  await assert.rejects(toPromise(bad()), (e) => e === error);
  await assert.rejects(toPromise(bad(), { exceptionGroup: true }), (e) => {
    assert.ok(e instanceof AggregateError);
    assert.equal(e.errors[0], error);
    return true;
  });
});

test("toPromise of something that is not a coroutine rejects with a TypeError", async () => {
  await assert.rejects(toPromise(42 as never), TypeError);
});

async function addOneLater(x: number): Promise<number> {
  await delay(1);
  return x + 1;
}
async function addTwoLater(x: number): Promise<number> {
  return await addOneLater(await addOneLater(x));
}

test("promise inside tinyio: basic", async () => {
  assert.equal(await new Loop().run(fromPromise(addTwoLater(3))), 5);
});

test("promise inside tinyio: shared with other coroutines, and yielded again", async () => {
  function* counting(x: number): Coro<number> {
    for (let i = 0; i < 20; i++) yield;
    return x + 10;
  }
  function* main(x: number): Coro<number> {
    const shared = fromPromise((_signal) => addTwoLater(3));
    const [a, b] = yield [shared, counting(x)];
    const again = yield shared;
    return a + again + b;
  }
  assert.equal(await new Loop().run(main(3)), 23);
});

test("tinyio inside a promise: a diamond", async () => {
  function* addOne(x: number): Coro<number> {
    yield sleep(5);
    return x + 1;
  }
  function* times(y: Coro<number>, factor: number): Coro<number> {
    return (yield y) * factor;
  }
  function* diamond(x: number): Coro<number> {
    const y = addOne(x);
    const [a, b] = yield [times(y, 1), times(y, 2)];
    return a + b;
  }
  async function f(): Promise<number> {
    return await toPromise(diamond(2));
  }
  assert.equal(await f(), 9);
});

test("other promise work keeps running while a loop waits", async () => {
  const event = new Event();
  function* addOne(x: number): Coro<number> {
    yield event.wait();
    return x + 1;
  }
  async function setLater(): Promise<string> {
    for (let i = 0; i < 20; i++) await delay(0);
    event.set();
    return "set";
  }
  assert.deepEqual(await Promise.all([setLater(), toPromise(addOne(1))]), ["set", 2]);
});

test("promise inside tinyio: an error in the promise fails the run", async () => {
  const error = new Error("promise error");
  const backgroundRunning = deferred<void>();
  function* background(): Coro<void> {
    yield;
    backgroundRunning.resolve();
    for (;;) yield;
  }
  async function failing(): Promise<void> {
    await delay(1);
    await backgroundRunning.promise;
    throw error;
  }
  function* main(): Coro<void> {
    yield new Set([background()]);
    yield fromPromise(failing());
  }
  await assert.rejects(new Loop().run(main()), (e) => e === error);
});

test("promise inside tinyio: an error in the loop stops the promise", async () => {
  const error = new Error("tinyio error");
  const started = new Event();
  let promiseDone = false;
  async function slow(signal: AbortSignal): Promise<void> {
    try {
      started.set();
      for (;;) await delay(1, signal);
    } finally {
      promiseDone = true;
    }
  }
  function* main(): Coro<void> {
    yield [fromPromise(slow), failAfter(started, error)];
  }
  await assert.rejects(new Loop().run(main()), (e) => e === error);
  assert.ok(promiseDone);
});

test("tinyio inside a promise: an error in the loop rejects the promise", async () => {
  const error = new Error("tinyio error");
  function* failing(): Coro<void> {
    for (let i = 0; i < 5; i++) yield;
    throw error;
  }
  async function main(): Promise<void> {
    await toPromise(failing());
  }
  await assert.rejects(main(), (e) => e === error);
});

/**
 * Runs async functions together like a trio nursery or asyncio TaskGroup: the
 * first failure aborts the others' signal; rejects with that failure once all
 * have settled.
 */
async function taskGroup(...fns: ((signal: AbortSignal) => Promise<unknown>)[]): Promise<void> {
  const controller = new AbortController();
  const failures: unknown[] = [];
  await Promise.all(fns.map((fn) =>
    fn(controller.signal).catch((e) => {
      failures.push(e);
      controller.abort(e);
    })
  ));
  if (failures.length > 0) throw failures[0];
}

test("tinyio inside a promise: an error outside cancels the loop through its signal", async () => {
  const error = new Error("promise error");
  const started = deferred<void>();
  let tinyioCleanedUp = false;
  let rejection: unknown;
  function* slowTinyio(): Coro<void> {
    try {
      started.resolve();
      for (;;) yield sleep(1);
    } finally {
      tinyioCleanedUp = true;
    }
  }
  async function runTinyio(signal: AbortSignal): Promise<void> {
    try {
      await toPromise(slowTinyio(), { signal });
    } catch (e) {
      rejection = e;
      throw e;
    }
  }
  async function failing(): Promise<void> {
    await delay(1);
    await started.promise;
    throw error;
  }
  await assert.rejects(taskGroup(runTinyio, failing), (e) => e === error);
  assert.ok(tinyioCleanedUp);
  assert.equal(rejection, error); // the signal's reason
});

/**
 * tinyio → promise → tinyio → … `depth` loops deep: each level waits on the
 * next through `fromPromise(signal => toPromise(next, { signal }))`, with an
 * async function in between.
 */
function* level(depth: number, bottom: () => Coro<number>, log: string[]): Coro<number> {
  try {
    if (depth === 0) return yield bottom();
    const below: number = yield fromPromise(async (signal) => {
      const v = await toPromise(level(depth - 1, bottom, log), { signal });
      await delay(0, signal);
      return v;
    });
    return below + 1;
  } finally {
    log.push(`left ${depth}`);
  }
}

test("nesting to any depth: a result comes up through every level", async () => {
  const log: string[] = [];
  function* bottom(): Coro<number> {
    yield sleep(1);
    return 100;
  }
  assert.equal(await toPromise(level(5, bottom, log)), 105);
  assert.deepEqual(log, ["left 0", "left 1", "left 2", "left 3", "left 4", "left 5"]);
});

test("nesting to any depth: an error at the bottom fails every level with that error", async () => {
  const error = new Error("deep down");
  const log: string[] = [];
  function* bottom(): Coro<number> {
    yield sleep(1);
    throw error;
  }
  await assert.rejects(toPromise(level(5, bottom, log)), (e) => e === error);
  assert.equal(log.length, 6);
});

test("nesting to any depth: a crash at the top cancels the bottom before the top settles", async () => {
  const error = new Error("top");
  const atBottom = new Event();
  const log: string[] = [];
  function* bottom(): Coro<number> {
    try {
      atBottom.set();
      yield sleep(10_000);
      return 0;
    } finally {
      log.push("bottom cleaned up");
    }
  }
  await assert.rejects(
    new Loop().run(function* (): Coro<void> {
      yield [level(4, bottom, log), failAfter(atBottom, error)];
    }()),
    (e) => e === error,
  );
  // Each level is cancelled before the one below it: the top at once, the
  // lower ones as their signals are aborted. The top settles only after all.
  assert.deepEqual(log, [
    "left 4",
    "left 3",
    "left 2",
    "left 1",
    "left 0",
    "bottom cleaned up",
  ]);
});

// ---------------------------------------------------------------------------
// The run's signal (Loop.run and toPromise)

test("aborting the signal cancels every coroutine and rejects with signal.reason", async () => {
  const controller = new AbortController();
  const reason = new Error("user gave up");
  const log: string[] = [];
  function* sleeper(name: string): Coro<void> {
    try {
      yield sleep(10_000);
    } catch (e) {
      assert.ok(e instanceof CancelledError);
      assert.equal(e.cause, reason);
      throw e;
    } finally {
      log.push(name);
    }
  }
  function* main(): Coro<void> {
    try {
      yield new Set([sleeper("background")]);
      yield [sleeper("a"), sleeper("b")];
    } finally {
      log.push("main");
    }
  }
  setTimeout(() => controller.abort(reason), 10);
  const t0 = performance.now();
  await assert.rejects(new Loop().run(main(), { signal: controller.signal }), (e) => e === reason);
  assert.ok(performance.now() - t0 < 5_000);
  assert.deepEqual(log.sort(), ["a", "b", "background", "main"]);
});

test("the default abort reason is an AbortError DOMException", async () => {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 1);
  await assert.rejects(toPromise(sleep(10_000), { signal: controller.signal }), (e) => {
    assert.ok(e instanceof DOMException);
    assert.equal(e.name, "AbortError");
    assert.equal(e, controller.signal.reason);
    return true;
  });
});

test("an abort is seen while coroutines spin on bare yields", async () => {
  const controller = new AbortController();
  let spins = 0;
  function* spin(): Coro<void> {
    for (;;) {
      spins++;
      yield;
    }
  }
  setTimeout(() => controller.abort("stop"), 10);
  await assert.rejects(
    new Loop().run(spin(), { signal: controller.signal }),
    (e) => e === "stop",
  );
  assert.ok(spins > 0);
});

test("an abort wakes a virtual loop that waits forever", async () => {
  const controller = new AbortController();
  const loop = new Loop({ clock: "virtual" });
  setTimeout(() => controller.abort("wake"), 5);
  await assert.rejects(
    loop.run(sleep(Infinity), { signal: controller.signal }),
    (e) => e === "wake",
  );
  assert.equal(loop.now(), 0);
});

test("an already aborted signal rejects without starting anything", async () => {
  const loop = new Loop();
  const signal = AbortSignal.abort(new Error("too early"));
  let started = false;
  function* main(): Coro<number> {
    started = true;
    yield;
    return 1;
  }
  const c = main();
  await assert.rejects(loop.run(c, { signal }), (e) => e === signal.reason);
  await assert.rejects(toPromise(main(), { signal }), (e) => e === signal.reason);
  assert.equal(started, false);
  // Nothing was started: the loop is free and the coroutine is still fresh.
  assert.equal(await loop.run(c), 1);
});

test("an abort waits for fromPromise factories and nested isolated loops", async () => {
  const controller = new AbortController();
  const log: string[] = [];
  function* inner(): Coro<void> {
    try {
      yield fromPromise((signal) =>
        delay(10_000, signal).catch(async (e) => {
          await delay(20);
          log.push("inner promise settled");
          throw e;
        })
      );
    } finally {
      log.push("inner finally");
    }
  }
  function* main(): Coro<void> {
    yield [
      isolate(inner()),
      fromPromise(async (signal) => {
        try {
          await delay(10_000, signal);
        } finally {
          log.push("outer promise settled");
        }
      }),
    ];
  }
  setTimeout(() => controller.abort("abort"), 10);
  await assert.rejects(toPromise(main(), { signal: controller.signal }), (e) => e === "abort");
  log.push("rejected");
  assert.deepEqual(log.sort(), [
    "inner finally",
    "inner promise settled",
    "outer promise settled",
    "rejected",
  ]);
  assert.equal(log.at(-1), "rejected");
});

test("an abort from inside a step, followed by waiting, is taken at once", async () => {
  const controller = new AbortController();
  function* aborter(): Coro<void> {
    yield;
    controller.abort("now");
    yield sleep(10_000);
  }
  const t0 = performance.now();
  await assert.rejects(
    new Loop().run(aborter(), { signal: controller.signal }),
    (e) => e === "now",
  );
  assert.ok(performance.now() - t0 < 5_000);
});

test("an abort stops the run's workers", ["threads"], async () => {
  const controller = new AbortController();
  let cancelled = false;
  function* inThread(): Coro<void> {
    try {
      // Awaits forever on the worker: only terminating it stops it.
      yield* runInThread(() => new Promise<void>(() => {}));
    } catch (e) {
      cancelled = e instanceof CancelledError;
      throw e;
    }
  }
  setTimeout(() => controller.abort("stop"), 50);
  const t0 = performance.now();
  await assert.rejects(
    toPromise(inThread(), { signal: controller.signal }),
    (e) => e === "stop",
  );
  assert.ok(performance.now() - t0 < 5_000);
  assert.ok(cancelled);
  assert.equal(liveWorkers(), 0);
});

test("exceptionGroup applies to an abort as to any error", async () => {
  const controller = new AbortController();
  const reason = new Error("abort");
  const cleanupError = new Error("cleanup failed");
  function* messy(): Coro<void> {
    try {
      yield sleep(10_000);
    } finally {
      // deno-lint-ignore no-unsafe-finally
      throw cleanupError;
    }
  }
  setTimeout(() => controller.abort(reason), 5);
  await assert.rejects(toPromise(messy(), { signal: controller.signal }), (e) => {
    assert.ok(e instanceof AggregateError);
    assert.deepEqual(e.errors, [reason, cleanupError]);
    return true;
  });
  const again = new AbortController();
  setTimeout(() => again.abort(reason), 5);
  await assert.rejects(
    toPromise(messy(), { signal: again.signal, exceptionGroup: false }),
    (e) => e === reason,
  );
});

test("an abort after the run has ended changes nothing; one signal serves many runs", async () => {
  const controller = new AbortController();
  const loop = new Loop();
  function* quick(x: number): Coro<number> {
    yield;
    return x;
  }
  assert.equal(await loop.run(quick(1), { signal: controller.signal }), 1);
  assert.equal(await loop.run(quick(2), { signal: controller.signal }), 2);
  controller.abort();
  assert.equal(await loop.run(quick(3)), 3);
});

test("a cancelled coroutine's cancellation tells the abort apart from a failure", async () => {
  const controller = new AbortController();
  let message = "";
  function* waiting(): Coro<void> {
    try {
      yield sleep(10_000);
    } catch (e) {
      message = (e as Error).message;
      throw e;
    }
  }
  setTimeout(() => controller.abort(new Error("bye")), 5);
  await assert.rejects(toPromise(waiting(), { signal: controller.signal }));
  assert.match(message, /signal/);
  assert.doesNotMatch(message, /another coroutine failed/);
});

test("a signal that is not an AbortSignal is a TypeError, and the loop stays usable", async () => {
  const loop = new Loop();
  await assert.rejects(
    loop.run(sleep(1), { signal: {} as AbortSignal }),
    (e) => e instanceof TypeError && /AbortSignal/.test(e.message),
  );
  assert.equal(await loop.run(fromPromise(Promise.resolve("ok"))), "ok");
});

test("an abort during a step is taken at the next check, without warnings", async () => {
  const controller = new AbortController();
  function* aborter(): Coro<void> {
    yield;
    controller.abort("from inside");
    for (;;) yield;
  }
  const warnings = await captureWarnings(() =>
    assert.rejects(
      new Loop().run(aborter(), { signal: controller.signal }),
      (e) => e === "from inside",
    )
  );
  assert.deepEqual(warnings, []);
});

test("a rejection is caught by try/catch around `yield fromPromise(p)` as around `yield*`", async () => {
  const oops = new Error("oops");
  function* main(): Coro<unknown[]> {
    const caught: unknown[] = [];
    try {
      yield fromPromise(Promise.reject(oops));
    } catch (e) {
      caught.push(e);
    }
    try {
      yield* fromPromise(Promise.reject(oops));
    } catch (e) {
      caught.push(e);
    }
    const shared = fromPromise(Promise.reject(oops));
    try {
      yield [shared, shared];
    } catch (e) {
      caught.push(e);
    }
    return caught;
  }
  assert.deepEqual(await new Loop().run(main()), [oops, oops, oops]);
});

test("a fromPromise started in the background that rejects fails the run", async () => {
  const oops = new Error("background");
  function* main(): Coro<void> {
    yield new Set([fromPromise(Promise.reject(oops))]);
    yield sleep(1_000);
  }
  await assert.rejects(new Loop().run(main()), (e) => e === oops);
});

test("two rejections handed over in the same turn are both reported: none is lost", async () => {
  const first = new Error("first");
  const second = new Error("second");
  function* main(): Coro<void> {
    yield [fromPromise(Promise.reject(first)), fromPromise(Promise.reject(second))];
  }
  // The first rejection is thrown into main; before main runs, the second
  // fails the run. main still gets the first thrown in (not a CancelledError)
  // and, re-throwing it, reports it among the other errors.
  const e = await new Loop().run(main()).catch((e) => e);
  assert.ok(e instanceof AggregateError, String(e));
  assert.deepEqual(e.errors, [second, first]);
});
