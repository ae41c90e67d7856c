// Seeing inside: loop.snapshot(), formatSnapshot, stitched traces and named
// cycles. These tests run with --allow-sys (deno.json's test task), so names
// and TypeScript locations are there; the paths without it run in child
// processes (tests/fixtures/inspect_*.ts). Locations are checked against this
// file's own source: `at("name")` is the line ending in the marker comment
// `// @name`, at the column of its `yield`.
import assert from "node:assert/strict";
import {
  Barrier,
  CancelledError,
  type Coro,
  type CoroutineInfo,
  Event,
  formatSnapshot,
  fromPromise,
  isolate,
  Lock,
  Loop,
  runInThread,
  Semaphore,
  shield,
  sleep,
  timeout,
} from "../mod.ts";
import { test } from "./_helper.ts";

const source = Deno.readTextFileSync(new URL(import.meta.url)).split("\n");

/** Where the line marked `// @marker` is suspended: this file, its line, the column of its `yield`. */
function at(marker: string): string {
  const line = source.findIndex((l) => l.endsWith(`// @${marker}`));
  assert.ok(line >= 0, `no line marked @${marker}`);
  return `${import.meta.url}:${line + 1}:${source[line].indexOf("yield") + 1}`;
}

/** The line marked `// @marker`, counted from 1. */
function lineOf(marker: string): number {
  return source.findIndex((l) => l.endsWith(`// @${marker}`)) + 1;
}

const SRC = new URL("../src/", import.meta.url).href;

/** Runs `deno run <flags> tests/fixtures/<name>` with no prompt possible; returns its output. */
async function denoRun(flags: string[], name: string) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, new URL(`./fixtures/${name}`, import.meta.url).pathname],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

// --- Snapshots -----------------------------------------------------------------

test("snapshot: ids in start order, queued, running, waiting on one coroutine and on a gather, waiters, starters, names and locations", async () => {
  const loop = new Loop();
  const gate = new Event();
  let infos: CoroutineInfo[] = [];
  function* leaf(): Coro<void> {
    yield* gate.wait(); // @leaf
  }
  function* single(c: Coro<void>): Coro<void> {
    yield c; // @single
  }
  function* spinner(): Coro<void> {
    while (!gate.isSet()) yield; // @spin
  }
  function* observer(): Coro<void> {
    yield; // the others start and park first
    yield;
    infos = yield* fromPromise(loop.snapshot()); // @observer
    gate.set();
  }
  function* main(): Coro<void> {
    const shared = leaf();
    yield [single(shared), single(shared), spinner(), observer()]; // @main
  }
  await loop.run(main());
  const common = { shielded: false };
  assert.deepEqual(infos, [
    {
      id: 1,
      name: "main",
      location: at("main"),
      state: "waiting",
      waitingFor: "coroutines 2, 3, 4, 5",
      waitedOnBy: [],
      ...common,
    },
    {
      id: 2,
      name: "single",
      location: at("single"),
      state: "waiting",
      waitingFor: "coroutine 6",
      waitedOnBy: [1],
      startedBy: 1,
      ...common,
    },
    {
      id: 3,
      name: "single",
      location: at("single"),
      state: "waiting",
      waitingFor: "coroutine 6",
      waitedOnBy: [1],
      startedBy: 1,
      ...common,
    },
    {
      id: 4,
      name: "spinner",
      location: at("spin"),
      state: "queued",
      waitingFor: "",
      waitedOnBy: [1],
      startedBy: 1,
      ...common,
    },
    {
      id: 5,
      name: "observer",
      location: at("observer"),
      state: "running",
      waitingFor: "",
      waitedOnBy: [1],
      startedBy: 1,
      ...common,
    },
    {
      id: 6,
      name: "leaf",
      location: at("leaf"),
      state: "waiting",
      waitingFor: "Event",
      waitedOnBy: [2, 3],
      startedBy: 2,
      ...common,
    },
  ]);
});

