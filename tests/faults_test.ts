/**
 * Fault injection: coroutines and workers that misbehave while a run fails or
 * is aborted. For each fault, the documented error comes out, every other
 * coroutine — waiting in each way there is — runs its cleanup exactly once,
 * no worker is left, and nothing hangs. Then the bad-input table of the
 * README, one test per row (rows already tested elsewhere point there).
 */

import assert from "node:assert/strict";
import {
  asCompleted,
  Barrier,
  cancelled,
  CancelledError,
  copy,
  type Coro,
  Event,
  fromPromise,
  isolate,
  join,
  Loop,
  runInThread,
  Semaphore,
  sleep,
  ThreadPool,
  timeout,
} from "../mod.ts";
import { liveWorkers } from "../src/thread/thread.ts";
import { captureWarnings, test } from "./_helper.ts";

const LONG = 60_000; // a wait that only a cancellation ends
const WATCHDOG_MS = 10_000;

/** Runs `body` and notes `name` in `log` when its finally runs. */
function* noted(log: string[], name: string, body: () => Coro<unknown>): Coro<void> {
  try {
    yield* body();
  } finally {
    log.push(name);
  }
}

/** A promise that settles only when `signal` aborts (as fetch does). */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

/**
 * Coroutines waiting in every way there is — a sleep, an event, a spin, a
 * gather, a semaphore (held and queued), a barrier, a promise, an isolated
 * loop, a timeout, `asCompleted`, a worker of `runInThread` and one of a
 * pool — each noting its cleanup in `log`.
 */
function bystanders(log: string[], pool: ThreadPool): Coro<void>[] {
  const event = new Event();
  const sem = new Semaphore(1);
  const holdSem = function* (): Coro<void> {
    using _ = yield* sem.acquire();
    yield sleep(LONG);
  };
  const waits: Record<string, () => Coro<unknown>> = {
    sleep: () => sleep(LONG),
    event: () => event.wait(),
    spin: function* () {
      for (;;) yield;
    },
    gather: function* () {
      yield [sleep(LONG), event.wait()];
    },
    "semaphore holder": holdSem,
    "semaphore waiter": holdSem,
    barrier: () => new Barrier(3).wait(),
    promise: () => fromPromise(untilAborted),
    isolate: function* () {
      yield isolate(noted(log, "inside isolate", () => sleep(LONG)));
    },
    timeout: () => timeout(noted(log, "inside timeout", () => sleep(LONG)), LONG),
    asCompleted: function* () {
      for (const next of yield* asCompleted([sleep(LONG)])) yield next;
    },
    runInThread: () => runInThread(() => new Promise<never>(() => {})),
    "pool thread": () => pool.runInThread(() => new Promise<never>(() => {})),
  };
  return Object.entries(waits).map(([name, body]) => noted(log, name, body));
}

/** Every name `bystanders` notes, sorted. */
const ALL_CLEANED = [
  "asCompleted",
  "barrier",
  "event",
  "gather",
  "inside isolate",
  "inside timeout",
  "isolate",
  "pool thread",
  "promise",
  "runInThread",
  "semaphore holder",
  "semaphore waiter",
  "sleep",
  "spin",
  "timeout",
];

interface Outcome {
  error: unknown;
  /** The cleanups that ran, sorted. */
  log: string[];
  warnings: string[];
  /** From the start to when `run` settled. */
  ms: number;
}

/**
 * Runs `fault` among the bystanders on a fresh loop. The run then fails:
 * `trigger` "error" throws `boom` from a coroutine after `afterMs`, "abort"
 * aborts the run's signal with `reason` then; "none" leaves it to the fault.
 */
