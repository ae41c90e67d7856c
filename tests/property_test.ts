/**
 * Property-based tests: random coroutine graphs against a reference model.
 *
 * A generated {@linkcode Program} is a list of nodes, each a list of steps:
 * pauses, sleeps on the virtual clock, waiting for other nodes (one, a
 * gather, `asCompleted`, a `copy` inside `isolate`), starting them in the
 * background, setting and waiting on events, promises, semaphores and locks,
 * barriers, timeouts, calls on worker threads, and sub-programs run by
 * `isolate` or on a loop of their own by `toPromise` — with an error (or an
 * abort of the run's signal) injected at one random step, or none. A node
 * only refers to later nodes, so the graph has no cycle but has diamonds (a
 * node shared by several waiters), chains and fans.
 *
 * The model ({@linkcode simulate}) is a tiny discrete-event interpreter: it
 * steps every runnable node until none can move, then jumps the time to the
 * next deadline — in any order, since nothing in a program depends on the
 * order of steps within one instant. It gives each node's value and end time,
 * and whether the run crashes (when), hangs, or finishes.
 *
 * The loop must agree with it, and keep its promises whatever happens: `run`
 * rejects with exactly the injected error (or the documented AggregateError),
 * every coroutine that started ran its `finally` exactly once, none resumed
 * after its run crashed, every `CancelledError` names the cause, nothing is
 * left behind (the sanitizers, and the promises of `fromPromise` factories),
 * and the loop runs again afterwards.
 *
 * A second family of properties drives one {@linkcode Channel} with random
 * schedules ({@linkcode ChannelSchedule}): groups of coroutines that send,
 * try to send, receive, pause, sleep, close the channel and crash — each send
 * and receive alone or under a `timeout`, whole groups inside `isolate` so
 * that a crash cancels its coroutines wherever they wait, also just after
 * they were woken — while host timers `trySend` from outside the loop. Every
 * value the channel accepted (a send that returned, a `trySend` that said
 * true) is then received exactly once, in the order it was accepted, and no
 * other value ever is (a cancelled send's value in particular); `size` never
 * exceeds the capacity; every coroutine ran its `finally` once.
 *
 * On failure the message gives the seed and the counterexample and how to
 * replay it: `FC_SEED=… FC_PATH=… deno test … tests/property_test.ts`.
 * `FC_RUNS=n` runs more cases (a long hunt); `FC_NOSHRINK=1` shows the first
 * failing case as generated (useful if a failure left state that misleads
 * the shrinking, such as a worker still alive).
 */

import fc from "fast-check";
import assert from "node:assert/strict";
import {
  all,
  asCompleted,
  Barrier,
  cancellable,
  CancelledError,
  Channel,
  ChannelClosedError,
  copy,
  type Coro,
  Event,
  fromPromise,
  isolate,
  join,
  Lock,
  Loop,
  race,
  runInThread,
  Semaphore,
  sleep,
  threadFunction,
  ThreadPool,
  timeout,
  toPromise,
} from "../mod.ts";
import { liveWorkers } from "../src/thread/thread.ts";
import { channelCounts } from "../src/channel.ts";
import { test } from "./_helper.ts";

// --- Programs ------------------------------------------------------------------

type Step =
  | { k: "pause" }
  | { k: "sleep"; ms: number; inline: boolean } // `yield sleep(ms)`, or `yield* sleep(ms)`
  | { k: "await"; child: number }
  | { k: "gather"; children: number[] }
  | { k: "background"; children: number[] }
  | { k: "asCompleted"; children: number[] }
  | { k: "set"; event: number }
  | { k: "wait"; event: number; ms: number } // ms: Infinity waits without a timeout
  | { k: "promise"; x: number; via: "value" | "factory" | "timer" }
  | { k: "critical"; sem: number; ms: number } // acquire, sleep ms, release
  | { k: "barrier"; barrier: number }
  | { k: "copy"; child: number } // waits for a node through copy() inside isolate()
  | { k: "timeout"; sleeps: number[]; ms: number } // a private coroutine of sleeps, under timeout
  | { k: "isolate"; program: Program }
  | { k: "toPromise"; program: Program } // on a loop of its own (real clock), through fromPromise
  | { k: "thread"; x: number; via: "pool" | "free" | "async" | "module" } // x * 3 + 1, on a worker
  | { k: "throw" } // the injected error
  | { k: "abort" }; // the injected abort of the run's signal

interface Program {
  nodes: Step[][];
  events: number;
  /** The capacity of each semaphore. */
  sems: number[];
  /** The number of coroutines each barrier waits for. */
  barriers: number[];
  /** What the `throw` step throws: an Error, or a value that is not one. */
  thrown: "error" | "value";
}

type Injection = { node: number; step: number; what: "throw" | "abort" } | null;

interface RawProgram {
  nodes: Step[][];
  events: number;
  sems: number[];
  barriers: number[];
  thrown: "error" | "value";
  /** Where a node that nobody refers to is attached (see `normalise`). */
  attach: number[];
  /** Half of the programs use no semaphore, so that their timeline is the model's. */
  withSems: boolean;
  inject: Injection;
}

const ms = fc.integer({ min: 0, max: 40 });
const refs = fc.array(fc.nat(), { maxLength: 4 });

