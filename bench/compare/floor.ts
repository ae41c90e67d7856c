/**
 * The floor: what the engine itself costs, with no scheduler at all — bare
 * `gen.next()` steps, one `setTimeout` of the sleep's length, a bare
 * suspended generator.
 *
 * @module
 */

import { bareSteps, bytesPerParked, type Contender, SIZE, timeMs, timeVsFloor } from "./common.ts";

function* suspendOnce(): Generator<void, void, unknown> {
  yield;
}

/** The engine's side: the floor under every workload it has one for. */
export const contender: Contender = {
  steps: () => timeVsFloor(() => bareSteps(SIZE.steps)),
  sleepers: () => timeMs(() => new Promise((resolve) => setTimeout(resolve, SIZE.sleepMs))),
  // Parked: a generator object started once (suspended at its first `yield`), held in an array.
  memory: () =>
    bytesPerParked((n) => {
      const parked: Generator<void, void, unknown>[] = new Array(n);
      for (let i = 0; i < n; i++) {
        parked[i] = suspendOnce();
        parked[i].next();
      }
      const release = () => {
        for (const g of parked) g.next();
      };
      return Promise.resolve({ release, done: Promise.resolve() });
    }),
};
