import assert from "node:assert/strict";
import {
  asCompleted,
  Barrier,
  CancelledError,
  type Coro,
  Event,
  join,
  Lock,
  Loop,
  type Permit,
  Semaphore,
  sleep,
  timeout,
} from "../mod.ts";
import { after, test } from "./_helper.ts";

function* pause(n: number): Coro<void> {
  for (let i = 0; i < n; i++) yield;
}

/** Sets `event` from a host timer, outside any loop, after `ms`. */
function setLater(event: Event, ms: number): void {
  setTimeout(() => event.set(), ms);
}

// --- Event ---------------------------------------------------------------------

test("Event: port of tinyio's test_event (a waiter runs only once set)", async () => {
  const event = new Event();
  let done = false;
  let done2 = false;
  function* foo(): Coro<void> {
    assert.equal(event.isSet(), false);
    yield event.wait();
    assert.equal(event.isSet(), true);
    done = true;
  }
  function* bar(): Coro<void> {
    yield new Set([foo()]);
    yield* pause(10);
    assert.equal(done, false);
    assert.equal(event.isSet(), false);
    event.set();
    assert.equal(event.isSet(), true);
    done2 = true;
  }
  await new Loop().run(bar());
  assert.ok(done && done2 && event.isSet());
});

for (const isSet of [false, true]) {
  test(`Event: run(event.wait()) alone, set ${isSet ? "before" : "from a host timer"}`, async () => {
    const event = new Event();
    if (isSet) event.set();
    else setLater(event, 30);
    assert.equal(await new Loop().run(event.wait()), true);
  });

  test(`Event: a coroutine waiting alone, set ${isSet ? "before" : "from a host timer"}`, async () => {
    const event = new Event();
    if (isSet) event.set();
    function* foo(): Coro<boolean> {
      if (!isSet) setLater(event, 30);
      return yield event.wait();
    }
    assert.equal(await new Loop().run(foo()), true);
  });

  test(`Event: two simultaneous waits in one gather, ${isSet ? "set before" : "set later"}`, async () => {
    const event = new Event();
    if (isSet) event.set();
    function* foo(): Coro<boolean[]> {
      if (!isSet) setLater(event, 30);
      return yield [event.wait(), event.wait()];
    }
    assert.deepEqual(await new Loop().run(foo()), [true, true]);
  });

  test(`Event: yielding the same wait() twice gives its result again, ${isSet ? "set before" : "set later"}`, async () => {
    // Python tinyio raises here; in this port a wait() is a coroutine like any
    // other, so the second yield reads the recorded result.
    const event = new Event();
    if (isSet) event.set();
    function* foo(): Coro<boolean[]> {
      const wait = event.wait();
      if (!isSet) setLater(event, 30);
      const a = yield wait;
      const b = yield wait;
      const [c, d] = yield [wait, wait];
      return [a, b, c, d];
    }
    assert.deepEqual(await new Loop().run(foo()), [true, true, true, true]);
  });
}

test("Event: set from outside wakes a loop that sleeps with nothing else to do", async () => {
  const event = new Event();
  const t0 = performance.now();
  setLater(event, 50);
  const woken = await new Loop().run(function* () {
    return yield* event.wait();
  }());
  const took = performance.now() - t0;
  assert.equal(woken, true);
  assert.ok(took >= 49 && took < 1_000, `took ${took} ms`);
});

test("Event: set from outside wakes a loop whose only other work is a long sleep", async () => {
  const event = new Event();
  const t0 = performance.now();
  setLater(event, 30);
  const out = await new Loop().run(function* (): Coro<[boolean, number]> {
    const [woken] = yield [event.wait(), timeout(sleep(10_000), 200)];
    return [woken, performance.now() - t0];
  }());
  assert.equal(out[0], true);
  assert.ok(out[1] < 1_000, `took ${out[1]} ms`);
});

test("Event: clear is not strict: waiters woken by set still run if cleared at once", async () => {
  // yield*: the wait runs inline, with no extra hop through a coroutine of its own.
  const event = new Event();
  event.set();
  event.clear();
  assert.equal(event.isSet(), false);
  const out: number[] = [];
  function* foo(): Coro<void> {
    yield* event.wait();
    out.push(2);
  }
  function* bar(): Coro<void> {
    yield;
    out.push(1);
    event.set();
    yield;
    event.clear();
    out.push(3);
  }
  await new Loop().run(function* () {
    yield [foo(), foo(), bar()];
  }());
  assert.deepEqual(out, [1, 2, 2, 3]);
});

