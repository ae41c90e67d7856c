/**
 * The invariant checks of src/invariants.ts, which every test runs whenever a
 * driver comes to rest (tests/_helper.ts): here, that they catch a broken
 * state. Each test breaks one invariant at the first rest of a run, checks,
 * and mends it again so the run can finish.
 */
import assert from "node:assert/strict";
import { type Coro, Event, Loop, sleep } from "../mod.ts";
import { Driver } from "../src/core.ts";
import { checkDriver } from "../src/invariants.ts";
import { Gather, type Run, type Task } from "../src/task.ts";
import { test } from "./_helper.ts";

/**
 * Runs `main` and, at the first rest that `ready` accepts, breaks an
 * invariant with `breakIt` (which returns how to mend it) and checks: returns
 * the error the check threw.
 */
async function caughtAtRest(
  main: Coro<unknown>,
  ready: (run: Run) => boolean,
  breakIt: (run: Run) => () => void,
): Promise<Error> {
  const original = Driver.atRest;
  let caught: unknown = undefined;
  let done = false;
  Driver.atRest = (driver) => {
    const run = [...driver.runs][0];
    if (!done && run !== undefined && ready(run)) {
      done = true;
      const mend = breakIt(run);
      try {
        checkDriver(driver);
      } catch (error) {
        caught = error;
      }
      mend();
    }
    original?.(driver);
  };
  try {
    await new Loop().run(main);
  } finally {
    Driver.atRest = original;
  }
  assert.ok(caught instanceof Error, "the broken invariant was not caught");
  return caught;
}

const event = () => new Event();

function* waitBoth(ev: Event): Coro<void> {
  yield new Set([function* () {
    yield sleep(5);
    ev.set();
  }()]);
  yield [ev.wait(), ev.wait()];
}

const rootGathers = (run: Run) => run.root!.waitingOn instanceof Gather;

test("invariants: a sound run passes at every rest", async () => {
  const original = Driver.atRest;
  let rests = 0;
  Driver.atRest = (driver) => {
    rests++;
    checkDriver(driver);
  };
  try {
    await new Loop().run(waitBoth(event()));
  } finally {
    Driver.atRest = original;
  }
  assert.ok(rests >= 2, `checked at ${rests} rests`);
});

test("invariants: a gather that counts one child too many is caught", async () => {
  const error = await caughtAtRest(waitBoth(event()), rootGathers, (run) => {
    const gather = run.root!.waitingOn as Gather;
    gather.pending++;
    return () => gather.pending--;
  });
  assert.match(error.message, /\(WAITING\) waits on a gather of 2 open, 3 counted/);
});

test("invariants: a child that no longer lists its waiter is caught", async () => {
  const error = await caughtAtRest(waitBoth(event()), rootGathers, (run) => {
    const child = (run.root!.waitingOn as Gather).slots[0] as Task;
    const waiter = child.waiter;
    child.waiter = null;
    return () => child.waiter = waiter;
  });
  assert.match(error.message, /waits on gather slot 0, whose child does not list it/);
});

test("invariants: a run that miscounts its tasks is caught", async () => {
  const error = await caughtAtRest(waitBoth(event()), rootGathers, (run) => {
    run.live++;
    return () => run.live--;
  });
  assert.match(error.message, /a run of 5 tasks counting 6/);
});

test("invariants: a parked task with a value to send in is caught", async () => {
  const error = await caughtAtRest(
    function* (): Coro<void> {
      yield* sleep(5);
    }(),
    (run) => run.root!.waitingOn !== null,
    (run) => {
      run.root!.value = 42;
      return () => run.root!.value = undefined;
    },
  );
  assert.match(error.message, /\(PARKED\) waits but has a value to send in/);
});
