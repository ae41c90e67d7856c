/**
 * Threads, as they must work on every runtime that has them (Deno, Bun,
 * Node, cross-origin isolated browsers): no Deno API here, so that the
 * portable harness can run this file anywhere. Every test also checks that no
 * worker outlives it.
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
import { callOn, gathering } from "../src/thread/call.ts";
import { targetOf, type ThreadFn } from "../src/thread/function.ts";
import { Pool } from "../src/thread/pool.ts";
import { PROTOCOL, type Protocol } from "../src/thread/protocol.ts";
import { liveWorkers } from "../src/thread/thread.ts";
import { workerSource } from "../src/thread/worker.ts";
import { type Need, rejection, test } from "./_helper.ts";

/**
 * A test that needs workers (so not on workerd) and also fails if a worker is
 * still alive at its end.
 */
function threadTest(name: string, fn: () => Promise<void>, needs: Need[] = ["threads"]): void {
  test(name, needs, async () => {
    await fn();
    assert.equal(liveWorkers(), 0, "a worker outlived the test");
  });
}

/** `promise`, or a rejection if it has not settled in 10 s: a hang fails, and says so. */
async function withWatchdog<T>(promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("hang: not settled within 10 s")), 10_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// The protocol is defined once: both sides follow a renumbered one.

/**
 * PROTOCOL with every number moved: each group's numbers reversed and raised
 * by 10, so that none keeps its place or its value anywhere. A number written
 * by hand on either side would now mean something else, or nothing.
 */
function renumbered(): Protocol {
  const copy = structuredClone(PROTOCOL);
  for (const group of Object.values(copy)) {
    if (typeof group !== "object") continue;
    const numbers = group as Record<string, number>;
    const names = Object.keys(numbers);
    const values = names.map((name) => numbers[name] + 10).reverse();
    names.forEach((name, i) => numbers[name] = values[i]);
  }
  copy.DEFINE = -1; // still no call's id
  copy.refs = 4; // and few refs, so that the worker forgets and is told again
  return copy;
}

/** A coroutine that runs `fn(...args)` on `pool`, as `ThreadPool.runInThread` does. */
function on<A extends unknown[], R>(pool: Pool, fn: ThreadFn<A, R>, ...args: A): Coro<R> {
  return callOn(pool, targetOf("test", fn), args, "test");
}

threadTest("a renumbered protocol reaches the worker's source text", () => {
  const protocol = renumbered();
  assert.notDeepEqual(protocol, PROTOCOL);
  for (const kind of ["web", "node"] as const) {
    const source = workerSource(protocol, kind);
    assert.ok(source.includes(JSON.stringify(protocol)), `${kind}: the numbers are not in it`);
  }
  return Promise.resolve();
});