function stepArb(nested: boolean, threads: boolean): fc.Arbitrary<Step> {
  const steps: fc.WeightedArbitrary<Step>[] = [
    { weight: 3, arbitrary: fc.constant({ k: "pause" as const }) },
    {
      weight: 4,
      arbitrary: fc.record({ k: fc.constant("sleep" as const), ms, inline: fc.boolean() }),
    },
    { weight: 4, arbitrary: fc.record({ k: fc.constant("await" as const), child: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant("gather" as const), children: refs }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("background" as const), children: refs }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("asCompleted" as const), children: refs }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("set" as const), event: fc.nat() }) },
    {
      weight: 2,
      arbitrary: fc.record({
        k: fc.constant("wait" as const),
        event: fc.nat(),
        // No timeout of 0: one due "now" may fire before or after a set() of the same instant.
        ms: fc.oneof(
          { weight: 3, arbitrary: fc.integer({ min: 1, max: 60 }) },
          { weight: 1, arbitrary: fc.constant(Infinity) },
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant("promise" as const),
        x: fc.integer({ min: -100, max: 100 }),
        via: fc.constantFrom("value" as const, "factory" as const, "timer" as const),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ k: fc.constant("critical" as const), sem: fc.nat(), ms }),
    },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("barrier" as const), barrier: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("copy" as const), child: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant("timeout" as const),
        sleeps: fc.array(ms, { maxLength: 3 }),
        ms: fc.integer({ min: 0, max: 60 }),
      }),
    },
  ];
  if (!nested) {
    steps.push({
      weight: 1,
      arbitrary: programArb(true, threads).map((program) => ({ k: "isolate" as const, program })),
    });
    steps.push({
      weight: 1,
      arbitrary: programArb(true, threads).map((program) => ({ k: "toPromise" as const, program })),
    });
  }
  if (threads) {
    steps.push({
      weight: 3,
      arbitrary: fc.record({
        k: fc.constant("thread" as const),
        x: fc.integer({ min: -100, max: 100 }),
        via: fc.constantFrom(...(["pool", "free", "async", "module"] as const)),
      }),
    });
  }
  return fc.oneof(...steps);
}

/** A program, and the injection in it; `nested` programs are smaller and inject no abort. */
function programArb(nested: boolean, threads = false): fc.Arbitrary<Program> {
  const raw: fc.Arbitrary<RawProgram> = fc.record({
    nodes: fc.array(fc.array(stepArb(nested, threads), { maxLength: nested ? 4 : 6 }), {
      minLength: 1,
      maxLength: nested ? 4 : 10,
    }),
    events: fc.integer({ min: 1, max: 3 }),
    sems: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }),
    barriers: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }),
    thrown: fc.constantFrom("error" as const, "value" as const),
    attach: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
    withSems: fc.boolean(),
    inject: fc.option(
      fc.record({
        node: fc.nat(),
        step: fc.nat(),
        what: nested ? fc.constant("throw" as const) : fc.constantFrom(
          ...(["throw", "throw", "throw", "abort"] as const),
        ),
      }),
      { freq: 3 },
    ),
  });
  return raw.map(normalise);
}

/** Turns raw references into valid ones: a node refers only to later nodes. */
function normalise(raw: RawProgram): Program {
  const n = raw.nodes.length;
  const nodes = raw.nodes.map((steps, i) => {
    const later = n - i - 1;
    const ref = (r: number) => i + 1 + (r % later);
    return steps.map((s): Step => {
      switch (s.k) {
        case "await":
        case "copy":
          return later === 0 ? { k: "pause" } : { k: s.k, child: ref(s.child) };
        case "barrier":
          return { k: "barrier", barrier: s.barrier % raw.barriers.length };
        case "gather":
        case "background":
        case "asCompleted":
          return later === 0 && s.children.length > 0
            ? { k: "pause" }
            : { k: s.k, children: s.children.map(ref) };
        case "set":
        case "wait":
          return { ...s, event: s.event % raw.events };
        case "critical":
          return raw.withSems
            ? { ...s, sem: s.sem % raw.sems.length }
            : { k: "sleep", ms: s.ms, inline: true };
        default:
          return s;
      }
    });
  });
  // A node nobody refers to would never run: hang it under an earlier one, in the
  // background or awaited, so that most of a program runs.
  const referenced = new Set(nodes.flatMap((steps) => steps.flatMap(childrenOf)));
  for (let i = 1; i < n; i++) {
    if (referenced.has(i)) continue;
    const parent = nodes[(i - 1) >> 1];
    const at = raw.attach[i % raw.attach.length] % (parent.length + 1);
    parent.splice(
      at,
      0,
      i % 2 === 1 ? { k: "background", children: [i] } : { k: "await", child: i },
    );
  }
  const inject = raw.inject;
  if (inject !== null) {
    const steps = nodes[inject.node % n];
    steps.splice(inject.step % (steps.length + 1), 0, { k: inject.what });
  }
  return { nodes, events: raw.events, sems: raw.sems, barriers: raw.barriers, thrown: raw.thrown };
}

function childrenOf(s: Step): number[] {
  if (s.k === "await" || s.k === "copy") return [s.child];
  if (s.k === "gather" || s.k === "background" || s.k === "asCompleted") return s.children;
  return [];
}

/** Folds a value into a node's running hash. */
function mix(acc: number, v: unknown): number {
  const code = v === undefined ? 7 : v === true ? 11 : v === false ? 13 : (v as number);
  return (Math.imul(acc, 31) + code) | 0;
}

/** What a timed-out or a finished `timeout` step folds in. */
function timeoutValue(sleeps: number[], limit: number): number | undefined {
  const took = sleeps.reduce((a, b) => a + b, 0);
  return took < limit ? took : undefined;
}

/** True if any step of the program (or of its isolated sub-programs) matches. */
function uses(p: Program, kind: Step["k"]): boolean {
  return p.nodes.some((steps) =>
    steps.some((s) =>
      s.k === kind || ((s.k === "isolate" || s.k === "toPromise") && uses(s.program, kind))
    )
  );
}

// --- The model -------------------------------------------------------------------