async function runFault(
  fault: (log: string[]) => Coro<unknown>,
  trigger: "error" | "abort" | "none",
  { afterMs = 50, exceptionGroup, watchdogMs = WATCHDOG_MS }: {
    afterMs?: number;
    exceptionGroup?: boolean;
    watchdogMs?: number;
  } = {},
): Promise<Outcome> {
  const log: string[] = [];
  const controller = new AbortController();
  using pool = new ThreadPool(1);
  function* failing(): Coro<void> {
    yield sleep(afterMs);
    throw boom;
  }
  function* main(): Coro<void> {
    const coros = [fault(log), ...bystanders(log, pool)];
    if (trigger === "error") coros.push(failing());
    yield coros;
  }
  const timer = trigger === "abort"
    ? setTimeout(() => controller.abort(reason), afterMs)
    : undefined;
  let watchdog: ReturnType<typeof setTimeout> | undefined;
  const started = performance.now();
  let error: unknown = undefined;
  let ms = 0;
  const warnings = await captureWarnings(async () => {
    try {
      await Promise.race([
        new Loop().run(main(), { signal: controller.signal, exceptionGroup }),
        new Promise((_, reject) => {
          watchdog = setTimeout(
            () => reject(new Error(`hang: the run did not settle within ${watchdogMs} ms`)),
            watchdogMs,
          );
        }),
      ]);
      assert.fail("the run resolved");
    } catch (e) {
      error = e;
      ms = performance.now() - started;
    } finally {
      clearTimeout(timer);
      clearTimeout(watchdog);
    }
  });
  assert.doesNotMatch(String(error), /^Error: hang/);
  assert.equal(liveWorkers(), 0, "a worker outlived the run");
  return { error, log: log.sort(), warnings, ms };
}

const boom = new Error("boom: the error that fails the run");
const reason = new Error("the run's signal was aborted");

/** The error a trigger makes the run fail with. */
const triggerError = { error: boom, abort: reason } as const;

// --- Coroutines that misbehave while cancelled --------------------------------

for (const trigger of ["error", "abort"] as const) {
  const E = triggerError[trigger];

  test(`faults (${trigger}): a coroutine that throws inside finally adds its error; the rest is cleaned up`, async () => {
    const inFinally = new Error("thrown inside finally");
    const fault = (log: string[]) =>
      noted(log, "fault", function* () {
        try {
          yield sleep(LONG);
        } finally {
          // deno-lint-ignore no-unsafe-finally
          throw inFinally;
        }
      });
    const { error, log, warnings } = await runFault(fault, trigger);
    assert.ok(error instanceof AggregateError, String(error));
    assert.deepEqual(error.errors, [E, inFinally]);
    assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
    assert.deepEqual(warnings, []);

    const grouped = await runFault(fault, trigger, { exceptionGroup: true });
    const errors = (grouped.error as AggregateError).errors;
    assert.deepEqual(errors.slice(0, 2), [E, inFinally]);
    assert.ok(errors.length > 2 && errors.slice(2).every((e) => e instanceof CancelledError));
    const alone = await runFault(fault, trigger, { exceptionGroup: false });
    assert.equal(alone.error, E);
  });

  test(`faults (${trigger}): a coroutine that swallows CancelledError and yields is warned about and closed`, async () => {
    let stepsAfter = 0;
    const fault = (log: string[]) =>
      noted(log, "fault", function* () {
        for (;;) {
          try {
            yield sleep(LONG);
          } catch {
            // swallowed: the wrong thing to do
          }
          yield sleep(1); // the loop closes it here
          stepsAfter++;
        }
      });
    const { error, log, warnings } = await runFault(fault, trigger);
    assert.equal(error, E);
    assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
    assert.equal(stepsAfter, 0);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /did not respond properly to cancellation/);
  });

  test(`faults (${trigger}): a coroutine that returns during cancellation is warned about; its waiter is cancelled`, async () => {
    let waiterGot: unknown = "nothing";
    const fault = (log: string[]) =>
      noted(log, "fault", function* () {
        function* quitter(): Coro<string> {
          try {
            yield sleep(LONG);
          } catch {
            return "returned instead"; // the wrong thing to do
          }
          return "never";
        }
        try {
          waiterGot = yield quitter();
        } catch (e) {
          waiterGot = e;
          throw e;
        }
      });
    const { error, log, warnings } = await runFault(fault, trigger);
    assert.equal(error, E);
    assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
    assert.ok(waiterGot instanceof CancelledError, String(waiterGot));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /returned instead of throwing/);
  });

  test(`faults (${trigger}): a coroutine that yields in nested finally blocks is warned about once`, async () => {
    const steps: string[] = [];
    const fault = (log: string[]) =>
      noted(log, "fault", function* () {
        try {
          try {
            yield sleep(LONG);
          } finally {
            steps.push("inner finally");
            yield;
          }
        } finally {
          steps.push("outer finally");
          yield;
        }
      });
    const { error, log, warnings } = await runFault(fault, trigger);
    assert.equal(error, E);
    // `return()`, repeated while it yields, runs every enclosing finally block.
    assert.deepEqual(steps, ["inner finally", "outer finally"]);
    assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
    assert.equal(warnings.length, 1);
  });

  test(`faults (${trigger}): a promise that never settles on its own, under a factory that honours its signal late`, async () => {
    let settled = false;
    const fault = (log: string[]) =>
      noted(log, "fault", function* () {
        yield fromPromise((signal) =>
          new Promise((_, reject) => {
            // Honours the abort, but only 100 ms later: the run waits for it.
            signal.addEventListener("abort", () => {
              setTimeout(() => {
                settled = true;
                reject(new Error("not reported: the cancellation is"));
              }, 100);
            });
          })
        );
      });
    const { error, log, ms, warnings } = await runFault(fault, trigger);
    assert.equal(error, E);
    assert.ok(settled, "the run settled before the factory's promise");
    assert.ok(ms >= 140, `settled after ${ms} ms`);
    assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
    assert.deepEqual(warnings, []);
  });

  test(`faults (${trigger}): a worker spinning until cancelled() turns true stops; the run settles`, async () => {
    const fault = (log: string[]) =>
      noted(log, "fault", () =>
        runInThread(() => {
          while (!cancelled()); // on the worker, the worker's own cancelled()
          return "stopped";
        }));
    const { error, log, ms } = await runFault(fault, trigger);
    assert.equal(error, E);
    assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
    assert.ok(ms < 5_000, `settled after ${ms} ms`);
  });

  test(`faults (${trigger}): a busy worker that never polls is waited for; its result is discarded`, async () => {
    const fault = (log: string[]) =>
      noted(log, "fault", () =>
        runInThread(() => {
          const until = Date.now() + 400;
          while (Date.now() < until);
          return "discarded";
        }));
    const { error, log, ms } = await runFault(fault, trigger);
    assert.equal(error, E);
    assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
    assert.ok(ms >= 380, `the run settled after ${ms} ms, before the busy worker stopped`);
  });
}

