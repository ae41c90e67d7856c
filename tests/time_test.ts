import assert from "node:assert/strict";
import {
  CancelledError,
  type Coro,
  Event,
  join,
  Loop,
  Semaphore,
  sleep,
  timeout,
  TimeoutError,
} from "../mod.ts";
import { after, logged, test } from "./_helper.ts";

// --- sleep -------------------------------------------------------------------

test("sleep: 100 gathered sleeps finish in about one sleep, not a hundred", async () => {
  function* slowAddOne(x: number): Coro<number> {
    yield sleep(100);
    return x + 1;
  }
  const t0 = performance.now();
  const out = await new Loop().run(function* () {
    return yield Array.from({ length: 100 }, () => slowAddOne(1));
  }());
  const took = performance.now() - t0;
  assert.deepEqual(out, new Array(100).fill(2));
  assert.ok(took >= 99, `took ${took} ms, less than the sleep`);
  assert.ok(took < 500, `took ${took} ms`);
});

test("sleep: 10 000 concurrent sleep(10) finish well under a second", async () => {
  const t0 = performance.now();
  await new Loop().run(function* () {
    yield Array.from({ length: 10_000 }, () => sleep(10));
  }());
  const took = performance.now() - t0;
  assert.ok(took < 1_000, `took ${took} ms`);
});

test("sleep: a negative, NaN or non-number time is an error at the call", () => {
  assert.throws(() => sleep(-1), RangeError);
  assert.throws(() => sleep(NaN), RangeError);
  assert.throws(() => sleep("5" as unknown as number), TypeError);
  assert.throws(() => sleep(-1), /sleep\(\): the time is -1/);
});

test("sleep: works with yield and yield*, and sleep(0) lets others run", async () => {
  const log: string[] = [];
  function* a(): Coro<void> {
    yield sleep(0);
    log.push("a");
  }
  function* b(): Coro<void> {
    yield* sleep(0);
    log.push("b");
  }
  await new Loop().run(function* () {
    yield [a(), b()];
  }());
  assert.deepEqual(log.sort(), ["a", "b"]);
});

test("sleep: Infinity sleeps until cancelled, and leaves no timer behind", async () => {
  const log: string[] = [];
  const boom = new Error("boom");
  function* forever(): Coro<void> {
    try {
      yield sleep(Infinity);
    } finally {
      log.push("forever stopped");
    }
  }
  function* failLater(): Coro<void> {
    yield sleep(5);
    throw boom;
  }
  await assert.rejects(
    new Loop().run(function* () {
      yield [forever(), failLater()];
    }()),
    (e) => e === boom,
  );
  assert.deepEqual(log, ["forever stopped"]);
});

test("sleep: on the virtual clock, gathered sleeps end at the longest, exactly", async () => {
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    return yield [after(50, "a"), after(100, "b")];
  }());
  assert.deepEqual(out, ["a", "b"]);
  assert.equal(loop.now(), 100);
});

test("sleep: one sleep object waited on from several places runs once; all wake at its deadline", async () => {
  const loop = new Loop({ clock: "virtual" });
  const shared = sleep(100);
  const woke: number[] = [];
  function* waiter(delay: number): Coro<void> {
    yield sleep(delay);
    yield shared; // the same coroutine: one deadline, 100 ms after it first ran
    woke.push(loop.now());
  }
  await loop.run(function* () {
    yield [waiter(0), waiter(30), shared];
  }());
  assert.deepEqual(woke, [100, 100]);
  // Finished: yielding it again gives its result at once, as for any coroutine.
  await loop.run(function* () {
    yield shared;
  }());
  assert.equal(loop.now(), 100);
});

test("sleep: a sleep is a coroutine everywhere: run, gather, Set, timeout, and yield* in a generator", async () => {
  const loop = new Loop({ clock: "virtual" });
  assert.equal(await loop.run(sleep(10)), undefined);
  assert.equal(loop.now(), 10);
  const out = await loop.run(function* () {
    const inTime = yield* timeout(sleep(5), 50);
    const tooSlow = yield* timeout(sleep(500), 50);
    yield new Set([sleep(1_000)]); // in the background: the run ends after it
    return [inTime, tooSlow];
  }());
  assert.deepEqual(out, [[undefined, true], [undefined, false]]);
  assert.equal(loop.now(), 10 + 5 + 50 + 1_000);
  // Stepped by hand, it behaves as `function* () { return yield wait }` does.
  const s = sleep(1);
  const first = s.next();
  assert.equal(first.done, false);
  assert.deepEqual(s.next(), { value: undefined, done: true });
  assert.deepEqual(s.next(), { value: undefined, done: true });
  assert.throws(() => sleep(1).throw(new Error("x")), /x/);
  assert.deepEqual(sleep(1).return(undefined), { value: undefined, done: true });
});