test("Event: wait(ms) resumes with false when timed out, true when set in time", async () => {
  const loop = new Loop({ clock: "virtual" });
  const event = new Event();
  function* setAt(ms: number): Coro<void> {
    yield sleep(ms);
    event.set();
  }
  const out = await loop.run(function* () {
    return yield [event.wait(10), event.wait(100), setAt(50)];
  }());
  assert.deepEqual(out, [false, true, undefined]);
  assert.equal(loop.now(), 50); // the 100 ms deadline was dropped when set
});

test("Event: wait() with a negative, NaN or non-number time is an error at the call", () => {
  const event = new Event();
  assert.throws(() => event.wait(-1), RangeError);
  assert.throws(() => event.wait(NaN), RangeError);
  assert.throws(() => event.wait("1" as unknown as number), TypeError);
  assert.throws(() => event.wait(-1), /Event\.wait\(\): the time is -1/);
});

test("Event: fairness: both timed-out waiters run before either's follow-up work", async () => {
  const outs: number[] = [];
  function* f(): Coro<void> {
    yield new Event().wait(0);
    outs.push(1);
    yield* pause(20);
    outs.push(2);
  }
  await new Loop().run(function* () {
    yield [f(), f()];
  }());
  assert.deepEqual(outs, [1, 1, 2, 2]);
});

test("Event: fairness: a timed-out waiter runs while another coroutine spins on yields", async () => {
  // tinyio spins 20 steps; here a deadline fires at the next clock reading,
  // within a few milliseconds of spinning, so spin for 20 ms instead.
  const event = new Event();
  const outs: number[] = [];
  function* f(): Coro<void> {
    yield event.wait(0);
    outs.push(1);
  }
  await new Loop().run(function* () {
    yield new Set([f()]);
    const t0 = performance.now();
    while (performance.now() - t0 < 20) yield;
    outs.push(2);
  }());
  assert.deepEqual(outs, [1, 2]);
});

test("Event: fairness: coroutines already ready run before a woken one's follow-up", async () => {
  const event = new Event();
  const log: string[] = [];
  function* waiter(name: string): Coro<void> {
    yield* event.wait(); // inline, so that the rounds below are exact
    log.push(`${name} woken`);
    yield;
    log.push(`${name} follow-up`);
  }
  function* spinner(name: string): Coro<void> {
    for (let i = 0; i < 3; i++) {
      log.push(`${name} ${i}`);
      yield;
    }
  }
  function* setter(): Coro<void> {
    yield;
    event.set();
  }
  await new Loop().run(function* () {
    yield [waiter("w1"), waiter("w2"), setter(), spinner("s")];
  }());
  // Round 1: s 0. Round 2: the setter sets, s 1. Round 3: both waiters woken,
  // s 2. Only then their follow-up work.
  assert.deepEqual(log, [
    "s 0",
    "s 1",
    "w1 woken",
    "w2 woken",
    "s 2",
    "w1 follow-up",
    "w2 follow-up",
  ]);
});

test("Event: a timed-out wait in a group, then set: nothing hangs (timeout then set)", async () => {
  const event1 = new Event();
  const event2 = new Event();
  function* f(): Coro<void> {
    yield [event1.wait(0), event2.wait()];
  }
  const out = await new Loop().run(function* () {
    yield new Set([f()]);
    yield* pause(20);
    event1.set();
    yield* pause(20);
    event2.set();
    return 3;
  }());
  assert.equal(out, 3);
});

for (
  const [name, afterwards] of [
    ["set then timeout", (_e: Event) => {}],
    ["set then timeout then clear", (e: Event) => e.clear()],
    ["set then timeout then clear then set", (e: Event) => {
      e.clear();
      queueMicrotask(() => e.set());
    }],
  ] as const
) {
  test(`Event: ${name}: nothing hangs`, async () => {
    const event1 = new Event();
    const event2 = new Event();
    let got: unknown;
    function* f(): Coro<void> {
      event1.set();
      got = yield [event1.wait(0), event2.wait()];
    }
    const out = await new Loop().run(function* () {
      yield new Set([f()]);
      yield* pause(20);
      afterwards(event1);
      event2.set();
      return 3;
    }());
    assert.equal(out, 3);
    assert.deepEqual(got, [true, true]);
  });
}