test("snapshot: ids are kept by later snapshots, newcomers numbered after; an idle loop has none", async () => {
  const loop = new Loop();
  assert.deepEqual(await loop.snapshot(), []);
  const gate = new Event();
  const seen: number[][] = [];
  function* parked(): Coro<void> {
    yield* gate.wait();
  }
  function* main(): Coro<void> {
    yield new Set([parked()]);
    yield;
    seen.push((yield* fromPromise(loop.snapshot())).map((i) => i.id));
    yield new Set([parked(), parked()]);
    yield;
    seen.push((yield* fromPromise(loop.snapshot())).map((i) => i.id));
    gate.set();
  }
  await loop.run(main());
  assert.deepEqual(seen, [[1, 2], [1, 2, 3, 4]]);
  assert.deepEqual(await loop.snapshot(), []);
  // A later run of the same loop goes on numbering.
  await loop.run(function* () {
    seen.push((yield* fromPromise(loop.snapshot())).map((i) => i.id));
  }());
  assert.deepEqual(seen[2], [5]);
});

test("snapshot: sleep and timeout tell the time left on the virtual clock, exactly", async () => {
  const loop = new Loop({ clock: "virtual" });
  let infos: CoroutineInfo[] = [];
  function* sleeper(ms: number): Coro<void> {
    yield* sleep(ms); // @sleeper
  }
  function* viaTask(): Coro<void> {
    yield sleep(25); // @viaTask
  }
  function* main(): Coro<void> {
    yield new Set([sleeper(40), viaTask(), timeout(sleeper(Infinity), 50)]);
    yield* sleep(10); // the clock jumps to 10
    infos = yield* fromPromise(loop.snapshot());
  }
  await loop.run(main());
  assert.equal(loop.now(), 50);
  const of = (id: number) => infos.find((i) => i.id === id)!;
  // 1 main, 2 sleeper(40), 3 viaTask, 4 the timeout's coroutine, 5 viaTask's
  // sleep(25) (a coroutine of its own: yielded without *), 6 the timed sleeper.
  assert.deepEqual(infos.map((i) => [i.id, i.name ?? null, i.state, i.waitingFor]), [
    [1, "main", "running", ""],
    [2, "sleeper", "waiting", "sleep (30 ms left)"],
    [3, "viaTask", "waiting", "coroutine 5"],
    [4, "timingOut", "waiting", "coroutine 6 (timeout: 40 ms left)"],
    [5, null, "waiting", "sleep (15 ms left)"],
    [6, "sleeper", "waiting", "sleep (forever)"],
  ]);
  assert.equal(of(2).location, at("sleeper"));
  assert.equal(of(3).location, at("viaTask"));
  assert.equal(of(6).startedBy, 4);
  assert.deepEqual(of(6).waitedOnBy, [4]); // through the timeout
  assert.deepEqual([of(5).startedBy, of(5).waitedOnBy, of(5).location], [3, [3], undefined]);
  assert.deepEqual([of(2).startedBy, of(4).startedBy], [undefined, undefined]); // background
});

test("snapshot: sleep tells the time left on the real clock", async () => {
  const loop = new Loop();
  let left = -1;
  function* main(): Coro<void> {
    yield new Set([sleep(200)]);
    const infos = yield* fromPromise(loop.snapshot());
    left = Number(/^sleep \((\d+) ms left\)$/.exec(infos[1].waitingFor)?.[1]);
  }
  await loop.run(main());
  assert.ok(left > 100 && left <= 200, `${left} ms left`);
});

