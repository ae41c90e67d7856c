/**
 * race(coros): the first result wins; the others are stopped (with their
 * work, as a timeout stops it) before race resumes.
 */
import assert from "node:assert/strict";
import { type Coro, fromPromise, Loop, race, shield, sleep, timeout } from "../mod.ts";
import { after, logged, test } from "./_helper.ts";

test("race: the first to return wins; the others are cancelled with their work", async () => {
  for (const clock of ["virtual", "real"] as const) {
    const log: string[] = [];
    const slow = function* (): Coro<string> {
      try {
        return yield logged("slow's child", 1_000, log);
      } catch (e) {
        log.push(`slow ${(e as Error).name}`);
        throw e;
      }
    };
    const loop = new Loop({ clock });
    const t0 = loop.now();
    const out = await loop.run(race([slow(), after(20, "fast"), logged("slower", 2_000, log)]));
    assert.equal(out, "fast");
    assert.deepEqual(log.toSorted(), [
      "slow CancelledError",
      "slow's child CancelledError",
      "slower CancelledError",
    ]);
    // The losers' own work first, then the losers.
    assert.ok(log.indexOf("slow's child CancelledError") < log.indexOf("slow CancelledError"));
    const took = loop.now() - t0;
    assert.ok(took >= 19 && took < 1_000, `${clock}: took ${took} ms`);
  }
});

test("race: resumes only once the losers have stopped, their shielded cleanup included", async () => {
  const log: string[] = [];
  function* loser(): Coro<string> {
    try {
      yield sleep(1_000);
      return "loser";
    } finally {
      yield* shield(logged("loser's cleanup", 30, log));
    }
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    const winner = yield* race([loser(), after(10, "winner")]);
    log.push(`race resumed at ${loop.now()}`);
    return winner;
  }());
  assert.equal(out, "winner");
  assert.deepEqual(log, ["loser's cleanup done", "race resumed at 40"]);
});

test("race: one that had already finished wins at once; the rest are not started, running ones go on", async () => {
  const loop = new Loop({ clock: "virtual" });
  const done = after(1, "done");
  const doneToo = after(1, "done too");
  await loop.run(function* () {
    yield [done, doneToo];
  }());
  const log: string[] = [];
  let started = false;
  const fresh = function* (): Coro<string> {
    started = true;
    yield;
    return "fresh";
  }();
  const running = logged("running", 50, log);
  const out = await loop.run(function* () {
    yield new Set([running]);
    return yield* race([running, fresh, doneToo, done]);
  }());
  assert.equal(out, "done too"); // the first finished one in array order
  assert.equal(started, false);
  assert.deepEqual(log, ["running done"]); // left alone: the run waited for it
});

test("race: one that had already failed is thrown in, as in a gather", async () => {
  const loop = new Loop({ clock: "virtual" });
  const rejected = new RangeError("rejected");
  const failedAlready = fromPromise(Promise.reject(rejected));
  await loop.run(function* () {
    try {
      yield failedAlready;
    } catch {
      // seen
    }
  }());
  const out = await loop.run(function* () {
    try {
      yield* race([after(5, "late"), failedAlready]);
    } catch (e) {
      return e;
    }
  }());
  assert.equal(out, rejected);
});

test("race: an error before a winner is an error of the run, as in a gather", async () => {
  const boom = new Error("boom");
  const log: string[] = [];
  function* failing(): Coro<never> {
    yield sleep(5);
    throw boom;
  }
  await assert.rejects(
    new Loop({ clock: "virtual" }).run(race([logged("other", 100, log), failing()])),
    (e) => e === boom,
  );
  assert.deepEqual(log, ["other CancelledError"]);
  // A library coroutine's error is the caller's, as in a gather: the others are stopped.
  const rejected = new RangeError("rejected");
  const log2: string[] = [];
  const out = await new Loop().run(function* () {
    try {
      yield* race([
        logged("other", 1_000, log2),
        fromPromise(new Promise((_, reject) => setTimeout(() => reject(rejected), 5))),
      ]);
    } catch (e) {
      return e;
    }
  }());
  assert.equal(out, rejected);
  assert.deepEqual(log2, ["other CancelledError"]);
});

test("race: losers that others also wait on are spared, with their work", async () => {
  const log: string[] = [];
  const shared = logged("shared", 50, log);
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    return yield [
      race([shared, after(10, "fast")]),
      function* (): Coro<string> {
        return yield shared;
      }(),
    ];
  }());
  assert.deepEqual(out, ["fast", "shared"]);
  assert.deepEqual(log, ["shared done"]);
  // Work of a loser that an outside coroutine waits on is spared too.
  const log2: string[] = [];
  const inner = logged("inner", 50, log2);
  function* loser(): Coro<void> {
    yield [inner, logged("own", 1_000, log2)];
  }
  function* outsider(): Coro<string> {
    yield; // let the loser start inner first
    return yield inner;
  }
  const out2 = await new Loop({ clock: "virtual" }).run(function* () {
    return yield [race([loser(), after(10, "fast")]), outsider()];
  }());
  assert.deepEqual(out2, ["fast", "inner"]);
  assert.deepEqual(log2, ["own CancelledError", "inner done"]);
});

test("race: the same coroutine twice, and a race of one", async () => {
  const loop = new Loop({ clock: "virtual" });
  const c = after(5, "same");
  assert.equal(await loop.run(race([c, c])), "same");
  assert.equal(await loop.run(race([after(1, "only")])), "only");
});

test("race: inside a timeout: the timeout stops the whole race", async () => {
  const log: string[] = [];
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(timeout(race([logged("a", 100, log), logged("b", 200, log)]), 10));
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log.toSorted(), ["a CancelledError", "b CancelledError"]);
});

test("race: its cancellations are not listed in a later AggregateError", async () => {
  const later = new Error("later");
  const err = await new Loop({ clock: "virtual" }).run(
    function* () {
      yield* race([
        after(1, 1),
        sleep(100),
        function* () {
          yield [sleep(100), sleep(100)];
        }(),
      ]);
      yield sleep(5);
      throw later;
    }(),
    { exceptionGroup: true },
  ).catch((e) => e);
  assert.ok(err instanceof AggregateError);
  assert.deepEqual(err.errors, [later]);
});

test("race: bad input is an error at the call", () => {
  assert.throws(() => race([]), RangeError);
  assert.throws(() => race([]), /race\(\[\]\).*at least one coroutine/);
  assert.throws(
    () => race([after(1, 1), 5 as unknown as Coro<number>]),
    (e) => e instanceof TypeError && /element 1 .* 5 \(number\), not a coroutine/.test(e.message),
  );
  assert.throws(
    () => race(after(1, 1) as unknown as Coro[]),
    (e) => e instanceof TypeError && /race\(\) takes an array of coroutines/.test(e.message),
  );
  assert.throws(
    () => race([after as unknown as Coro]),
    /element 0 .*the generator function after.*Call it/,
  );
});

test("race: coroutines of different result types give their union", async () => {
  function* num(): Coro<number> {
    yield sleep(5);
    return 1;
  }
  function* str(): Coro<string> {
    yield sleep(1);
    return "a";
  }
  const out = await new Loop({ clock: "virtual" }).run(function* (): Coro<string> {
    const r = yield* race([num(), str()]);
    const union: number | string = r;
    // @ts-expect-error: it may be a number
    const s: string = r;
    return typeof union === "string" ? s : "?";
  }());
  assert.equal(out, "a");
});