test("Event: a timed wait and an untimed wait as the only coroutine, set from outside", async () => {
  const event1 = new Event();
  const event2 = new Event();
  const wait1 = event1.wait(0);
  const wait2 = event2.wait();
  setLater(event2, 30);
  const out = await new Loop().run(function* () {
    return yield [wait1, wait2];
  }());
  assert.deepEqual(out, [false, true]);
});

test("Event: a waiter cancelled by a crash leaves the event usable", async () => {
  const event = new Event();
  const boom = new Error("boom");
  await assert.rejects(
    new Loop().run(function* () {
      yield [
        event.wait(),
        function* () {
          yield;
          throw boom;
        }(),
      ];
    }()),
    (e) => e === boom,
  );
  setLater(event, 10);
  assert.equal(await new Loop().run(event.wait()), true);
});

test("Event: after many waiters timed out or gave up, set wakes each remaining one once", async () => {
  // Timed and untimed waiters in one list; those that leave make the list
  // compact itself several times before the set.
  const event = new Event();
  const woken: string[] = [];
  function* waiter(name: string, ms: number): Coro<boolean> {
    const got = yield* event.wait(ms);
    if (got) woken.push(name);
    return got;
  }
  function* main(): Coro<boolean[][]> {
    const gaveUp = Array.from({ length: 40 }, (_, i) => waiter(`u${i}`, Infinity));
    const stay = [waiter("forever", Infinity), waiter("long", 1_000)];
    const expire = Array.from({ length: 40 }, (_, i) => waiter(`t${i}`, 5 + i));
    const [, inTime] = yield* timeout(
      function* () {
        yield gaveUp;
      }(),
      3,
    );
    assert.equal(inTime, false);
    const gather = function* (coros: Coro<boolean>[]): Coro<boolean[]> {
      return yield coros;
    };
    const [late, stayed] = yield [
      gather(expire),
      gather(stay),
      function* () {
        yield sleep(100);
        event.set();
      }(),
    ];
    return [late, stayed];
  }
  const [late, stayed] = await new Loop({ clock: "virtual" }).run(main());
  assert.deepEqual(late, new Array(40).fill(false));
  assert.deepEqual(stayed, [true, true]);
  assert.deepEqual(woken.sort(), ["forever", "long"]);
});

// --- Semaphore and Lock -----------------------------------------------------------

/** tinyio's counting test: fails if more than `limit` coroutines are inside at once. */
function* counting(acquire: () => Coro<Permit>, limit: number, n: number): Coro<number[]> {
  let counter = 0;
  function* count(i: number): Coro<number> {
    using _ = yield* acquire();
    counter++;
    if (counter > limit) throw new Error(`${counter} inside, limit ${limit}`);
    yield;
    counter--;
    return i;
  }
  return yield Array.from({ length: n }, (_, i) => count(i));
}

test("Semaphore: port of tinyio's test_semaphore", async () => {
  const loop = new Loop();
  const two = new Semaphore(2);
  const range = Array.from({ length: 50 }, (_, i) => i);
  assert.deepEqual(await loop.run(counting(() => two.acquire(), 2, 50)), range);
  const three = new Semaphore(3);
  await assert.rejects(loop.run(counting(() => three.acquire(), 2, 50)), /3 inside, limit 2/);
});

test("Lock: port of tinyio's test_lock", async () => {
  const lock = new Lock();
  const range = Array.from({ length: 50 }, (_, i) => i);
  assert.deepEqual(await new Loop().run(counting(() => lock.acquire(), 1, 50)), range);
});

test("Semaphore: port of tinyio's alternate semaphore, built on Event.clear()", async () => {
  // A semaphore made from an Event, as in tinyio's tests: it exercises clear().
  class EventSemaphore {
    event = new Event();
    constructor(public value: number) {
      this.event.set();
    }
    *acquire(): Coro<Permit> {
      do yield this.event.wait(); while (!this.event.isSet());
      assert.ok(this.value > 0);
      if (--this.value === 0) this.event.clear();
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.value++;
        this.event.set();
      };
      return { release, [Symbol.dispose]: release };
    }
  }
  const loop = new Loop();
  const range = Array.from({ length: 50 }, (_, i) => i);
  const two = new EventSemaphore(2);
  assert.deepEqual(await loop.run(counting(() => two.acquire(), 2, 50)), range);
  const three = new EventSemaphore(3);
  await assert.rejects(loop.run(counting(() => three.acquire(), 2, 50)), /3 inside, limit 2/);
});