interface Model {
  outcome: "ok" | "crash" | "hang";
  /** When the run ended (ok), crashed, or last moved (hang). */
  time: number;
  /** When the first `throw` step was reached, if `pastThrow` went on past it. */
  throwAt: number | undefined;
  /** When the `abort` step was reached. */
  abortAt: number | undefined;
  /** When each node started (`Infinity`: never), ended, and what it returned. */
  starts: number[];
  ends: number[];
  values: number[];
  /** True if a `timeout` step's private coroutine ends exactly at its deadline: ambiguous. */
  tie: boolean;
}

type Block =
  | { k: "children"; children: number[]; sum: boolean; then?: unknown }
  | { k: "barrier"; barrier: number }
  | { k: "until"; at: number; result: unknown[]; held?: true } // sleeps, isolates, timeouts
  | { k: "event"; event: number; at: number; masked: boolean };

/**
 * Runs `p` on the model. `timed`: false folds a constant for timed event
 * waits (whose outcome depends on timing the model cannot know: real time,
 * semaphore queues). `pastThrow`: treat the `throw` step as a pause, noting
 * when it was reached (the timeline of everything before the crash).
 */
function simulate(p: Program, timed: boolean, pastThrow: boolean): Model {
  const n = p.nodes.length;
  const starts = new Array<number>(n).fill(Infinity);
  const ends = new Array<number>(n).fill(Infinity);
  const values = new Array<number>(n).fill(0);
  const acc = new Array<number>(n).fill(0);
  const pc = new Array<number>(n).fill(0);
  const block: (Block | null)[] = new Array(n).fill(null);
  const fired = new Array<boolean>(n).fill(false);
  const events = new Array<boolean>(p.events).fill(false);
  const arrivals = new Array<number>(p.barriers.length).fill(0);
  let time = 0;
  let crashed = false;
  let throwAt: number | undefined;
  let abortAt: number | undefined;
  let tie = false;

  const start = (i: number) => {
    if (starts[i] !== Infinity) return;
    starts[i] = time;
    acc[i] = i + 1;
  };
  const done = (i: number) => ends[i] !== Infinity;

  /** Moves node `i` as far as it goes now; true if it moved. */
  const advance = (i: number): boolean => {
    let moved = false;
    for (;;) {
      const b = block[i];
      if (b !== null) {
        if (b.k === "children") {
          if (!b.children.every(done)) return moved;
          if (b.sum) acc[i] = mix(acc[i], b.children.reduce((s, c) => (s + values[c]) | 0, 0));
          else for (const c of b.children) acc[i] = mix(acc[i], values[c]);
          if ("then" in b) acc[i] = mix(acc[i], b.then);
        } else if (b.k === "barrier") {
          if (arrivals[b.barrier] < p.barriers[b.barrier]) return moved;
        } else if (b.k === "until") {
          if (!fired[i]) return moved;
          for (const v of b.result) acc[i] = mix(acc[i], v);
        } else {
          // A timeout fires when the clock jumps, before anything runs at that time.
          if (!events[b.event] && !fired[i]) return moved;
          acc[i] = mix(acc[i], b.masked ? 0 : !fired[i]);
        }
        block[i] = null;
        fired[i] = false;
        moved = true;
      }
      const steps = p.nodes[i];
      if (pc[i] === steps.length) {
        ends[i] = time;
        values[i] = acc[i];
        return true;
      }
      const s = steps[pc[i]++];
      moved = true;
      switch (s.k) {
        case "pause":
        case "abort":
          if (s.k === "abort") abortAt ??= time;
          break;
        case "sleep":
        case "critical":
          block[i] = { k: "until", at: time + s.ms, result: [] };
          break;
        case "await":
          start(s.child);
          block[i] = { k: "children", children: [s.child], sum: false };
          break;
        case "gather":
        case "asCompleted":
          s.children.forEach(start);
          block[i] = { k: "children", children: s.children, sum: s.k === "asCompleted" };
          break;
        case "background":
          s.children.forEach(start);
          break;
        case "copy":
          start(s.child);
          block[i] = { k: "children", children: [s.child], sum: false, then: true };
          break;
        case "barrier":
          arrivals[s.barrier]++;
          block[i] = { k: "barrier", barrier: s.barrier };
          break;
        case "set":
          events[s.event] = true;
          break;
        case "wait": {
          const masked = !timed && s.ms !== Infinity;
          if (events[s.event]) acc[i] = mix(acc[i], masked ? 0 : true);
          else block[i] = { k: "event", event: s.event, at: time + s.ms, masked };
          break;
        }
        case "promise":
          acc[i] = mix(acc[i], s.x);
          break;
        case "thread":
          acc[i] = mix(acc[i], s.x * 3 + 1);
          break;
        case "timeout": {
          const took = s.sleeps.reduce((a, b) => a + b, 0);
          if (took === s.ms) tie = true;
          const value = timeoutValue(s.sleeps, s.ms);
          const result = timed ? [value, value !== undefined] : [0];
          if (Math.min(took, s.ms) === 0) { for (const v of result) acc[i] = mix(acc[i], v); }
          else block[i] = { k: "until", at: time + Math.min(took, s.ms), result };
          break;
        }
        case "toPromise": {
          // A loop of its own, on the real clock: no virtual time passes here.
          const sub = simulate(s.program, false, false);
          const result = sub.outcome === "ok" ? [sub.values[0], true] : [undefined, false];
          // Hung, it holds the run: the virtual clock stops (fromPromise is outside work).
          if (sub.outcome === "hang") block[i] = { k: "until", at: Infinity, result, held: true };
          else for (const v of result) acc[i] = mix(acc[i], v);
          break;
        }
        case "isolate": {
          const sub = simulate(s.program, timed, false);
          tie ||= sub.tie;
          const result = sub.outcome === "ok" ? [sub.values[0], true] : [undefined, false];
          if (sub.outcome === "hang") block[i] = { k: "until", at: Infinity, result };
          else if (sub.time === 0) { for (const v of result) acc[i] = mix(acc[i], v); }
          else block[i] = { k: "until", at: time + sub.time, result };
          break;
        }
        case "throw":
          throwAt ??= time;
          if (!pastThrow) {
            crashed = true;
            return true;
          }
          break;
      }
    }
  };

  start(0);
  for (;;) {
    // Step everything runnable until nothing moves: the loop's run queue, drained.
    let moved = true;
    while (moved && !crashed) {
      moved = false;
      for (let i = 0; i < n && !crashed; i++) {
        if (starts[i] !== Infinity && !done(i) && advance(i)) moved = true;
      }
    }
    const result = (outcome: Model["outcome"]): Model => ({
      outcome,
      time,
      throwAt,
      abortAt,
      starts,
      ends,
      values,
      tie,
    });
    if (crashed) return result("crash");
    // Nothing can move: jump to the next deadline and fire all that are due
    // then — unless outside work that never ends holds the clock.
    if (block.some((b) => b !== null && "held" in b)) return result("hang");
    let next = Infinity;
    for (let i = 0; i < n; i++) {
      const b = block[i];
      if (b !== null && "at" in b && !done(i)) next = Math.min(next, b.at);
    }
    if (next === Infinity) {
      const finished = starts.every((s, i) => s === Infinity || done(i));
      return result(finished ? "ok" : "hang");
    }
    time = next;
    for (let i = 0; i < n; i++) {
      const b = block[i];
      if (b !== null && "at" in b && b.at <= time) fired[i] = true;
    }
  }
}

