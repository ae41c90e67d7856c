/**
 * The worker's side: what runs on every worker of a pool. `workerSource`
 * writes the functions below, as their source text, into the worker's module
 * with the protocol's numbers (protocol.ts) and the port of the runtime; the
 * loop's side never calls them.
 *
 * Rules for every function in this file except `workerSource`, since each
 * runs from its text alone:
 * - it uses only its parameters, globals and the other functions of this
 *   file, by name: all of them stand together in the worker's module. (Not
 *   functions of another module: a bundler may rewrite a reference to another
 *   module's export, e.g. webpack's `(0, _mod.fn)(…)`, which means nothing
 *   on the worker.)
 * - it declares no nested named function (`function f`, `const f = () =>`,
 *   `{ f: () => … }`): a bundler that keeps names (esbuild's `keepNames`) wraps
 *   those in a helper of its own, missing on the worker. Callbacks are passed
 *   inline; object literals use method shorthand (`post(m) {…}`).
 *
 * A worker runs the calls it is sent one at a time, in order: the next when
 * the last has ended. Answers go back together once none is left to start, so
 * that tiny calls cost the loop one message per batch, not per call; but
 * before a call that may take long (its function's last call did, or it has
 * not run here) or 1 ms after the first, waiting answers go at once.
 *
 * @module
 */

import type { ErrorRecord, Failure, Protocol, Spec } from "./protocol.ts";

/** The runtimes whose workers differ in how they talk to the loop. */
export type WorkerKind = "web" | "node";

/**
 * Writes the worker's module: this file's worker functions, then the call
 * that starts it (`workerMain`) with `protocol` and the port of a `kind`
 * worker.
 */
export function workerSource(protocol: Protocol, kind: WorkerKind): string {
  const parts: string[] = [];
  if (kind === "node") parts.push('import * as threads from "node:worker_threads";');
  // The helpers, declared under the names the entry points' text calls them
  // by (a minifier may have renamed them all, and kept their `.name`s).
  for (const fn of HELPERS) parts.push(fn.toString());
  // The entry points, called as expressions of their text: no name needed.
  const port = kind === "node"
    ? `(${nodePort})(threads.parentPort, process)`
    : `(${webPort})(globalThis)`;
  parts.push(`(${workerMain})(${JSON.stringify(protocol)}, ${port});`);
  // Frames of this module print under this name where the runtime honours it (Node).
  parts.push("//# sourceURL=tinyio-thread-worker.js\n");
  return parts.join("\n");
}

// ---------------------------------------------------------------------------
// Everything below runs on the worker.

/** How the worker talks to the loop on its runtime: made by `webPort` or `nodePort`. */
interface Port {
  /** Posts a message to the loop; throws if something in it cannot be cloned. */
  post(message: unknown[]): void;
  /** Calls `receive` with every message from the loop. */
  listen(receive: (message: unknown[]) => void): void;
  /** Calls `stray` with every error nothing caught (a throwing timer, an unhandled rejection), and keeps the worker alive. */
  catchStray(stray: (error: unknown) => void): void;
  /** Calls `closing` just before the task ends the worker itself (`self.close()`, an exit). */
  beforeClose(closing: () => void): void;
}

type Fn = (...args: unknown[]) => unknown;

/** A function ref: how to make the function, and the function once made. */
interface Definition {
  spec: Spec;
  fn?: Fn;
  /**
   * Its last call returned, not a promise, in under 0.1 ms — so short that a
   * message per answer would cost the loop more than the call: the next one
   * likely is as short.
   */
  quick: boolean;
}

