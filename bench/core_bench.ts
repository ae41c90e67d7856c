/**
 * The core loop under `deno bench`: bare-yield steps, a gather of 100 000
 * children, a chain 10 000 deep and 10 000 concurrent `sleep(10)`s, each next
 * to what plain JavaScript does for the same work (the group's baseline);
 * and the two ways to wait on the library's waits, `yield w` and `yield* w`.
 *
 * `deno task bench` runs it; `deno task bench:compare` runs the side-by-side
 * comparison with effection and Effect in fresh processes (bench/compare.ts).
 *
 * @module
 */

import { type Coro, Event, Loop, sleep } from "../mod.ts";
import { chain, fanout, sleepers } from "./compare/tinyio.ts";

const STEPS = 100_000;
const CHILDREN = 100_000;
const DEPTH = 10_000;
const SLEEPERS = 10_000;

// --- steps: one coroutine suspends STEPS times --------------------------------

function* spin(n: number): Coro<number> {
  for (let i = 0; i < n; i++) yield;
  return n;
}

Deno.bench("floor: bare gen.next(), 100 000 steps", { group: "steps", baseline: true }, () => {
  const g = spin(STEPS);
  while (g.next().done !== true);
});

Deno.bench("plain async: await null, 100 000 times", { group: "steps" }, async () => {
  for (let i = 0; i < STEPS; i++) await null;
});

Deno.bench("tinyio: bare yield, 100 000 steps", { group: "steps" }, async () => {
  await new Loop().run(spin(STEPS));
});

// --- fanout: gather CHILDREN children that each suspend once ------------------

async function asyncChild(i: number): Promise<number> {
  await null;
  return i;
}

Deno.bench("plain async: Promise.all of 100 000", { group: "fanout", baseline: true }, async () => {
  const children: Promise<number>[] = new Array(CHILDREN);
  for (let i = 0; i < CHILDREN; i++) children[i] = asyncChild(i);
  await Promise.all(children);
});

Deno.bench("tinyio: gather of 100 000", { group: "fanout" }, async () => {
  await new Loop().run(fanout(CHILDREN));
});

// --- chain: coroutine i waits for coroutine i + 1 -----------------------------

async function asyncChain(depth: number): Promise<number> {
  if (depth === 0) {
    await null;
    return 0;
  }
  return (await asyncChain(depth - 1)) + 1;
}

Deno.bench("plain async: chain 10 000 deep", { group: "chain", baseline: true }, async () => {
  await asyncChain(DEPTH);
});

Deno.bench("tinyio: chain 10 000 deep", { group: "chain" }, async () => {
  await new Loop().run(chain(DEPTH));
});

// --- sleepers: SLEEPERS concurrent 10 ms sleeps, gathered ---------------------

Deno.bench(
  "plain async: 10 000 setTimeout(10), Promise.all",
  { group: "sleepers", baseline: true, n: 20, warmup: 2 },
  async () => {
    const sleeps: Promise<void>[] = new Array(SLEEPERS);
    for (let i = 0; i < SLEEPERS; i++) {
      sleeps[i] = new Promise<void>((resolve) => setTimeout(resolve, 10));
    }
    await Promise.all(sleeps);
  },
);

Deno.bench(
  "tinyio: 10 000 sleep(10), gathered",
  { group: "sleepers", n: 20, warmup: 2 },
  async () => {
    await new Loop().run(sleepers(SLEEPERS, 10));
  },
);

// --- waits: `yield w` (a task of its own) against `yield* w` (inline) ---------

const WAITS = 10_000;
const isSet = new Event();
isSet.set();

function* sleepsYielded(n: number): Coro<void> {
  for (let i = 0; i < n; i++) yield sleep(0);
}
function* sleepsDelegated(n: number): Coro<void> {
  for (let i = 0; i < n; i++) yield* sleep(0);
}
function* waitsYielded(n: number): Coro<void> {
  for (let i = 0; i < n; i++) yield isSet.wait();
}
function* waitsDelegated(n: number): Coro<void> {
  for (let i = 0; i < n; i++) yield* isSet.wait();
}

const virtual = new Loop({ clock: "virtual" });

Deno.bench("tinyio: 10 000 × yield* sleep(0), virtual clock", {
  group: "sleep forms",
  baseline: true,
}, async () => {
  await virtual.run(sleepsDelegated(WAITS));
});

Deno.bench("tinyio: 10 000 × yield sleep(0), virtual clock", { group: "sleep forms" }, async () => {
  await virtual.run(sleepsYielded(WAITS));
});

Deno.bench("tinyio: 10 000 × yield* event.wait(), set", {
  group: "wait forms",
  baseline: true,
}, async () => {
  await virtual.run(waitsDelegated(WAITS));
});

Deno.bench("tinyio: 10 000 × yield event.wait(), set", { group: "wait forms" }, async () => {
  await virtual.run(waitsYielded(WAITS));
});
