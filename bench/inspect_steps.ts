/**
 * Is a loop as fast after a snapshot as before? The inspector session a
 * snapshot opens (and the Debugger domain it enables once) must leave no
 * lasting cost. In one process: 15 runs of 1 000 000 bare `yield`s, then
 * five snapshots of 100 parked coroutines, then 15 runs again; it prints the
 * fastest run and the median of each (on a busy machine, trust the fastest).
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

/** Nanoseconds per step of 15 runs of a million steps: "fastest / median". */
async function stepNs(): Promise<string> {
  const times: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    await new Loop().run(spin(1_000_000));
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return `${times[0].toFixed(1)} / ${times[7].toFixed(1)} ns`; // ms per 10⁶ steps = ns per step
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
  `steps (fastest / median): ${before} before, ${after} after five snapshots ` +
    `(${named} of 101 coroutines named: ${named > 0 ? "the inspector was used" : "no inspector"})`,
);