threadTest(
  "calls run through a renumbered protocol: every message, answer and slot state",
  async () => {
    const protocol = renumbered();
    const pool = new Pool(2, {}, "A renumbered pool", protocol);
    const module = threadFunction<(a: number, b: number) => number>(
      "data:text/javascript,export function add(a, b) { return a + b; }",
      "add",
    );
    const block = (ms: number) => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      return ms;
    };
    const ran = new Int32Array(new SharedArrayBuffer(4));
    const out: Record<string, unknown> = {};
    function* calls(): Coro<void> {
      // CALLS with definitions (SOURCE, MODULE, more functions than refs); ANSWERS: DONE.
      const times = Array.from(
        { length: 12 },
        (_, i) => new Function("x", `return x * ${i};`) as (x: number) => number,
      );
      out.products = yield gathering(times.map((fn) => on(pool, fn, 3)));
      out.again = yield gathering(times.map((fn) => on(pool, fn, 2)));
      out.sum = yield* on(pool, module, 2, 3);
      // FAILED.
      try {
        yield* on(pool, () => {
          throw new RangeError("thrown on the worker");
        });
      } catch (error) {
        out.failure = error;
      }
      // A result that cannot be cloned: the worker turns its DONE into a FAILED.
      try {
        yield* on(pool, () => () => 1);
      } catch (error) {
        out.unsendable = error;
      }
      // Slots QUEUED → SKIP: with both workers busy, the third call is sent
      // ahead to one of them and withdrawn by its timeout; it never runs.
      const [, , [, withdrawnInTime], last] = yield [
        on(pool, block, 150),
        on(pool, block, 150),
        timeout(on(pool, (ran: Int32Array) => Atomics.add(ran, 0, 1), ran), 20),
        on(pool, () => "last"),
      ];
      out.withdrawnInTime = withdrawnInTime;
      out.last = last;
      // STARTED → CANCEL (cancelled() true), STOP and STOPPED.
      [, out.pollingInTime] = yield* timeout(
        on(pool, () => {
          while (!cancelled()) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
          return "saw cancelled()";
        }),
        50,
      );
      const stopAt = performance.now();
      [, out.awaitingInTime] = yield* timeout(
        on(pool, () => new Promise<void>((resolve) => setTimeout(resolve, 10_000))),
        50,
      );
      out.stopMs = performance.now() - stopAt;
      // CLOSING: the task ends its worker (self.close(), or process.exit() on Node).
      try {
        yield* on(pool, () => {
          const scope = globalThis as unknown as { close?: () => void; process: { exit(): void } };
          if (typeof scope.close === "function") scope.close();
          else scope.process.exit();
        });
      } catch (error) {
        out.closed = error;
      }
      // STRAY: an error the call left behind, raised after it returned; one
      // that cannot be cloned whole, so it goes as text.
      yield* on(pool, () => {
        setTimeout(() => {
          throw Object.assign(new EvalError("left behind"), { notCloneable: () => 1 });
        }, 20);
      });
      yield sleep(200);
    }
    const errors: unknown[][] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => errors.push(args);
    try {
      await withWatchdog(new Loop().run(calls()));
    } finally {
      console.error = consoleError;
      pool.close();
    }
    assert.deepEqual(out.products, Array.from({ length: 12 }, (_, i) => 3 * i));
    assert.deepEqual(out.again, Array.from({ length: 12 }, (_, i) => 2 * i));
    assert.equal(out.sum, 5);
    assert.ok(out.failure instanceof RangeError);
    assert.equal(out.failure.message, "thrown on the worker");
    assert.ok(out.unsendable instanceof TypeError);
    assert.match(out.unsendable.message, /the result \(a function\) cannot be sent back/);
    assert.equal(out.withdrawnInTime, false);
    assert.equal(Atomics.load(ran, 0), 0, "the withdrawn call ran");
    assert.equal(out.last, "last");
    assert.equal(out.pollingInTime, false);
    assert.equal(out.awaitingInTime, false);
    assert.ok((out.stopMs as number) < 2_000, `stopping an awaiting call took ${out.stopMs} ms`);
    assert.match(String(out.closed), /closed itself/);
    assert.equal(errors.length, 1, "one stray error was reported");
    assert.match(String(errors[0][0]), /after its call had returned/);
    assert.ok(errors[0][1] instanceof EvalError);
  },
);

// ---------------------------------------------------------------------------
// The public face, on this runtime's workers.

threadTest("runInThread runs plain and async functions on workers, in parallel", async () => {
  // Each blocking call says when it blocked (wall-clock time, shared by all
  // threads): in parallel, each began before the other ended. No bound on the
  // total, which a loaded machine can stretch.
  const block = (ms: number, x: number) => {
    const began = performance.timeOrigin + performance.now();
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    return [x * x, began, performance.timeOrigin + performance.now()];
  };
  const [blocked, later, onWorker] = await new Loop().run(function* (): Coro<unknown[]> {
    return yield [
      gathering([runInThread(block, 200, 2), runInThread(block, 200, 3)]),
      runInThread(async (s: string) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return s.toUpperCase();
      }, "ok"),
      runInThread(() => typeof (globalThis as { document?: unknown }).document),
    ];
  }());
  const [[a, aBegan, aEnded], [b, bBegan, bEnded]] = blocked as number[][];
  assert.deepEqual([a, b], [4, 9]);
  assert.equal(later, "OK");
  assert.equal(onWorker, "undefined");
  assert.ok(aBegan < bEnded && bBegan < aEnded, "the two blocking calls ran one after the other");
});