test("Semaphore: never more than `value` holders, with sleeps of all lengths", async () => {
  const sem = new Semaphore(3);
  let inside = 0;
  let most = 0;
  function* job(i: number): Coro<void> {
    using _ = yield* sem.acquire();
    most = Math.max(most, ++inside);
    yield sleep((i * 7) % 11);
    inside--;
  }
  const loop = new Loop({ clock: "virtual" });
  await loop.run(function* () {
    yield Array.from({ length: 100 }, (_, i) => job(i));
  }());
  assert.equal(most, 3);
  assert.equal(inside, 0);
});

test("Semaphore: first come, first served; a releaser that re-acquires goes to the back", async () => {
  const sem = new Semaphore(1);
  const order: string[] = [];
  function* user(name: string, again: boolean): Coro<void> {
    let permit = yield* sem.acquire();
    order.push(name);
    yield* pause(3); // everyone else queues up meanwhile
    permit.release();
    if (!again) return;
    permit = yield* sem.acquire(); // no barging: the permit went to the longest waiter
    order.push(`${name} again`);
    permit.release();
  }
  await new Loop().run(function* () {
    yield [user("a", true), user("b", false), user("c", false), user("d", false)];
  }());
  assert.deepEqual(order, ["a", "b", "c", "d", "a again"]);
});

test("Semaphore: a permit passes straight to the waiter even if another arrives first", async () => {
  const sem = new Semaphore(1);
  const order: string[] = [];
  function* holder(): Coro<void> {
    const p = yield* sem.acquire();
    yield* pause(3);
    p.release(); // the waiter is granted it now, before it runs again
    order.push("released");
  }
  function* waiter(): Coro<void> {
    yield;
    using _ = yield* sem.acquire();
    order.push("waiter");
  }
  function* latecomer(): Coro<void> {
    yield* pause(3); // runs right after the release, before the waiter
    order.push("latecomer asks");
    using _ = yield* sem.acquire();
    order.push("latecomer");
  }
  await new Loop().run(function* () {
    yield [holder(), waiter(), latecomer()];
  }());
  assert.deepEqual(order, ["released", "latecomer asks", "waiter", "latecomer"]);
});

test("Semaphore: using releases at the end of the block, also when it throws", async () => {
  const sem = new Semaphore(1);
  const boom = new Error("boom");
  function* catching(): Coro<unknown> {
    try {
      using _ = yield* sem.acquire();
      yield;
      throw boom;
    } catch (e) {
      return e;
    }
  }
  const loop = new Loop({ clock: "virtual" });
  assert.equal(await loop.run(catching()), boom);
  // The permit is back: acquiring again does not wait.
  const [, got] = await loop.run(timeout(sem.acquire(), 10));
  assert.equal(got, true);
  assert.equal(loop.now(), 0);
});

test("Semaphore: releasing a permit twice is an Error; disposing after release does nothing", async () => {
  const sem = new Semaphore(2);
  await new Loop().run(function* () {
    const permit = yield* sem.acquire();
    permit.release();
    assert.throws(() => permit.release(), /already released.*Release each permit once/);
    permit[Symbol.dispose]();
    // The double release did not add a permit: two, not three.
    const a = yield* sem.acquire();
    const b = yield* sem.acquire();
    const [, third] = yield* timeout(sem.acquire(), 20);
    assert.equal(third, false);
    a.release();
    b.release();
  }());
});

test("Semaphore: port of tinyio's semaphore reuse: a shared acquire gives one permit", async () => {
  const sem = new Semaphore(2);
  const errors: unknown[] = [];
  function* user(acquire: Coro<Permit>): Coro<void> {
    const permit: Permit = yield acquire;
    yield;
    try {
      permit.release();
    } catch (e) {
      errors.push(e);
    }
  }
  await new Loop().run(function* () {
    const acquire = sem.acquire();
    yield [user(acquire), user(acquire)];
  }());
  assert.equal(errors.length, 1);
  assert.match((errors[0] as Error).message, /already released/);
});

test("Semaphore / Barrier: a value that is not a positive integer is a RangeError", () => {
  for (const bad of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => new Semaphore(bad), RangeError, `Semaphore(${bad})`);
    assert.throws(() => new Barrier(bad), RangeError, `Barrier(${bad})`);
  }
  assert.throws(() => new Semaphore("2" as unknown as number), TypeError);
  assert.throws(
    () => new Semaphore(0),
    /new Semaphore\(\): the value is 0; give a positive integer/,
  );
});

