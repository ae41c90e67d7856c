/**
 * cancellable(coro, signal): timeout with an AbortSignal for the deadline.
 * Also: a coroutine that a timeout, cancellable or race cancelled has no
 * result — yielding it later throws a clear CancelledError.
 */
import assert from "node:assert/strict";
import {
  cancellable,
  CancelledError,
  type Coro,
  Event,
  fromPromise,
  join,
  Loop,
  race,
  shield,
  sleep,
  timeout,
  TimeoutError,
} from "../mod.ts";
import { captureWarnings, delay, logged, test } from "./_helper.ts";

/** Aborts `controller` with `reason` after `ms` of the loop's clock. */
function* abortAfter(ms: number, controller: AbortController, reason?: unknown): Coro<void> {
  yield sleep(ms);
  controller.abort(reason);
}

test("cancellable: runs to the end without an abort: [value, true]", async () => {
  const controller = new AbortController();
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(cancellable(logged("work", 5, []), controller.signal));
  assert.deepEqual(out, ["work", true]);
  // An abort after it finished does nothing.
  controller.abort();
  assert.equal(loop.now(), 5);
});

test("cancellable: on abort its work is cancelled, then the coroutine itself, with the reason as cause", async () => {
  const log: string[] = [];
  const causes: unknown[] = [];
  const reason = new Error("user pressed stop");
  function* work(): Coro<string> {
    try {
      const [a] = yield [logged("a", 1_000, log), logged("b", 1_000, log)];
      return a;
    } catch (e) {
      assert.ok(e instanceof CancelledError);
      causes.push(e.cause);
      log.push("work cancelled");
      throw e;
    }
  }
  const controller = new AbortController();
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* (): Coro<unknown> {
    const [r] = yield [cancellable(work(), controller.signal), abortAfter(20, controller, reason)];
    log.push("resumed");
    return r;
  }());
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log, ["a CancelledError", "b CancelledError", "work cancelled", "resumed"]);
  assert.deepEqual(causes, [reason]);
  assert.equal(loop.now(), 20);
});

test("cancellable: a signal aborted already: the coroutine's body never runs", async () => {
  let ran = false;
  function* work(): Coro<number> {
    ran = true;
    yield;
    return 1;
  }
  const controller = new AbortController();
  controller.abort();
  const out = await new Loop().run(cancellable(work(), controller.signal));
  assert.deepEqual(out, [undefined, false]);
  assert.equal(ran, false);
});

test("cancellable: stops one background coroutine from anywhere (a reporter)", async () => {
  for (const clock of ["virtual", "real"] as const) {
    const log: string[] = [];
    const reporter = function* (): Coro<void> {
      try {
        for (let i = 0;; i++) {
          yield sleep(10);
          log.push(`report ${i}`);
        }
      } finally {
        log.push("reporter stopped");
      }
    };
    const main = function* (stop: AbortController): Coro<string> {
      yield new Set([cancellable(reporter(), stop.signal)]);
      yield sleep(35);
      stop.abort();
      yield sleep(30);
      return "main done";
    };
    const stop = new AbortController();
    assert.equal(await new Loop({ clock }).run(main(stop)), "main done");
    if (clock === "virtual") {
      assert.deepEqual(log, ["report 0", "report 1", "report 2", "reporter stopped"]);
    } else {
      // Real time drifts under load: some reports, then it stopped, and no more after.
      assert.equal(log.at(-1), "reporter stopped");
      assert.ok(log.length >= 2 && log.length <= 4, log.join());
    }
  }
});

test("cancellable: an abort from a host timer wakes a sleeping loop", async () => {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 20);
  const t0 = performance.now();
  const out = await new Loop().run(cancellable(new Event().wait(), controller.signal));
  clearTimeout(timer);
  assert.deepEqual(out, [undefined, false]);
  assert.ok(performance.now() - t0 < 1_000);
});

