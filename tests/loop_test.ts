import assert from "node:assert/strict";
import process from "node:process";
import { CancelledError, type Coro, Event, Loop, sleep } from "../mod.ts";
import { captureWarnings, test } from "./_helper.ts";

function* value<T>(x: T): Coro<T> {
  yield;
  return x;
}

function* counted<T>(x: T, runs: { n: number }): Coro<T> {
  runs.n++;
  yield;
  return x;
}

function* fails(error: unknown, steps = 1): Coro<never> {
  for (let i = 0; i < steps; i++) yield;
  throw error;
}

// --- The yield forms -------------------------------------------------------

test("a coroutine's return value is what run resolves with; bare yield resumes with undefined", async () => {
  const seen: unknown[] = [];
  function* main(): Coro<number> {
    seen.push(yield);
    seen.push(yield);
    return 7;
  }
  assert.equal(await new Loop().run(main()), 7);
  assert.deepEqual(seen, [undefined, undefined]);
});

test("a coroutine that never yields runs too", async () => {
  function* now(): Coro<string> {
    return "done";
  }
  function* main(): Coro<string[]> {
    const a = yield now();
    const [b, c] = yield [now(), now()];
    return [a, b, c];
  }
  assert.deepEqual(await new Loop().run(main()), ["done", "done", "done"]);
});

test("yield coro resumes with its result", async () => {
  function* main(): Coro<number> {
    const x: number = yield value(3);
    return x + 1;
  }
  assert.equal(await new Loop().run(main()), 4);
});

test("gather resumes with the results in order, whatever order they finish in", async () => {
  function* after(ms: number, x: string): Coro<string> {
    yield sleep(ms);
    return x;
  }
  function* main(): Coro<string[]> {
    return yield [after(30, "a"), after(1, "b"), after(15, "c")];
  }
  assert.deepEqual(await new Loop().run(main()), ["a", "b", "c"]);
});

test("an empty gather resumes with a fresh empty array", async () => {
  function* main(): Coro<unknown[][]> {
    const a: unknown[] = yield [];
    const b: unknown[] = yield [];
    return [a, b];
  }
  const [a, b] = await new Loop().run(main());
  assert.deepEqual(a, []);
  assert.notEqual(a, b);
});

test("the same coroutine twice in one gather runs once and fills both places", async () => {
  const runs = { n: 0 };
  function* main(): Coro<number[]> {
    const c = counted(5, runs);
    return yield [c, value(1), c];
  }
  assert.deepEqual(await new Loop().run(main()), [5, 1, 5]);
  assert.equal(runs.n, 1);
});

test("a diamond runs the shared coroutine once and every waiter gets its result", async () => {
  const runs = { n: 0 };
  const shared = counted("x", runs);
  function* left(): Coro<string> {
    return "L" + (yield shared);
  }
  function* right(): Coro<string> {
    yield;
    return "R" + (yield shared);
  }
  function* main(): Coro<string[]> {
    return yield [left(), right()];
  }
  assert.deepEqual(await new Loop().run(main()), ["Lx", "Rx"]);
  assert.equal(runs.n, 1);
});

test("two coroutines waiting on one child at the same time both get its result", async () => {
  const runs = { n: 0 };
  const child = counted(9, runs);
  function* waiter(): Coro<number> {
    return yield child;
  }
  assert.deepEqual(
    await new Loop().run(function* (): Coro<number[]> {
      return yield [waiter(), waiter(), waiter()];
    }()),
    [9, 9, 9],
  );
  assert.equal(runs.n, 1);
});

test("yielding a finished coroutine, again and again, gives its result", async () => {
  const runs = { n: 0 };
  function* main(): Coro<number[]> {
    const c = counted(2, runs);
    const a: number = yield c;
    const b: number = yield c;
    const [d]: number[] = yield [c];
    return [a, b, d];
  }
  assert.deepEqual(await new Loop().run(main()), [2, 2, 2]);
  assert.equal(runs.n, 1);
});

test("yield new Set([...]) starts coroutines in the background and resumes at once", async () => {
  const log: string[] = [];
  function* bg(name: string): Coro<string> {
    log.push(`${name} start`);
    yield sleep(5);
    log.push(`${name} end`);
    return name;
  }
  function* main(): Coro<unknown> {
    const r = yield new Set([bg("a"), bg("b")]);
    log.push("main resumed");
    return r;
  }
  assert.equal(await new Loop().run(main()), undefined);
  // FIFO: the new coroutines were queued before main was queued again. And run
  // waited for the background coroutines too: nothing is left running.
  assert.deepEqual(log, ["a start", "b start", "main resumed", "a end", "b end"]);
});