test("sleep: cancelled while parked as a coroutine of its own, it leaves no deadline behind", async () => {
  const boom = new Error("boom");
  const loop = new Loop({ clock: "virtual" });
  await assert.rejects(
    loop.run(function* () {
      yield [
        sleep(Infinity),
        sleep(1_000_000),
        function* () {
          yield sleep(5);
          throw boom;
        }(),
      ];
    }()),
    (e) => e === boom,
  );
  assert.equal(loop.now(), 5);
  // No deadline left: a later run on the same loop ends at its own time.
  await loop.run(sleep(1));
  assert.equal(loop.now(), 6);
});

// --- timeout: the Python tests ------------------------------------------------

test("timeout: port of tinyio's test_timeout (in time, then too slow)", async () => {
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    const first = yield timeout(after(200, 3), 300);
    const second = yield timeout(after(200, 3), 100);
    return [first, second];
  }());
  assert.deepEqual(out, [[3, true], [undefined, false]]);
  assert.equal(loop.now(), 300); // 200 for the first, 100 for the second
});

test("timeout: on the real clock, a slow coroutine is stopped at the deadline", async () => {
  const t0 = performance.now();
  const out = await new Loop().run(function* () {
    return yield* timeout(after(5_000, "late"), 30);
  }());
  const took = performance.now() - t0;
  assert.deepEqual(out, [undefined, false]);
  assert.ok(took >= 29 && took < 1_000, `took ${took} ms`);
});

test("timeout: a coroutine spinning on bare yields is stopped on time", async () => {
  let steps = 0;
  function* spin(): Coro<never> {
    for (;;) {
      steps++;
      yield;
    }
  }
  const t0 = performance.now();
  const out = await new Loop().run(timeout(spin(), 20));
  const took = performance.now() - t0;
  assert.deepEqual(out, [undefined, false]);
  assert.ok(steps > 100, `only ${steps} steps`);
  assert.ok(took >= 19 && took < 1_000, `took ${took} ms`);
});

// --- timeout: what happens to the coroutine ------------------------------------

test("timeout: TimeoutError is thrown into the coroutine at its yield; finally runs", async () => {
  const log: string[] = [];
  function* slow(): Coro<string> {
    try {
      yield sleep(1_000);
      return "late";
    } catch (e) {
      log.push(`caught ${(e as Error).name}: ${(e as Error).message}`);
      throw e;
    } finally {
      log.push("finally");
    }
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(timeout(slow(), 10));
  assert.deepEqual(out, [undefined, false]);
  assert.match(log[0], /^caught TimeoutError: timeout\(\): .*within 10 ms/);
  assert.equal(log[1], "finally");
  assert.equal(loop.now(), 10);
});

test("timeout: yield* and yield of a timeout both work", async () => {
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    const a: [string, true] | [undefined, false] = yield* timeout(after(5, "a"), 10);
    const b = yield timeout(after(50, "b"), 10);
    return [a, b];
  }());
  assert.deepEqual(out, [["a", true], [undefined, false]]);
});

test("timeout: the coroutines it started by waiting are cancelled, recursively; the run goes on", async () => {
  const log: string[] = [];
  const causes: unknown[] = [];
  function* grandchild(): Coro<void> {
    try {
      yield sleep(1_000);
    } catch (e) {
      assert.ok(e instanceof CancelledError);
      causes.push(e.cause);
      log.push("grandchild cancelled");
      throw e;
    }
  }
  function* child(name: string): Coro<void> {
    try {
      yield [grandchild(), sleep(1_000)];
    } catch (e) {
      assert.ok(e instanceof CancelledError);
      log.push(`${name} cancelled`);
      throw e;
    }
  }
  function* work(): Coro<void> {
    try {
      yield [child("c1"), child("c2")];
    } catch (e) {
      log.push(`work ${(e as Error).name}`);
      throw e;
    }
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    const r = yield timeout(work(), 10);
    log.push("after timeout");
    return r;
  }());
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log.filter((l) => l.endsWith("cancelled")).sort(), [
    "c1 cancelled",
    "c2 cancelled",
    "grandchild cancelled",
    "grandchild cancelled",
  ]);
  assert.ok(log.indexOf("work TimeoutError") > log.indexOf("c2 cancelled"));
  assert.equal(log.at(-1), "after timeout");
  assert.ok(causes.every((c) => c instanceof TimeoutError));
  assert.equal(loop.now(), 10);
});

