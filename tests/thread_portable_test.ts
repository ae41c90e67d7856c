/**
 * Threads, as they must work on every runtime that has them (Deno, Bun,
 * Node, cross-origin isolated browsers): no Deno API here, so that the
 * portable harness can run this file anywhere. Every test also checks that no
 * worker outlives it.
 */
import assert from "node:assert/strict";
import { cancelled, type Coro, Loop, sleep, threadFunction, timeout } from "../mod.ts";
import { callOn, gathering } from "../src/thread/call.ts";
import { targetOf, type ThreadFn } from "../src/thread/function.ts";
import { Pool } from "../src/thread/pool.ts";
import { PROTOCOL, type Protocol } from "../src/thread/protocol.ts";
import { liveWorkers } from "../src/thread/thread.ts";
import { workerSource } from "../src/thread/worker.ts";
import { test } from "./_helper.ts";

/** A test that also fails if a worker is still alive at its end. */
function threadTest(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
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
