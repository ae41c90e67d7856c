/**
 * What seeing inside costs: a snapshot, a failing run whose trace is
 * stitched, a failing `isolate` in a retry loop (bench/inspect_steps.ts
 * checks that a loop steps as fast after a snapshot as before). Run it
 * twice, to see both paths:
 *
 *     deno bench --allow-sys --allow-read --allow-env bench/inspect_bench.ts
 *     deno bench bench/inspect_bench.ts   # no inspector: nothing is read
 *
 * @module
 */

import { type Coro, Event, fromPromise, isolate, Loop } from "../mod.ts";

// --- snapshots ------------------------------------------------------------------

/** Runs `n` coroutines parked on an event and takes a snapshot of them. */
async function snapshotOf(n: number): Promise<void> {
  const loop = new Loop();
  const gate = new Event();
  function* parked(): Coro<void> {
    yield* gate.wait();
  }
  function* main(): Coro<void> {
    yield new Set(Array.from({ length: n }, parked));
    yield;
    const infos = yield* fromPromise(loop.snapshot());
    if (infos.length !== n + 1) throw new Error(`${infos.length} coroutines`);
    gate.set();
  }
  await loop.run(main());
}

Deno.bench("snapshot of 10 coroutines", { group: "snapshot" }, () => snapshotOf(10));
Deno.bench("snapshot of 1 000 coroutines", { group: "snapshot" }, () => snapshotOf(1_000));

// --- failures ---------------------------------------------------------------------

function* failing(depth: number): Coro<void> {
  if (depth === 0) {
    yield;
    throw new Error("fails");
  }
  yield failing(depth - 1);
}

Deno.bench("a run fails: no waiter", { group: "failure" }, async () => {
  await new Loop().run(failing(0)).catch(() => {});
});

Deno.bench("a run fails: a chain of 10 waiters, stitched", { group: "failure" }, async () => {
  await new Loop().run(failing(10)).catch(() => {});
});

// --- a retry loop of failing isolates -------------------------------------------

/** 100 attempts at an isolated `failing(depth)`, each failing. */
function* retries(depth: number): Coro<number> {
  let failures = 0;
  for (let i = 0; i < 100; i++) {
    const [, ok] = yield* isolate(failing(depth));
    if (!ok) failures++;
  }
  return failures;
}

Deno.bench("100 failing isolates: the coroutine fails itself", { group: "isolate" }, async () => {
  await new Loop().run(retries(0));
});

Deno.bench("100 failing isolates: through a waiter", { group: "isolate" }, async () => {
  await new Loop().run(retries(1));
});