test("timeout: a coroutine also waited on from outside is spared, with its own work", async () => {
  const log: string[] = [];
  const shared = function* (): Coro<string> {
    const [x] = yield [logged("shared-child", 50, log)];
    return `shared ${x}`;
  }();
  function* work(): Coro<void> {
    yield [shared, logged("own", 1_000, log)];
  }
  function* outsider(): Coro<string> {
    yield; // let work start `shared` first, so that work is its starter
    return yield shared;
  }
  const loop = new Loop({ clock: "virtual" });
  const [timedOut, fromOutside] = await loop.run(function* () {
    return yield [timeout(work(), 10), outsider()];
  }());
  assert.deepEqual(timedOut, [undefined, false]);
  assert.equal(fromOutside, "shared shared-child");
  assert.deepEqual(log, ["own CancelledError", "shared-child done"]);
  assert.equal(loop.now(), 50);
});

test("timeout: coroutines started in the background, or first by others, go on", async () => {
  const log: string[] = [];
  const byOther = logged("by-other", 50, log);
  function* work(): Coro<void> {
    yield new Set([logged("background", 50, log)]);
    yield byOther; // already started by main, so not work's own
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    yield new Set([byOther]);
    return yield timeout(work(), 10);
  }());
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log.sort(), ["background done", "by-other done"]);
});

test("timeout: a coroutine that catches TimeoutError and goes on keeps running in the background", async () => {
  const log: string[] = [];
  function* stubborn(): Coro<string> {
    try {
      yield sleep(100);
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
      log.push("caught, going on");
    }
    yield sleep(100);
    log.push("stubborn finished");
    return "finished anyway";
  }
  const loop = new Loop({ clock: "virtual" });
  const c = stubborn();
  const out = await loop.run(function* () {
    const r = yield timeout(c, 10);
    log.push(`timeout resumed at ${loop.now()}`);
    return r;
  }());
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log, ["caught, going on", "timeout resumed at 10", "stubborn finished"]);
  assert.equal(loop.now(), 110); // the run waited for it
  assert.equal(await loop.run(c), "finished anyway");
});

test("timeout: a coroutine that went on after its TimeoutError and then fails fails the run", async () => {
  const late = new RangeError("late failure");
  function* stubborn(): Coro<void> {
    try {
      yield sleep(100);
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
    }
    yield sleep(100);
    throw late;
  }
  const loop = new Loop({ clock: "virtual" });
  await assert.rejects(loop.run(timeout(stubborn(), 10)), (e) => e === late);
  assert.equal(loop.now(), 110);
});

test("timeout: an outer timeout spares what went on in the background after an inner one", async () => {
  const log: string[] = [];
  function* stubborn(): Coro<void> {
    try {
      yield sleep(100);
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
    }
    yield sleep(100);
    log.push("stubborn finished");
  }
  function* work(inline: boolean): Coro<void> {
    if (inline) yield* timeout(stubborn(), 5);
    else yield timeout(stubborn(), 5);
    yield logged("work's sleep", 1_000, log);
  }
  for (const inline of [false, true]) {
    log.length = 0;
    const loop = new Loop({ clock: "virtual" });
    assert.deepEqual(await loop.run(timeout(work(inline), 20)), [undefined, false]);
    assert.deepEqual(log, ["work's sleep CancelledError", "stubborn finished"]);
    assert.equal(loop.now(), 105);
  }
});

test("timeout: yielding the timed-out coroutine later throws its TimeoutError", async () => {
  const loop = new Loop({ clock: "virtual" });
  const c = after(100, "x");
  const err = await loop.run(function* () {
    yield timeout(c, 10);
    try {
      yield c;
    } catch (e) {
      return e;
    }
  }());
  assert.ok(err instanceof TimeoutError);
});

test("timeout: an error before the deadline is an error of the run", async () => {
  const boom = new Error("boom");
  function* failing(): Coro<never> {
    yield sleep(5);
    throw boom;
  }
  const loop = new Loop({ clock: "virtual" });
  await assert.rejects(loop.run(timeout(failing(), 1_000)), (e) => e === boom);
  assert.equal(loop.now(), 5);
});

test("timeout: a TimeoutError the coroutine throws itself before the deadline is not swallowed", async () => {
  const own = new TimeoutError("my own");
  function* failing(): Coro<never> {
    yield;
    throw own;
  }
  await assert.rejects(new Loop().run(timeout(failing(), 1_000)), (e) => e === own);
});

test("timeout: an error a cancelled coroutine throws instead is an error of the run", async () => {
  const cleanup = new Error("cleanup failed");
  function* child(): Coro<void> {
    try {
      yield sleep(1_000);
    } finally {
      // deno-lint-ignore no-unsafe-finally
      throw cleanup;
    }
  }
  function* work(): Coro<void> {
    yield child();
  }
  await assert.rejects(
    new Loop({ clock: "virtual" }).run(timeout(work(), 10)),
    (e) => e === cleanup,
  );
});

