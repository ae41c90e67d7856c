/**
 * Threads: blocking work on Deno Workers — `runInThread`, `threadFunction`,
 * `ThreadPool` and `cancelled`.
 *
 * A pool keeps Web Workers that all run one bootstrap (`workerMain` below),
 * loaded from a `blob:` URL so that no read permission is needed. A call is a
 * {@linkcode Wait}: parking gives the call to a worker, and its answer
 * resumes or fails the task. The task's run holds from park until the worker
 * has really stopped. Messages cost far more than tiny calls (each costs the
 * loop's thread microseconds), so they are few: the calls a worker is given in
 * one turn of the loop travel together, a function's text goes to a worker
 * once, and a worker answers quick calls together.
 *
 * Stopping a worker: `Worker.terminate()` does not interrupt synchronous
 * JavaScript in Deno 2.9, and after it no message tells when the worker
 * stopped. So a cancelled call raises the worker's shared-memory flag (what
 * `cancelled()` reads) and posts a stop request. A worker that is awaiting
 * answers it at once (its event loop is free, so nothing of the task runs);
 * a busy one replies when its call returns. Either reply means the worker
 * is idle at its event loop: it is terminated then, and the hold released.
 *
 * Idle workers would keep the process alive, so a pool terminates them when
 * the last run that used it ends (a run-end hook, no timer): a script exits as
 * soon as its work is done, and no worker outlives a test.
 *
 * @module
 */

import type { Coro } from "./coro.ts";
import { crash } from "./core.ts"; // until the thread split: `reportError` of wait.ts replaces it
import { describe } from "./messages.ts";
import {
  atRunEnd,
  fail,
  hold,
  primitive,
  release,
  resume,
  type Run,
  type Task,
  Wait,
} from "./wait.ts";

/**
 * What runs on a worker: a self-contained function, or a module export named
 * by {@linkcode threadFunction}; `A` are its arguments, `R` its result.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, runInThread, type ThreadFn } from "@tinyio/core";
 *
 * function* twice<R>(fn: ThreadFn<[], R>): Coro<R[]> {
 *   return yield [runInThread(fn), runInThread(fn)];
 * }
 * const [a, b] = await new Loop().run(twice(() => 7));
 * console.assert(a + b === 14);
 * ```
 */
export type ThreadFn<A extends unknown[], R> =
  | ((...args: A) => R | PromiseLike<R>)
  | ThreadFunction<(...args: A) => R | PromiseLike<R>>;

/**
 * An export of a module, to run on a worker: made by {@linkcode threadFunction}.
 *
 * @example
 * ```ts
 * import { threadFunction, type ThreadFunction } from "@tinyio/core";
 *
 * const f: ThreadFunction<(x: number) => number> = threadFunction(
 *   "file:///app/tasks.ts",
 *   "square",
 * );
 * console.assert(f.exportName === "square");
 * ```
 */
// deno-lint-ignore no-explicit-any
export interface ThreadFunction<F extends (...args: any[]) => any> {
  /** The module's absolute URL. */
  readonly module: string;
  /** The name of the exported function. */
  readonly exportName: string;
  /** Type only, never set: the exported function's type, from which calls are typed. */
  readonly signature?: F;
}

// Messages to a worker: [SETUP, slot buffer], [STOP, id], and [CALLS, ...]
// holding triples: a call (id, function ref, args), or the definition of a
// function ref (0, ref, [SOURCE, text] or [MODULE, url, exportName]), sent
// once per worker and kept there, so that a call carries a small number
// instead of the function's text. The calls a worker is given during one turn
// of the loop go in one message. From a worker: [ANSWERS, ...] holding pairs,
// one per call, in the order the calls were sent: (DONE, value), (FAILED,
// [error record, whether the call saw cancelled() true]), (SKIPPED, 0); and
// [STOPPED] (the call `id` of a STOP is awaiting: nothing of it runs now),
// [STRAY, error record], [CLOSING].
//
// A worker holds up to QUEUE_AHEAD calls beyond the one it runs (sent ahead,
// so that it never waits a round trip for its next call) and runs them one at
// a time, in order. Each call sent has a slot of two Int32s in the worker's
// shared buffer, at (id % SLOTS) * 2: its state, and whether the call saw
// cancelled() true. The state goes QUEUED → STARTED → ENDED on the worker; the
// loop changes QUEUED → SKIP (withdrawn: the worker will skip it) and
// STARTED → CANCEL (what cancelled() reads), each with compareExchange, so
// either the worker starts a call or the loop withdraws it, never both.
// (workerMain repeats these numbers: it cannot see this module.)
const SETUP = 0, CALLS = 1, STOP = 2, SOURCE = 1, MODULE = 2;
const STOPPED = 1, STRAY = 2, CLOSING = 3; // ANSWERS = 0
const DONE = 0, FAILED = 1; // SKIPPED = 2
const SLOT_QUEUED = 1, SLOT_STARTED = 2, SLOT_CANCEL = 3, SLOT_SKIP = 4; // SLOT_ENDED = 5
/** Calls a pool's worker holds beyond the one it runs (the free pool starts a worker instead). */
const QUEUE_AHEAD = 32;
/** A busy worker is sent more calls once it holds no more than this many: a batch at a time. */
const REFILL_AT = 16;
/** Slots per worker: more than the calls it can hold, so a slot is free again when reused. */
const SLOTS = 2 * (QUEUE_AHEAD + 1);
/** Function refs a worker keeps; the loop starts afresh when it has defined this many. */
const REFS = 256;

/** Where `cancelled()` finds the worker's check: shared by every copy of this module in a worker. */
const FLAG_KEY = Symbol.for("tinyio.thread.cancelled");

/**
 * Inside a thread task: true once the task's coroutine was cancelled (the run
 * failed, a timeout expired, the pool was closed). Elsewhere — on the loop's
 * thread, between tasks — false. It reads shared memory, cheap enough to poll
 * in a hot loop: a long synchronous task should poll it and return early, since
 * nothing else can stop it. A self-contained function calls it by the free name
 * `cancelled` (the worker provides it); a module run by `threadFunction`
 * imports it.
 *
 * @example
 * ```ts
 * import { cancelled, type Coro, Loop, runInThread } from "@tinyio/core";
 *
 * function countTo(n: number): number {
 *   let i = 0;
 *   while (i < n && !cancelled()) i++;
 *   return i;
 * }
 * function* main(): Coro<number> {
 *   return yield* runInThread(countTo, 1_000);
 * }
 * console.assert(await new Loop().run(main()) === 1_000);
 * ```
 */
export function cancelled(): boolean {
  const check = (globalThis as { [FLAG_KEY]?: () => boolean })[FLAG_KEY];
  return check !== undefined && check();
}

