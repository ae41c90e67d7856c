// Returning to the host (src/host.ts and the slice rules of src/loop.ts): the
// host's timers and promise callbacks run while coroutines stay runnable, also
// when the clock does not move while the loop computes, as in a deployed
// Cloudflare Worker (time moves there only with I/O).
import assert from "node:assert/strict";
import { type Coro, Loop, sleep } from "../mod.ts";
import { HOST_RETURN, toHost } from "../src/host.ts";
import { test } from "./_helper.ts";

// With the old rule (return to the host only after 4 ms by the clock) a frozen
// clock never let the host run: these spinners would give up after this many
// bare yields. The new rule returns every 256 clock reads, so at most every
// 256 × 1024 steps.
const GIVE_UP = 5_000_000;

/**
 * Runs `fn` with `performance.now` replaced by `now` (restored after), the way
 * a runtime whose clock stands still between I/O behaves.
 */
async function withClock<T>(now: () => number, fn: () => Promise<T>): Promise<T> {
  const own = Object.getOwnPropertyDescriptor(performance, "now");
  Object.defineProperty(performance, "now", { value: now, configurable: true, writable: true });
  try {
    return await fn();
  } finally {
    if (own) Object.defineProperty(performance, "now", own);
    else delete (performance as { now?: unknown }).now;
  }
}

test("host return: setImmediate where it exists, else a MessageChannel (browsers), else setTimeout (workerd)", () => {
  const workerd = typeof navigator === "object" && navigator.userAgent === "Cloudflare-Workers";
  const expected = typeof setImmediate === "function"
    ? "setImmediate"
    : typeof MessageChannel === "function" && !workerd
    ? "MessageChannel"
    : "setTimeout";
  assert.equal(HOST_RETURN, expected);
});

test("host return: a due timer fires within a few hops (a MessageChannel hop in Deno or workerd would starve it)", async () => {
  let fired = false;
  const id = setTimeout(() => fired = true, 5);
  const started = performance.now();
  let hops = 0;
  try {
    while (!fired && hops < 100_000) {
      await toHost();
      hops++;
    }
  } finally {
    clearTimeout(id);
  }
  const took = performance.now() - started;
  assert.ok(fired, `a 5 ms timer had not fired after ${hops} hops (${took.toFixed(0)} ms)`);
  assert.ok(took < 1_000, `a 5 ms timer fired only after ${took.toFixed(0)} ms`);
});

test("frozen clock: a host timer and a promise callback run while a coroutine spins on bare yields", async () => {
  const frozen = performance.now();
  let timerRan = false;
  let promiseRan = false;
  let spins = 0;
  function* spinner(): Coro<void> {
    // Both are host callbacks: the loop steps synchronously between its
    // returns to the host, so neither can run before such a return.
    const id = setTimeout(() => timerRan = true, 0);
    Promise.resolve().then(() => promiseRan = true);
    try {
      while (!(timerRan && promiseRan) && spins < GIVE_UP) {
        spins++;
        yield;
      }
    } finally {
      clearTimeout(id);
    }
  }
  await withClock(() => frozen, () => new Loop().run(spinner()));
  assert.ok(promiseRan, `the promise callback did not run in ${spins} bare yields`);
  assert.ok(timerRan, `the timer did not run in ${spins} bare yields`);
  assert.ok(spins < 1_000_000, `the host got its turn only after ${spins} bare yields`);
});

test("frozen clock: many spinning coroutines still let a host timer run", async () => {
  const frozen = performance.now();
  let timerRan = false;
  let spins = 0;
  function* spinner(): Coro<void> {
    while (!timerRan && spins < GIVE_UP) {
      spins++;
      yield;
    }
  }
  const id = setTimeout(() => timerRan = true, 0);
  try {
    await withClock(() => frozen, () =>
      new Loop().run(function* (): Coro<void> {
        yield Array.from({ length: 1_000 }, spinner);
      }()));
  } finally {
    clearTimeout(id);
  }
  assert.ok(timerRan, `the timer did not run in ${spins} bare yields`);
});

test("frozen clock, virtual time: a coroutine sleeping in a loop still lets a host timer run", async () => {
  const frozen = performance.now();
  let timerRan = false;
  let naps = 0;
  const loop = new Loop({ clock: "virtual" });
  function* napper(): Coro<void> {
    while (!timerRan && naps < GIVE_UP) {
      naps++;
      yield sleep(1_000);
    }
  }
  const id = setTimeout(() => timerRan = true, 0);
  try {
    await withClock(() => frozen, () => loop.run(napper()));
  } finally {
    clearTimeout(id);
  }
  assert.ok(timerRan, `the timer did not run in ${naps} virtual sleeps`);
  assert.equal(loop.now(), naps * 1_000);
});

test("clock moved only by host callbacks: a sleep wakes while a coroutine spins on bare yields", async () => {
  // The clock stands still while the loop steps and moves when the host runs a
  // callback, as on Cloudflare; here a host timer chain moves it every 1 ms.
  const realNow = performance.now.bind(performance);
  let time = realNow();
  let ticking = true;
  let tick: ReturnType<typeof setTimeout> | undefined;
  const move = () => {
    time = realNow();
    if (ticking) tick = setTimeout(move, 1);
  };
  move();
  let slept = false;
  let gaveUp = false;
  function* sleeper(): Coro<void> {
    yield sleep(20);
    slept = true;
  }
  const started = realNow();
  function* spinner(): Coro<void> {
    // Gives up after 3 s of real time: the old rule never let the host run,
    // so the clock never moved and the sleep woke only after this gave up.
    while (!slept && !(gaveUp = realNow() - started > 3_000)) yield;
  }
  try {
    await withClock(() => time, () =>
      new Loop().run(function* (): Coro<void> {
        yield [sleeper(), spinner()];
      }()));
  } finally {
    ticking = false;
    clearTimeout(tick);
  }
  const took = realNow() - started;
  assert.ok(!gaveUp, "the sleep did not wake while a coroutine spun on bare yields");
  assert.ok(took >= 19 && took < 2_000, `the 20 ms sleep woke after ${took} ms`);
});