/** The state of the worker. */
interface WorkerState {
  readonly P: Protocol;
  readonly port: Port;
  /** How the runtime prints this module's location in a stack: its frames are cut from errors. */
  readonly here: string;
  slots: Int32Array;
  slotCount: number;
  readonly definitions: Map<number, Definition>;
  /** The call running, or 0: a late reply of an ended call is dropped. */
  current: number;
  /** Calls sent ahead, in order: (id, definition, args). */
  readonly waiting: unknown[];
  /** The index in `waiting` of the next call. */
  next: number;
  /** The ANSWERS message not posted yet. */
  answers: unknown[];
  firstAnswerAt: number;
  draining: boolean;
  /** Answered a STOP, or closing: runs nothing more. */
  stopped: boolean;
}

/** Starts the worker: it takes messages from the loop through `port`. */
function workerMain(P: Protocol, port: Port): void {
  const w: WorkerState = {
    P,
    port,
    here: bootstrapLocation(),
    slots: new Int32Array(2),
    slotCount: 1,
    definitions: new Map(),
    current: 0,
    waiting: [],
    next: 0,
    answers: [P.fromWorker.ANSWERS],
    firstAnswerAt: 0,
    draining: false,
    stopped: false,
  };
  port.listen((message) => receive(w, message));
  // An error the task leaves behind (a throwing timer, an unhandled rejection)
  // fails the call if it is still running; the worker lives on.
  port.catchStray((error) => stray(w, error));
  // A task that ends its worker (self.close(), Deno.exit(), process.exit())
  // leaves no answer: say so first, so that the loop fails its call instead of
  // waiting forever.
  port.beforeClose(() => {
    w.stopped = true; // what runs on is lost: the worker posts nothing after closing
    flush(w);
    port.post([P.fromWorker.CLOSING]);
  });
}

/** The location (URL, or sourceURL) in the first frame of an error made here. */
function bootstrapLocation(): string {
  for (const line of String(new Error().stack).split("\n")) {
    const at = /([^\s(@]+):\d+:\d+\)?\s*$/.exec(line);
    if (at !== null) return at[1];
  }
  return "tinyio-thread-worker.js";
}

function receive(w: WorkerState, m: unknown[]): void {
  const P = w.P;
  switch (m[0]) {
    case P.toWorker.SETUP:
      w.slots = new Int32Array(m[1] as SharedArrayBuffer);
      w.slotCount = w.slots.length / 2;
      (globalThis as Record<symbol, unknown>)[Symbol.for(P.cancelledKey)] = isCancelled.bind(
        null,
        w,
      );
      return;
    case P.toWorker.CALLS:
      for (let i = 1; i < m.length; i += 3) {
        if (m[i] === P.DEFINE) define(w, m[i + 1] as number, m[i + 2] as Spec);
        else w.waiting.push(m[i], w.definitions.get(m[i + 1] as number), m[i + 2]);
      }
      return drain(w);
    case P.toWorker.STOP: // answering proves that no code of the task is running now
      if (m[1] === w.current) {
        w.stopped = true;
        flush(w);
        w.port.post([P.fromWorker.STOPPED]);
      } // else the call has ended and its answer is on its way
  }
}

/** What `cancelled()` calls on this worker: true once the running call was cancelled. */
function isCancelled(w: WorkerState): boolean {
  const at = (w.current % w.slotCount) * 2;
  if (w.current === 0 || Atomics.load(w.slots, at) !== w.P.slot.CANCEL) return false;
  Atomics.store(w.slots, at + 1, 1); // the call saw it: what it throws now may be its answer
  return true;
}

function define(w: WorkerState, ref: number, spec: Spec): void {
  w.definitions.set(ref, { spec, quick: false });
  // The loop uses only its latest refs: forget older ones.
  if (w.definitions.size > w.P.refs) w.definitions.delete(w.definitions.keys().next().value!);
}