test("Semaphore: a coroutine timed out while waiting takes no permit", async () => {
  const sem = new Semaphore(1);
  const log: string[] = [];
  function* holder(): Coro<void> {
    using _ = yield* sem.acquire();
    yield sleep(50);
  }
  function* impatient(): Coro<void> {
    yield sleep(1);
    const [, got] = yield* timeout(sem.acquire(), 10);
    log.push(`impatient ${got}`);
  }
  function* patient(): Coro<void> {
    yield sleep(2);
    using _ = yield* sem.acquire();
    log.push(`patient at ${loop.now()}`);
  }
  const loop = new Loop({ clock: "virtual" });
  await loop.run(function* () {
    yield [holder(), impatient(), patient()];
  }());
  assert.deepEqual(log, ["impatient false", "patient at 50"]);
});

test("Semaphore: a coroutine cancelled after being granted a permit, before running, passes it on", async () => {
  const sem = new Semaphore(1);
  const boom = new Error("boom");
  function* holder(): Coro<void> {
    const permit = yield* sem.acquire();
    yield* pause(3);
    permit.release(); // grants it to the waiter, which has not run yet...
    throw boom; // ...and is cancelled before it does
  }
  function* waiter(): Coro<void> {
    yield;
    using _ = yield* sem.acquire();
    yield sleep(1_000);
  }
  await assert.rejects(
    new Loop().run(function* () {
      yield [holder(), waiter()];
    }()),
    (e) => e === boom,
  );
  // Nothing was lost: the permit is free for the next run.
  const [, got] = await new Loop().run(timeout(sem.acquire(), 20));
  assert.equal(got, true);
});

test("Semaphore: a coroutine cancelled while holding releases through using", async () => {
  const sem = new Semaphore(1);
  const boom = new Error("boom");
  function* holder(): Coro<void> {
    using _ = yield* sem.acquire();
    yield sleep(1_000);
  }
  function* failing(): Coro<void> {
    yield;
    throw boom;
  }
  await assert.rejects(
    new Loop().run(function* () {
      yield [holder(), holder(), failing()];
    }()),
    (e) => e === boom,
  );
  const [, got] = await new Loop().run(timeout(sem.acquire(), 20));
  assert.equal(got, true);
});

test("Lock: one at a time, in arrival order", async () => {
  const lock = new Lock();
  const log: string[] = [];
  function* writer(name: string): Coro<void> {
    using _ = yield* lock.acquire();
    log.push(`${name} in`);
    yield sleep(1);
    log.push(`${name} out`);
  }
  await new Loop({ clock: "virtual" }).run(function* () {
    yield [writer("a"), writer("b"), writer("c")];
  }());
  assert.deepEqual(log, ["a in", "a out", "b in", "b out", "c in", "c out"]);
});

// --- Barrier ------------------------------------------------------------------------

test("Barrier: port of tinyio's test_barrier", async () => {
  const barrier = new Barrier(3);
  let count = 0;
  function* foo(): Coro<number> {
    count++;
    const i: number = yield barrier.wait();
    assert.equal(count, 3);
    return i;
  }
  const out = await new Loop().run(function* () {
    return yield [foo(), foo(), foo()];
  }());
  assert.deepEqual([...out].sort(), [0, 1, 2]);
});

test("Barrier: nobody passes before n arrive; later arrivals pass at once", async () => {
  const barrier = new Barrier(3);
  const log: string[] = [];
  function* party(name: string, ms: number): Coro<number> {
    yield sleep(ms);
    log.push(`${name} arrives`);
    const i = yield* barrier.wait();
    log.push(`${name} passes`);
    return i;
  }
  const loop = new Loop({ clock: "virtual" });
  const out = await loop.run(function* () {
    return yield [party("a", 10), party("b", 20), party("c", 30), party("d", 40)];
  }());
  assert.deepEqual(out, [0, 1, 2, 3]);
  assert.deepEqual(log, [
    "a arrives",
    "b arrives",
    "c arrives",
    "c passes",
    "a passes",
    "b passes",
    "d arrives",
    "d passes",
  ]);
});

test("Barrier: a coroutine that stops waiting withdraws its arrival", async () => {
  const barrier = new Barrier(2);
  const log: string[] = [];
  function* gaveUp(): Coro<void> {
    const [, passed] = yield* timeout(barrier.wait(), 10);
    log.push(`gave up: ${!passed}`);
  }
  function* party(name: string, ms: number): Coro<void> {
    yield sleep(ms);
    yield* barrier.wait();
    log.push(`${name} passes at ${loop.now()}`);
  }
  const loop = new Loop({ clock: "virtual" });
  await loop.run(function* () {
    yield [gaveUp(), party("b", 20), party("c", 30)];
  }());
  // The last to arrive goes on without a pause; the woken one follows.
  assert.deepEqual(log, ["gave up: true", "c passes at 30", "b passes at 30"]);
});