test("a background coroutine can be awaited later and runs only once", async () => {
  const runs = { n: 0 };
  function* main(): Coro<number> {
    const c = counted(4, runs);
    yield new Set([c]);
    yield new Set([c]); // already running: nothing new
    yield;
    return yield c;
  }
  assert.equal(await new Loop().run(main()), 4);
  assert.equal(runs.n, 1);
});

test("a background coroutine that fails crashes the run", async () => {
  const boom = new Error("bg");
  function* main(): Coro<void> {
    yield new Set([fails(boom)]);
    yield sleep(1_000);
  }
  await assert.rejects(new Loop().run(main()), (e) => e === boom);
});

test("a 200 000 deep chain completes: waiting is on the heap, not the stack", async () => {
  function* chain(n: number): Coro<number> {
    if (n === 0) return 0;
    return 1 + (yield chain(n - 1));
  }
  assert.equal(await new Loop().run(chain(200_000)), 200_000);
});

// --- Loops and runs --------------------------------------------------------

test("run can be called many times; a later run yields a coroutine finished earlier", async () => {
  const loop = new Loop();
  const runs = { n: 0 };
  const c = counted("first", runs);
  assert.equal(await loop.run(c), "first");
  assert.equal(await loop.run(c), "first");
  function* reuse(): Coro<string> {
    return "again " + (yield c);
  }
  assert.equal(await loop.run(reuse()), "again first");
  assert.equal(runs.n, 1);
});

test("a finished coroutine nobody references is garbage collected (results are weak)", async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, "run with --v8-flags=--expose-gc");
  const loop = new Loop();
  let collected = false;
  const registry = new FinalizationRegistry(() => collected = true);
  await (async () => {
    const c = value({ big: new Array(1000).fill(1) });
    registry.register(c, "c");
    await loop.run(c);
  })();
  await loop.run(value(1)); // the loop stays in use
  for (let i = 0; i < 50 && !collected; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(collected, "the finished coroutine was not collected");
});

test("run on a loop that is running rejects with an Error; other loops may run meanwhile", async () => {
  const loop = new Loop();
  const first = loop.run(function* (): Coro<number> {
    yield sleep(5);
    return 1;
  }());
  await assert.rejects(loop.run(value(2)), (e: Error) => {
    assert.ok(!(e instanceof TypeError));
    assert.match(e.message, /already running/);
    return true;
  });
  assert.equal(await new Loop().run(value(3)), 3);
  assert.equal(await first, 1);
  assert.equal(await loop.run(value(4)), 4);
});

test("loops nest: a coroutine of one loop can await another loop's run", async () => {
  function* inner(): Coro<number> {
    yield sleep(1);
    return 2;
  }
  function* outer(): Coro<number> {
    let result = 0;
    const done = new Event();
    new Loop().run(inner()).then((v) => {
      result = v;
      done.set();
    });
    yield done.wait();
    return result * 10;
  }
  assert.equal(await new Loop().run(outer()), 20);
});

test("run of something that is not a generator object rejects with a TypeError", async () => {
  const loop = new Loop();
  function* gen(): Coro<number> {
    return 1;
  }
  await assert.rejects(loop.run(42 as never), /got 42 \(number\)/);
  await assert.rejects(loop.run(gen as never), /generator function gen.*Call it/);
  await assert.rejects(loop.run(Promise.resolve(1) as never), /Promise.*fromPromise/);
  await assert.rejects(loop.run(null as never), TypeError);
  assert.throws(() => new Loop({ clock: "fake" as never }), /"real" or "virtual"/);
});

