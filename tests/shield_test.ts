/**
 * shield(): work kept out of a cancellation, and asynchronous cleanup after a
 * CancelledError (`yield* shield(c)` in catch and finally), under a crash, the
 * run's signal, a timeout, a cancellable and a race; on both clocks.
 */
import assert from "node:assert/strict";
import {
  cancellable,
  cancelled,
  CancelledError,
  type Coro,
  Event,
  fromPromise,
  isolate,
  Loop,
  race,
  runInThread,
  shield,
  sleep,
  timeout,
  TimeoutError,
} from "../mod.ts";
import { liveWorkers } from "../src/thread/thread.ts";
import { after, captureWarnings, delay, logged, rejection, test } from "./_helper.ts";

const CLOCKS = ["virtual", "real"] as const;

/** A connection whose `close()` takes `ms` to say goodbye. */
class Connection {
  closed = false;
  constructor(readonly log: string[], readonly ms = 10) {}
  *close(): Coro<string> {
    yield sleep(this.ms);
    this.closed = true;
    this.log.push("closed");
    return "goodbye";
  }
}

/** Uses `conn` until cancelled; its finally waits for `conn.close()` through shield. */
function* query(conn: Connection): Coro<void> {
  try {
    yield sleep(10_000);
  } finally {
    const said: string = yield* shield(conn.close());
    conn.log.push(`finally heard ${said}`);
  }
}

function* failAfter(ms: number, error: Error): Coro<never> {
  yield sleep(ms);
  throw error;
}

// --- As `yield coro` -------------------------------------------------------------

test("shield: waits for its coroutine like yield: result, with yield* and yield", async () => {
  function* answer(): Coro<number> {
    yield sleep(5);
    return 42;
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    const a: number = yield* shield(answer());
    const b = yield shield(answer());
    return [a, b];
  }());
  assert.deepEqual(out, [42, 42]);
  assert.equal(loop.now(), 10);
});

test("shield: a failing coroutine of the user's is an error of the run; a library one's error is the caller's", async () => {
  const boom = new Error("boom");
  function* failing(): Coro<never> {
    yield;
    throw boom;
  }
  const caught: unknown[] = [];
  const err = await rejection(new Loop().run(function* () {
    try {
      yield* shield(failing());
    } catch (e) {
      caught.push(e);
      throw e;
    }
  }()));
  assert.equal(err, boom);
  // The coroutine got the crash's cancellation, not the error itself.
  assert.ok(caught[0] instanceof CancelledError && caught[0].cause === boom);

  const rejected = new RangeError("rejected");
  const out = await new Loop().run(function* () {
    try {
      yield* shield(fromPromise(Promise.reject(rejected)));
    } catch (e) {
      return e;
    }
  }());
  assert.equal(out, rejected);
});

test("shield: a bad argument is a TypeError at the call", () => {
  assert.throws(() => shield(42 as unknown as Coro), /shield\(\) takes a coroutine.*42 \(number\)/);
  assert.throws(
    () => shield((function* () {}) as unknown as Coro),
    /shield\(\) takes a coroutine.*the generator function/,
  );
});

// --- Asynchronous cleanup after a CancelledError ---------------------------------