test("cancellable: resumes only once shielded cleanup and the factory's promise have finished", async () => {
  const log: string[] = [];
  function* work(): Coro<void> {
    try {
      yield fromPromise((signal) =>
        delay(10_000, signal).catch(async (e) => {
          await delay(20);
          log.push("promise settled");
          throw e;
        })
      );
    } finally {
      yield* shield(logged("cleanup", 30, log));
    }
  }
  const controller = new AbortController();
  const t0 = performance.now();
  const out = await new Loop().run(function* (): Coro<unknown> {
    const [r] = yield [
      cancellable(
        function* () {
          yield work();
        }(),
        controller.signal,
      ),
      abortAfter(5, controller),
    ];
    log.push("resumed");
    return r;
  }());
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log.toSorted(), ["cleanup done", "promise settled", "resumed"]);
  assert.equal(log.at(-1), "resumed");
  assert.ok(performance.now() - t0 >= 34);
});

test("cancellable: a coroutine that swallows its CancelledError is warned about and closed", async () => {
  const log: string[] = [];
  function* stubborn(): Coro<string> {
    try {
      yield sleep(1_000);
    } catch {
      log.push("swallowed");
    } finally {
      log.push("finally");
    }
    return "never";
  }
  const controller = new AbortController();
  let out: unknown;
  const warnings = await captureWarnings(async () => {
    out = await new Loop({ clock: "virtual" }).run(function* (): Coro<unknown> {
      const [r] = yield [cancellable(stubborn(), controller.signal), abortAfter(1, controller)];
      return r;
    }());
  });
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log, ["swallowed", "finally"]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /did not respond properly to cancellation: it returned/);
});

test("cancellable: spares what an outside coroutine also waits on, and background coroutines", async () => {
  const log: string[] = [];
  const shared = logged("shared", 50, log);
  function* work(): Coro<void> {
    yield new Set([logged("background", 50, log)]);
    yield [shared, logged("own", 1_000, log)];
  }
  function* outsider(): Coro<string> {
    yield; // let work start `shared` first
    return yield shared;
  }
  const controller = new AbortController();
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    return yield [cancellable(work(), controller.signal), outsider(), abortAfter(10, controller)];
  }());
  assert.deepEqual(out, [[undefined, false], "shared", undefined]);
  assert.deepEqual(log.toSorted(), ["background done", "own CancelledError", "shared done"]);
});

test("cancellable: an error before the abort is an error of the run; its cancellations are not listed later", async () => {
  const boom = new Error("boom");
  function* failing(): Coro<never> {
    yield sleep(5);
    throw boom;
  }
  await assert.rejects(
    new Loop().run(cancellable(failing(), new AbortController().signal)),
    (e) => e === boom,
  );
  const later = new Error("later");
  const controller = new AbortController();
  const err = await new Loop({ clock: "virtual" }).run(
    function* () {
      yield [
        cancellable(
          function* () {
            yield [sleep(1_000), sleep(1_000)];
          }(),
          controller.signal,
        ),
        abortAfter(1, controller),
      ];
      yield sleep(5);
      throw later;
    }(),
    { exceptionGroup: true },
  ).catch((e) => e);
  assert.ok(err instanceof AggregateError);
  assert.deepEqual(err.errors, [later]);
});

test("cancellable: an abort from a coroutine inside it takes effect between steps, soon", async () => {
  const controller = new AbortController();
  const log: string[] = [];
  let steps = 0;
  function* selfStopping(): Coro<void> {
    try {
      yield;
      controller.abort(); // its own signal, from its own step
      log.push("after abort");
      for (;;) {
        steps++;
        yield;
      }
    } catch (e) {
      log.push((e as Error).name);
      throw e;
    }
  }
  const t0 = performance.now();
  const out = await new Loop().run(cancellable(selfStopping(), controller.signal));
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log, ["after abort", "CancelledError"]);
  // Like a deadline that is due: at the loop's next clock read.
  assert.ok(performance.now() - t0 < 500 && steps < 100_000, `${steps} steps`);
});

test("cancellable: a bad argument is a TypeError at the call", () => {
  const signal = new AbortController().signal;
  assert.throws(
    () => cancellable(5 as unknown as Coro, signal),
    /cancellable\(\) takes a coroutine/,
  );
  assert.throws(
    () => cancellable(sleep(1), { aborted: false } as unknown as AbortSignal),
    /cancellable\(coro, signal\): the signal is an object .*give an AbortSignal/,
  );
});

