/**
 * Steps and fanout on Effect 3 (3.22.4), the version the performance issue
 * set its targets against; the other rows use the current Effect (4.x).
 *
 * @module
 */

import { Effect } from "effect3";
import { type Contender, SIZE, timeMs, timeVsFloor } from "./common.ts";

const spin = (n: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < n; i++) yield* Effect.yieldNow();
  });

const child = (i: number) =>
  Effect.gen(function* () {
    yield* Effect.yieldNow();
    return i;
  });

const fanout = (n: number) =>
  Effect.gen(function* () {
    const children: Effect.Effect<number>[] = new Array(n);
    for (let i = 0; i < n; i++) children[i] = child(i);
    return (yield* Effect.all(children, { concurrency: "unbounded" })).length;
  });

/** Effect 3's side of steps and fanout. */
export const contender: Contender = {
  steps: () => timeVsFloor(() => Effect.runPromise(spin(SIZE.steps))),
  fanout: () => timeMs(() => Effect.runPromise(fanout(SIZE.fanout))),
};