// --- Running a program on the loop -------------------------------------------------

/** Shared by every domain of one run: the loop, its signal, what went wrong. */
interface Env {
  loop: Loop;
  controller: AbortController;
  abortReason: Error;
  /** The pool of `thread` steps. */
  pool: ThreadPool | null;
  /** `fromPromise` factory promises not settled yet. */
  pendingPromises: number;
  violations: string[];
}

/**
 * One program being run: the top-level one, or one run by an `isolate` step
 * (a crash domain of its own). It makes the nodes' coroutines and records
 * what each did.
 */
class Domain {
  readonly started: number[];
  readonly finals: number[];
  readonly cancels: number[];
  readonly ends: number[];
  readonly values: number[];
  readonly events: Event[];
  readonly sems: (Semaphore | Lock)[];
  readonly barriers: Barrier[];
  readonly holders: number[];
  readonly coros: Coro<number>[];
  readonly subs: Domain[] = [];
  readonly error: unknown;
  /** The injected error was thrown. */
  threw = false;
  /** A node caught a CancelledError: the loop has cancelled this domain. */
  cancelled = false;

  constructor(
    readonly program: Program,
    readonly env: Env,
    readonly parent: Domain | null,
    readonly name: string,
    /** Whether timed event waits and timeouts fold their outcome in (see `simulate`). */
    readonly timed: boolean,
  ) {
    const n = program.nodes.length;
    this.started = new Array(n).fill(0);
    this.finals = new Array(n).fill(0);
    this.cancels = new Array(n).fill(0);
    this.ends = new Array(n).fill(Infinity);
    this.values = new Array(n).fill(0);
    this.events = Array.from({ length: program.events }, () => new Event());
    this.sems = program.sems.map((c) => (c === 1 ? new Lock() : new Semaphore(c)));
    this.barriers = program.barriers.map((n) => new Barrier(n));
    this.holders = program.sems.map(() => 0);
    this.error = program.thrown === "error" ? new Error(`injected in ${name}`) : { injected: name };
    this.coros = program.nodes.map((_, i) => this.#node(i));
  }

  #violation(what: string): void {
    this.env.violations.push(`${this.name} ${what}`);
  }

  /** This domain and the ones it is nested in, innermost first. */
  chain(): Domain[] {
    return this.parent === null ? [this] : [this, ...this.parent.chain()];
  }