test("a coroutine of another loop is a TypeError pointing to copy(), in run and in yields", async () => {
  const c = value(1);
  await new Loop().run(c);
  const other = new Loop();
  await assert.rejects(
    other.run(c),
    (e: Error) => e instanceof TypeError && /copy\(/.test(e.message),
  );
  function* single(): Coro<unknown> {
    try {
      yield c;
    } catch (e) {
      return e;
    }
  }
  function* inGather(): Coro<unknown> {
    try {
      yield [value(2), c];
    } catch (e) {
      return e;
    }
  }
  for (const f of [single, inGather]) {
    const e = await other.run(f()) as Error;
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /another loop.*copy\(/s);
  }
});

// --- Fairness and the host event loop ---------------------------------------

test("scheduling is FIFO: after an Event wakes a coroutine, ready ones run before its follow-up", async () => {
  const log: string[] = [];
  const ev = new Event();
  function* waiter(): Coro<void> {
    yield* ev.wait(); // delegation: the wait is part of this coroutine, so it is woken directly
    log.push("w woken");
    yield;
    log.push("w follow-up");
  }
  function* spinner(name: string): Coro<void> {
    for (let i = 0; i < 3; i++) {
      log.push(`${name}${i}`);
      if (name === "a" && i === 0) ev.set();
      yield;
    }
  }
  await new Loop().run(function* (): Coro<void> {
    yield [waiter(), spinner("a"), spinner("b")];
  }());
  assert.deepEqual(log, [
    "a0",
    "b0",
    "w woken",
    "a1",
    "b1",
    "w follow-up",
    "a2",
    "b2",
  ]);
});

test("round robin: coroutines spinning on bare yields take turns", async () => {
  const log: number[] = [];
  function* spin(id: number): Coro<void> {
    for (let i = 0; i < 3; i++) {
      log.push(id);
      yield;
    }
  }
  await new Loop().run(function* (): Coro<void> {
    yield [spin(1), spin(2), spin(3)];
  }());
  assert.deepEqual(log, [1, 2, 3, 1, 2, 3, 1, 2, 3]);
});

test("a setInterval keeps firing while a coroutine spins on bare yields", async () => {
  let ticks = 0;
  const id = setInterval(() => ticks++, 5);
  try {
    await new Loop().run(function* (): Coro<void> {
      const end = performance.now() + 250;
      while (performance.now() < end) yield;
    }());
  } finally {
    clearInterval(id);
  }
  // 250 ms at 5 ms would be 50 ticks; a loop that never returned to the host would allow 0.
  assert.ok(ticks >= 10, `only ${ticks} interval ticks in 250 ms`);
});

test("a due sleep fires on time while another coroutine spins", async () => {
  let woke = 0;
  const start = performance.now();
  function* sleeper(): Coro<void> {
    yield sleep(20);
    woke = performance.now() - start;
  }
  function* spinner(): Coro<void> {
    while (performance.now() - start < 300) yield;
  }
  await new Loop().run(function* (): Coro<void> {
    yield [sleeper(), spinner()];
  }());
  assert.ok(woke >= 19 && woke < 120, `the 20 ms sleep woke after ${woke} ms`);
});

test("with only timers left the loop sleeps: no busy polling", ["cpuUsage"], async () => {
  const before = process.cpuUsage();
  const t0 = performance.now();
  await new Loop().run(sleep(300));
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(before);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  assert.ok(wall >= 299, `woke early: ${wall} ms`);
  assert.ok(cpuMs < 100, `${cpuMs} ms of CPU while sleeping 300 ms`);
});

test("an Event set from outside the loop (a host timer) wakes it", async () => {
  const ev = new Event();
  const id = setTimeout(() => ev.set(), 20);
  try {
    assert.equal(await new Loop().run(ev.wait()), true);
  } finally {
    clearTimeout(id);
  }
});

test("all sleeps of a run share one host timer at a time", async () => {
  const original = globalThis.setTimeout;
  let calls = 0;
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    calls++;
    return original(fn, ms);
  }) as typeof setTimeout;
  try {
    await new Loop().run(function* (): Coro<void> {
      yield Array.from({ length: 1000 }, (_, i) => sleep(5 + (i % 3)));
    }());
  } finally {
    globalThis.setTimeout = original;
  }
  assert.ok(calls <= 10, `${calls} host timers for 1000 sleeps`);
});

// --- Errors and cancellation ------------------------------------------------

test("an error cancels every other coroutine once, finally blocks run, and run rejects with that very error", async () => {
  const boom = new Error("boom");
  const log: string[] = [];
  const causes: unknown[] = [];
  const ev = new Event();
  function* victim(name: string, wait: () => unknown): Coro<void> {
    try {
      yield wait();
      log.push(`${name} resumed`);
    } catch (e) {
      assert.ok(e instanceof CancelledError);
      causes.push(e.cause);
      throw e;
    } finally {
      log.push(`${name} finally`);
    }
  }
  function* main(): Coro<void> {
    yield [
      victim("sleeper", () => sleep(10_000)),
      victim("event", () => ev.wait()),
      victim("spinner", function* () {
        for (;;) yield;
      }),
      victim("gatherer", () => [sleep(10_000), value(1)]),
      fails(boom, 3),
    ];
  }
  await assert.rejects(new Loop().run(main()), (e) => e === boom);
  assert.deepEqual(log.sort(), [
    "event finally",
    "gatherer finally",
    "sleeper finally",
    "spinner finally",
  ]);
  assert.ok(causes.length === 4 && causes.every((c) => c === boom));
});