test("snapshot: Event, Event with a timeout, Semaphore(2), Lock, Barrier, a promise and a thread", async () => {
  const loop = new Loop();
  const gate = new Event();
  const sem = new Semaphore(2);
  const lock = new Lock();
  const barrier = new Barrier(3);
  let infos: CoroutineInfo[] = [];
  function* holdSemaphore(): Coro<void> {
    using _ = yield* sem.acquire();
    yield* gate.wait();
  }
  function* waitSemaphore(): Coro<void> {
    using _ = yield* sem.acquire();
  }
  function* holdLock(): Coro<void> {
    using _ = yield* lock.acquire();
    yield* gate.wait();
  }
  function* waitLock(): Coro<void> {
    using _ = yield* lock.acquire();
  }
  function* atBarrier(): Coro<void> {
    yield* barrier.wait();
  }
  function* timedWait(): Coro<void> {
    yield* gate.wait(60_000);
  }
  function* onPromise(): Coro<void> {
    yield* fromPromise((signal) => gatePromise(signal));
  }
  function* onThread(): Coro<void> {
    yield* runInThread(() => new Promise((resolve) => setTimeout(resolve, 50)));
  }
  const gatePromise = (signal: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      if (gate.isSet()) resolve();
      const id = setInterval(() => gate.isSet() && (clearInterval(id), resolve()), 1);
      signal.addEventListener("abort", () => (clearInterval(id), reject(signal.reason)));
    });
  function* control(): Coro<void> {
    for (let i = 0; i < 5; i++) yield;
    infos = yield* fromPromise(loop.snapshot());
    gate.set();
    yield* barrier.wait();
  }
  await loop.run(function* () {
    yield [
      holdSemaphore(),
      holdSemaphore(),
      waitSemaphore(),
      holdLock(),
      waitLock(),
      atBarrier(),
      atBarrier(),
      timedWait(),
      onPromise(),
      onThread(),
      control(),
    ];
  }());
  const said = Object.fromEntries(infos.slice(1).map((i) => [i.id, i.waitingFor]));
  const left = Number(/^Event \((\d+) ms left\)$/.exec(said[9])?.[1]);
  assert.ok(left > 59_000 && left <= 60_000, said[9]);
  assert.deepEqual({ ...said, 9: "timed" }, {
    2: "Event",
    3: "Event",
    4: "Semaphore(2)",
    5: "Event",
    6: "Lock",
    7: "Barrier(3): 2 arrived",
    8: "Barrier(3): 2 arrived",
    9: "timed",
    10: "promise",
    11: "thread",
    12: "",
  });
});

test("snapshot: an isolated loop's coroutines are listed, its coroutine started by the one waiting on it", async () => {
  const loop = new Loop();
  const gate = new Event();
  let infos: CoroutineInfo[] = [];
  function* background(): Coro<void> {
    yield* gate.wait();
  }
  function* inner(): Coro<void> {
    yield* gate.wait(); // @inner
  }
  function* nested(): Coro<void> {
    yield new Set([background()]);
    yield inner(); // @nested
  }
  function* outer(): Coro<void> {
    yield* isolate(nested()); // @isolate
  }
  function* main(): Coro<void> {
    yield new Set([outer()]);
    for (let i = 0; i < 4; i++) yield;
    infos = yield* fromPromise(loop.snapshot());
    gate.set();
  }
  await loop.run(main());
  // The loop's run first (1 main, 2 outer), then the isolated loop's (3 nested, 4 background, 5 inner).
  assert.deepEqual(
    infos.map((i) => [i.id, i.name, i.waitingFor, i.startedBy, i.waitedOnBy, i.location]),
    [
      [1, "main", "", undefined, [], infos[0].location],
      [2, "outer", "isolated loop (coroutine 3)", undefined, [], at("isolate")],
      [3, "nested", "coroutine 5", 2, [2], at("nested")],
      [4, "background", "Event", undefined, [], infos[3].location],
      [5, "inner", "Event", 3, [3], at("inner")],
    ],
  );
  assert.equal(
    formatSnapshot(infos).split("\n").map((l) => l.replace(/ \(at .*\)$/, "")).join("\n"),
    [
      "#1 main: running",
      "#2 outer: waiting for isolated loop (coroutine 3)",
      "└─ #3 nested: waiting for coroutine 5",
      "   └─ #5 inner: waiting for Event",
      "#4 background: waiting for Event",
    ].join("\n"),
  );
});