  /** After a step resumed normally: no domain of this one's chain may have crashed. */
  #checkAlive(i: number): void {
    const crashed = this.chain().find((d) => d.threw || d.cancelled);
    if (crashed) this.#violation(`node ${i} resumed after ${crashed.name} crashed`);
  }

  /** A cancellation's cause, followed through nested cancellations, must be an error of the chain. */
  #checkCause(i: number, e: CancelledError): void {
    let cause: unknown = e.cause;
    while (cause instanceof CancelledError) cause = cause.cause;
    if (this.chain().some((d) => cause === d.error) || cause === this.env.abortReason) return;
    this.#violation(`node ${i} was cancelled with cause ${String(cause)}`);
  }

  *#node(i: number): Coro<number> {
    const env = this.env;
    this.started[i]++;
    let acc = i + 1;
    try {
      for (const s of this.program.nodes[i]) {
        switch (s.k) {
          case "pause":
            yield;
            break;
          case "sleep":
            if (s.inline) yield* sleep(s.ms);
            else yield sleep(s.ms);
            break;
          case "await":
            acc = mix(acc, yield this.coros[s.child]);
            break;
          case "gather": {
            // The typed form, `yield* all(…)`, for gathers of an odd number.
            const coros = s.children.map((c) => this.coros[c]);
            const results: number[] = coros.length % 2 === 1 ? yield* all(coros) : yield coros;
            for (const v of results) acc = mix(acc, v);
            break;
          }
          case "background":
            yield new Set(s.children.map((c) => this.coros[c]));
            break;
          case "asCompleted": {
            let sum = 0;
            for (const next of yield* asCompleted(s.children.map((c) => this.coros[c]))) {
              sum = (sum + (yield next)) | 0;
            }
            acc = mix(acc, sum);
            break;
          }
          case "set":
            this.events[s.event].set();
            break;
          case "wait": {
            const woken: boolean = yield this.events[s.event].wait(s.ms);
            acc = mix(acc, !this.timed && s.ms !== Infinity ? 0 : woken);
            break;
          }
          case "promise":
            acc = mix(acc, yield fromPromise(this.#promise(s.x, s.via)));
            break;
          case "critical": {
            using _ = yield* this.sems[s.sem].acquire();
            if (++this.holders[s.sem] > this.program.sems[s.sem]) {
              this.#violation(`semaphore ${s.sem} has ${this.holders[s.sem]} holders`);
            }
            try {
              yield sleep(s.ms);
            } finally {
              this.holders[s.sem]--;
            }
            break;
          }
          case "barrier":
            yield* this.barriers[s.barrier].wait(); // its arrival index depends on the order: not folded
            break;
          case "copy": {
            const [value, ok] = yield* isolate(join(yield* copy(this.coros[s.child])));
            acc = mix(mix(acc, value), ok);
            break;
          }
          case "timeout": {
            const [value, inTime] = yield* timeout(sleepy(s.sleeps), s.ms);
            acc = this.timed ? mix(mix(acc, value), inTime) : mix(acc, 0);
            break;
          }
          case "isolate": {
            const sub = new Domain(s.program, env, this, `${this.name}/${i}`, this.timed);
            this.subs.push(sub);
            const [value, ok] = yield* isolate(sub.coros[0]);
            if (!ok && value !== sub.error) {
              this.#violation(`node ${i}: isolate gave ${String(value)}, not the injected error`);
            }
            acc = mix(mix(acc, ok ? value : undefined), ok);
            break;
          }
          case "toPromise": {
            const sub = new Domain(shorten(s.program), env, this, `${this.name}/${i}p`, false);
            this.subs.push(sub);
            const [value, ok] = yield* fromPromise((signal) =>
              toPromise(sub.coros[0], { signal }).then(
                (v) => [v, true] as const,
                (e) => [e, false] as const,
              )
            );
            if (!ok && value !== sub.error) {
              this.#violation(`node ${i}: toPromise gave ${String(value)}, not the injected error`);
            }
            acc = mix(mix(acc, ok ? value : undefined), ok);
            break;
          }
          case "thread":
            acc = mix(acc, yield* this.#thread(s.x, s.via));
            break;
          case "throw":
            this.threw = true;
            throw this.error;
          case "abort":
            env.controller.abort(env.abortReason);
            break;
        }
        this.#checkAlive(i);
      }
      this.ends[i] = env.loop.now();
      this.values[i] = acc;
      return acc;
    } catch (e) {
      if (e instanceof CancelledError) {
        this.cancelled = true;
        this.cancels[i]++;
        this.#checkCause(i, e);
      }
      throw e;
    } finally {
      this.finals[i]++;
    }
  }

  /**
   * The call of a `thread` step: `x * 3 + 1` on a worker of the pool, or a
   * free one; "module" calls a module's export (`threadFunction`).
   */
  #thread(x: number, via: "pool" | "free" | "async" | "module"): Coro<number> {
    const pool = this.env.pool!;
    if (via === "pool") return pool.runInThread((x: number) => x * 3 + 1, x);
    if (via === "module") return timesThreePlusOneOn(pool, x);
    if (via === "free") return runInThread((x: number) => x * 3 + 1, x);
    return pool.runInThread(async (x: number) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return x * 3 + 1;
    }, x);
  }

  /** The promise (or factory) of a `promise` step, resolving to `x`. */
  #promise(x: number, via: "value" | "factory" | "timer") {
    const env = this.env;
    if (via === "value") return Promise.resolve(x);
    return (signal: AbortSignal) =>
      new Promise<number>((resolve, reject) => {
        env.pendingPromises++;
        const settle = (f: () => void) => {
          env.pendingPromises--;
          signal.removeEventListener("abort", onAbort);
          f();
        };
        const onAbort = () => {
          clearTimeout(id);
          settle(() => reject(signal.reason));
        };
        const id = via === "timer" ? setTimeout(() => settle(() => resolve(x)), 0) : undefined;
        if (via === "factory") queueMicrotask(() => !signal.aborted && settle(() => resolve(x)));
        signal.addEventListener("abort", onAbort);
      });
  }

  /** This domain and those of its isolate steps, recursively. */
  *domains(): Generator<Domain> {
    yield this;
    for (const sub of this.subs) yield* sub.domains();
  }

  /** Checks what must hold however the run ended, in this domain and those under it. */
  checkInvariants(): void {
    this.started.forEach((s, i) => {
      if (s > 1) this.#violation(`node ${i} started ${s} times`);
      if (this.finals[i] !== s) {
        this.#violation(
          `node ${i} started ${s} time(s) but ran its finally ${this.finals[i]} time(s)`,
        );
      }
      if (this.cancels[i] > s) this.#violation(`node ${i} was cancelled ${this.cancels[i]} times`);
    });
    this.holders.forEach((h, k) =>
      h !== 0 && this.#violation(`semaphore ${k} still has ${h} holders`)
    );
    for (const sub of this.subs) sub.checkInvariants();
  }
}

/** The fixture module's `addTwo`, on a worker, after `x * 3 - 1`: `x * 3 + 1` as the others. */
const addTwo = threadFunction<(x: number) => number>(
  new URL("./fixtures/tasks.ts", import.meta.url),
  "addTwo",
);
function* timesThreePlusOneOn(pool: ThreadPool, x: number): Coro<number> {
  return yield* pool.runInThread(addTwo, x * 3 - 1);
}