// --- asCompleted ----------------------------------------------------------------------

test("asCompleted: port of tinyio's test_as_completed (in finishing order)", async () => {
  const out = await new Loop({ clock: "virtual" }).run(function* () {
    const outs: number[] = [];
    for (const next of yield* asCompleted(new Set([after(30, 30), after(10, 10), after(20, 20)]))) {
      outs.push(yield next);
    }
    return outs;
  }());
  assert.deepEqual(out, [10, 20, 30]);
});

test("asCompleted: port of tinyio's out-of-order test: the k-th handed back is the k-th to finish", async () => {
  const out = await new Loop({ clock: "virtual" }).run(function* () {
    const [get1, get2, get3] = yield* asCompleted(
      new Set([after(30, 30), after(10, 10), after(20, 20)]),
    );
    const out3 = yield* join(get3);
    const out2 = yield* join(get2);
    const out1 = yield* join(get1);
    return [out1, out2, out3];
  }());
  assert.deepEqual(out, [10, 20, 30]);
});

test("asCompleted: takes an array or any iterable, and coroutines that finished already", async () => {
  const loop = new Loop({ clock: "virtual" });
  const early = after(1, "early");
  await loop.run(early);
  const out = await loop.run(function* () {
    function* source(): Generator<Coro<string>> {
      yield after(20, "b");
      yield early;
      yield after(10, "a");
    }
    const fromGen = [...(yield* asCompleted(source()))];
    const fromArray = [...(yield* asCompleted([after(5, "y"), after(2, "x")]))];
    return [yield fromGen, yield fromArray];
  }());
  assert.deepEqual(out, [["early", "a", "b"], ["x", "y"]]);
});

test("asCompleted: all run in the background, even if nobody reads the results", async () => {
  const log: string[] = [];
  function* work(name: string, ms: number): Coro<void> {
    yield sleep(ms);
    log.push(name);
  }
  const loop = new Loop({ clock: "virtual" });
  await loop.run(function* () {
    yield* asCompleted([work("a", 20), work("b", 10)]);
  }());
  assert.deepEqual(log, ["b", "a"]);
  assert.equal(loop.now(), 20);
});

test("asCompleted: an error in one is an error of the run", async () => {
  const boom = new Error("boom");
  const log: string[] = [];
  function* failing(): Coro<never> {
    yield sleep(5);
    throw boom;
  }
  function* slow(): Coro<void> {
    try {
      yield sleep(1_000);
    } catch (e) {
      if (e instanceof CancelledError) log.push("slow cancelled");
      throw e;
    }
  }
  await assert.rejects(
    new Loop({ clock: "virtual" }).run(function* () {
      for (const next of yield* asCompleted([slow(), failing()])) yield next;
    }()),
    (e) => e === boom,
  );
  assert.deepEqual(log, ["slow cancelled"]);
});

test("asCompleted: an empty iterable hands back nothing", async () => {
  const out = await new Loop().run(function* () {
    return [...(yield* asCompleted(new Set<Coro<number>>()))];
  }());
  assert.deepEqual(out, []);
});

test("asCompleted: a non-iterable or a non-coroutine element is a TypeError at the call", () => {
  assert.throws(
    () => asCompleted(5 as unknown as Iterable<Coro>),
    /asCompleted\(\): the argument is 5/,
  );
  assert.throws(
    () => asCompleted([after(1, 1), Promise.resolve(2) as unknown as Coro<number>]),
    /asCompleted\(\): element 1 is a Promise, not a coroutine/,
  );
});

test("asCompleted and Event.wait: the library's waits are coroutines there too", async () => {
  const loop = new Loop({ clock: "virtual" });
  const never = new Event();
  const out = await loop.run(function* () {
    const order: unknown[] = [];
    const waits: Coro<unknown>[] = [sleep(10), never.wait(5)];
    for (const next of yield* asCompleted(waits)) order.push(yield next);
    return order;
  }());
  assert.deepEqual(out, [false, undefined]); // the timed-out wait (5 ms) first, then the sleep
  assert.equal(loop.now(), 10);
});