for (const clock of CLOCKS) {
  test(`shield (${clock}): after a crash, a finally waits for conn.close(); run rejects after it`, async () => {
    const log: string[] = [];
    const conn = new Connection(log);
    const boom = new Error("boom");
    const loop = new Loop({ clock });
    const t0 = loop.now();
    const err = await rejection(loop.run(function* () {
      yield [query(conn), failAfter(5, boom)];
    }()));
    log.push("run rejected");
    assert.equal(err, boom);
    assert.deepEqual(log, ["closed", "finally heard goodbye", "run rejected"]);
    const took = loop.now() - t0;
    assert.ok(took >= 14 && took < 1_000, `took ${took} ms`);
  });

  test(`shield (${clock}): after the run's signal aborts, a finally waits for conn.close()`, async () => {
    const log: string[] = [];
    const conn = new Connection(log);
    function* serve(): Coro<void> {
      try {
        yield new Event().wait(); // until cancelled (a virtual clock has no deadline to jump to)
      } finally {
        yield* shield(conn.close());
      }
    }
    const reason = new Error("stop");
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(reason), 5);
    const err = await rejection(new Loop({ clock }).run(serve(), { signal: controller.signal }));
    clearTimeout(timer);
    assert.equal(err, reason);
    assert.deepEqual(log, ["closed"]);
  });

  test(`shield (${clock}): after a timeout, a finally waits for conn.close(); timeout resumes after it`, async () => {
    const log: string[] = [];
    const loop = new Loop({ clock });
    const t0 = loop.now();
    const out = await loop.run(function* () {
      // The timed-out coroutine's child (CancelledError) and the timed-out
      // coroutine itself (TimeoutError) both close their connection.
      const child = new Connection(log);
      const own = new Connection(log, 20);
      const result = yield* timeout(
        function* (): Coro<void> {
          try {
            yield query(child);
          } finally {
            yield* shield(own.close());
            log.push("own finally done");
          }
        }(),
        30,
      );
      log.push("timeout resumed");
      return [result, child.closed, own.closed];
    }());
    assert.deepEqual(out, [[undefined, false], true, true]);
    assert.deepEqual(log, [
      "closed",
      "finally heard goodbye",
      "closed",
      "own finally done",
      "timeout resumed",
    ]);
    const took = loop.now() - t0;
    assert.ok(took >= 59 && took < 1_000, `took ${took} ms`); // 30, then 10, then 20
  });
}

test("shield: in catch and in finally, several in a row, each with its result", async () => {
  const log: string[] = [];
  function* step(name: string, ms: number): Coro<string> {
    yield sleep(ms);
    log.push(name);
    return name.toUpperCase();
  }
  function* worker(): Coro<void> {
    try {
      yield sleep(1_000);
    } catch (e) {
      assert.ok(e instanceof CancelledError);
      log.push(`catch got ${yield* shield(step("flush", 3))}`);
      log.push(`catch got ${yield* shield(step("sync", 2))}`);
      throw e;
    } finally {
      for (let i = 0; i < 3; i++) log.push(`finally got ${yield* shield(step(`close ${i}`, 1))}`);
    }
  }
  const boom = new Error("boom");
  const loop = new Loop({ clock: "virtual" });
  const err = await rejection(loop.run(function* () {
    yield [worker(), failAfter(1, boom)];
  }()));
  assert.equal(err, boom);
  assert.deepEqual(log, [
    "flush",
    "catch got FLUSH",
    "sync",
    "catch got SYNC",
    "close 0",
    "finally got CLOSE 0",
    "close 1",
    "finally got CLOSE 1",
    "close 2",
    "finally got CLOSE 2",
  ]);
  assert.equal(loop.now(), 9);
});