function* sleepy(sleeps: number[]): Coro<number> {
  for (const ms of sleeps) yield sleep(ms);
  return sleeps.reduce((a, b) => a + b, 0);
}

/** A run that does not settle at all is a failure of its own, not a hang of the test. */
async function raceWatchdog<T>(run: Promise<T>, what: string): Promise<T> {
  let watchdog: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      run,
      new Promise<never>((_, reject) => {
        watchdog = setTimeout(
          () => reject(new Error(`${what} did not settle within ${WATCHDOG_MS} ms`)),
          WATCHDOG_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(watchdog);
  }
}

/** How long a run may take before the test calls it a hang (generous: 2 shared cores). */
const WATCHDOG_MS = 5_000;

/** The program with every time divided by ten, for the real clock. */
function shorten(p: Program): Program {
  const short = (ms: number) => Math.floor(ms / 10);
  const nodes = p.nodes.map((steps) =>
    steps.map((s): Step => {
      switch (s.k) {
        case "sleep":
        case "critical":
          return { ...s, ms: short(s.ms) };
        case "wait":
          return { ...s, ms: Math.max(1, short(s.ms)) };
        case "timeout":
          return { ...s, sleeps: s.sleeps.map(short), ms: short(s.ms) };
        case "isolate":
        case "toPromise":
          return { ...s, program: shorten(s.program) };
        default:
          return s;
      }
    })
  );
  return { ...p, nodes };
}

interface Case {
  program: Program;
  exceptionGroup: boolean | undefined;
}

/** Runs one generated case on `clock` and checks it against the model. */
async function check(
  { program: generated, exceptionGroup }: Case,
  clock: "virtual" | "real",
  pool: ThreadPool | null = null,
): Promise<void> {
  const program = clock === "real" ? shorten(generated) : generated;
  const timed = clock === "virtual" && !uses(program, "critical");
  const model = simulate(program, timed, true);
  fc.pre(!model.tie); // a timeout step whose coroutine ends right at its deadline: either result is right
  const loop = new Loop({ clock });
  const env: Env = {
    loop,
    controller: new AbortController(),
    abortReason: new Error("the run's signal was aborted"),
    pool,
    pendingPromises: 0,
    violations: [],
  };
  const top = new Domain(program, env, null, "top", timed);
  // A program that the model says hangs is stopped by aborting its signal.
  const expectHang = model.outcome === "hang" && model.throwAt === undefined;
  const hangTimer = expectHang
    ? setTimeout(() => env.controller.abort(env.abortReason), 0)
    : undefined;
  let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
  try {
    outcome = await raceWatchdog(
      loop.run(top.coros[0], { exceptionGroup, signal: env.controller.signal }).then(
        (value) => ({ ok: true as const, value }),
        (error) => ({ ok: false as const, error }),
      ),
      `the run (model: ${model.outcome})`,
    );
  } finally {
    clearTimeout(hangTimer);
  }

  top.checkInvariants();
  assert.deepEqual(env.violations, []);
  assert.equal(env.pendingPromises, 0, "a fromPromise factory's promise outlived the run");
  assert.equal(liveWorkers(), 0, "a worker outlived the run");

  const rejectedWith = (expected: unknown) => {
    assert.ok(
      !outcome.ok,
      `run resolved with ${outcome.ok && outcome.value}, expected a rejection`,
    );
    const error = outcome.error;
    if (exceptionGroup === true) {
      assert.ok(error instanceof AggregateError, `not an AggregateError: ${error}`);
      assert.equal(error.errors[0], expected);
      for (const e of error.errors.slice(1)) assert.ok(e instanceof CancelledError, String(e));
    } else {
      const errors = error instanceof AggregateError
        ? `: ${error.errors.map(String).join("; ")}`
        : "";
      assert.equal(error, expected, `rejected with ${String(error)}${errors}`);
    }
  };

  if (model.throwAt !== undefined) {
    rejectedWith(top.error);
    if (timed) {
      assert.equal(loop.now(), model.throwAt, "the crash came at another time than the model's");
      top.started.forEach((s, i) => {
        const at = model.starts[i];
        if (at < model.throwAt!) assert.equal(s, 1, `node ${i} should have started (at ${at})`);
        if (at > model.throwAt!) assert.equal(s, 0, `node ${i} should not have started (at ${at})`);
      });
    }
  } else if (expectHang || (model.abortAt !== undefined && !outcome.ok)) {
    rejectedWith(env.abortReason);
  } else {
    // Finished: the same result and, on the virtual clock, the same timeline as the model.
    if (!outcome.ok) throw outcome.error;
    assert.equal(outcome.value, model.values[0]);
    assert.deepEqual(top.started, model.starts.map((s) => (s === Infinity ? 0 : 1)));
    assert.deepEqual(top.cancels, top.cancels.map(() => 0));
    assert.deepEqual(top.values, model.values);
    if (timed) {
      assert.deepEqual(top.ends, model.ends);
      assert.equal(loop.now(), model.time);
    }
  }

  // The loop runs again: a fresh gather with a sleep, and nothing left over
  // shows — every semaphore has all its permits back.
  const before = loop.now();
  function* again(): Coro<number[]> {
    yield sleep(1);
    for (const d of top.domains()) {
      for (const [k, sem] of d.sems.entries()) {
        const permits = [];
        for (let p = 0; p < d.program.sems[k]; p++) permits.push(yield* sem.acquire());
        for (const p of permits) p.release();
      }
    }
    return yield [sleepy([0, 1]), sleepy([2])];
  }
  assert.deepEqual(await raceWatchdog(loop.run(again()), "the run after"), [1, 2]);
  if (clock === "virtual") assert.equal(loop.now(), before + 3);
}

// --- Running properties, replayably -------------------------------------------------

/** Reads a replay setting from the environment, without prompting for permission. */
function replaySetting(name: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return;
  return Deno.env.get(name);
}

/**
 * Checks `property` on `numRuns` generated cases. A failure reports fast-check's
 * message (seed, path, shrunk counterexample) and the command that replays it.
 */
async function checkProperty<T>(
  name: string,
  property: fc.IAsyncPropertyWithHooks<T>,
  numRuns: number,
): Promise<void> {
  const seed = replaySetting("FC_SEED");
  const path = replaySetting("FC_PATH");
  const replay = seed === undefined ? {} : { seed: Number(seed), path };
  const runs = Number(replaySetting("FC_RUNS") ?? numRuns); // more, for a long hunt
  // FC_NOSHRINK=1 reports the first failing case as it was generated.
  const endOnFailure = replaySetting("FC_NOSHRINK") !== undefined;
  const details = await fc.check(property, { numRuns: runs, endOnFailure, ...replay });
  if (!details.failed) return;
  throw new Error(
    `${fc.defaultReportMessage(details)}\n\nReplay this failure with:\n  FC_SEED=${details.seed} ` +
      `FC_PATH="${details.counterexamplePath}" deno test --v8-flags=--expose-gc -A ` +
      `tests/property_test.ts --filter "${name}"\n(add FC_NOSHRINK=1 to see the case as ` +
      "generated, if the shrinking went astray)",
    { cause: details.errorInstance },
  );
}

const caseArb: fc.Arbitrary<Case> = fc.record({
  program: programArb(false),
  exceptionGroup: fc.constantFrom(undefined, false, true),
});

const threadCaseArb: fc.Arbitrary<Case> = fc.record({
  program: programArb(false, true),
  exceptionGroup: fc.constantFrom(undefined, false, true),
});

const VIRTUAL = "random coroutine graphs on the virtual clock agree with the model";
test(VIRTUAL, async () => {
  await checkProperty(VIRTUAL, fc.asyncProperty(caseArb, (c) => check(c, "virtual")), 1_500);
});

const REAL = "random coroutine graphs on the real clock keep every promise (times shortened)";
test(REAL, async () => {
  await checkProperty(REAL, fc.asyncProperty(caseArb, (c) => check(c, "real")), 200);
});

const THREADS = "random coroutine graphs with threads in a ThreadPool(2) agree with the model";
test(THREADS, async () => {
  using pool = new ThreadPool(2);
  await checkProperty(
    THREADS,
    fc.asyncProperty(threadCaseArb, (c) => check(c, "virtual", pool)),
    150,
  );
});

// --- Channels: random schedules ------------------------------------------------------

/**
 * How a send or receive is run: on its own, under a `timeout` of `ms`
 * (virtual) milliseconds, under `cancellable` with a signal a background
 * coroutine aborts after `ms`, or in a `race` against a `sleep(ms)`.
 */
type Guard =
  | { k: "none" }
  | { k: "timeout"; ms: number }
  | { k: "cancellable"; ms: number }
  | { k: "race"; ms: number };

type ChannelStep =
  | { k: "pause" }
  | { k: "sleep"; ms: number }
  | { k: "send"; guard: Guard } // `yield* ch.send(v)` of a fresh value
  | { k: "trySend" }
  | { k: "receive"; guard: Guard } // `yield* ch.receive()`
  | { k: "close" }
  | { k: "crash" }; // throws: cancels the group (isolated) or the whole run

interface ChannelSchedule {
  capacity: number;
  /** Each group runs its coroutines as a gather, inside `isolate` if `isolated`. */
  groups: { isolated: boolean; actors: ChannelStep[][] }[];
  /** `trySend`s from host timers (real milliseconds), one after the other. */
  host: number[];
}

const guardArb: fc.Arbitrary<Guard> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ k: "none" as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("timeout" as const),
      ms: fc.integer({ min: 0, max: 5 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("cancellable" as const),
      ms: fc.integer({ min: 0, max: 5 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("race" as const),
      ms: fc.integer({ min: 0, max: 5 }),
    }),
  },
);

const channelStepArb: fc.Arbitrary<ChannelStep> = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ k: "pause" as const }) },
  {
    weight: 6,
    arbitrary: fc.record({ k: fc.constant("sleep" as const), ms: fc.integer({ min: 0, max: 4 }) }),
  },
  { weight: 20, arbitrary: fc.record({ k: fc.constant("send" as const), guard: guardArb }) },
  { weight: 4, arbitrary: fc.constant({ k: "trySend" as const }) },
  { weight: 20, arbitrary: fc.record({ k: fc.constant("receive" as const), guard: guardArb }) },
  { weight: 1, arbitrary: fc.constant({ k: "close" as const }) },
  { weight: 3, arbitrary: fc.constant({ k: "crash" as const }) },
);