test("cancellable: types narrow like timeout's", async () => {
  function* num(): Coro<number> {
    yield;
    return 41;
  }
  const out = await new Loop().run(function* (): Coro<number> {
    const r = yield* cancellable(num(), new AbortController().signal);
    if (r[1]) {
      const n: number = r[0];
      return n + 1;
    }
    // @ts-expect-error: not finished, the value is undefined
    const n: number = r[0];
    return n;
  }());
  assert.equal(out, 42);
});

// --- A coroutine that was stopped has no result ------------------------------------

for (const by of ["timeout", "cancellable", "race"] as const) {
  test(`no result: yielding a coroutine that a ${by} cancelled throws a clear CancelledError`, async () => {
    const reason = new Error("stop");
    const child = logged("child", 1_000, []);
    const log: unknown[] = [];
    function* work(): Coro<void> {
      yield child; // started by work: cancelled with work's work
    }
    const controller = new AbortController();
    const stopping = by === "timeout"
      ? timeout(work(), 10)
      : by === "cancellable"
      ? cancellable(work(), controller.signal)
      : race([work(), sleep(10)]);
    const err = await new Loop({ clock: "virtual" }).run(function* () {
      yield [stopping, abortAfter(10, controller, reason)];
      try {
        yield child;
      } catch (e) {
        log.push("caught");
        return e;
      }
    }());
    assert.deepEqual(log, ["caught"]);
    assert.ok(err instanceof CancelledError);
    assert.match(err.message, new RegExp(`${by}\\(\\)`));
    assert.match(err.message, /has no result/);
    if (by === "timeout") assert.ok(err.cause instanceof TimeoutError);
    if (by === "cancellable") assert.equal(err.cause, reason);
    if (by === "race") assert.equal(err.cause, undefined);
    // Not caught: an error of the run like any other.
    const child2 = logged("child", 1_000, []);
    const controller2 = new AbortController();
    const work2 = function* (): Coro<void> {
      yield child2;
    }();
    const stopping2 = by === "timeout"
      ? timeout(work2, 10)
      : by === "cancellable"
      ? cancellable(work2, controller2.signal)
      : race([work2, sleep(10)]);
    const failed = await new Loop({ clock: "virtual" }).run(function* () {
      yield [stopping2, abortAfter(10, controller2, reason)];
      yield child2;
    }()).catch((e) => e);
    assert.ok(failed instanceof CancelledError && /has no result/.test(failed.message));
  });
}

test("no result: the coroutine a cancellable (or a race) ran itself, yielded later", async () => {
  const reason = new Error("stop");
  const controller = new AbortController();
  const own = logged("own", 1_000, []);
  const loser = logged("loser", 1_000, []);
  const out = await new Loop({ clock: "virtual" }).run(function* () {
    yield [cancellable(own, controller.signal), abortAfter(5, controller, reason)];
    yield* race([loser, sleep(5)]);
    const errors: unknown[] = [];
    for (const c of [own, loser]) {
      try {
        yield c;
      } catch (e) {
        errors.push(e);
      }
    }
    return errors;
  }());
  assert.ok(out[0] instanceof CancelledError && out[0].cause === reason);
  assert.match(out[0].message, /cancellable\(\).*has no result/);
  assert.ok(out[1] instanceof CancelledError && out[1].cause === undefined);
  assert.match(out[1].message, /race\(\).*has no result/);
  // A gather and a run of it say the same.
  const loop = new Loop({ clock: "virtual" });
  const stopped = logged("stopped", 1_000, []);
  await loop.run(timeout(
    function* () {
      yield stopped;
    }(),
    1,
  ));
  await assert.rejects(loop.run(join(stopped)), /timeout\(\).*has no result/);
  await assert.rejects(loop.run(stopped), /timeout\(\).*has no result/);
  await assert.rejects(
    loop.run(function* () {
      yield [sleep(1), stopped];
    }()),
    /timeout\(\).*has no result/,
  );
});