threadTest(
  "cancelled() turns true in a busy call whose coroutine was cancelled; run waits for it",
  async () => {
    const stopped = new Int32Array(new SharedArrayBuffer(4));
    const error = await rejection(new Loop().run(function* (): Coro<void> {
      yield [
        runInThread((stopped: Int32Array) => {
          const until = Date.now() + 5_000;
          while (Date.now() < until) {
            if (cancelled()) {
              Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
              Atomics.store(stopped, 0, 1);
              return "stopped";
            }
          }
          return "ran out";
        }, stopped),
        function* (): Coro<never> {
          yield sleep(100);
          throw new Error("stop");
        }(),
      ];
    }()));
    assert.equal((error as Error).message, "stop");
    assert.equal(Atomics.load(stopped, 0), 1, "the run settled before the busy call returned");
    assert.equal(cancelled(), false, "cancelled() is false outside workers");
  },
);

threadTest("a ThreadPool keeps the order of map; close() fails its calls", async () => {
  const pool = new ThreadPool(2); // not `using`: Node 22 does not have it
  const out = await new Loop().run(function* (): Coro<unknown[]> {
    const doubled = yield* pool.map((x: number) => 2 * x, [1, 2, 3, 4, 5]);
    const running = pool.runInThread(() => new Promise(() => {}));
    const closer = function* (): Coro<void> {
      yield sleep(50);
      pool.close();
    };
    let closed: unknown;
    try {
      yield [running, closer()];
    } catch (error) {
      closed = error;
    }
    return [doubled, closed];
  }());
  assert.deepEqual(out[0], [2, 4, 6, 8, 10]);
  assert.match(String(out[1]), /ThreadPool\(2\) is closed/);
});

threadTest(
  "errors thrown on a worker come back with their name, message, stack, cause and fields",
  async () => {
    const [parse, withCause, plain] = await new Loop().run(function* (): Coro<unknown[]> {
      return yield [
        attempt(runInThread(function parseConfig() {
          const error = new SyntaxError("line 3", { cause: new RangeError("inner") });
          throw Object.assign(error, { code: "E_LINE" });
        })),
        attempt(runInThread(async () => {
          await null;
          throw new TypeError("later");
        })),
        attempt(runInThread(() => {
          throw 42; // not an Error: passed through as it is
        })),
      ];
    }());
    assert.ok(parse instanceof SyntaxError);
    assert.equal(parse.message, "line 3");
    assert.match(String(parse.stack), /^SyntaxError: line 3\n[^]*parseConfig/);
    assert.doesNotMatch(String(parse.stack), /tinyio-thread-worker|blob:|node:internal/);
    assert.ok(parse.cause instanceof RangeError && parse.cause.message === "inner");
    assert.equal((parse as SyntaxError & { code: string }).code, "E_LINE");
    assert.ok(withCause instanceof TypeError && withCause.message === "later");
    assert.equal(plain, 42);
  },
);

/** Waits for `coro`; resumes with its error instead if it fails (a cancellation goes on). */
function* attempt(coro: Coro<unknown>): Coro<unknown> {
  try {
    return yield* coro;
  } catch (error) {
    if (error instanceof CancelledError) throw error;
    return error;
  }
}

// ---------------------------------------------------------------------------
// Where threads cannot run: a clear error thrown into the coroutine, at once,
// with nothing left held (a hold left behind would keep the run from settling:
// the watchdog would say so). The globals of such runtimes are simulated.