// ---------------------------------------------------------------------------
// The worker side. This function runs on every worker, from its source text:
// it may use nothing of this module at run time (constants are repeated;
// types, such as ErrorRecord below, vanish).

function workerMain(): void {
  interface Scope {
    postMessage(message: unknown): void;
    onmessage: ((event: MessageEvent) => void) | null;
    addEventListener(type: string, listener: (event: Event & Partial<ErrorEvent>) => void): void;
  }
  type Fn = (...args: unknown[]) => unknown;
  /** A function ref: how to make the function, and the function once made. */
  interface Definition {
    spec: [number, string, string?]; // [SOURCE, text] or [MODULE, url, export name]
    fn?: Fn;
    /**
     * Its last call returned, not a promise, in under 0.1 ms — so short that a
     * message per answer would cost the loop more than the call: the next one
     * likely is as short.
     */
    quick: boolean;
  }
  const scope = globalThis as unknown as Scope;
  const here = import.meta.url; // frames of this bootstrap are cut from stacks
  const QUEUED = 1, STARTED = 2, CANCEL = 3, ENDED = 5, DONE = 0, FAILED = 1, SKIPPED = 2;
  let slots = new Int32Array(2);
  let slotCount = 1;
  const slot = (id: number) => (id % slotCount) * 2;
  const cancelled = () => {
    if (current === 0 || Atomics.load(slots, slot(current)) !== CANCEL) return false;
    Atomics.store(slots, slot(current) + 1, 1); // the call saw it: what it throws now may be its answer
    return true;
  };
  const definitions = new Map<number, Definition>();
  let current = 0; // the call running, or 0: a late reply of an ended call is dropped
  const waiting: unknown[] = []; // calls sent ahead, in order: (id, definition, args)
  let next = 0; // the index in `waiting` of the next call
  let answers: unknown[] = [0]; // ANSWERS not posted yet
  let firstAnswerAt = 0;
  let draining = false;
  let stopped = false; // answered a STOP, or closed: runs nothing more

  scope.onmessage = (event) => {
    const m = event.data;
    switch (m[0]) {
      case 0: // SETUP
        slots = new Int32Array(m[1]);
        slotCount = slots.length / 2;
        (globalThis as Record<symbol, unknown>)[Symbol.for("tinyio.thread.cancelled")] = cancelled;
        return;
      case 1: // CALLS
        for (let i = 1; i < m.length; i += 3) {
          if (m[i] === 0) define(m[i + 1], m[i + 2]);
          else waiting.push(m[i], definitions.get(m[i + 1]), m[i + 2]);
        }
        return drain();
      case 2: // STOP: answering proves that no code of the task is running now
        if (m[1] === current) {
          stopped = true;
          flush();
          scope.postMessage([1]); // STOPPED
        } // else the call has ended and its answer is on its way
    }
  };

  function define(ref: number, spec: Definition["spec"]): void {
    definitions.set(ref, { spec, quick: false });
    // The loop uses only its latest 256 refs: forget older ones.
    if (definitions.size > 256) definitions.delete(definitions.keys().next().value!);
  }

  /**
   * Starts the calls sent ahead, one at a time: the next when the last has
   * ended. Answers go back together once none is left to start, so that tiny
   * calls cost the loop one message per batch, not per call; but before a
   * call that may take long (its function's last call did, or has not run
   * here) or 1 ms after the first, waiting answers go at once.
   */
  function drain(): void {
    if (draining) return;
    draining = true;
    while (current === 0 && !stopped && next < waiting.length) {
      const id = waiting[next] as number;
      const definition = waiting[next + 1] as Definition;
      const args = waiting[next + 2] as unknown[];
      waiting[next + 1] = waiting[next + 2] = undefined;
      next += 3;
      // The loop may have withdrawn it: the one that changes QUEUED decides.
      if (Atomics.compareExchange(slots, slot(id), QUEUED, STARTED) !== QUEUED) {
        answer(SKIPPED, 0);
        continue;
      }
      if (answers.length > 1 && (!definition.quick || performance.now() - firstAnswerAt >= 1)) {
        flush();
      }
      start(id, definition, args);
    }
    if (next === waiting.length) waiting.length = next = 0;
    draining = false;
    flush();
  }

  function answer(kind: number, payload: unknown): void {
    if (answers.length === 1) firstAnswerAt = performance.now();
    answers.push(kind, payload);
  }

  function flush(): void {
    if (answers.length === 1) return;
    const message = answers;
    answers = [0];
    post(message);
  }

  function post(message: unknown[]): void {
    try {
      scope.postMessage(message);
    } catch {
      scope.postMessage(sendable(message));
    }
  }

  // An error the task leaves behind (a throwing timer, an unhandled rejection)
  // fails the call if it is still running; the worker lives on.
  scope.addEventListener("error", (event) => {
    event.preventDefault();
    stray(event.error);
  });
  scope.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    stray((event as unknown as { reason: unknown }).reason);
  });
  // A task that calls `self.close()` ends the worker without an answer: say
  // so first, so that the loop fails its call instead of waiting forever.
  const global = globalThis as { close?: () => void };
  const close = global.close;
  global.close = () => {
    stopped = true; // what runs on is lost: the worker posts nothing after close()
    flush();
    scope.postMessage([3]); // CLOSING
    close?.call(globalThis);
  };

  function start(id: number, definition: Definition, args: unknown[]): void {
    current = id;
    let fn: Fn | Promise<Fn>;
    try {
      fn = definition.fn ?? make(definition);
    } catch (error) {
      return failed(id, error, false);
    }
    if (fn instanceof Promise) {
      fn.then((f) => invoke(id, definition, f, args), (error) => failed(id, error, false));
    } else {
      invoke(id, definition, fn, args);
    }
  }

  function invoke(id: number, definition: Definition, fn: Fn, args: unknown[]): void {
    const fromSource = definition.spec[0] === 1;
    const startedAt = performance.now();
    let value: unknown;
    try {
      value = fn(...args);
    } catch (error) {
      return failed(id, error, fromSource);
    }
    if (typeof (value as PromiseLike<unknown> | null)?.then === "function") {
      definition.quick = false;
      Promise.resolve(value).then(
        (v) => done(id, v),
        (error) => failed(id, error, fromSource),
      );
    } else {
      definition.quick = performance.now() - startedAt < 0.1;
      done(id, value);
    }
  }

  function done(id: number, value: unknown): void {
    if (id !== current || stopped) return;
    Atomics.store(slots, slot(id), ENDED);
    answer(DONE, value);
    current = 0;
    drain();
  }

  function failed(id: number, error: unknown, fromSource: boolean): void {
    if (id !== current || stopped) return;
    Atomics.store(slots, slot(id), ENDED);
    if (fromSource && error instanceof ReferenceError) explainFreeName(error);
    answer(FAILED, [record(error, 0), Atomics.load(slots, slot(id) + 1) !== 0]);
    current = 0;
    drain();
  }

  function stray(error: unknown): void {
    if (current !== 0) return failed(current, error, false);
    flush();
    post([2, record(error, 0)]); // STRAY
  }

  /**
   * A message that could not be cloned, made sendable: a result that cannot
   * be is an error; an error that cannot be is sent as text.
   */
  function sendable(message: unknown[]): unknown[] {
    if (message[0] === 2) return [2, textOnly(message[1] as ErrorRecord)]; // STRAY
    for (let i = 1; i < message.length; i += 2) {
      if (message[i] === DONE) {
        try {
          structuredClone(message[i + 1]);
        } catch (error) {
          message[i] = FAILED;
          message[i + 1] = [{
            name: "TypeError",
            message: `the result (${kind(message[i + 1])}) cannot be sent back from the worker: ${
              (error as Error).message
            }. Results are structured-cloned: return plain data.`,
            stack: "",
          }, true]; // (if its call was cancelled meanwhile, the result is discarded anyway)
        }
      } else if (message[i] === FAILED) {
        const failure = message[i + 1] as [ErrorRecord, boolean];
        try {
          structuredClone(failure[0]);
        } catch {
          failure[0] = textOnly(failure[0]);
        }
      }
    }
    return message;
  }

  /** Something in the error cannot be cloned: its text only. */
  function textOnly(r: ErrorRecord): ErrorRecord {
    return "thrown" in r
      ? { thrown: String(r.thrown) }
      : { name: r.name, message: r.message, stack: r.stack };
  }

  function record(error: unknown, depth: number): ErrorRecord {
    if (!(error instanceof Error)) return { thrown: error };
    // Cut this bootstrap's frames and the worker's event dispatch below the task's own.
    const lines = String(error.stack ?? "").split("\n").filter((line) => !line.includes(here));
    while (lines.length > 1 && /^\s+at .*\(?ext:[^)]*\)?$/.test(lines[lines.length - 1])) {
      lines.pop();
    }
    const r: ErrorRecord = {
      name: String(error.name),
      message: String(error.message),
      stack: lines.join("\n"),
    };
    if (error.cause !== undefined && depth < 8) r.cause = record(error.cause, depth + 1);
    const props: Record<string, unknown> = {};
    for (const key of Object.keys(error)) {
      if (key !== "name" && key !== "message" && key !== "stack" && key !== "cause") {
        props[key] = (error as unknown as Record<string, unknown>)[key];
      }
    }
    r.props = props;
    return r;
  }

  function explainFreeName(error: ReferenceError): void {
    const name = /^(\S+) is not defined/.exec(error.message)?.[1];
    if (name === undefined) return;
    const old = `${error.name}: ${error.message}`;
    const stack = String(error.stack ?? ""); // formatted now, with the old message
    error.message += `: runInThread sends a function to the worker by its source text, so ` +
      `it cannot use variables of its enclosing scope (here \`${name}\`), only its arguments, ` +
      "globals and `cancelled`. Pass the value as an argument, or export the function from " +
      'a module and run threadFunction(new URL("./tasks.ts", import.meta.url), "name").';
    if (stack.startsWith(old)) {
      error.stack = `${error.name}: ${error.message}${stack.slice(old.length)}`;
    }
  }

  /** The function of a definition: compiled or imported the first time, then kept. */
  function make(definition: Definition): Fn | Promise<Fn> {
    const spec = definition.spec;
    if (spec[0] === 1) return definition.fn = compile(spec[1]); // SOURCE
    return load(spec[1], spec[2]!).then((fn) => definition.fn = fn);
  }

  function compile(source: string): Fn {
    const name = /^(?:async\s*)?(?:function\s*\*?\s*)?([\w$]+)\s*\(/.exec(source)?.[1] ?? "";
    const make = (text: string) =>
      new Function(
        "cancelled",
        `"use strict";\nreturn (${text}\n);\n//# sourceURL=runInThread(${name || "anonymous"})`,
      );
    let factory: (c: () => boolean) => Fn;
    try {
      factory = make(source) as typeof factory;
    } catch {
      // A method (`square(x) {…}`, `async load() {…}`) is not an expression: make it one.
      try {
        factory = make(source.replace(/^(async\s+)?/, "$1function ")) as typeof factory;
      } catch (error) {
        throw new TypeError(
          `runInThread could not rebuild the function from its source text (${
            (error as Error).message
          }): ${source.slice(0, 60)}… Pass a function expression or an arrow function, ` +
            "or export it from a module and use threadFunction.",
        );
      }
    }
    return factory(cancelled);
  }

  async function load(url: string, exportName: string): Promise<Fn> {
    let module: Record<string, unknown>;
    try {
      module = await import(url);
    } catch (error) {
      if (error instanceof Error && /Requires read access/.test(error.message)) {
        const old = `${error.name}: ${error.message}`;
        const stack = String(error.stack ?? ""); // formatted now, with the old message
        error.message = `threadFunction(${JSON.stringify(url)}, ${JSON.stringify(exportName)}): ` +
          `the worker may not read the module or one of its imports: ${
            error.message.split("\n")[0]
          }` +
          ". Grant it: run Deno with --allow-read (or --allow-read=<the module's directory>), " +
          "and for a ThreadPool with `permissions`, list it there too ({ read: [...] }).";
        error.stack = stack.replace(old, `${error.name}: ${error.message}`);
      }
      throw error;
    }
    const fn = module[exportName];
    if (typeof fn !== "function") {
      const exports = Object.keys(module);
      throw new TypeError(
        `threadFunction(${JSON.stringify(url)}, ${JSON.stringify(exportName)}): ` +
          (exportName in module
            ? `the export "${exportName}" is ${kind(fn)}, not a function.`
            : `the module has no export named "${exportName}"; its exports are ${
              exports.length === 0 ? "none" : exports.map((e) => `"${e}"`).join(", ")
            }.`),
      );
    }
    return fn as Fn;
  }

  function kind(x: unknown): string {
    if (x === null) return "null";
    if (typeof x === "object") return `an object (${Object.prototype.toString.call(x)})`;
    return typeof x === "function" ? `a function` : `${String(x)} (${typeof x})`;
  }
}