test("snapshot: during a crash, the coroutines not yet cancelled are cancelling", async () => {
  const loop = new Loop();
  const gate = new Event();
  let taken: Promise<CoroutineInfo[]> | undefined;
  function* cleanup(first: boolean): Coro<void> {
    try {
      yield* gate.wait();
    } finally {
      if (first) taken = loop.snapshot(); // while it is being cancelled
    }
  }
  function* failing(): Coro<void> {
    yield;
    throw new Error("boom");
  }
  const error = await loop.run(function* () {
    yield [cleanup(true), cleanup(false), failing()];
  }()).catch((e) => e);
  assert.equal(error.message, "boom");
  const infos = await taken!;
  assert.deepEqual(infos.map((i) => [i.id, i.name, i.state, i.waitingFor]), [
    [1, "cleanup", "cancelling", ""], // the first snapshot of the loop numbers them
    [2, "cleanup", "cancelling", "Event"],
  ]);
  // Both closed by the time the positions were read: no location rather than a wrong one.
  assert.deepEqual(infos.map((i) => i.location), [undefined, undefined]);
});

test("snapshot: what a shield waits on, and what that waits on, is shielded", async () => {
  const loop = new Loop();
  const gate = new Event();
  let infos: CoroutineInfo[] = [];
  function* deep(): Coro<void> {
    yield* gate.wait();
  }
  function* work(): Coro<void> {
    yield deep();
  }
  function* guarded(): Coro<void> {
    yield* shield(work());
  }
  function* main(): Coro<void> {
    yield new Set([guarded(), deep()]);
    for (let i = 0; i < 4; i++) yield;
    infos = yield* fromPromise(loop.snapshot());
    gate.set();
  }
  await loop.run(main());
  assert.deepEqual(infos.map((i) => [i.id, i.name, i.shielded, i.waitingFor]), [
    [1, "main", false, ""],
    [2, "guarded", false, "shield (coroutine 4)"],
    [3, "deep", false, "Event"],
    [4, "work", true, "coroutine 5"],
    [5, "deep", true, "Event"],
  ]);
  assert.match(formatSnapshot(infos), /#4 work: waiting for coroutine 5 \[shielded\]/);
});

test("snapshot: the loop steps nothing while positions are read, so they agree with the states", async () => {
  const loop = new Loop();
  let steps = 0;
  let stop = false;
  function* flip(): Coro<void> {
    while (!stop) {
      steps++;
      yield; // @odd
      steps++;
      yield; // @even
    }
  }
  const wrong: string[] = [];
  const check = (stepsThen: number, info: CoroutineInfo | undefined) => {
    const expected = at(stepsThen % 2 === 1 ? "odd" : "even");
    if (info?.location !== expected) wrong.push(`after ${stepsThen} steps: ${info?.location}`);
  };
  // Taken by a coroutine, in the middle of the loop's steps: without the
  // pause, `flip` would step on for milliseconds before the inspector answers.
  function* observer(): Coro<void> {
    for (let i = 0; i < 20; i++) {
      for (let k = 0; k <= i % 3; k++) yield;
      const stepsThen = steps;
      const infos = yield* fromPromise(loop.snapshot());
      check(stepsThen, infos.find((info) => info.name === "flip"));
    }
  }
  const running = loop.run(function* () {
    yield new Set([flip()]);
    yield observer();
    // And from a timer, between the loop's turns.
    for (let i = 0; i < 5; i++) {
      yield* fromPromise(new Promise((resolve) => setTimeout(resolve, 1)));
      const stepsThen = steps;
      const infos = yield* fromPromise(loop.snapshot());
      check(stepsThen, infos.find((info) => info.name === "flip"));
    }
    stop = true;
  }());
  await running;
  assert.deepEqual(wrong, []);
  assert.ok(steps > 40);
});

// --- formatSnapshot ------------------------------------------------------------

test("formatSnapshot: a tree under starters, else under a waiter; the others at the top", () => {
  const info = (id: number, more: Partial<CoroutineInfo>): CoroutineInfo => ({
    id,
    state: "waiting",
    waitingFor: "",
    waitedOnBy: [],
    shielded: false,
    ...more,
  });
  const text = formatSnapshot([
    info(1, { name: "main", waitingFor: "coroutines 2, 3", location: "file:///x.ts:9:5" }),
    info(2, { name: "a", waitingFor: "coroutine 4", waitedOnBy: [1], startedBy: 1 }),
    info(3, { name: "b", waitingFor: "coroutine 4", waitedOnBy: [1], startedBy: 1 }),
    info(4, { name: "shared", waitingFor: "Event", waitedOnBy: [2, 3], startedBy: 2 }),
    info(5, { state: "queued", waitedOnBy: [6] }), // started in the background, then waited on
    info(6, { waitingFor: "coroutine 5", shielded: true }),
    info(7, { state: "cancelling", waitingFor: "sleep (3 ms left)" }),
    info(8, { state: "running" }),
  ]);
  assert.equal(
    text,
    [
      "#1 main: waiting for coroutines 2, 3 (at file:///x.ts:9:5)",
      "├─ #2 a: waiting for coroutine 4",
      "│  └─ #4 shared: waiting for Event, also waited on by #3",
      "└─ #3 b: waiting for coroutine 4",
      "#6: waiting for coroutine 5 [shielded]",
      "└─ #5: queued",
      "#7: cancelling, waiting for sleep (3 ms left)",
      "#8: running",
    ].join("\n"),
  );
  assert.equal(formatSnapshot([]), "(no unfinished coroutines)");
});

test("formatSnapshot: coroutines waiting on each other in a circle do not loop; a 10 000 deep chain stays narrow", () => {
  const base = { state: "waiting" as const, shielded: false };
  const circle = formatSnapshot([
    { id: 1, ...base, waitingFor: "coroutine 2", waitedOnBy: [2] },
    { id: 2, ...base, waitingFor: "coroutine 1", waitedOnBy: [1] },
  ]);
  assert.equal(
    circle,
    "#1: waiting for coroutine 2, also waited on by #2\n└─ #2: waiting for coroutine 1",
  );
  const n = 10_000;
  const chain = Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    ...base,
    waitingFor: i + 1 < n ? `coroutine ${i + 2}` : "Event",
    waitedOnBy: i === 0 ? [] : [i],
    startedBy: i === 0 ? undefined : i,
  }));
  const lines = formatSnapshot(chain).split("\n");
  assert.equal(lines.length, n);
  assert.ok(Math.max(...lines.map((l) => l.length)) < 150);
  assert.match(lines[n - 1], /└─ \[depth 9999\] #10000: waiting for Event$/);
});

