import assert from "node:assert/strict";
import {
  CancelledError,
  copy,
  type Coro,
  Event,
  fromPromise,
  isolate,
  Loop,
  sleep,
  timeout,
  toPromise,
} from "../mod.ts";
import { captureWarnings, delay, test } from "./_helper.ts";

/** A queue that holds at most one element; `get` waits for one. */
class OneSlot<T> {
  #event = new Event();
  #full = false;
  #value: T | undefined;

  put(x: T): void {
    if (this.#full) throw new Error("the slot is full");
    this.#value = x;
    this.#full = true;
    this.#event.set();
  }

  *get(): Coro<T> {
    yield this.#event.wait();
    this.#event.clear();
    const x = this.#value as T;
    this.#full = false;
    return x;
  }
}

// ---------------------------------------------------------------------------
// Ported from tinyio's tests/test_isolate.py

for (const isolateG of [false, true]) {
  for (const isolateH of [false, true]) {
    test(`isolated and plain coroutines make progress together (g: ${isolateG}, h: ${isolateH})`, async () => {
      const q1 = new OneSlot<number>();
      const q2 = new OneSlot<number>();
      // g and h can only finish if both make progress at the same time.
      function* g(): Coro<number> {
        q1.put(1);
        const x = yield* q2.get();
        q1.put(x + 1);
        return yield* q2.get();
      }
      function* h(): Coro<number> {
        let x = yield* q1.get();
        q2.put(x + 1);
        x = yield* q1.get();
        q2.put(x + 1);
        return x;
      }
      function* maybeIsolate(c: () => Coro<number>, isolated: boolean): Coro<number> {
        if (!isolated) return yield c();
        const [x, ok] = yield* isolate(c());
        assert.ok(ok);
        return x as number;
      }
      function* f(): Coro<number[]> {
        return yield [maybeIsolate(g, isolateG), maybeIsolate(h, isolateH)];
      }
      assert.deepEqual(await new Loop().run(f()), [4, 3]);
    });
  }
}

test("an error inside cancels only the isolated coroutines; the outer ones go on", async () => {
  const q1 = new OneSlot<number>();
  const q2 = new OneSlot<number>();
  const q3 = new OneSlot<number>();
  let gFinished = false;
  let iFinished = false;
  let iCancelled = false;
  function* g(): Coro<number> {
    q2.put(5);
    yield* q3.get();
    gFinished = true;
    return 1;
  }
  function* h(): Coro<number> {
    const x = yield* q1.get();
    const y = yield* q2.get();
    if (x === 5 && y === 5) throw new RangeError("Kaboom");
    return x + y;
  }
  function* i(): Coro<number> {
    try {
      q1.put(5);
      yield sleep(1_000);
      iFinished = true;
      return 2;
    } catch (e) {
      iCancelled = e instanceof CancelledError;
      throw e;
    }
  }
  function* isolated(): Coro<number[]> {
    return yield [h(), i()];
  }
  function* tryIsolated(): Coro<unknown> {
    const [result, ok] = yield* isolate(isolated());
    q3.put(0); // wakes g, on the outer loop
    if (ok) return result;
    assert.ok(result instanceof RangeError);
    assert.equal(result.message, "Kaboom");
    return [-1, -1];
  }
  function* f(): Coro<unknown> {
    return yield [g(), tryIsolated()];
  }
  const t0 = performance.now();
  assert.deepEqual(await new Loop().run(f()), [1, [-1, -1]]);
  assert.ok(performance.now() - t0 < 900, "i's sleep was not cancelled");
  assert.ok(gFinished);
  assert.ok(!iFinished);
  assert.ok(iCancelled);
});

test("isolate with an argument from the outer loop, passed by copy", async () => {
  function* slowAddOne(x: number): Coro<number> {
    yield;
    return x + 1;
  }
  function* unreliableAddTwo(getX: Coro<number>): Coro<number> {
    const x: number = yield getX;
    if (x === 3) throw new Error("That is too hard.");
    const y: number = yield slowAddOne(x);
    return yield slowAddOne(y);
  }
  function* tryAddThree(x: number): Coro<[number, true] | [Error, false]> {
    const arg = yield* copy(slowAddOne(x));
    return yield* isolate(unreliableAddTwo(arg));
  }
  for (const x of [0, 1, 3, 4]) {
    assert.deepEqual(await new Loop().run(tryAddThree(x)), [x + 3, true]);
  }
  const [error, ok] = await new Loop().run(tryAddThree(2));
  assert.equal(ok, false);
  assert.equal(error.constructor, Error);
  assert.equal(error.message, "That is too hard.");
});

test("a copy returns the very same object as the original", async () => {
  function* foo(): Coro<object> {
    yield;
    return {};
  }
  function* bar(): Coro<number> {
    const f = foo();
    const g = yield* copy(f);
    assert.notEqual(g, f);
    const a = yield f;
    const b = yield g;
    assert.equal(a, b);
    return 3;
  }
  assert.equal(await new Loop().run(bar()), 3);
});

test("cancelling the outer loop cancels the isolated one, without warnings", async () => {
  const started = new Event();
  let fooCancelled = false;
  function* foo(): Coro<void> {
    try {
      started.set();
      for (;;) yield;
    } catch (e) {
      if (e instanceof CancelledError) fooCancelled = true;
      throw e;
    }
  }
  function* bar(): Coro<void> {
    yield new Set([isolate(foo())]);
    yield started.wait();
    throw new Error("Kaboom");
  }
  const warnings = await captureWarnings(() =>
    assert.rejects(new Loop().run(bar()), (e) => e instanceof Error && e.message === "Kaboom")
  );
  assert.deepEqual(warnings, []);
  assert.ok(fooCancelled);
});

// ---------------------------------------------------------------------------
// Results and errors

test("success resumes with [value, true], the value itself", async () => {
  const value = { x: 1 };
  function* inner(): Coro<object> {
    yield sleep(1);
    return value;
  }
  function* main(): Coro<unknown> {
    return yield isolate(inner());
  }
  const [v, ok] = await new Loop().run(main()) as [unknown, boolean];
  assert.equal(v, value);
  assert.equal(ok, true);
});

test("a failure resumes with [error, false], the very error thrown, and the outer loop goes on", async () => {
  const error = new TypeError("inner");
  let outerTicks = 0;
  function* failing(): Coro<void> {
    yield sleep(5);
    throw error;
  }
  function* ticking(): Coro<void> {
    for (let i = 0; i < 10; i++) {
      outerTicks++;
      yield sleep(1);
    }
  }
  function* main(): Coro<unknown> {
    const [result] = yield [isolate(failing()), ticking()];
    return result;
  }
  assert.deepEqual(await new Loop().run(main()), [error, false]);
  assert.equal(outerTicks, 10);
});

test("a value thrown that is not an Error comes back as it is", async () => {
  function* throwsString(): Coro<void> {
    yield;
    throw "a string";
  }
  assert.deepEqual(await new Loop().run(isolate(throwsString())), ["a string", false]);
});

test("exceptionGroup is honoured inside", async () => {
  const error = new Error("first");
  const cleanupError = new Error("cleanup");
  function* messy(): Coro<void> {
    try {
      yield sleep(10_000);
    } finally {
      // deno-lint-ignore no-unsafe-finally
      throw cleanupError;
    }
  }
  function* failing(): Coro<void> {
    yield;
    throw error;
  }
  function* inner(): Coro<void> {
    yield [messy(), failing()];
  }
  const loop = new Loop();
  const [byDefault] = await loop.run(isolate(inner()));
  assert.ok(byDefault instanceof AggregateError);
  assert.deepEqual(byDefault.errors, [error, cleanupError]);
  const [plain] = await loop.run(isolate(inner(), { exceptionGroup: false }));
  assert.equal(plain, error);
  const [group] = await loop.run(isolate(inner(), { exceptionGroup: true }));
  assert.ok(group instanceof AggregateError);
  assert.equal(group.errors[0], error);
  assert.equal(group.errors[1], cleanupError);
  assert.ok(group.errors.slice(2).every((e) => e instanceof CancelledError));
  assert.equal(group.errors.length, 4); // and the cancellations of messy and inner
});

test("a CancelledError raised inside is not captured: it goes on to the outer loop", async () => {
  const cancel = new CancelledError("from inside");
  let outerCancelled = false;
  function* inner(): Coro<void> {
    yield;
    throw cancel;
  }
  function* bystander(): Coro<void> {
    try {
      yield sleep(10_000);
    } catch (e) {
      outerCancelled = e instanceof CancelledError;
      throw e;
    }
  }
  function* main(): Coro<void> {
    yield [bystander(), isolate(inner())];
  }
  await assert.rejects(new Loop().run(main()), (e) => e === cancel);
  assert.ok(outerCancelled);
});

test("isolated loops nest", async () => {
  const error = new Error("deepest");
  function* failing(): Coro<void> {
    yield;
    throw error;
  }
  function* middle(): Coro<unknown> {
    const inner = yield isolate(failing());
    return ["middle saw", inner];
  }
  assert.deepEqual(await new Loop().run(isolate(middle())), [
    ["middle saw", [error, false]],
    true,
  ]);
});

test("an isolated loop shares the outer loop's virtual clock", async () => {
  const loop = new Loop({ clock: "virtual" });
  const log: string[] = [];
  function* inner(): Coro<number> {
    yield sleep(3_000);
    log.push(`inner woke at ${loop.now()}`);
    return loop.now();
  }
  function* outer(): Coro<void> {
    yield sleep(1_000);
    log.push(`outer woke at ${loop.now()}`);
  }
  function* main(): Coro<unknown> {
    return yield [isolate(inner()), outer()];
  }
  assert.deepEqual(await loop.run(main()), [[3_000, true], undefined]);
  assert.deepEqual(log, ["outer woke at 1000", "inner woke at 3000"]);
  assert.equal(loop.now(), 3_000);
});

// ---------------------------------------------------------------------------
// Cancellation from outside

test("outer cancellation runs the inner finally blocks and waits for inner outside work", async () => {
  const error = new Error("outer failure");
  const ready = new Event();
  const log: string[] = [];
  function* inner(): Coro<void> {
    try {
      yield fromPromise((signal) =>
        new Promise<void>((resolve) => {
          ready.set();
          signal.addEventListener("abort", () => {
            setTimeout(() => {
              log.push("inner promise settled");
              resolve();
            }, 20);
          });
        })
      );
    } catch (e) {
      assert.ok(e instanceof CancelledError);
      log.push("inner cancelled");
      throw e;
    }
  }
  function* failing(): Coro<void> {
    yield ready.wait();
    throw error;
  }
  function* main(): Coro<void> {
    yield [isolate(inner()), failing()];
  }
  await assert.rejects(new Loop().run(main()), (e) => e === error);
  log.push("run rejected");
  assert.deepEqual(log, ["inner cancelled", "inner promise settled", "run rejected"]);
});

test("a timeout around isolate cancels the nested loop and resumes once it has stopped", async () => {
  const log: string[] = [];
  function* inner(): Coro<void> {
    try {
      yield fromPromise((signal) =>
        delay(10_000, signal).catch(async () => {
          await delay(20);
          log.push("inner promise settled");
        })
      );
    } finally {
      log.push("inner finally");
    }
  }
  function* main(): Coro<unknown> {
    const result = yield* timeout(isolate(inner()), 10);
    log.push("timed out");
    return result;
  }
  assert.deepEqual(await new Loop().run(main()), [undefined, false]);
  log.push("run resolved");
  // The timeout resumes only once the nested loop's outside work has stopped.
  assert.deepEqual(log, ["inner finally", "inner promise settled", "timed out", "run resolved"]);
});

test("inner errors raised while the outer loop cancels it are reported by the outer run", async () => {
  const error = new Error("outer failure");
  const cleanupError = new Error("inner cleanup failed");
  const ready = new Event();
  function* inner(): Coro<void> {
    try {
      ready.set();
      yield sleep(10_000);
    } finally {
      // deno-lint-ignore no-unsafe-finally
      throw cleanupError;
    }
  }
  function* failing(): Coro<void> {
    yield ready.wait();
    throw error;
  }
  await assert.rejects(
    new Loop().run(function* (): Coro<void> {
      yield [isolate(inner()), failing()];
    }()),
    (e) => {
      assert.ok(e instanceof AggregateError);
      assert.deepEqual(e.errors, [error, cleanupError]);
      return true;
    },
  );
});

test("an abort of the run's signal reaches the isolated coroutines", async () => {
  const controller = new AbortController();
  let cause: unknown;
  function* inner(): Coro<void> {
    try {
      yield sleep(10_000);
    } catch (e) {
      cause = (e as Error).cause;
      throw e;
    }
  }
  setTimeout(() => controller.abort("stop"), 5);
  await assert.rejects(
    toPromise(isolate(inner()), { signal: controller.signal }),
    (e) => e === "stop",
  );
  // The inner coroutine's cancellation is caused by the outer one's, caused by the abort.
  assert.ok(cause instanceof CancelledError);
  assert.equal(cause.cause, "stop");
});

// ---------------------------------------------------------------------------
// Coroutines of the outer loop, and copy

test("isolating a coroutine the outer loop has seen is a TypeError that points to copy", async () => {
  function* work(): Coro<number> {
    yield;
    return 1;
  }
  function* main(): Coro<unknown> {
    const c = work();
    yield c;
    try {
      yield* isolate(c);
    } catch (e) {
      return e;
    }
  }
  const e = await new Loop().run(main());
  assert.ok(e instanceof TypeError);
  assert.match(e.message, /copy/);
});

test("yielding an outer coroutine inside is a TypeError that points to copy", async () => {
  function* work(): Coro<number> {
    yield;
    return 1;
  }
  function* inner(outer: Coro<number>): Coro<number> {
    return yield outer;
  }
  function* main(): Coro<unknown> {
    const c = work();
    yield c;
    const [e, ok] = yield* isolate(inner(c));
    assert.equal(ok, false);
    return e;
  }
  const e = await new Loop().run(main());
  assert.ok(e instanceof TypeError);
  assert.match(e.message, /copy/);
});

test("a copy throws the very error the original threw", async () => {
  const error = new Error("original failed");
  const loop = new Loop();
  function* bad(): Coro<void> {
    yield;
    throw error;
  }
  const original = bad();
  await assert.rejects(loop.run(original), (e) => e === error);
  function* main(): Coro<unknown> {
    const copied = yield* copy(original);
    return yield* isolate(copied);
  }
  assert.deepEqual(await loop.run(main()), [error, false]);
});

test("copy does not wait for the original: a copy may feed the coroutine it needs", async () => {
  const needed = new Event();
  function* original(): Coro<string> {
    yield needed.wait(); // set by the isolated coroutine
    return "fed";
  }
  function* inner(copied: Coro<string>): Coro<string> {
    needed.set();
    return yield copied;
  }
  function* main(): Coro<unknown> {
    const copied = yield* copy(original());
    return yield* isolate(inner(copied));
  }
  assert.deepEqual(await new Loop().run(main()), ["fed", true]);
});

test("a copy may run on another loop entirely", async () => {
  const value = { from: "outer" };
  function* original(): Coro<object> {
    yield sleep(5);
    return value;
  }
  function* main(): Coro<unknown> {
    const copied = yield* copy(original());
    return yield fromPromise(toPromise(copied));
  }
  assert.equal(await new Loop().run(main()), value);
});

test("a copy on another loop learns of the original's cancellation", async () => {
  const boom = new Error("outer crash");
  let elsewhere: Promise<unknown> | undefined;
  function* original(): Coro<void> {
    yield sleep(10_000);
  }
  function* main(): Coro<void> {
    const copied = yield* copy(original());
    elsewhere = toPromise(copied); // not tied to this run
    yield;
    throw boom;
  }
  await assert.rejects(new Loop().run(main()), (e) => e === boom);
  await assert.rejects(elsewhere!, (e) => e instanceof CancelledError && e.cause === boom);
});

test("outer cancellation of a nested loop that had already failed reports nothing more", async () => {
  const outerError = new Error("outer");
  const innerError = new Error("inner");
  const cleanupError = new Error("inner cleanup");
  const innerFailed = new Event();
  function* slowToStop(): Coro<void> {
    try {
      yield fromPromise((signal) =>
        new Promise<void>((resolve) => {
          // Settles a little after its abort: the nested run is still tearing
          // down when the outer run crashes.
          signal.addEventListener("abort", () => setTimeout(resolve, 10));
        })
      );
    } finally {
      // deno-lint-ignore no-unsafe-finally
      throw cleanupError;
    }
  }
  function* failsSoon(): Coro<void> {
    yield;
    innerFailed.set();
    throw innerError;
  }
  function* inner(): Coro<void> {
    yield [slowToStop(), failsSoon()];
  }
  function* failing(): Coro<void> {
    yield innerFailed.wait();
    throw outerError;
  }
  // The outer run reports only its own error: the nested failure and its
  // teardown belonged to the isolate, whose result nobody waits for any more.
  await assert.rejects(
    new Loop().run(function* (): Coro<void> {
      yield [isolate(inner()), failing()];
    }()),
    (e) => e === outerError,
  );
});

test("copy of a coroutine of another loop is a TypeError that points to copy", async () => {
  function* work(): Coro<number> {
    yield;
    return 1;
  }
  const elsewhere = work();
  await new Loop().run(elsewhere);
  function* main(): Coro<unknown> {
    try {
      yield* copy(elsewhere);
    } catch (e) {
      return e;
    }
  }
  const e = await new Loop().run(main());
  assert.ok(e instanceof TypeError);
  assert.match(e.message, /copy/);
});

test("isolate and copy of something that is not a coroutine are TypeErrors at the call", () => {
  function* gen(): Coro<void> {}
  assert.throws(() => isolate(gen as never), (e) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /generator function gen/);
    return true;
  });
  assert.throws(() => copy(Promise.resolve(1) as never), (e) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /Promise/);
    return true;
  });
});