// --- Workers that crash themselves -------------------------------------------

test("faults: an uncaught error in a worker's event handler fails its call, and so the run", async () => {
  const fault = (log: string[]) =>
    noted(log, "fault", () =>
      runInThread(() => {
        setTimeout(() => {
          throw new RangeError("thrown in a timer of the worker");
        }, 20);
        return new Promise(() => {});
      }));
  const { error, log } = await runFault(fault, "none");
  assert.ok(error instanceof Error && error.name === "RangeError", String(error));
  assert.match(error.message, /thrown in a timer of the worker/);
  assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
});

test("faults (abort): a run aborted before a worker's event handler throws stops that worker", async () => {
  const fault = (log: string[]) =>
    noted(log, "fault", () =>
      runInThread(() => {
        setTimeout(() => {
          throw new RangeError("too late: the worker was stopped");
        }, 3_000);
        return new Promise(() => {});
      }));
  const { error, log, ms } = await runFault(fault, "abort");
  assert.equal(error, reason);
  assert.ok(ms < 2_500, `settled after ${ms} ms`);
  assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
});

// A worker that calls self.close() never answers: its call must fail rather
// than wait forever (and the run must settle, also when aborted).
for (const trigger of ["none", "abort"] as const) {
  test(`faults (${trigger}): a worker that closes itself fails its call; nothing hangs`, async () => {
    const fault = (log: string[]) =>
      noted(log, "fault", () =>
        runInThread(() => {
          (globalThis as unknown as { close(): void }).close();
          return "never delivered";
        }));
    const { error, log } = await runFault(fault, trigger, { afterMs: 500, watchdogMs: 3_000 });
    // The worker says it is closing, so its call fails at once: before the abort.
    assert.ok(error instanceof Error && /closed itself/.test(error.message), String(error));
    assert.deepEqual(log, [...ALL_CLEANED, "fault"].sort());
  });
}

// --- A run that fails just as a timeout fires ------------------------------------