/** Runs `fn` with globals replaced (undefined: removed), then puts them back as they were. */
async function withGlobals(
  replacements: Record<string, unknown>,
  fn: () => void | Promise<void>,
): Promise<void> {
  const scope = globalThis as Record<string, unknown>;
  const saved = new Map<string, PropertyDescriptor | undefined>();
  for (const [name, value] of Object.entries(replacements)) {
    saved.set(name, Object.getOwnPropertyDescriptor(globalThis, name));
    if (value === undefined) delete scope[name];
    else Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
  try {
    await fn();
  } finally {
    for (const [name, descriptor] of saved) {
      if (descriptor === undefined) delete scope[name];
      else Object.defineProperty(globalThis, name, descriptor);
    }
  }
}

threadTest(
  "on a page that is not cross-origin isolated, calls fail at once naming the COOP and COEP headers",
  async () => {
    const start = performance.now();
    let errors: unknown[] = [];
    await withGlobals({ SharedArrayBuffer: undefined, crossOriginIsolated: false }, async () => {
      const pool = new ThreadPool(2);
      try {
        errors = await withWatchdog(new Loop().run(function* (): Coro<unknown[]> {
          return yield [
            attempt(runInThread(() => 1)),
            attempt(pool.runInThread(() => 2)),
            attempt(pool.runInThread(() => 3)),
          ];
        }()));
      } finally {
        pool.close();
      }
    });
    assert.ok(performance.now() - start < 1_000, "the calls did not fail within a second");
    assert.equal(errors.length, 3);
    for (const error of errors) {
      assert.ok(error instanceof Error, String(error));
      assert.match(error.message, /SharedArrayBuffer/);
      assert.match(error.message, /`Cross-Origin-Opener-Policy: same-origin`/);
      assert.match(error.message, /`Cross-Origin-Embedder-Policy: require-corp`/);
    }
    assert.match((errors[0] as Error).message, /^runInThread\(\): /);
    assert.match((errors[2] as Error).message, /^ThreadPool\.runInThread\(\): /);
  },
);

threadTest(
  "where there are no workers (Cloudflare Workers), calls fail at once saying so",
  async () => {
    // No Worker, and not Node (whose workers are node:worker_threads).
    let error: unknown;
    await withGlobals({ Worker: undefined, process: undefined }, async () => {
      error = await withWatchdog(new Loop().run(attempt(runInThread(() => 1))));
    });
    assert.ok(error instanceof Error);
    assert.match(error.message, /^runInThread\(\): this runtime has no Web Workers/);
  },
  [], // everywhere: it takes the workers away itself
);

threadTest(
  "a worker that cannot start fails its calls; one that dies before it speaks is not replaced for every call",
  async () => {
    let made = 0;
    class ThrowingWorker {
      constructor() {
        made++;
        throw new Error("refused by the page's policy");
      }
    }
    class DyingWorker {
      onerror: ((event: { message: string; preventDefault(): void }) => void) | null = null;
      constructor() {
        made++;
        setTimeout(
          () => this.onerror?.({ message: "its module is blocked", preventDefault() {} }),
          5,
        );
      }
      postMessage() {}
      terminate() {}
    }
    let refused: unknown;
    await withGlobals({ Worker: ThrowingWorker, process: undefined }, async () => {
      refused = await withWatchdog(new Loop().run(
        gathering([attempt(runInThread(() => 1)), attempt(runInThread(() => 2))]),
      ));
    });
    assert.equal(made, 2);
    assert.deepEqual((refused as Error[]).map((e) => e.message), [
      "refused by the page's policy",
      "refused by the page's policy",
    ]);
    made = 0;
    let died: unknown;
    await withGlobals({ Worker: DyingWorker, process: undefined }, async () => {
      const pool = new ThreadPool(2);
      try {
        const calls = [1, 2, 3, 4, 5, 6].map((x) => attempt(pool.runInThread(() => x)));
        died = await withWatchdog(new Loop().run(gathering(calls)));
      } finally {
        pool.close();
      }
    });
    assert.equal(made, 2, "a new worker was started for calls of a worker that never started");
    assert.deepEqual(
      (died as Error[]).map((e) => e.message),
      Array(6).fill("A thread's worker failed: its module is blocked"),
    );
  },
);

test('off Deno, a ThreadPool\'s permissions are an Error; "inherit" is what there is', async () => {
  await withGlobals({ Deno: undefined }, () => {
    for (const permissions of ["none", { read: true }] as const) {
      assert.throws(
        () => new ThreadPool(1, { permissions }),
        (e) => e instanceof Error && /this runtime is not Deno/.test(e.message),
      );
    }
    assert.throws(() => new ThreadPool(1, { permissions: 7 as never }), TypeError);
    new ThreadPool(1, { permissions: "inherit" }).close();
  });
});

threadTest(
  "a call that ends its own worker (self.close(), Deno.exit(), process.exit()) fails; the rest go on",
  async () => {
    // Each way this runtime's workers have (Node: process.exit() alone; browsers: close()).
    const ends = ["close", "Deno.exit", "process.exit"] as const;
    const out = await withWatchdog(new Loop().run(function* (): Coro<unknown[]> {
      const pool = new ThreadPool(1);
      try {
        const results: unknown[] = [];
        for (const end of ends) {
          results.push(
            yield* attempt(pool.runInThread((end: string) => {
              const scope = globalThis as unknown as {
                close?: () => void;
                Deno?: { exit(): void };
                process?: { exit(): void };
              };
              const fn = end === "close"
                ? scope.close
                : end === "Deno.exit"
                ? scope.Deno?.exit
                : scope.Deno === undefined
                ? scope.process?.exit // (on Deno, `process` costs 100 ms)
                : undefined;
              if (fn === undefined) return "not here";
              fn.call(end === "close" ? scope : end === "Deno.exit" ? scope.Deno : scope.process);
              return "went on";
            }, end)),
          );
        }
        results.push(yield* pool.runInThread(() => "the pool still works"));
        return results;
      } finally {
        pool.close();
      }
    }()));
    const last = out.pop();
    assert.equal(last, "the pool still works");
    assert.ok(out.some((r) => r instanceof Error), "no way to end a worker was tried");
    for (const [i, r] of out.entries()) {
      if (r === "not here") continue;
      assert.ok(r instanceof Error, `${ends[i]}: ${String(r)}`);
      assert.match(r.message, /^A thread's worker closed itself/, ends[i]);
    }
  },
);

// ---------------------------------------------------------------------------
// Errors that threads are known for come back with the cause and the fix.

threadTest(
  "a function that uses `this` fails with a hint: sent as text, it has no `this` there",
  async () => {
    const scale = {
      k: 2,
      times(x: number): number {
        return x * this.k;
      },
    };
    const error = await rejection(new Loop().run(runInThread(scale.times, 3)));
    assert.ok(error instanceof TypeError, String(error));
    assert.match(error.message, /the function uses `this`, but runInThread sends a function/);
    assert.match(error.message, /source text, where `this` is undefined/);
    assert.match(error.message, /Pass what it needs as arguments, or .*threadFunction\(/);
    assert.match(String(error.stack), /^TypeError: .*the function uses `this`/);
  },
);

threadTest(
  "a class instance argument loses its methods on the way: the error names the class and the fix",
  async () => {
    class Point {
      constructor(readonly x: number, readonly y: number) {}
      double(): Point {
        return new Point(2 * this.x, 2 * this.y);
      }
    }
    const [alone, inArray, plain] = await new Loop().run(function* (): Coro<unknown[]> {
      return yield [
        attempt(runInThread((p: Point) => p.double().x, new Point(1, 2))),
        attempt(runInThread((ps: Point[]) => ps.map((p) => p.double().x), [new Point(1, 2)])),
        attempt(runInThread((p: { double(): number }) => p.double(), { x: 1 } as never)),
      ];
    }());
    assert.ok(alone instanceof TypeError, String(alone));
    assert.match(alone.message, /p\.double is not a function[^]*: argument 1 is a Point/);
    assert.match(
      alone.message,
      /`double` is a method of its class, which does not reach the worker/,
    );
    assert.match(alone.message, /structured-cloned.*Pass plain data and rebuild the instance/);
    assert.match(alone.message, /`new Point\(…\)` in a threadFunction module that imports Point/);
    assert.match(
      String(alone.stack),
      /^TypeError: p\.double is not a function[^]*argument 1 is a Point/,
    );
    assert.ok(inArray instanceof TypeError);
    assert.match(inArray.message, /: an object in argument 1 is a Point, and `double`/);
    // Not a class instance: no such hint (the method was never there).
    assert.ok(plain instanceof TypeError);
    assert.doesNotMatch(plain.message, /structured-cloned/);
  },
);

threadTest("a result that cannot be cloned says so in one sentence each", async () => {
  const error = await rejection(new Loop().run(runInThread(() => Symbol("s"))));
  assert.ok(error instanceof TypeError);
  assert.match(error.message, /^the result \(.*\) cannot be sent back from the worker: /);
  assert.doesNotMatch(error.message, /\.\./, "a doubled full stop");
});