// --- Stitched traces -------------------------------------------------------------

// Each fails after a sleep, in a later turn of the loop than the first: an
// error of the first turn also has the frames of the code that called `run`
// (see the test "… the first turn …").
function* leaf(): Coro<void> {
  yield* sleep(1);
  throw new Error("boom"); // @throw
}
function* middle(): Coro<void> {
  yield leaf(); // @middle
}
function* viaTimeout(): Coro<void> {
  yield* timeout(middle(), 60_000); // @viaTimeout
}
function* top(): Coro<void> {
  yield [viaTimeout(), sleep(1)]; // @top
}

test("stitched trace: a frame per waiter up the chain (through a timeout and a gather), in this file's lines, and none of the loop's", async () => {
  const error = await new Loop().run(top()).catch((e) => e);
  assert.equal(
    error.stack,
    [
      "Error: boom",
      `    at leaf (${import.meta.url}:${lineOf("throw")}:9)`,
      `    at middle (${at("middle")})`,
      `    at viaTimeout (${at("viaTimeout")})`,
      `    at top (${at("top")})`,
    ].join("\n"),
  );
});

test("stitched trace: the waiters are cancelled after their positions are read, and nothing steps meanwhile", async () => {
  let spins = 0;
  let spinsAtThrow = -1;
  let spinsAtCancel = -1;
  let stop = false;
  function* spinner(): Coro<void> {
    try {
      while (!stop) {
        spins++;
        yield;
      }
    } catch (e) {
      spinsAtCancel = spins;
      throw e;
    }
  }
  function* failing(): Coro<void> {
    for (let i = 0; i < 10; i++) yield;
    spinsAtThrow = spins;
    throw new Error("boom");
  }
  function* waiter(): Coro<void> {
    yield failing(); // @waiter
  }
  const error = await new Loop().run(function* () {
    yield [spinner(), waiter()];
  }()).catch((e) => e);
  stop = true;
  assert.ok(error.stack.includes(`    at waiter (${at("waiter")})`), error.stack);
  assert.ok(spinsAtThrow > 0);
  assert.equal(spinsAtCancel, spinsAtThrow);
});