let bootstrap: string | undefined;

/** The worker's module: `workerMain`'s source text, as a blob: URL made once. */
function bootstrapUrl(): string {
  bootstrap ??= URL.createObjectURL(
    new Blob([`(${workerMain.toString()})();\n`], { type: "text/javascript" }),
  );
  return bootstrap;
}

// ---------------------------------------------------------------------------
// The loop side.

let workersAlive = 0;
let workersMade = 0;

/**
 * How many workers of this module are alive now. For tests (not exported from
 * `mod.ts`): after a test, none should be.
 */
export function liveWorkers(): number {
  return workersAlive;
}

// States of a call.
const NEW = 0, QUEUED = 1, SENT = 2, STOPPING = 3, ENDED = 4;

/** One worker and the calls sent to it, in order: the one it runs, then those sent ahead. */
class Thread {
  readonly worker: Worker;
  /** The state and the seen-cancelled flag of each call sent, shared with the worker. */
  readonly slots: Int32Array = new Int32Array(new SharedArrayBuffer(SLOTS * 2 * 4));
  /**
   * The calls sent and not answered yet, oldest first; each answer is the
   * oldest's. Null stands for a call withdrawn and sent elsewhere, whose
   * answer (SKIPPED) is still to come.
   */
  readonly sent: (Call | null)[] = [];
  #ids = 0;
  /** The refs of the functions defined on the worker, by their keys. */
  readonly #refs = new Map<string, number>();
  #lastRef = 0;
  /** The CALLS message of this turn, posted by `post` (its calls are in `sent` already). */
  #outbox: unknown[] = [CALLS];
  /** A call of it was cancelled while running: it takes no more calls and ends when it is free. */
  tainted = false;
  terminated = false;