test("the escaping error keeps its own stack, and a thrown non-Error passes through as it is", async () => {
  function* thrower(): Coro<void> {
    yield;
    throw new RangeError("mine");
  }
  const e = await new Loop().run(thrower()).catch((e) => e);
  assert.ok(e instanceof RangeError);
  assert.match(e.stack!, /thrower/);
  await assert.rejects(new Loop().run(fails("a string")), (x) => x === "a string");
  const obj = { code: 1 };
  await assert.rejects(new Loop().run(fails(obj)), (x) => x === obj);
});

test("coroutines not yet started are cancelled without running their body", async () => {
  const boom = new Error("first step");
  let ran = false;
  function* never(): Coro<void> {
    ran = true;
    yield;
  }
  function* immediate(): Coro<void> {
    throw boom;
  }
  await assert.rejects(
    new Loop().run(function* (): Coro<void> {
      yield [immediate(), never(), never()];
    }()),
    (e) => e === boom,
  );
  assert.equal(ran, false);
});

test("exceptionGroup: false gives the error, true an AggregateError of it, the other errors and the cancellations, default the error alone or a group", async () => {
  const boom = new Error("boom");
  const other = new Error("from a finally");
  function* messy(): Coro<void> {
    try {
      yield sleep(10_000);
    } finally {
      // deno-lint-ignore no-unsafe-finally
      throw other;
    }
  }
  function* polite(): Coro<void> {
    yield sleep(10_000);
  }
  const main = () =>
    function* (): Coro<void> {
      yield [messy(), polite(), fails(boom)];
    }();
  const clean = () =>
    function* (): Coro<void> {
      yield [polite(), fails(boom)];
    }();

  await assert.rejects(new Loop().run(main(), { exceptionGroup: false }), (e) => e === boom);

  const all = await new Loop().run(main(), { exceptionGroup: true }).catch((e) => e);
  assert.ok(all instanceof AggregateError);
  assert.equal(all.errors[0], boom);
  assert.equal(all.errors[1], other);
  // Then the CancelledErrors of main, polite and the two sleep() coroutines.
  assert.equal(all.errors.length, 6);
  assert.ok(all.errors.slice(2).every((e: unknown) => e instanceof CancelledError));

  const byDefault = await new Loop().run(main()).catch((e) => e);
  assert.ok(byDefault instanceof AggregateError);
  assert.deepEqual(byDefault.errors, [boom, other]);

  await assert.rejects(new Loop().run(clean()), (e) => e === boom);
  const grouped = await new Loop().run(clean(), { exceptionGroup: true }).catch((e) => e);
  assert.ok(grouped instanceof AggregateError && grouped.errors[0] === boom);
  assert.ok(grouped.errors.slice(1).every((e: unknown) => e instanceof CancelledError));
});

test("a coroutine that swallows cancellation and yields again is warned about and closed", async () => {
  const boom = new Error("boom");
  const log: string[] = [];
  function* stubborn(): Coro<void> {
    try {
      yield sleep(10_000);
    } catch {
      log.push("caught");
    }
    try {
      yield; // yields again instead of re-throwing
      log.push("ran after cancellation");
    } finally {
      log.push("finally");
    }
  }
  let result: unknown;
  const warnings = await captureWarnings(async () => {
    result = await new Loop().run(function* (): Coro<void> {
      yield [stubborn(), fails(boom)];
    }()).catch((e) => e);
  });
  assert.equal(result, boom);
  assert.deepEqual(log, ["caught", "finally"]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /did not respond properly to cancellation/);
});

test("a coroutine that swallows cancellation and returns is warned about", async () => {
  const boom = new Error("boom");
  function* quitter(): Coro<string> {
    try {
      yield sleep(10_000);
    } catch {
      return "quietly";
    }
    return "never";
  }
  const warnings = await captureWarnings(async () => {
    await assert.rejects(
      new Loop().run(function* (): Coro<void> {
        yield [quitter(), fails(boom)];
      }()),
      (e) => e === boom,
    );
  });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /did not respond properly to cancellation/);
});

test("after a crash the loop runs again", async () => {
  const loop = new Loop();
  await assert.rejects(loop.run(fails(new Error("x"))));
  assert.equal(await loop.run(value("fine")), "fine");
});