/** Starts the calls sent ahead, one at a time, and posts their answers (see the module doc). */
function drain(w: WorkerState): void {
  if (w.draining) return;
  w.draining = true;
  const { QUEUED, STARTED } = w.P.slot;
  const waiting = w.waiting;
  while (w.current === 0 && !w.stopped && w.next < waiting.length) {
    const id = waiting[w.next] as number;
    const definition = waiting[w.next + 1] as Definition;
    const args = waiting[w.next + 2] as unknown[];
    waiting[w.next + 1] = waiting[w.next + 2] = undefined;
    w.next += 3;
    // The loop may have withdrawn it: the one that changes QUEUED decides.
    if (Atomics.compareExchange(w.slots, (id % w.slotCount) * 2, QUEUED, STARTED) !== QUEUED) {
      answer(w, w.P.answer.SKIPPED, 0);
      continue;
    }
    if (w.answers.length > 1 && (!definition.quick || performance.now() - w.firstAnswerAt >= 1)) {
      flush(w);
    }
    start(w, id, definition, args);
  }
  if (w.next === waiting.length) waiting.length = w.next = 0;
  w.draining = false;
  flush(w);
}

function answer(w: WorkerState, kind: number, payload: unknown): void {
  if (w.answers.length === 1) w.firstAnswerAt = performance.now();
  w.answers.push(kind, payload);
}

function flush(w: WorkerState): void {
  if (w.answers.length === 1) return;
  const message = w.answers;
  w.answers = [w.P.fromWorker.ANSWERS];
  post(w, message);
}

function post(w: WorkerState, message: unknown[]): void {
  try {
    w.port.post(message);
  } catch {
    w.port.post(sendable(w.P, message));
  }
}

function start(w: WorkerState, id: number, definition: Definition, args: unknown[]): void {
  w.current = id;
  let fn: Fn | Promise<Fn>;
  try {
    fn = definition.fn ?? make(w, definition);
  } catch (error) {
    return failed(w, id, error);
  }
  if (fn instanceof Promise) {
    fn.then((f) => invoke(w, id, definition, f, args), (error) => failed(w, id, error));
  } else {
    invoke(w, id, definition, fn, args);
  }
}

function invoke(w: WorkerState, id: number, definition: Definition, fn: Fn, args: unknown[]): void {
  const startedAt = performance.now();
  let value: unknown;
  try {
    value = fn(...args);
  } catch (error) {
    return failed(w, id, error);
  }
  if (typeof (value as PromiseLike<unknown> | null)?.then === "function") {
    definition.quick = false;
    Promise.resolve(value).then((v) => done(w, id, v), (error) => failed(w, id, error));
  } else {
    definition.quick = performance.now() - startedAt < 0.1;
    done(w, id, value);
  }
}

function done(w: WorkerState, id: number, value: unknown): void {
  if (id !== w.current || w.stopped) return;
  Atomics.store(w.slots, (id % w.slotCount) * 2, w.P.slot.ENDED);
  answer(w, w.P.answer.DONE, value);
  w.current = 0;
  drain(w);
}

function failed(w: WorkerState, id: number, error: unknown): void {
  if (id !== w.current || w.stopped) return;
  const at = (id % w.slotCount) * 2;
  Atomics.store(w.slots, at, w.P.slot.ENDED);
  const failure: Failure = [record(error, 0, w.here), Atomics.load(w.slots, at + 1) !== 0];
  answer(w, w.P.answer.FAILED, failure);
  w.current = 0;
  drain(w);
}

function stray(w: WorkerState, error: unknown): void {
  if (w.current !== 0) return failed(w, w.current, error);
  flush(w);
  post(w, [w.P.fromWorker.STRAY, record(error, 0, w.here)]);
}

// Making the functions.

/** The function of a definition: compiled or imported the first time, then kept. */
function make(w: WorkerState, definition: Definition): Fn | Promise<Fn> {
  const spec = definition.spec;
  if (spec[0] === w.P.spec.SOURCE) {
    return definition.fn = compile(spec[1], isCancelled.bind(null, w));
  }
  if (spec[0] === w.P.spec.MODULE) return load(spec[1], spec[2]!).then((fn) => definition.fn = fn);
  throw new Error(`tinyio: a thread's worker got a function of unknown kind ${spec[0]}.`);
}