  constructor(pool: Pool) {
    const options: WorkerOptions & { deno?: { permissions: Deno.PermissionOptions } } = {
      type: "module",
      name: `tinyio thread ${++workersMade}`,
    };
    if (pool.permissions !== "inherit") options.deno = { permissions: pool.permissions };
    this.worker = new Worker(bootstrapUrl(), options);
    workersAlive++;
    this.worker.onmessage = (event) => pool.reply(this, event.data);
    this.worker.onerror = (event) => {
      event.preventDefault();
      pool.died(this, new Error(`A thread's worker failed: ${event.message}`));
    };
    this.worker.onmessageerror = () => {
      pool.died(this, new TypeError("A thread's reply could not be received (deserialized)."));
    };
    this.worker.postMessage([SETUP, this.slots.buffer]);
  }

  /** Calls were given to it this turn and are not posted yet. */
  get filling(): boolean {
    return this.#outbox.length > 1;
  }

  /** Adds the call, in a fresh slot, to the message that `post` sends. */
  give(call: Call): void {
    const fn = call.fn;
    let ref = this.#refs.get(fn.key);
    if (ref === undefined) {
      if (this.#refs.size >= REFS) this.#refs.clear(); // the worker keeps the latest REFS
      ref = ++this.#lastRef;
      this.#refs.set(fn.key, ref);
      this.#outbox.push(0, ref, fn.spec);
    }
    const id = ++this.#ids;
    const at = (id % SLOTS) * 2;
    Atomics.store(this.slots, at, SLOT_QUEUED);
    Atomics.store(this.slots, at + 1, 0);
    this.#outbox.push(id, ref, call.args);
    call.id = id;
    call.thread = this;
    call.state = SENT;
    this.sent.push(call);
  }

  /**
   * Posts the calls given to it. A call that cannot be posted (an argument
   * cannot be cloned) is posted without its arguments, for the worker to skip;
   * it is returned with its error.
   */
  post(): [Call, unknown][] | undefined {
    const message = this.#outbox;
    if (message.length === 1 || this.terminated) return;
    this.#outbox = [CALLS];
    try {
      this.worker.postMessage(message);
      return;
    } catch {
      // Find the culprits: post the calls one by one (definitions are text).
    }
    const unsent: [Call, unknown][] = [];
    for (let i = 1; i < message.length; i += 3) {
      const one = [CALLS, message[i], message[i + 1], message[i + 2]];
      try {
        this.worker.postMessage(one);
      } catch (error) {
        const id = one[1] as number;
        Atomics.store(this.slots, (id % SLOTS) * 2, SLOT_SKIP);
        one[3] = [];
        this.worker.postMessage(one);
        const call = this.sent.find((call) => call !== null && call.id === id);
        if (call) unsent.push([call, error]);
      }
    }
    return unsent;
  }

  /** Withdraws a call sent to it that the worker has not started: true if it never will. */
  withdraw(call: Call): boolean {
    const at = (call.id % SLOTS) * 2;
    return Atomics.compareExchange(this.slots, at, SLOT_QUEUED, SLOT_SKIP) === SLOT_QUEUED;
  }

  /** Raises cancelled() for a started call: false if it has ended already (its answer is coming). */
  cancel(call: Call): boolean {
    const at = (call.id % SLOTS) * 2;
    return Atomics.compareExchange(this.slots, at, SLOT_STARTED, SLOT_CANCEL) === SLOT_STARTED;
  }

  /** Calls sent to it whose task still waits for their answer. */
  live(): number {
    let n = 0;
    for (const call of this.sent) if (call !== null && call.state !== ENDED) n++;
    return n;
  }

  terminate(): void {
    this.terminated = true;
    this.worker.terminate();
    workersAlive--;
  }
}

/** What a call runs: its function's key (its text, or module and export) and definition. */
interface Target {
  readonly key: string;
  readonly spec: [number, string, string?];
}

/** A call of a function on a worker: what a coroutine of `runInThread` parks on. */
class Call extends Wait {
  state = NEW;
  task: Task | null = null;
  thread: Thread | null = null;
  /** Its number on its thread (its slot), while sent. */
  id = 0;

  constructor(
    readonly pool: Pool,
    readonly fn: Target,
    readonly args: unknown[],
    readonly label: string,
  ) {
    super();
  }
  park(task: Task): void {
    this.pool.submit(this, task);
  }
  unpark(): void {
    this.pool.withdraw(this);
  }
  override waitingFor(): string {
    return this.state === SENT
      ? "thread"
      : this.state === STOPPING
      ? "thread (stopping)"
      : "thread (waiting for a free worker)";
  }
}

/** The workers of `runInThread` or of one `ThreadPool`, and the calls waiting for one. */
class Pool {
  closed = false;
  /** Workers with no call sent, ready for one. */
  readonly #idle: Thread[] = [];
  /** Every worker alive: never more than `max`, tainted ones included until they end. */
  readonly #threads = new Set<Thread>();
  /** Calls sent ahead per worker: none for the free pool, which starts a worker instead. */
  readonly #ahead: number;
  readonly #queue: (Call | undefined)[] = [];
  #head = 0;
  /** The runs that used this pool and have not ended: while any has, idle workers are kept. */
  readonly #runs = new Set<Run>();