test("the library's waits (sleep, Event.wait) work as coroutines with isolate and copy", async () => {
  const loop = new Loop({ clock: "virtual" });
  const ready = new Event();
  const out = await loop.run(function* () {
    const slept = yield* isolate(sleep(20));
    const shared = ready.wait(); // a coroutine of the outer loop
    yield new Set([function* () {
      yield sleep(5);
      ready.set();
    }()]);
    const copied = yield* copy(shared);
    const [woken, ok] = yield* isolate(copied);
    return [slept, woken, ok, loop.now()];
  }());
  assert.deepEqual(out, [[undefined, true], true, true, 25]);
});

test("a timeout around isolate(c) whose cleanup throws fails the run with that error, as without isolate", async () => {
  // Found by the loop split's review: the error of the nested teardown was
  // dropped (the run resolved), and once stops waited for outside work the run
  // hung, the nested loop having released the outer one before the stop
  // counted it.
  function* c(): Coro<void> {
    try {
      yield sleep(1_000);
    } finally {
      // deno-lint-ignore no-unsafe-finally
      throw new Error("cleanup failed");
    }
  }
  for (const clock of ["virtual", "real"] as const) {
    for (const wrap of [(x: Coro<void>): Coro<unknown> => x, (x: Coro<void>) => isolate(x)]) {
      const error = await new Loop({ clock }).run(function* (): Coro<unknown> {
        return yield* timeout(wrap(c()), 10);
      }()).then(() => undefined, (e) => e);
      assert.ok(error instanceof Error, `${clock}: the run did not fail`);
      assert.equal(error.message, "cleanup failed", clock);
    }
  }
});