test("stitched trace: a coroutine with two waiters ends the chain", async () => {
  function* shared(): Coro<void> {
    yield* sleep(1);
    throw new Error("shared"); // @shared
  }
  function* one(c: Coro<void>): Coro<void> {
    yield c;
  }
  const c = shared();
  const diamond = await new Loop().run(function* () {
    yield [one(c), one(c)];
  }()).catch((e) => e);
  assert.equal(
    diamond.stack,
    `Error: shared\n    at shared (${import.meta.url}:${lineOf("shared")}:11)`,
  );
});

test("stitched trace: an isolated loop's error loses the loop's frames but is not stitched, until it fails the outer run", async () => {
  function* isolated(): Coro<Error> {
    const [error] = yield* isolate(middle());
    return error as Error;
  }
  const inside = await new Loop().run(isolated());
  const leafFrame = `    at leaf (${import.meta.url}:${lineOf("throw")}:9)`;
  assert.equal(inside.stack, `Error: boom\n${leafFrame}`);

  function* rethrows(): Coro<void> {
    const [error] = yield* isolate(middle());
    throw error;
  }
  function* caller(): Coro<void> {
    yield rethrows(); // @caller
  }
  const outer = await new Loop().run(caller()).catch((e) => e);
  assert.equal(outer.stack, `Error: boom\n${leafFrame}\n    at caller (${at("caller")})`);
});

test("stitched trace: two loops failing at once each get their own waiters' frames", async () => {
  function* failsA(): Coro<void> {
    yield* sleep(1);
    throw new Error("A");
  }
  function* waitsA(): Coro<void> {
    yield failsA(); // @waitsA
  }
  function* failsB(): Coro<void> {
    yield* sleep(1);
    throw new Error("B");
  }
  function* waitsB(): Coro<void> {
    yield failsB(); // @waitsB
  }
  const errors = await Promise.all(
    [waitsA(), waitsB(), waitsA(), waitsB()].map((c) => new Loop().run(c).catch((e) => e)),
  );
  assert.deepEqual(
    errors.map((e) => e.stack.split("\n").at(-1)),
    [at("waitsA"), at("waitsB"), at("waitsA"), at("waitsB")].map((l, i) =>
      `    at ${i % 2 === 0 ? "waitsA" : "waitsB"} (${l})`
    ),
  );
});

test("stitched trace: at most 64 frames; a chain 10 000 deep fails in bounded time without overflowing the stack", async () => {
  function* chain(n: number): Coro<void> {
    if (n === 0) {
      yield* sleep(1);
      throw new Error("deep");
    }
    yield chain(n - 1); // @chain
  }
  const t0 = performance.now();
  const error = await new Loop().run(chain(10_000)).catch((e) => e);
  const took = performance.now() - t0;
  assert.equal(error.message, "deep");
  const frames = error.stack.split("\n").slice(2);
  assert.equal(frames.length, 64);
  assert.ok(frames.every((f: string) => f === `    at chain (${at("chain")})`), frames[0]);
  assert.ok(took < 5_000, `took ${took} ms`);
});