test("shield: `yield shield(c)`, without the star, works in cleanup too", async () => {
  const log: string[] = [];
  const conn = new Connection(log);
  function* worker(): Coro<void> {
    try {
      yield sleep(1_000);
    } finally {
      log.push(`heard ${yield shield(conn.close())}`);
    }
  }
  const boom = new Error("boom");
  const warnings = await captureWarnings(async () => {
    assert.equal(
      await rejection(new Loop({ clock: "virtual" }).run(function* () {
        yield [worker(), failAfter(1, boom)];
      }())),
      boom,
    );
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(log, ["closed", "heard goodbye"]);
});

test("shield: shielded cleanup uses sleep, fromPromise, child coroutines and runInThread", async () => {
  for (const clock of CLOCKS) {
    const log: string[] = [];
    const child = function* (n: number): Coro<number> {
      yield sleep(2);
      return n * 10;
    };
    const cleanup = function* (): Coro<number> {
      yield sleep(3);
      const a: number = yield* fromPromise(delay(5).then(() => 1));
      const b: number = yield* fromPromise((signal) => delay(2, signal).then(() => 2));
      const [c, d] = yield [child(1), child(2)];
      const e: number = yield* runInThread((x: number) => x + 1, 99);
      return a + b + c + d + e;
    };
    const worker = function* (): Coro<void> {
      try {
        yield new Event().wait();
      } finally {
        log.push(`cleanup gave ${yield* shield(cleanup())}`);
      }
    };
    const boom = new Error("boom");
    const err = await rejection(new Loop({ clock }).run(function* () {
      yield [worker(), failAfter(1, boom)];
    }()));
    assert.equal(err, boom);
    assert.deepEqual(log, ["cleanup gave 133"], clock);
  }
  assert.equal(liveWorkers(), 0);
});

test("shield: yield* shield(timeout(close(), ms)) bounds the cleanup", async () => {
  const log: string[] = [];
  const hangs = new Connection(log, 60_000);
  function* worker(): Coro<void> {
    try {
      yield sleep(1_000);
    } finally {
      const [said, inTime] = yield* shield(timeout(hangs.close(), 1_000));
      log.push(`close ${inTime ? said : "gave up"}`);
    }
  }
  const boom = new Error("boom");
  const loop = new Loop({ clock: "virtual" });
  assert.equal(
    await rejection(loop.run(function* () {
      yield [worker(), failAfter(5, boom)];
    }())),
    boom,
  );
  assert.deepEqual(log, ["close gave up"]);
  assert.equal(loop.now(), 1_005);
});

test("shield: any other yield after a CancelledError warns, names shield, and closes", async () => {
  const log: string[] = [];
  function* stubborn(): Coro<void> {
    try {
      yield sleep(1_000);
    } catch {
      yield sleep(5); // not through a shield
      log.push("never");
    } finally {
      log.push("finally");
    }
  }
  const boom = new Error("boom");
  const warnings = await captureWarnings(async () => {
    assert.equal(
      await rejection(new Loop().run(function* () {
        yield [stubborn(), failAfter(1, boom)];
      }())),
      boom,
    );
  });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /did not respond properly to cancellation/);
  assert.match(warnings[0], /yield\* shield\(\.\.\.\)/);
  assert.deepEqual(log, ["finally"]);
});

// --- Work kept out of a cancellation ---------------------------------------------

test("shield: a crash while yield* shield(commit()) runs lets commit finish first", async () => {
  for (const clock of CLOCKS) {
    const log: string[] = [];
    const commit = function* (): Coro<string> {
      log.push("commit starts");
      yield sleep(20);
      log.push("commit done");
      return "committed";
    };
    const transaction = function* (): Coro<void> {
      try {
        const r = yield* shield(commit());
        log.push(`never: ${r}`);
      } catch (e) {
        log.push(`transaction got ${(e as Error).name} after commit`);
        throw e;
      }
    };
    const boom = new Error("boom");
    const err = await rejection(new Loop({ clock }).run(function* () {
      yield [transaction(), failAfter(5, boom)];
    }()));
    assert.equal(err, boom);
    assert.deepEqual(log, [
      "commit starts",
      "commit done",
      "transaction got CancelledError after commit",
    ], clock);
  }
});

test("shield: `yield shield(c)`, without the star, keeps its caller waiting too (crash, timeout)", async () => {
  for (const how of ["crash", "timeout"] as const) {
    const log: string[] = [];
    const commit = function* (): Coro<string> {
      yield sleep(20);
      log.push("commit done");
      return "ok";
    };
    const transaction = function* (): Coro<void> {
      try {
        log.push(`never: ${yield shield(commit())}`);
      } catch (e) {
        log.push(`transaction got ${(e as Error).name}`);
        throw e;
      }
    };
    const loop = new Loop({ clock: "virtual" });
    if (how === "crash") {
      await rejection(loop.run(function* () {
        yield [transaction(), failAfter(5, new Error("boom"))];
      }()));
    } else {
      assert.deepEqual(await loop.run(timeout(transaction(), 5)), [undefined, false]);
    }
    const got = how === "crash" ? "CancelledError" : "TimeoutError";
    assert.deepEqual(log, ["commit done", `transaction got ${got}`], how);
    assert.equal(loop.now(), 20);
  }
});

test("shield: everything the shielded coroutine waits on when the crash comes is kept too", async () => {
  const log: string[] = [];
  const part = (name: string, ms: number) => logged(name, ms, log);
  const shared = part("shared", 30);
  function* commit(): Coro<string[]> {
    return yield [
      part("a", 20),
      function* (): Coro<string> {
        return yield part("deep", 25);
      }(),
      shared,
    ];
  }
  function* other(): Coro<void> {
    yield shared; // waits on shared work: it is not shielded itself
  }
  const boom = new Error("boom");
  const loop = new Loop({ clock: "virtual" });
  const err = await rejection(loop.run(function* () {
    yield [
      function* () {
        yield* shield(commit());
      }(),
      other(),
      part("unshielded", 1_000),
      failAfter(5, boom),
    ];
  }()));
  assert.equal(err, boom);
  assert.deepEqual(log, ["unshielded CancelledError", "a done", "deep done", "shared done"]);
  assert.equal(loop.now(), 30);
});

test("shield: a coroutine it starts waiting on only after the cancellation may be cancelled already", async () => {
  const log: string[] = [];
  const late = function* (): Coro<string> {
    try {
      yield sleep(100);
      return "late";
    } catch (e) {
      log.push(`late ${(e as Error).name}`);
      throw e;
    }
  }();
  function* user(): Coro<void> {
    try {
      yield sleep(1_000);
    } finally {
      try {
        yield* shield(function* () {
          return yield late; // cancelled by the crash, which came first
        }());
      } catch (e) {
        log.push(`user got ${(e as Error).name}`);
      }
    }
  }
  const boom = new Error("boom");
  assert.equal(
    await rejection(new Loop({ clock: "virtual" }).run(function* () {
      yield new Set([late]);
      yield [user(), failAfter(1, boom)];
    }())),
    boom,
  );
  assert.deepEqual(log, ["late CancelledError", "user got CancelledError"]);
});

test("shield: run settles only after the shielded work has ended", async () => {
  const log: string[] = [];
  const conn = new Connection(log, 40);
  const boom = new Error("boom");
  const t0 = performance.now();
  const err = await rejection(new Loop().run(function* () {
    yield [query(conn), failAfter(1, boom)];
  }()));
  assert.equal(err, boom);
  assert.ok(conn.closed);
  assert.ok(performance.now() - t0 >= 39);
});

test("shield: an error the shielded work throws during a crash is an other error, once; its waiters get a CancelledError with it as cause", async () => {
  const boom = new Error("boom");
  const broken = new Error("close failed");
  const caught: unknown[] = [];
  function* close(): Coro<void> {
    yield sleep(5);
    throw broken;
  }
  function* closeAll(): Coro<void> {
    try {
      yield [close(), sleep(1_000)];
    } catch (e) {
      caught.push(e);
      throw e;
    }
  }
  function* worker(): Coro<void> {
    try {
      yield sleep(1_000);
    } finally {
      try {
        yield* shield(closeAll());
      } catch (e) {
        caught.push(e);
        // deno-lint-ignore no-unsafe-finally
        throw e;
      }
    }
  }
  const loop = new Loop({ clock: "virtual" });
  const err = await rejection(loop.run(
    function* () {
      yield [worker(), failAfter(1, boom)];
    }(),
    { exceptionGroup: true },
  ));
  assert.ok(err instanceof AggregateError);
  assert.equal(err.errors[0], boom);
  assert.equal(err.errors.filter((e) => e === broken).length, 1, "recorded once");
  assert.equal(err.errors[1], broken);
  assert.ok(err.errors.slice(2).every((e) => e instanceof CancelledError));
  // closeAll (waiting on close) and then worker (in its shield) got CancelledErrors caused by it.
  assert.equal(caught.length, 2);
  for (const e of caught) assert.ok(e instanceof CancelledError && e.cause === broken);
  // The sleep gathered beside the failed close stopped with closeAll: no leftover deadline.
  assert.equal(loop.now(), 6);
  // The default: the other error after the first.
  const again = await rejection(new Loop({ clock: "virtual" }).run(function* () {
    yield [worker(), failAfter(1, boom)];
  }()));
  assert.ok(again instanceof AggregateError);
  assert.deepEqual(again.errors, [boom, broken]);
});

for (const how of ["timeout", "cancellable", "race"] as const) {
  test(`shield: an error the shielded work throws under a ${how} fails the run`, async () => {
    const broken = new Error("close failed");
    function* worker(): Coro<string> {
      try {
        yield sleep(1_000);
        return "done";
      } finally {
        yield* shield(failAfter(5, broken));
      }
    }
    const controller = new AbortController();
    const stopping: Coro<unknown> = how === "timeout"
      ? timeout(worker(), 10)
      : how === "cancellable"
      ? cancellable(worker(), controller.signal)
      : race([worker(), sleep(10)]);
    const err = await rejection(new Loop({ clock: "virtual" }).run(function* () {
      yield [
        stopping,
        function* () {
          yield sleep(10);
          controller.abort();
        }(),
      ];
    }()));
    assert.equal(err, broken);
  });
}

test("shield: background coroutines started inside a shield during a crash stop when it ends", async () => {
  const log: string[] = [];
  function* ticker(name: string): Coro<void> {
    try {
      for (let i = 0;; i++) {
        yield sleep(10);
        log.push(`${name} tick ${i}`);
      }
    } catch (e) {
      log.push(`${name} ${(e as Error).name}`);
      throw e;
    }
  }
  function* cleanup(): Coro<void> {
    yield new Set([ticker("inner")]);
    yield sleep(25);
    log.push("cleanup done");
  }
  function* other(): Coro<void> {
    try {
      yield sleep(1_000);
    } finally {
      yield* shield(function* () {
        yield new Set([ticker("other")]);
        yield sleep(45);
        log.push("other cleanup done");
      }());
    }
  }
  function* worker(): Coro<void> {
    try {
      yield sleep(1_000);
    } finally {
      yield* shield(cleanup());
      log.push("worker finally done");
    }
  }
  const boom = new Error("boom");
  const loop = new Loop({ clock: "virtual" });
  assert.equal(
    await rejection(loop.run(function* () {
      yield [worker(), other(), failAfter(5, boom)];
    }())),
    boom,
  );
  // inner ticks twice and stops when its shield ends (at 30); other's ticker,
  // in another shield, ticks on until that one ends (at 50).
  assert.deepEqual(log, [
    "inner tick 0",
    "other tick 0",
    "inner tick 1",
    "other tick 1",
    "cleanup done",
    "inner CancelledError",
    "worker finally done",
    "other tick 2",
    "other tick 3",
    "other cleanup done",
    "other CancelledError",
  ]);
  assert.equal(loop.now(), 50);
});

test("shield: a timeout around the caller waits for the shield and then throws its TimeoutError in", async () => {
  const log: string[] = [];
  function* commit(): Coro<string> {
    yield sleep(50);
    log.push("commit done");
    return "ok";
  }
  function* work(): Coro<string> {
    try {
      return yield* shield(commit());
    } catch (e) {
      log.push(`work got ${(e as Error).name}`);
      throw e;
    }
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(timeout(work(), 10));
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log, ["commit done", "work got TimeoutError"]);
  assert.equal(loop.now(), 50); // not an upper bound any more: it waited for the shield
});

test("shield: a cycle through a shield is still a cycle", async () => {
  const coros: Record<string, Coro<void>> = {};
  coros.self = function* (): Coro<void> {
    yield* shield(coros.self); // waits, through a shield, on itself
  }();
  const err = await rejection(new Loop().run(coros.self));
  assert.ok(err instanceof Error && /cycle/i.test(err.message), String(err));

  // Two coroutines shielding each other, started in a gather.
  coros.a = function* (): Coro<void> {
    yield;
    yield* shield(coros.b);
  }();
  coros.b = function* (): Coro<void> {
    yield;
    yield* shield(coros.a);
  }();
  const err2 = await rejection(new Loop().run(function* () {
    yield [coros.a, coros.b];
  }()));
  assert.ok(err2 instanceof Error && /cycle/i.test(err2.message), String(err2));
});

test("shield: the CancelledError a coroutine re-throws after its cleanup is listed with exceptionGroup: true", async () => {
  const boom = new Error("boom");
  const conn = new Connection([]);
  let seen: unknown;
  function* worker(): Coro<void> {
    try {
      yield* query(conn);
    } catch (e) {
      seen = e;
      throw e;
    }
  }
  const err = await rejection(new Loop({ clock: "virtual" }).run(
    function* () {
      yield [worker(), failAfter(1, boom)];
    }(),
    { exceptionGroup: true },
  ));
  assert.ok(err instanceof AggregateError);
  assert.equal(err.errors[0], boom);
  assert.ok(seen instanceof CancelledError && err.errors.includes(seen));
  assert.ok(err.errors.slice(1).every((e) => e instanceof CancelledError));
});

test("shield: a timeout's coroutine that catches its TimeoutError, cleans up through a shield and goes on", async () => {
  const log: string[] = [];
  function* stubborn(): Coro<string> {
    try {
      yield sleep(100);
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
      yield* shield(sleep(5));
      log.push("cleaned up");
    }
    yield sleep(100); // goes on, in the background
    log.push("went on");
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
  assert.deepEqual(log, ["cleaned up", "timeout resumed at 15", "went on"]);
  assert.equal(await loop.run(c), "finished anyway");
});

// --- Combinations -----------------------------------------------------------------

/** Waits until cancelled, then cleans up for `ms` through a shield, and logs it. */
function* cleaner(name: string, ms: number, log: string[]): Coro<void> {
  try {
    yield sleep(10_000);
  } finally {
    yield* shield(sleep(ms));
    log.push(`${name} cleaned`);
  }
}

test("shield: a crash while a timeout waits for shielded cleanup: the run waits for it too", async () => {
  const log: string[] = [];
  const boom = new Error("boom");
  const loop = new Loop({ clock: "virtual" });
  assert.equal(
    await rejection(loop.run(function* () {
      yield [
        timeout(
          function* () {
            yield cleaner("work", 50, log);
          }(),
          10,
        ),
        failAfter(20, boom),
      ];
    }())),
    boom,
  );
  assert.deepEqual(log, ["work cleaned"]);
  assert.equal(loop.now(), 60);
});

test("shield: nested timeouts around shielded cleanup; a race's loser cleaning up when the run crashes", async () => {
  const log: string[] = [];
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(timeout(
    function* (): Coro<unknown> {
      return yield timeout(
        function* () {
          yield cleaner("inner", 30, log);
        }(),
        10,
      );
    }(),
    15,
  ));
  assert.deepEqual(out, [undefined, false]);
  assert.deepEqual(log, ["inner cleaned"]);
  assert.equal(loop.now(), 40);

  const log2: string[] = [];
  const boom = new Error("boom");
  const loop2 = new Loop({ clock: "virtual" });
  assert.equal(
    await rejection(loop2.run(function* () {
      yield [race([cleaner("loser", 30, log2), after(5, 1)]), failAfter(10, boom)];
    }())),
    boom,
  );
  assert.deepEqual(log2, ["loser cleaned"]);
  assert.equal(loop2.now(), 35);
});

test("shield: cleanup that waits for another cancelled coroutine's cleanup, or a stopped one's", async () => {
  const log: string[] = [];
  const other = cleaner("other", 40, log);
  const boom = new Error("boom");
  assert.equal(
    await rejection(new Loop({ clock: "virtual" }).run(function* () {
      yield [
        other,
        function* () {
          try {
            yield sleep(1_000);
          } finally {
            try {
              yield* shield(other);
            } catch (e) {
              log.push(`waited for other: ${(e as Error).name}`);
            }
          }
        }(),
        failAfter(1, boom),
      ];
    }())),
    boom,
  );
  assert.deepEqual(log, ["other cleaned", "waited for other: CancelledError"]);

  // A stopped coroutine still cleaning up: waiting on it gives, once it ends, that it has no result.
  const log2: string[] = [];
  const victim = cleaner("victim", 30, log2);
  await new Loop({ clock: "virtual" }).run(function* () {
    yield [
      timeout(
        function* () {
          yield victim;
        }(),
        10,
      ),
      function* () {
        yield sleep(15);
        try {
          yield* shield(victim);
        } catch (e) {
          log2.push(`victim: ${(e as Error).message}`);
        }
      }(),
    ];
  }());
  assert.equal(log2[0], "victim cleaned");
  assert.match(log2[1], /^victim: cancelled by timeout\(\).*has no result/);
});

test("shield: shielded cleanup with an isolate, an Event set by another finally, a cancellable aborted meanwhile", async () => {
  const log: string[] = [];
  const ready = new Event();
  const stop = new AbortController();
  const boom = new Error("boom");
  assert.equal(
    await rejection(new Loop({ clock: "virtual" }).run(function* () {
      yield [
        function* () {
          try {
            yield sleep(1_000);
          } finally {
            const [v, ok] = yield* shield(isolate(after(5, "isolated")));
            log.push(`isolate: ${v} ${ok}`);
          }
        }(),
        function* () {
          try {
            yield sleep(1_000);
          } finally {
            ready.set(); // synchronous cleanup of a cancelled coroutine
            stop.abort();
          }
        }(),
        function* () {
          try {
            yield sleep(1_000);
          } finally {
            yield* shield(ready.wait());
            log.push(
              `woken; cancellable gave ${
                JSON.stringify(yield* shield(cancellable(sleep(100), stop.signal)))
              }`,
            );
          }
        }(),
        failAfter(1, boom),
      ];
    }())),
    boom,
  );
  assert.deepEqual(log.toSorted(), [
    "isolate: isolated true",
    "woken; cancellable gave [null,false]",
  ]);
});

test("shield: a library coroutine's error in a shield whose caller's cancellation waits is not lost", async () => {
  const rejected = new Error("rejected");
  const boom = new Error("boom");
  const err = await rejection(new Loop().run(function* () {
    yield [
      function* () {
        yield* shield(fromPromise(delay(20).then(() => Promise.reject(rejected))));
      }(),
      failAfter(5, boom),
    ];
  }()));
  assert.ok(err instanceof AggregateError);
  assert.deepEqual(err.errors, [boom, rejected]);
});

test("shield: a cancellable stops a worker that looks at cancelled(), and resumes once it has stopped", async () => {
  const stop = new AbortController();
  const t0 = performance.now();
  const [out] = await new Loop().run(function* (): Coro<unknown[]> {
    return yield [
      cancellable(
        runInThread(() => {
          const end = Date.now() + 5_000;
          while (Date.now() < end) if (cancelled()) return "stopped";
          return "ran";
        }),
        stop.signal,
      ),
      function* () {
        yield sleep(100);
        stop.abort();
      }(),
    ];
  }());
  assert.deepEqual(out, [undefined, false]);
  assert.ok(performance.now() - t0 < 4_000);
  assert.equal(liveWorkers(), 0);
});

test("shield: on the virtual clock, cleanup that a deadline starts while a promise holds the clock does not stall", async () => {
  // The timeout fires while the clock is held by the promise; stopping its
  // coroutine lets the promise go and starts a shielded sleep: the clock must
  // jump to it rather than wait for a wake-up that never comes.
  const pending = new Promise<never>(() => {});
  function* work(): Coro<void> {
    try {
      yield fromPromise(pending);
    } finally {
      yield* shield(sleep(4));
    }
  }
  const loop = new Loop({ clock: "virtual" });
  const t0 = performance.now();
  assert.deepEqual(await loop.run(timeout(work(), 0)), [undefined, false]);
  assert.equal(loop.now(), 4);
  assert.ok(performance.now() - t0 < 1_000);
});

/**
 * A random program of timeouts, cancellables, races, shields, background
 * coroutines, events, promises and failures (a deterministic generator, so a
 * failure names its seed). Every coroutine counts its start and its finally,
 * and a third of the finally blocks clean up through a shield.
 */
function randomProgram(
  seed: number,
): { root: Coro<number>; counts: { started: number; ended: number } } {
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];
  const counts = { started: 0, ended: 0 };
  const controllers: AbortController[] = [];
  const events = [new Event(), new Event()];
  const ms = (max: number) => Math.floor(random() * max);
  function* node(depth: number): Coro<number> {
    counts.started++;
    try {
      const leaves = ["sleep", "throw", "promise", "event"];
      switch (
        depth <= 0 ? pick(leaves) : pick([
          ...leaves,
          "gather",
          "timeout",
          "shield",
          "cancellable",
          "race",
          "background",
          "set",
          "abort",
          "catch",
        ])
      ) {
        case "sleep":
          yield sleep(ms(20));
          return 1;
        case "throw":
          yield sleep(ms(20));
          if (random() < 0.3) throw new Error("boom");
          return 2;
        case "promise":
          return yield* fromPromise((signal) => delay(ms(3), signal).then(() => 3));
        case "event":
          yield pick(events).wait(ms(30));
          return 4;
        case "gather":
          return (yield [node(depth - 1), node(depth - 1)]).length;
        case "timeout":
          return (yield* timeout(node(depth - 1), ms(25)))[0] ?? 0;
        case "shield":
          return yield* shield(node(depth - 1));
        case "cancellable": {
          const controller = new AbortController();
          controllers.push(controller);
          return (yield* cancellable(node(depth - 1), controller.signal))[0] ?? 0;
        }
        case "race":
          return yield* race([node(depth - 1), node(depth - 1)]);
        case "background":
          yield new Set([node(depth - 1)]);
          yield sleep(5);
          return 6;
        case "set":
          yield sleep(ms(10));
          pick(events).set();
          return 7;
        case "abort":
          yield sleep(ms(10));
          if (controllers.length > 0) pick(controllers).abort();
          return 8;
        default: // "catch": catches its cancellation, cleans up, re-throws it
          try {
            yield sleep(ms(30));
          } catch (e) {
            if (!(e instanceof CancelledError)) throw e;
            yield* shield(sleep(3));
            throw e;
          }
          return 9;
      }
    } finally {
      counts.ended++;
      if (random() < 0.3) yield* shield(sleep(ms(5)));
    }
  }
  return { root: node(4), counts };
}

test("shield: random mixes with timeouts, cancellables, races and crashes settle and run every finally", async () => {
  for (const clock of CLOCKS) {
    const programs = clock === "virtual" ? 300 : 40;
    for (let seed = 1; seed <= programs; seed++) {
      const { root, counts } = randomProgram(seed * 7919);
      const settled = new Loop({ clock }).run(root).then(() => "returned", (e) => e);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const hung = new Promise((resolve) => timer = setTimeout(() => resolve("hung"), 5_000));
      const outcome = await Promise.race([settled, hung]);
      clearTimeout(timer);
      assert.notEqual(outcome, "hung", `${clock} seed ${seed * 7919} did not settle`);
      if (outcome !== "returned") {
        const errors = outcome instanceof AggregateError ? outcome.errors : [outcome];
        for (const e of errors) {
          assert.ok(
            e instanceof Error && e.message === "boom",
            `${clock} seed ${seed * 7919}: ${e}`,
          );
        }
      }
      assert.equal(
        counts.ended,
        counts.started,
        `${clock} seed ${seed * 7919}: a finally did not run`,
      );
    }
  }
});