test("timeout: its cancellations are not reported if the run fails later", async () => {
  const boom = new Error("boom");
  function* work(): Coro<void> {
    yield [sleep(1_000), sleep(1_000)];
  }
  const err = await new Loop({ clock: "virtual" }).run(
    function* () {
      yield timeout(work(), 10);
      yield sleep(5);
      throw boom;
    }(),
    { exceptionGroup: true },
  ).catch((e) => e);
  assert.ok(err instanceof AggregateError);
  assert.deepEqual(err.errors, [boom]);
});

test("timeout: a coroutine waiting on an Event with no timeout does not hang the run", async () => {
  const never = new Event();
  function* waitsInline(): Coro<boolean> {
    return yield* never.wait();
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    return yield [timeout(never.wait(), 10), timeout(waitsInline(), 20)];
  }());
  assert.deepEqual(out, [[undefined, false], [undefined, false]]);
  assert.equal(loop.now(), 20);
  assert.equal(never.isSet(), false);
  // On the real clock too.
  const t0 = performance.now();
  assert.deepEqual(await new Loop().run(timeout(new Event().wait(), 20)), [undefined, false]);
  assert.ok(performance.now() - t0 < 1_000);
});

test("timeout: a coroutine finished in time leaves no deadline behind", async () => {
  const loop = new Loop({ clock: "virtual" });
  assert.deepEqual(await loop.run(timeout(after(5, "quick"), 1_000)), ["quick", true]);
  assert.equal(loop.now(), 5);
  // With nothing to do but wait for a host timer, a virtual loop jumps to its
  // next deadline: a leftover one would move the clock to 1000.
  const ev = new Event();
  setTimeout(() => ev.set(), 20);
  await loop.run(ev.wait());
  assert.equal(loop.now(), 5);
});

test("timeout: nested, the outer deadline stops the inner timeout and its coroutine", async () => {
  const log: string[] = [];
  function* inner(): Coro<unknown> {
    return yield timeout(logged("innermost", 1_000, log), 500);
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    return yield [timeout(inner(), 10), timeout(timeout(after(5, "x"), 100), 50)];
  }());
  assert.deepEqual(out, [[undefined, false], [["x", true], true]]);
  assert.deepEqual(log, ["innermost CancelledError"]);
  assert.equal(loop.now(), 10);
});

test("timeout: the inner deadline first: inner false, outer true", async () => {
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(timeout(timeout(after(1_000, "x"), 10), 100));
  assert.deepEqual(out, [[undefined, false], true]);
  assert.equal(loop.now(), 10);
});

test("timeout: of a finished coroutine gives its result; Infinity never times out", async () => {
  const loop = new Loop({ clock: "virtual" });
  const done = after(1, "done");
  await loop.run(done);
  assert.deepEqual(await loop.run(timeout(done, 0)), ["done", true]);
  assert.deepEqual(await loop.run(timeout(after(3_600_000, "late"), Infinity)), ["late", true]);
});

test("timeout: 10 000 timeouts that all run out at once stop quickly", async () => {
  const t0 = performance.now();
  const out = await new Loop({ clock: "virtual" }).run(function* () {
    return yield Array.from({ length: 10_000 }, () => timeout(after(1_000, 1), 10));
  }());
  const took = performance.now() - t0;
  assert.equal(out.length, 10_000);
  assert.ok(out.every(([, ok]: [unknown, boolean]) => ok === false));
  assert.ok(took < 2_000, `took ${took} ms`);
});

test("timeout: a bad time or a non-coroutine is an error at the call", () => {
  assert.throws(() => timeout(after(1, 1), -1), RangeError);
  assert.throws(() => timeout(after(1, 1), NaN), RangeError);
  assert.throws(() => timeout(after(1, 1), "5" as unknown as number), TypeError);
  assert.throws(
    () => timeout((() => 1) as unknown as Coro<number>, 5),
    /timeout\(\): the first argument is the function .*give a coroutine/,
  );
});

test("timeout: a coroutine holding a semaphore releases it when timed out", async () => {
  const sem = new Semaphore(1);
  const log: string[] = [];
  function* holder(): Coro<void> {
    using _ = yield* sem.acquire();
    yield sleep(1_000);
  }
  function* next(): Coro<void> {
    yield sleep(1);
    using _ = yield* sem.acquire();
    log.push("next got it");
  }
  const loop = new Loop({ clock: "virtual" });
  await loop.run(function* () {
    yield [timeout(holder(), 10), next()];
  }());
  assert.deepEqual(log, ["next got it"]);
  assert.equal(loop.now(), 10);
});

test("timeout: typed use with join", async () => {
  const loop = new Loop({ clock: "virtual" });
  const n = await loop.run(function* (): Coro<number> {
    const [v, ok] = yield* join(timeout(after(1, 41), 10));
    return ok ? v + 1 : -1;
  }());
  assert.equal(n, 42);
});