  constructor(
    readonly max: number,
    readonly permissions: Deno.PermissionOptions,
    readonly owner: string,
  ) {
    this.#ahead = max === Infinity ? 0 : QUEUE_AHEAD;
  }

  submit(call: Call, task: Task): void {
    if (this.closed) throw closedError(this.owner);
    if (typeof globalThis.Worker !== "function") {
      throw new Error(
        `${call.label}: this runtime has no Web Workers (globalThis.Worker is missing), so ` +
          "nothing can run on another thread here. Run the function on the loop instead.",
      );
    }
    call.task = task;
    hold(task);
    const run = task.run;
    if (!this.#runs.has(run)) {
      this.#runs.add(run);
      atRunEnd(task, () => this.#runEnded(run));
    }
    call.state = QUEUED;
    this.#queue.push(call); // behind calls already waiting, so that calls start in order
    this.#next();
  }

  /** The call's task stopped waiting (cancelled, timed out). */
  withdraw(call: Call): void {
    if (call.state === QUEUED) {
      call.state = ENDED; // left in the queue, skipped there
      release(call.task!);
    } else if (call.state === SENT) {
      const thread = call.thread!;
      if (thread.withdraw(call)) {
        call.state = ENDED; // the worker skips it; its answer is dropped
        release(call.task!);
      } else {
        this.#stop(thread, call);
      }
    }
  }

  /**
   * Sends the call to a worker if one can take it: an idle one, a new one, or
   * the least busy one with room ahead. False if all are full.
   */
  #dispatch(call: Call): boolean {
    let thread = this.#idle.pop();
    if (thread === undefined && this.#threads.size < this.max) {
      try {
        thread = new Thread(this);
      } catch (error) {
        if (error instanceof Deno.errors.NotCapable) {
          error.message += `: ${this.owner}'s permissions ask for more than this process ` +
            "was granted; a worker's permissions can only narrow the process's.";
        }
        this.#failEarly(call, error);
        return true;
      }
      this.#threads.add(thread);
    }
    if (thread === undefined && this.#ahead > 0) {
      // A busy worker is given calls once it is down to REFILL_AT, then up to
      // the full QUEUE_AHEAD in the same turn: a batch per message.
      let least = this.#ahead + 1;
      for (const t of this.#threads) {
        const n = t.sent.length;
        if (!t.tainted && n < least && (n <= REFILL_AT || t.filling)) {
          thread = t;
          least = n;
        }
      }
    }
    if (thread === undefined) return false;
    const wasFilling = thread.filling;
    thread.give(call);
    if (thread.sent.length === 1) {
      this.#post(thread); // it was idle: at once
    } else if (!wasFilling) {
      queueMicrotask(() => this.#post(thread)); // the calls of this turn, together
    }
    return true;
  }

  /** Posts the calls given to the thread; those that cannot be sent fail. */
  #post(thread: Thread): void {
    const unsent = thread.post();
    if (unsent === undefined) return;
    for (const [call, error] of unsent) {
      if (call.state === SENT) this.#failEarly(call, cloneError(call, error)); // its SKIPPED is dropped
    }
  }

  /** The call never reached a worker. */
  #failEarly(call: Call, error: unknown): void {
    const task = call.task!;
    call.state = ENDED;
    fail(task, call, error);
    release(task);
  }