/** A function rebuilt from its source text, with `cancelled` as a free name. */
function compile(source: string, cancelled: () => boolean): Fn {
  const name = /^(?:async\s*)?(?:function\s*\*?\s*)?([\w$]+)\s*\(/.exec(source)?.[1] ?? "";
  // A method (`square(x) {…}`, `async load() {…}`) is not an expression: the
  // second try makes it one.
  let reason: unknown;
  for (const text of [source, source.replace(/^(async\s+)?/, "$1function ")]) {
    try {
      const factory = new Function(
        "cancelled",
        `"use strict";\nreturn (${text}\n);\n//# sourceURL=runInThread(${name || "anonymous"})`,
      );
      return factory(cancelled);
    } catch (error) {
      reason = error;
    }
  }
  throw new TypeError(
    `runInThread could not rebuild the function from its source text (${
      (reason as Error).message
    }): ${source.slice(0, 60)}… Pass a function expression or an arrow function, ` +
      "or export it from a module and use threadFunction.",
  );
}

/** A module's export, imported on the worker. */
async function load(url: string, exportName: string): Promise<Fn> {
  const label = `threadFunction(${JSON.stringify(url)}, ${JSON.stringify(exportName)})`;
  let module: Record<string, unknown>;
  try {
    module = await import(url);
  } catch (error) {
    if (error instanceof Error && /Requires read access/.test(error.message)) {
      const old = `${error.name}: ${error.message}`;
      const stack = String(error.stack ?? ""); // formatted now, with the old message
      error.message =
        `${label}: the worker may not read the module or one of its imports: ${
          error.message.split("\n")[0]
        }. Grant it: run Deno with --allow-read (or --allow-read=<the module's directory>), ` +
        "and for a ThreadPool with `permissions`, list it there too ({ read: [...] }).";
      error.stack = stack.replace(old, `${error.name}: ${error.message}`);
    }
    throw error;
  }
  const fn = module[exportName];
  if (typeof fn !== "function") {
    const exports = Object.keys(module);
    throw new TypeError(
      `${label}: ` +
        (exportName in module
          ? `the export "${exportName}" is ${kind(fn)}, not a function.`
          : `the module has no export named "${exportName}"; its exports are ${
            exports.length === 0 ? "none" : exports.map((e) => `"${e}"`).join(", ")
          }.`),
    );
  }
  return fn as Fn;
}

// Errors, as records the loop rebuilds them from (errors.ts).

/** The error as a record: its parts, with this module's frames cut from its stack. */
function record(error: unknown, depth: number, here: string): ErrorRecord {
  if (!(error instanceof Error)) return { thrown: error };
  // Cut this bootstrap's frames, and the runtime's event dispatch below the task's own.
  const lines = String(error.stack ?? "").split("\n").filter((line) => !line.includes(here));
  while (lines.length > 1 && /^\s+at .*\(?(ext|node):[^)]*\)?$/.test(lines[lines.length - 1])) {
    lines.pop();
  }
  const r: ErrorRecord = {
    name: String(error.name),
    message: String(error.message),
    stack: lines.join("\n"),
  };
  if (error.cause !== undefined && depth < 8) r.cause = record(error.cause, depth + 1, here);
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(error)) {
    if (key !== "name" && key !== "message" && key !== "stack" && key !== "cause") {
      props[key] = (error as unknown as Record<string, unknown>)[key];
    }
  }
  r.props = props;
  return r;
}

/**
 * A message that could not be cloned, made sendable: a result that cannot
 * be is an error; an error that cannot be is sent as text.
 */