const scheduleArb: fc.Arbitrary<ChannelSchedule> = fc.record({
  capacity: fc.constantFrom(0, 0, 1, 2, 3, Infinity),
  groups: fc.array(
    fc.record({
      isolated: fc.oneof(
        { weight: 4, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
      actors: fc.array(fc.array(channelStepArb, { maxLength: 10 }), { minLength: 1, maxLength: 3 }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  host: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 3 }),
});

/** A crash injected by a schedule. */
class Crash extends Error {}

/**
 * The error a run failed with: `error`, or the first of an AggregateError — as when a coroutine
 * that was handed a ChannelClosedError just before the cancellation gets it instead of its
 * CancelledError (no error is lost), catches it and crashes on.
 */
function firstError(error: unknown): unknown {
  return error instanceof AggregateError ? error.errors[0] : error;
}

/** Runs `schedule` and checks that the channel lost, duplicated and reordered nothing. */
async function checkChannel(schedule: ChannelSchedule, clock: "virtual" | "real"): Promise<void> {
  const loop = new Loop({ clock });
  const ch = new Channel<string>(schedule.capacity);
  // Recorded in the very step that the channel accepted or gave out the value.
  const accepted: string[] = [];
  const received: string[] = [];
  let fresh = 0;
  let started = 0;
  let finallies = 0;
  const crashes: Crash[] = [];

  function* sendOnce(value: string): Coro<void> {
    try {
      yield* ch.send(value);
      accepted.push(value);
    } catch (error) {
      if (!(error instanceof ChannelClosedError)) throw error; // a cancellation
    }
  }
  function* receiveOnce(): Coro<void> {
    const r = yield* ch.receive();
    if (!r.done) received.push(r.value);
  }
  function* guarded(c: Coro<void>, guard: Guard): Coro<void> {
    if (guard.k === "none") yield* c;
    else if (guard.k === "timeout") yield* timeout(c, guard.ms);
    else if (guard.k === "race") yield* race([c, sleep(guard.ms)]);
    else {
      const controller = new AbortController();
      const ms = guard.ms;
      yield new Set([function* (): Coro<void> {
        yield* sleep(ms);
        controller.abort(new Error("aborted by the schedule"));
      }()]);
      yield* cancellable(c, controller.signal);
    }
  }
  function* actor(name: string, steps: ChannelStep[]): Coro<void> {
    started++;
    try {
      for (const step of steps) {
        assert.ok(ch.size <= schedule.capacity, `size ${ch.size} > capacity ${schedule.capacity}`);
        switch (step.k) {
          case "pause":
            yield;
            break;
          case "sleep":
            yield* sleep(clock === "virtual" ? step.ms : step.ms / 4);
            break;
          case "send":
            yield* guarded(sendOnce(`${name}#${fresh++}`), step.guard);
            break;
          case "trySend": {
            const value = `${name}#${fresh++}`;
            if (ch.trySend(value)) accepted.push(value);
            break;
          }
          case "receive":
            yield* guarded(receiveOnce(), step.guard);
            break;
          case "close":
            ch.close();
            break;
          case "crash": {
            const crash = new Crash(`crash in ${name}`);
            crashes.push(crash);
            throw crash;
          }
        }
      }
    } finally {
      finallies++;
    }
  }
  function* group(index: number): Coro<void> {
    const { isolated, actors } = schedule.groups[index];
    const coros = actors.map((steps, i) => actor(`${index}.${i}`, steps));
    if (!isolated) {
      yield coros;
      return;
    }
    const [error, ok] = yield* isolate(function* () {
      yield coros;
    }());
    if (!ok) assert.ok(firstError(error) instanceof Crash, `isolate failed with ${error}`);
  }
  function* host(): Coro<void> {
    for (const ms of schedule.host) {
      yield* fromPromise((signal) =>
        new Promise<void>((resolve) => {
          const id = setTimeout(() => {
            const value = `host#${fresh++}`;
            if (ch.trySend(value)) accepted.push(value); // outside any loop
            resolve();
          }, ms);
          signal.addEventListener("abort", () => {
            clearTimeout(id);
            resolve();
          });
        })
      );
    }
  }
  function* main(): Coro<void> {
    // Closes the channel once everyone else is stuck, so that no send or receive waits forever.
    yield new Set([function* () {
      yield* sleep(clock === "virtual" ? 10_000 : 25);
      ch.close();
    }()]);
    yield [host(), ...schedule.groups.map((_, i) => group(i))];
  }

  const outcome = await raceWatchdog(
    loop.run(main()).then(() => null, (error) => error),
    "the channel schedule",
  );
  // Only a crash outside `isolate` fails the run: the first one, as it was thrown.
  const topCrash = crashes.find((c) => {
    const [g] = c.message.slice("crash in ".length).split(".").map(Number);
    return !schedule.groups[g].isolated;
  });
  if (topCrash === undefined) assert.equal(outcome, null, `the run failed with ${outcome}`);
  else {assert.equal(
      firstError(outcome),
      topCrash,
      `the run failed with ${outcome}, not the first crash`,
    );}

  // Nothing left behind: no value reserved or held for a receiver, no place for a sender, no waiter.
  const counts = channelCounts(ch);
  assert.deepEqual(counts, {
    ...counts,
    buffered: counts.free + counts.orphans,
    reserved: 0,
    held: 0,
    waiting: 0,
    admitted: 0,
    pausedSenders: 0,
    pausedReceivers: 0,
  }, "the channel's counters after the run");
  ch.close();
  const rest = await raceWatchdog(
    new Loop().run(function* (): Coro<string[]> {
      const out: string[] = [];
      for (let r; !(r = yield* ch.receive()).done;) out.push(r.value);
      return out;
    }()),
    "draining the channel",
  );
  assert.deepEqual([...received, ...rest], accepted, "received ≠ accepted, in order");
  assert.equal(ch.size, 0);
  assert.equal(finallies, started, "every coroutine ran its finally");
}

const CHANNEL_VIRTUAL =
  "random channel schedules lose, duplicate and reorder nothing (virtual clock)";
test(CHANNEL_VIRTUAL, async () => {
  await checkProperty(
    CHANNEL_VIRTUAL,
    fc.asyncProperty(scheduleArb, (s) => checkChannel(s, "virtual")),
    400,
  );
});

const CHANNEL_REAL = "random channel schedules lose, duplicate and reorder nothing (real clock)";
test(CHANNEL_REAL, async () => {
  await checkProperty(
    CHANNEL_REAL,
    fc.asyncProperty(scheduleArb, (s) => checkChannel(s, "real")),
    100,
  );
});