  /**
   * A started call must stop: raise its cancelled() and ask the worker to say
   * when no code of the call runs. The worker takes no more calls; those sent
   * ahead that it has not started go back to the front of the queue.
   */
  #stop(thread: Thread, call: Call): void {
    call.state = STOPPING;
    if (!thread.cancel(call)) return; // it has ended: its answer is on its way
    thread.tainted = true;
    thread.worker.postMessage([STOP, call.id]);
    const back: Call[] = [];
    const sent = thread.sent;
    for (let i = sent.indexOf(call) + 1; i < sent.length; i++) {
      const later = sent[i];
      if (later === null || later.state !== SENT || !thread.withdraw(later)) continue;
      sent[i] = null;
      later.thread = null;
      later.state = QUEUED;
      back.push(later);
    }
    this.#requeue(back);
  }

  /** Puts calls back at the front of the queue, in their order, and starts what can start. */
  #requeue(calls: Call[]): void {
    if (calls.length === 0) return;
    if (this.closed) {
      for (const call of calls) this.#failQueued(call, closedError(this.owner));
      return;
    }
    const queue = this.#queue;
    for (let i = calls.length - 1; i >= 0; i--) {
      if (this.#head > 0) queue[--this.#head] = calls[i];
      else queue.unshift(calls[i]);
    }
    this.#next();
  }

  reply(thread: Thread, message: unknown[]): void {
    const kind = message[0];
    if (kind === CLOSING) {
      this.died(
        thread,
        new Error("A thread's worker closed itself (self.close()) during its call."),
      );
      return;
    }
    if (kind === STRAY) {
      console.error(
        "tinyio: a thread's worker raised an error after its call had returned " +
          "(a timer or promise the function left behind):",
        rebuild(message[1] as ErrorRecord),
      );
      return;
    }
    if (!this.#threads.has(thread)) return; // terminated already
    if (kind === STOPPED) {
      // The stopping call awaits: nothing of it runs now, and the worker takes
      // no more calls. Terminate it; calls behind were put back already.
      const call = thread.sent.shift();
      if (call != null && call.state !== ENDED) {
        call.state = ENDED;
        release(call.task!);
      }
      this.#abandon(thread, new Error("A thread's worker was stopped."));
      return;
    }
    // ANSWERS: (kind, payload) pairs, for the oldest calls sent.
    const ended: Task[] = [];
    for (let i = 1; i < message.length && this.#threads.has(thread); i += 2) {
      const call = thread.sent.shift();
      if (call == null || call.state === ENDED) continue;
      const task = call.task!;
      const answer = message[i], payload = message[i + 1];
      call.thread = null;
      if (call.state === SENT) {
        call.state = ENDED;
        if (answer === DONE) resume(task, call, payload);
        else if (answer === FAILED) fail(task, call, rebuild((payload as Failure)[0]));
      } else {
        // Stopping (cancelled, or the pool closed): what the call returned is
        // discarded. An error it threw without having seen cancelled() true is
        // an error of its own: a failing run reports it with its other errors.
        call.state = ENDED;
        const run = task.run;
        if (answer === FAILED && !(payload as Failure)[1] && run.crashed && !run.ended) {
          crash(run, rebuild((payload as Failure)[0]));
        }
      }
      ended.push(task);
    }
    this.#freed(thread);
    for (const task of ended) release(task);
  }

  /** An answer came from the thread: it takes the next call, or ends if tainted. */
  #freed(thread: Thread): void {
    if (thread.tainted) {
      if (thread.live() === 0) this.#retire(thread);
    } else if (thread.sent.length === 0) {
      this.#idle.push(thread);
    }
    this.#next();
    if (this.#idle.length > 0 && this.#head === this.#queue.length) this.#steal();
  }

  /**
   * A worker is idle and no call waits in the queue: it takes over the oldest
   * call sent ahead to a busy worker that has not started it, so that short
   * calls do not wait behind a long one.
   */
  #steal(): void {
    for (const busy of this.#threads) {
      const sent = busy.sent;
      for (let i = 1; i < sent.length; i++) {
        const call = sent[i];
        if (call === null || call.state !== SENT || !busy.withdraw(call)) continue;
        sent[i] = null; // its answer, SKIPPED, is still to come
        call.state = QUEUED;
        call.thread = null;
        this.#requeue([call]);
        return;
      }
    }
  }

  /** The worker died (an error outside any call's reach): its running call fails, calls sent ahead are re-queued. */
  died(thread: Thread, error: Error): void {
    if (!this.#threads.has(thread)) return;
    this.#abandon(thread, error);
  }

  /**
   * Terminates the thread. Its calls not started go back to the queue; a
   * started one fails with `error` (a stopping one just ends).
   */
  #abandon(thread: Thread, error: Error): void {
    this.#retire(thread);
    const back: Call[] = [];
    const ended: Task[] = [];
    for (const call of thread.sent) {
      if (call === null || call.state === ENDED) continue;
      call.thread = null;
      if (call.state === SENT && thread.withdraw(call)) {
        call.state = QUEUED;
        back.push(call);
        continue;
      }
      if (call.state === SENT) fail(call.task!, call, error);
      call.state = ENDED;
      ended.push(call.task!);
    }
    thread.sent.length = 0;
    this.#requeue(back);
    this.#next();
    for (const task of ended) release(task);
  }

  #retire(thread: Thread): void {
    if (!this.#threads.delete(thread)) return;
    const i = this.#idle.indexOf(thread);
    if (i >= 0) this.#idle.splice(i, 1);
    thread.terminate();
  }

  /** Sends queued calls while workers can take them. */
  #next(): void {
    const queue = this.#queue;
    while (this.#head < queue.length) {
      const call = queue[this.#head]!;
      if (call.state === QUEUED && !this.#dispatch(call)) break;
      queue[this.#head++] = undefined;
    }
    if (this.#head === queue.length) {
      queue.length = 0;
      this.#head = 0;
    }
  }

  #runEnded(run: Run): void {
    this.#runs.delete(run);
    if (this.#runs.size > 0) return;
    for (const thread of [...this.#threads]) {
      if (thread.live() === 0) this.#retire(thread);
    }
  }

  #failQueued(call: Call, error: Error): void {
    call.state = ENDED;
    fail(call.task!, call, error);
    release(call.task!);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = closedError(this.owner);
    const queue = this.#queue;
    for (let i = this.#head; i < queue.length; i++) {
      const call = queue[i]!;
      if (call.state === QUEUED) this.#failQueued(call, error);
    }
    queue.length = 0;
    this.#head = 0;
    // Calls sent ahead and not started fail now; running calls fail now too,
    // and their runs still wait until their workers stop.
    for (const thread of [...this.#threads]) {
      thread.tainted = true;
      for (const call of thread.sent) {
        if (call === null || call.state !== SENT) continue;
        if (thread.withdraw(call)) {
          this.#failQueued(call, error);
        } else {
          fail(call.task!, call, error);
          this.#stop(thread, call);
        }
      }
      if (thread.live() === 0) this.#retire(thread);
    }
  }
}

function closedError(owner: string): Error {
  return new Error(
    `${owner} is closed: its workers were terminated and it takes no more calls. ` +
      "Make a new ThreadPool, or close the pool only when its work is done.",
  );
}

/** A postMessage of the call failed: name the argument that cannot be cloned. */
function cloneError(call: Call, error: unknown): unknown {
  if (!(error instanceof DOMException) || error.name !== "DataCloneError") return error;
  const args = call.args;
  for (let i = 0; i < args.length; i++) {
    try {
      structuredClone(args[i]);
    } catch (e) {
      return new TypeError(
        `${call.label}: argument ${i + 1} (${describe(args[i])}) cannot be sent to a worker: ${
          (e as Error).message.replace(/\.+$/, "")
        }. Arguments and results are structured-cloned: pass plain data (no functions, ` +
          "symbols or class behaviour).",
      );
    }
  }
  return new TypeError(`${call.label}: the arguments cannot be sent to a worker: ${error.message}`);
}

/** A FAILED answer's payload: the error, and whether its call saw cancelled() true. */
type Failure = [ErrorRecord, boolean];

interface ErrorRecord {
  name?: string;
  message?: string;
  stack?: string;
  cause?: ErrorRecord;
  props?: Record<string, unknown>;
  thrown?: unknown;
}

const ERROR_CLASSES: Record<string, new (message: string, options?: ErrorOptions) => Error> = {
  Error,
  TypeError,
  RangeError,
  ReferenceError,
  SyntaxError,
  EvalError,
  URIError,
};

/** The worker's error, rebuilt here with its name, message and stack. */
function rebuild(r: ErrorRecord): unknown {
  if ("thrown" in r) return r.thrown; // not an Error: passed through as it is
  const name = r.name ?? "Error";
  const denoErrors = (globalThis as { Deno?: { errors?: Record<string, unknown> } }).Deno?.errors;
  const denoClass = Object.hasOwn(denoErrors ?? {}, name) ? denoErrors![name] : undefined;
  const Class = Object.hasOwn(ERROR_CLASSES, name)
    ? ERROR_CLASSES[name]
    : typeof denoClass === "function"
    ? denoClass as (typeof ERROR_CLASSES)[string]
    : Error;
  const options = r.cause === undefined ? undefined : { cause: rebuild(r.cause) };
  const error = new Class(r.message ?? "", options);
  if (error.name !== name) error.name = name;
  if (r.stack) error.stack = r.stack;
  if (r.props !== undefined) Object.assign(error, r.props);
  return error;
}

// ---------------------------------------------------------------------------
// The public face.

const GeneratorFunction = Object.getPrototypeOf(function* () {}).constructor;
const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;

/** What a worker runs for `fn`; checks `fn`. */
function threadFn(label: string, fn: unknown): Target {
  if (typeof fn === "function") {
    if (fn instanceof GeneratorFunction || fn instanceof AsyncGeneratorFunction) {
      throw new TypeError(
        `${label}: ${describe(fn)} is a generator function; a thread runs a plain or async ` +
          "function. To wait for a coroutine, yield it instead.",
      );
    }
    const source = Function.prototype.toString.call(fn);
    if (/\{\s*\[native code\]\s*\}$/.test(source)) {
      throw new TypeError(
        `${label}: ${describe(fn)} is a built-in or bound function, which has no source text ` +
          "to send to a worker. Wrap it in an arrow function (`(x) => Math.sqrt(x)`), or " +
          "export a function from a module and use threadFunction.",
      );
    }
    return { key: source, spec: [SOURCE, source] };
  }
  if (isThreadFunction(fn)) {
    // No function's text starts with a NUL: the keys of the two kinds differ.
    return { key: `\0${fn.module}\0${fn.exportName}`, spec: [MODULE, fn.module, fn.exportName] };
  }
  throw new TypeError(
    `${label}: the function is ${describe(fn)}; give a self-contained function (sent by its ` +
      'source text) or threadFunction(new URL("./tasks.ts", import.meta.url), "name").',
  );
}

function isThreadFunction(x: unknown): x is ThreadFunction<() => unknown> {
  if (typeof x !== "object" || x === null) return false;
  const { module, exportName } = x as Partial<ThreadFunction<() => unknown>>;
  return typeof module === "string" && URL.canParse(module) && typeof exportName === "string";
}

// A call whose worker's error had reached the loop when the run was cancelled
// reports that error instead of a CancelledError: the loop throws a pending
// error in first (see `cancelTask`).
function* calling<R>(call: Call): Coro<R> {
  return yield call;
}
primitive(calling);

let defaultPool: Pool | undefined;

/**
 * Runs `fn(...args)` on a Deno Worker, off the loop's thread, and resumes with
 * its result: blocking or CPU-heavy work runs in parallel while the loop goes
 * on. `fn` is a self-contained function — sent by its source text, so it may
 * use only its arguments, globals and `cancelled`; `async` functions are
 * awaited — or a {@linkcode threadFunction} naming a module export, which may
 * import anything. Arguments and results are structured-cloned; an error
 * thrown on the worker is rethrown here with its name, message and stack.
 * Workers are reused while the run goes on, and as many start as there are
 * calls at once; bound them with a {@linkcode ThreadPool}. A function that is
 * not one (or a generator function) is a `TypeError`, thrown at the call.
 *
 * Cancelling the coroutine raises `cancelled()` on the worker and stops it as
 * soon as it awaits or returns; `run` settles only once it has stopped.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, runInThread } from "@tinyio/core";
 *
 * function slowSquare(x: number): number {
 *   const until = Date.now() + 50;
 *   while (Date.now() < until); // blocks its worker, not the loop
 *   return x * x;
 * }
 * function* main(): Coro<number[]> {
 *   return yield [runInThread(slowSquare, 2), runInThread(slowSquare, 3)];
 * }
 * const [four, nine] = await new Loop().run(main()); // ~50 ms, not 100
 * console.assert(four === 4 && nine === 9);
 * ```
 */
export function runInThread<A extends unknown[], R>(fn: ThreadFn<A, R>, ...args: A): Coro<R> {
  const label = "runInThread()";
  const what = threadFn(label, fn);
  defaultPool ??= new Pool(Infinity, "inherit", "runInThread");
  return calling(new Call(defaultPool, what, args, label));
}

/**
 * Names the export `exportName` of the module at `module` (an absolute URL:
 * `new URL("./tasks.ts", import.meta.url)` or `import.meta.resolve(...)`), to
 * run on a worker with {@linkcode runInThread} or a {@linkcode ThreadPool}. The
 * module is imported on the worker, so it may import anything, and reading it
 * takes `--allow-read` for its files. A relative string is a `TypeError`; a
 * missing export is a `TypeError` thrown into the calling coroutine.
 *
 * @example
 * ```ts
 * import { type Coro, runInThread, threadFunction } from "@tinyio/core";
 *
 * // tasks.ts, next to this module: export function hash(text: string): number { … }
 * const hash = threadFunction<(text: string) => number>(
 *   new URL("./tasks.ts", import.meta.url),
 *   "hash",
 * );
 * function* main(): Coro<number> {
 *   return yield* runInThread(hash, "some text"); // typed: (text: string) => number
 * }
 * ```
 */
// deno-lint-ignore no-explicit-any
export function threadFunction<F extends (...args: any[]) => any>(
  module: string | URL,
  exportName: string,
): ThreadFunction<F> {
  const label = `threadFunction(${describe(module)}, ${describe(exportName)})`;
  if (!(module instanceof URL) && typeof module !== "string") {
    throw new TypeError(`${label}: the module is a URL or a string, not ${describe(module)}.`);
  }
  if (!URL.canParse(module)) {
    throw new TypeError(
      `${label}: the module must be an absolute URL, since the worker cannot know what it is ` +
        'relative to: use new URL("./tasks.ts", import.meta.url) or import.meta.resolve("./tasks.ts").',
    );
  }
  if (typeof exportName !== "string" || exportName === "") {
    throw new TypeError(`${label}: the export name is a non-empty string.`);
  }
  return Object.freeze({ module: new URL(module).href, exportName });
}

/**
 * Runs functions on at most `maxThreads` Deno Workers at a time; further calls
 * wait in order for a free worker. `permissions` narrows what its workers may
 * do (Deno's worker permissions: `"none"`, or an object such as
 * `{ read: ["./data"] }`); that needs Deno's `--unstable-worker-options` flag,
 * and the constructor throws an `Error` naming it when it can tell the flag is
 * missing. `maxThreads` not a positive integer is a `RangeError`. `close()`
 * (or `using`) terminates the workers; the pool cannot be used after that.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, ThreadPool } from "@tinyio/core";
 *
 * function* main(): Coro<number[]> {
 *   using pool = new ThreadPool(2);
 *   return yield* pool.map((x: number) => x * x, [1, 2, 3, 4]);
 * }
 * console.assert((await new Loop().run(main())).join() === "1,4,9,16");
 * ```
 */
export class ThreadPool implements Disposable {
  #pool: Pool;

  /** Makes a pool of at most `maxThreads` workers, with the given permissions (default `"inherit"`). */
  constructor(
    maxThreads: number,
    options: { permissions?: "inherit" | "none" | Deno.PermissionOptionsObject } = {},
  ) {
    const label = `new ThreadPool(${
      typeof maxThreads === "number" ? maxThreads : describe(maxThreads)
    })`;
    if (typeof maxThreads !== "number") {
      throw new TypeError(`${label}: maxThreads is a number of workers, a positive integer.`);
    }
    if (!Number.isInteger(maxThreads) || maxThreads < 1) {
      throw new RangeError(
        `${label}: maxThreads is ${maxThreads}; give a positive integer, the most calls run at once.`,
      );
    }
    const permissions = options?.permissions ?? "inherit";
    if (
      permissions !== "inherit" && permissions !== "none" &&
      (typeof permissions !== "object" || permissions === null || Array.isArray(permissions))
    ) {
      throw new TypeError(
        `${label}: permissions is ${describe(permissions)}; give "inherit", "none" or an ` +
          "object of Deno permissions such as { read: true }.",
      );
    }
    if (permissions !== "inherit" && workerOptionsGiven() === false) {
      throw new Error(
        `${label}: narrowing the permissions of workers needs Deno's --unstable-worker-options ` +
          'flag (or "unstable": ["worker-options"] in deno.json), and this process was started ' +
          "without it: Deno would end the whole process at the first worker. Run " +
          '`deno run --unstable-worker-options …`, or use permissions: "inherit".',
      );
    }
    this.#pool = new Pool(maxThreads, permissions, `This ThreadPool(${maxThreads})`);
  }

  /**
   * Runs `fn(...args)` on one of the pool's workers, as the free function
   * {@linkcode runInThread} does, waiting for a free worker first.
   *
   * @example
   * ```ts
   * import { type Coro, Loop, ThreadPool } from "@tinyio/core";
   *
   * function* main(): Coro<string> {
   *   using pool = new ThreadPool(1);
   *   return yield* pool.runInThread((s: string) => s.toUpperCase(), "hi");
   * }
   * console.assert(await new Loop().run(main()) === "HI");
   * ```
   */
  runInThread<A extends unknown[], R>(fn: ThreadFn<A, R>, ...args: A): Coro<R> {
    const label = "ThreadPool.runInThread()";
    if (this.#pool.closed) throw closedError(this.#pool.owner);
    return calling(new Call(this.#pool, threadFn(label, fn), args, label));
  }

  /**
   * Runs `fn(x)` for every `x` of `xs` on the pool's workers and resumes with
   * the results in the order of `xs`.
   *
   * @example
   * ```ts
   * import { type Coro, Loop, ThreadPool } from "@tinyio/core";
   *
   * function* main(): Coro<number[]> {
   *   using pool = new ThreadPool(2);
   *   return yield* pool.map((n: number) => n + 1, new Set([1, 2, 3]));
   * }
   * console.assert((await new Loop().run(main())).join() === "2,3,4");
   * ```
   */
  map<X, R>(fn: ThreadFn<[X], R>, xs: Iterable<X>): Coro<R[]> {
    const label = "ThreadPool.map()";
    if (this.#pool.closed) throw closedError(this.#pool.owner);
    if (xs === null || typeof (xs as Partial<Iterable<X>>)?.[Symbol.iterator] !== "function") {
      throw new TypeError(`${label}: xs is ${describe(xs)}; give an iterable (an array, a Set…).`);
    }
    const what = threadFn(label, fn); // checks fn now, not at the first element
    const calls: Coro<R>[] = [];
    for (const x of xs) calls.push(calling(new Call(this.#pool, what, [x], label)));
    return gathering(calls);
  }

  /**
   * Terminates the pool's workers: running calls see `cancelled()` turn true
   * and, like calls still waiting for a worker, fail with an `Error` saying the
   * pool is closed (their runs wait until those workers have stopped). Every
   * later use is an `Error`. A second `close()` does nothing.
   *
   * @example
   * ```ts
   * import { ThreadPool } from "@tinyio/core";
   *
   * const pool = new ThreadPool(4);
   * pool.close();
   * ```
   */
  close(): void {
    this.#pool.close();
  }

  /** Same as {@linkcode ThreadPool.prototype.close}, for `using pool = new ThreadPool(n)`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function* gathering<R>(calls: Coro<R>[]): Coro<R[]> {
  return yield calls;
}
primitive(gathering);

// ---------------------------------------------------------------------------
// Is --unstable-worker-options on? No runtime API says (see PLATFORM-NOTES), so
// read the command line and the configuration files, where permitted.

let workerOptions: boolean | undefined | null = null;

/** True or false if this process can tell whether worker options are enabled; else undefined. */
function workerOptionsGiven(): boolean | undefined {
  if (workerOptions === null) workerOptions = detectWorkerOptions();
  return workerOptions;
}

function detectWorkerOptions(): boolean | undefined {
  if (Deno.build.standalone) return undefined; // flags compiled in: nothing tells
  // The command line, readable only with --allow-all (Deno guards /proc).
  let flags: string[] | undefined;
  const cmdline = Deno.build.os === "linux" ? readIfAllowed("/proc/self/cmdline") : undefined;
  if (typeof cmdline === "string") {
    const argv = cmdline.split("\0");
    if (argv[argv.length - 1] === "") argv.pop();
    flags = argv.slice(0, argv.length - Deno.args.length); // not the script's own arguments
    if (flags.includes("--unstable-worker-options")) return true;
    if (flags.includes("--no-config")) return false;
  }
  // The configuration file: `"unstable": ["worker-options"]`.
  const configs: string[] = [];
  try {
    const at = flags?.findIndex((f) => f === "--config" || f === "-c" || f.startsWith("--config="));
    if (flags !== undefined && at !== undefined && at >= 0) {
      const path = flags[at].startsWith("--config=") ? flags[at].slice(9) : flags[at + 1];
      configs.push(path.startsWith("/") ? path : `${Deno.cwd()}/${path}`);
    } else {
      // Deno looks upwards from the main module (run) or the working directory (test).
      const dirs = [Deno.cwd()];
      if (Deno.mainModule.startsWith("file:")) {
        dirs.push(decodeURIComponent(new URL(".", Deno.mainModule).pathname));
      }
      for (let dir of dirs) {
        for (;;) {
          dir = dir.replace(/\/+$/, "");
          configs.push(`${dir}/deno.json`, `${dir}/deno.jsonc`);
          if (dir === "") break;
          dir = dir.slice(0, dir.lastIndexOf("/"));
        }
      }
    }
  } catch {
    return undefined; // no permission to read the working directory
  }
  let unreadable = false;
  for (const path of configs) {
    const text = readIfAllowed(path);
    if (text === undefined) unreadable = true;
    else if (text !== null && /"unstable"\s*:\s*\[[^\]]*"worker-options"/.test(text)) return true;
  }
  // Without the command line, the flag may be there unseen.
  return flags === undefined || unreadable ? undefined : false;
}

/** The file's text; null if it does not exist; undefined if it may not be read. */
function readIfAllowed(path: string): string | null | undefined {
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory
      ? null
      : undefined;
  }
}