function sendable(P: Protocol, message: unknown[]): unknown[] {
  if (message[0] === P.fromWorker.STRAY) {
    return [P.fromWorker.STRAY, textOnly(message[1] as ErrorRecord)];
  }
  for (let i = 1; i < message.length; i += 2) {
    if (message[i] === P.answer.DONE) {
      try {
        structuredClone(message[i + 1]);
      } catch (error) {
        message[i] = P.answer.FAILED;
        const failure: Failure = [{
          name: "TypeError",
          message: `the result (${kind(message[i + 1])}) cannot be sent back from the worker: ${
            (error as Error).message.replace(/\.+$/, "")
          }. Results are structured-cloned: return plain data.`,
          stack: "",
        }, true]; // (if its call was cancelled meanwhile, the result is discarded anyway)
        message[i + 1] = failure;
      }
    } else if (message[i] === P.answer.FAILED) {
      const failure = message[i + 1] as Failure;
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

/** Names a value for an error message (the loop's `describe` is not here). */
function kind(x: unknown): string {
  if (x === null) return "null";
  if (typeof x === "object") return `an object (${Object.prototype.toString.call(x)})`;
  return typeof x === "function" ? `a function` : `${String(x)} (${typeof x})`;
}

// The ports: how a worker of each kind talks to the loop.

/** A Web Worker's (Deno, Bun, browsers): its global scope. */
function webPort(scope: WebWorkerScope): Port {
  return {
    post(message) {
      scope.postMessage(message);
    },
    listen(receive) {
      scope.onmessage = (event) => receive(event.data);
    },
    catchStray(stray) {
      scope.addEventListener("error", (event) => {
        event.preventDefault();
        stray((event as ErrorEvent).error);
      });
      scope.addEventListener("unhandledrejection", (event) => {
        event.preventDefault();
        stray((event as PromiseRejectionEvent).reason);
      });
    },
    beforeClose(closing) {
      hookEnd(scope, "close", closing);
      // Deno.exit() ends a Deno worker without a word, and Deno's process.exit()
      // calls it; `process` itself is not touched there (its first use costs
      // Deno about 100 ms).
      if (scope.Deno !== undefined) hookEnd(scope.Deno, "exit", closing);
      else hookEnd(scope.process, "exit", closing);
    },
  };
}

/** A `node:worker_threads` worker's: its parent port, and `process` for errors and exits. */
function nodePort(parentPort: NodeParentPort, process: NodeProcess): Port {
  return {
    post(message) {
      parentPort.postMessage(message);
    },
    listen(receive) {
      parentPort.on("message", (message) => receive(message as unknown[]));
    },
    catchStray(stray) {
      process.on("uncaughtException", (error) => stray(error));
      process.on("unhandledRejection", (reason) => stray(reason));
    },
    beforeClose(closing) {
      hookEnd(process, "exit", closing); // ends the worker (not the process), without an answer
    },
  };
}

/** Makes `owner[key]`, a function that ends the worker, call `closing` first. */
function hookEnd(owner: object | undefined, key: string, closing: () => void): void {
  const functions = owner as Record<string, unknown> | undefined;
  const end = functions?.[key];
  if (typeof end !== "function") return;
  functions![key] = function (this: unknown, ...args: unknown[]) {
    closing();
    return end.apply(this, args);
  };
}

/** What a Web Worker's global scope offers the bootstrap. */
interface WebWorkerScope {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent) => void) | null;
  addEventListener(type: string, listener: (event: Event) => void): void;
  close?: () => void;
  Deno?: object;
  process?: object;
}

/** What `node:worker_threads`' `parentPort` offers the bootstrap. */
interface NodeParentPort {
  postMessage(message: unknown): void;
  on(type: "message", listener: (message: unknown) => void): void;
}

/** What Node's `process` offers the bootstrap. */
interface NodeProcess {
  on(type: string, listener: (error: unknown) => void): void;
  exit(code?: number): never;
}

/** The functions the worker's module declares, for the entry points above to call. */
const HELPERS: readonly ((...args: never[]) => unknown)[] = [
  bootstrapLocation,
  receive,
  isCancelled,
  define,
  drain,
  answer,
  flush,
  post,
  start,
  invoke,
  done,
  failed,
  stray,
  make,
  compile,
  load,
  record,
  sendable,
  textOnly,
  kind,
  hookEnd,
];