test("stitched trace: an error of the run's first turn keeps the frames of the code that called run(), below the stitched ones", async () => {
  function* failsAtOnce(): Coro<void> {
    yield;
    throw new Error("at once"); // @atOnce
  }
  function* waitsAtOnce(): Coro<void> {
    yield failsAtOnce(); // @waitsAtOnce
  }
  const error = await new Loop().run(waitsAtOnce()).catch((e) => e); // @runCall
  const lines = error.stack.split("\n");
  assert.deepEqual(lines.slice(0, 3), [
    "Error: at once",
    `    at failsAtOnce (${import.meta.url}:${lineOf("atOnce")}:11)`,
    `    at waitsAtOnce (${at("waitsAtOnce")})`,
  ]);
  // Then this test's function, which called run(): the first turn steps synchronously in there.
  assert.match(lines[3], new RegExp(`^    at .*${import.meta.url}:${lineOf("runCall")}:\\d+\\)?$`));
  assert.ok(!error.stack.includes(SRC), error.stack);
  assert.doesNotMatch(error.stack, /\((next|throw) |new Promise \(<anonymous>\)/);
});

test("stitched trace: the loop's frames go also from an error without waiters", async () => {
  const lonely = await new Loop().run(function* () {
    yield* sleep(1);
    throw new Error("later"); // @lonely
  }()).catch((e) => e);
  assert.equal(lonely.stack, `Error: later\n    at ${import.meta.url}:${lineOf("lonely")}:11`);
});

test("stitched trace: a thrown value that is not an Error is passed through untouched", async () => {
  const odd = { stack: "    at somewhere (file:///x/src/core.ts:1:1)" };
  function* throws(value: unknown): Coro<void> {
    yield;
    throw value;
  }
  function* waiter(value: unknown): Coro<void> {
    yield throws(value);
  }
  for (const value of ["plain", 42, odd]) {
    const thrown = await new Loop().run(waiter(value)).catch((e) => e);
    assert.equal(thrown, value);
  }
  assert.equal(odd.stack, "    at somewhere (file:///x/src/core.ts:1:1)");
});

// --- Cycles ----------------------------------------------------------------------

test("cycle: the error names the coroutines of the cycle, with where they wait and what for", async () => {
  function* a(): Coro<void> {
    yield bb; // @cycleA
  }
  function* b(): Coro<void> {
    yield aa; // @cycleB
  }
  const aa = a();
  const bb = b();
  const error = await new Loop().run(function* () {
    yield [aa, sleep(1)];
  }()).catch((e) => e);
  assert.match(error.message, /cycle/i);
  assert.ok(
    error.message.includes(
      `#2 a (at ${at("cycleA")}) waits for coroutine 3; #3 b (at ${
        at("cycleB")
      }) waits for coroutine 2`,
    ),
    error.message,
  );
  assert.equal(error.stack, `Error: ${error.message}`);
});

// --- Without the permission, and where a file cannot be mapped -------------------

test("without --allow-sys: no prompt, no error; snapshots without names and locations, traces without stitched frames", async () => {
  const { code, stdout, stderr } = await denoRun([], "inspect_nothing.ts");
  assert.equal(code, 0, stderr);
  assert.equal(stderr, "");
  const out = JSON.parse(stdout);
  assert.deepEqual(out.infos, [
    { id: 1, state: "waiting", waitingFor: "coroutine 2", waitedOnBy: [], shielded: false },
    {
      id: 2,
      state: "running",
      waitingFor: "",
      waitedOnBy: [1],
      startedBy: 1,
      shielded: false,
    },
  ]);
  assert.match(
    out.stack,
    /^Error: boom\n {4}at leaf \(file:\/\/\/.*inspect_nothing\.ts:\d+:\d+\)$/,
  );
  assert.match(out.cycle, /#1 waits for coroutine 1\. Cancelling the run\.$/);
});

test("with --allow-sys but no way to find a source map: names, a .js file's locations, no .ts location", async () => {
  const { code, stdout, stderr } = await denoRun(["--allow-sys"], "inspect_unmapped.ts");
  assert.equal(code, 0, stderr);
  const out = JSON.parse(stdout);
  const js = new URL("./fixtures/inspect_module.js", import.meta.url).href;
  assert.deepEqual(out.infos.map((i: CoroutineInfo) => [i.name, i.location]), [
    ["main", undefined],
    ["jsWaiter", `${js}:4:3`],
  ]);
  // A .ts waiter's frame says where it could not: its name and no position;
  // the library's coroutine between (timeout's) has no frame.
  assert.match(out.stack, /^Error: boom\n {4}at leaf \(\S+\)\n {4}at middle \(unknown location\)$/);
});

test("stitched trace: a CancelledError that a coroutine throws of its own is stitched like any error", async () => {
  function* quits(): Coro<void> {
    yield* sleep(1);
    throw new CancelledError("my own");
  }
  function* waiter(): Coro<void> {
    yield quits(); // @quits
  }
  const error = await new Loop().run(waiter()).catch((e) => e);
  assert.ok(error instanceof CancelledError);
  assert.ok(error.stack!.endsWith(`    at waiter (${at("quits")})`), error.stack);
});
