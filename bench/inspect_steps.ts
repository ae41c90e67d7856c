/**
 * Is a loop as fast after a snapshot as before? The inspector session a
 * snapshot opens (and the Debugger domain it enables once) must leave no
 * lasting cost. In one process: the median of 15 runs of 1 000 000 bare
 * `yield`s, then five snapshots of 100 parked coroutines, then the median
 * again.
 *
 *     deno run --allow-sys --allow-read --allow-env bench/inspect_steps.ts
 *
 * @module
 */

import { type Coro, Event, fromPromise, Loop } from "../mod.ts";

function* spin(n: number): Coro<number> {
  for (let i = 0; i < n; i++) yield;
  return n;
}

/** Nanoseconds per step: the median of 15 runs of a million steps. */
async function stepNs(): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    await new Loop().run(spin(1_000_000));
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[7] * 1e6 / 1_000_000;
}

const before = await stepNs();
const loop = new Loop();
const gate = new Event();
function* parked(): Coro<void> {
  yield* gate.wait();
}
let named = 0;
await loop.run(function* () {
  yield new Set(Array.from({ length: 100 }, parked));
  yield;
  for (let i = 0; i < 5; i++) {
    named = (yield* fromPromise(loop.snapshot())).filter((info) => info.name !== undefined).length;
  }
  gate.set();
}());
const after = await stepNs();
console.log(
  `steps: ${before.toFixed(1)} ns before, ${after.toFixed(1)} ns after five snapshots ` +
    `(${named} of 101 coroutines named: ${named > 0 ? "the inspector was used" : "no inspector"})`,
);