test("faults: a run that fails while a timed-out coroutine has not yet seen its TimeoutError rejects with its error alone", async () => {
  // Both deadlines fall at 10 ms: the failing coroutine's first, so it runs
  // (and crashes the run) before `slow` sees the TimeoutError that the
  // timeout threw in — which the timeout swallows, and so must not be reported.
  function* slow(): Coro<number> {
    yield sleep(20);
    return 1;
  }
  function* failing(): Coro<void> {
    yield* sleep(10);
    throw boom;
  }
  function* timed(): Coro<unknown> {
    return yield* timeout(slow(), 10);
  }
  const error = await new Loop({ clock: "virtual" }).run(function* (): Coro<void> {
    yield [failing(), timed()];
  }()).catch((e) => e);
  const others = error instanceof AggregateError ? error.errors.slice(1).join("; ") : "";
  assert.equal(error, boom, `rejected with ${error}: ${others}`);
});

test("faults: an error of a coroutine that a copy inside isolate waits on is reported once", async () => {
  // `original` fails the outer run; the copy, inside the isolated loop, was
  // handed that error and is then cancelled with the isolated loop: the error
  // must not come back a second time as an "other error".
  function* first(): Coro<number> {
    yield;
    return 1;
  }
  function* failing(before: Coro<number>): Coro<number> {
    yield before;
    throw boom;
  }
  function* main(original: Coro<number>): Coro<unknown> {
    return yield* isolate(join(yield* copy(original)));
  }
  for (const clock of ["virtual", "real"] as const) {
    const error = await new Loop({ clock }).run(main(failing(first()))).catch((e) => e);
    const others = error instanceof AggregateError ? error.errors.join("; ") : "";
    assert.equal(error, boom, `${clock}: rejected with ${error}: ${others}`);
  }
});

// --- The README's bad-input table: the rows not tested elsewhere ------------------

test("bad input: yielding a function that makes a coroutine, not called, is a TypeError naming it", async () => {
  function* main(): Coro<string> {
    try {
      yield sleep; // meant: yield sleep(5)
    } catch (e) {
      assert.ok(e instanceof TypeError);
      assert.match(e.message, /yielded the function sleep/);
      return "caught at the yield";
    }
    return "not thrown";
  }
  assert.equal(await new Loop().run(main()), "caught at the yield");
});

test("bad input: yield* of a promise is JavaScript's TypeError, thrown at that line", async () => {
  function* main(): Coro<string> {
    try {
      // deno-lint-ignore no-explicit-any
      yield* Promise.resolve(1) as any;
    } catch (e) {
      assert.ok(e instanceof TypeError);
      assert.match(e.message, /not iterable/);
      return "caught";
    }
    return "not thrown";
  }
  assert.equal(await new Loop().run(main()), "caught");
});

test("bad input: run of an async generator rejects with a TypeError that names it", async () => {
  async function* agen() {}
  await assert.rejects(new Loop().run(agen() as never), {
    name: "TypeError",
    message: /async generator/,
  });
});

test("bad input: run options null means no options; a non-boolean exceptionGroup is a TypeError", async () => {
  function* one(): Coro<number> {
    yield;
    return 1;
  }
  assert.equal(await new Loop().run(one(), null as never), 1);
  await assert.rejects(
    new Loop().run(one(), { exceptionGroup: "yes" as never }),
    (e: Error) => e instanceof TypeError && /exceptionGroup/.test(e.message),
  );
});

test("bad input: waiting on an Event nobody sets waits until the run's signal aborts (not a cycle)", async () => {
  const controller = new AbortController();
  let finalized = false;
  function* main(): Coro<void> {
    try {
      yield new Event().wait(); // an Event may be set from outside: the loop cannot know
    } finally {
      finalized = true;
    }
  }
  const timer = setTimeout(() => controller.abort(reason), 50);
  const started = performance.now();
  await assert.rejects(new Loop().run(main(), { signal: controller.signal }), (e) => e === reason);
  clearTimeout(timer);
  assert.ok(performance.now() - started >= 45, "the run ended before the abort");
  assert.ok(finalized);
});

test("bad input: a generator advanced by hand cannot be detected: it runs on from where it is", async () => {
  function* gen(): Coro<number> {
    yield;
    yield;
    return 2;
  }
  const half = gen();
  half.next();
  assert.equal(await new Loop().run(half), 2);
  const done = gen();
  while (done.next().done !== true);
  assert.equal(await new Loop().run(done), undefined);
});

test("bad input: ThreadPool.map of something that is not iterable is a TypeError at the call", () => {
  using pool = new ThreadPool(1);
  assert.throws(() => pool.map((x: number) => x, 5 as never), {
    name: "TypeError",
    message: /xs is 5 \(number\).*iterable/,
  });
});