test("a cycle fails the run with an Error that says cycle", async () => {
  function* selfWait(): Coro<void> {
    yield self;
  }
  const self = selfWait();
  await assert.rejects(new Loop().run(self), /cycle/i);

  const ref: { a?: Coro; b?: Coro; c?: Coro } = {};
  function* link(next: () => Coro | undefined): Coro<void> {
    yield;
    yield next();
  }
  ref.a = link(() => ref.b);
  ref.b = link(() => ref.c);
  ref.c = link(() => ref.a);
  const finals: string[] = [];
  function* bystander(): Coro<void> {
    try {
      yield new Event().wait();
    } finally {
      finals.push("bystander");
    }
  }
  await assert.rejects(
    new Loop().run(function* (): Coro<void> {
      yield [ref.a!, bystander()];
    }()),
    (e: Error) => /cycle/i.test(e.message) && !(e instanceof TypeError),
  );
  assert.deepEqual(finals, ["bystander"]);
});

// --- Usage errors -------------------------------------------------------------

test("an invalid yield throws a TypeError into the coroutine at that yield, naming the value and the fix", async () => {
  function* gen(): Coro<number> {
    return 1;
  }
  async function* agen() {}
  const cases: [unknown, RegExp][] = [
    [42, /yielded 42 \(number\)/],
    ["hello", /yielded "hello"/],
    [null, /yielded null.*bare `yield`/],
    [{ a: 1 }, /yielded an object/],
    [Promise.resolve(1), /yielded a Promise.*fromPromise/],
    [gen, /generator function gen.*Call it: `yield f\(\)`/],
    [agen(), /async generator/],
    [[value(1), 5], /element 1 of an array of 2 is 5 \(number\)/],
    [new Set([7]), /element 0 of a Set of 1 is 7/],
  ];
  for (const [bad, message] of cases) {
    const main = function* (): Coro<string> {
      try {
        yield bad;
      } catch (e) {
        assert.ok(e instanceof TypeError, `${String(bad)}: ${e}`);
        assert.match(e.message, message);
        assert.match(e.message, /A coroutine may yield/);
        return "caught";
      }
      return "not thrown";
    };
    assert.equal(await new Loop().run(main()), "caught");
  }
});

test("a gather with a bad element starts none of its coroutines", async () => {
  let started = false;
  function* good(): Coro<void> {
    started = true;
    yield;
  }
  function* main(): Coro<void> {
    try {
      yield [good(), "bad"];
    } catch {
      // expected
    }
    yield;
  }
  await new Loop().run(main());
  assert.equal(started, false);
});

test("an uncaught invalid yield fails the run with that TypeError", async () => {
  function* main(): Coro<void> {
    yield 5;
  }
  await assert.rejects(new Loop().run(main()), TypeError);
});

test("an Event waking a coroutine through `yield ev.wait()` (a child coroutine) keeps FIFO order too", async () => {
  const log: string[] = [];
  const ev = new Event();
  function* waiter(): Coro<void> {
    yield ev.wait();
    log.push("woken");
    yield;
    log.push("follow-up");
  }
  function* spinner(): Coro<void> {
    for (let i = 0; i < 5; i++) {
      log.push(`s${i}`);
      if (i === 0) ev.set();
      yield;
    }
  }
  await new Loop().run(function* (): Coro<void> {
    yield [waiter(), spinner()];
  }());
  const woken = log.indexOf("woken");
  const followUp = log.indexOf("follow-up");
  assert.ok(woken > 0 && followUp === woken + 2, log.join());
  assert.match(log[woken + 1], /^s\d$/); // the ready spinner ran in between
});

test("a coroutine that yields in nested finally blocks while cancelled is closed all the way", async () => {
  const boom = new Error("boom");
  const log: string[] = [];
  function* nested(): Coro<void> {
    try {
      try {
        yield sleep(10_000);
      } finally {
        log.push("inner finally");
        yield; // misbehaves: yields during cancellation
        log.push("never");
      }
    } finally {
      log.push("outer finally");
      yield; // and again
      log.push("never either");
    }
  }
  const warnings = await captureWarnings(async () => {
    await assert.rejects(
      new Loop().run(function* (): Coro<void> {
        yield [nested(), fails(boom)];
      }()),
      (e) => e === boom,
    );
  });
  assert.deepEqual(log, ["inner finally", "outer finally"]);
  assert.equal(warnings.length, 1);
});

test("run options: null is no options; a non-boolean exceptionGroup is a TypeError", async () => {
  assert.equal(await new Loop().run(value(1), null as never), 1);
  await assert.rejects(
    new Loop().run(value(1), { exceptionGroup: "yes" as never }),
    (e: Error) => e instanceof TypeError && /exceptionGroup is "yes"/.test(e.message),
  );
});

test("yielding a plain function hints at calling it", async () => {
  function* main(): Coro<unknown> {
    try {
      yield sleep;
    } catch (e) {
      return (e as Error).message;
    }
  }
  assert.match(await new Loop().run(main()) as string, /function sleep.*call it: `yield f\(\)`/);
});
