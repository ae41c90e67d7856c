/**
 * What a failing run's error says: its stack without the loop's own frames,
 * stitched with one frame per coroutine up the chain of waiters (as Python
 * tinyio chains tracebacks), and the error of a waiting cycle, which names
 * the coroutines of the cycle. The loop calls these when a run fails
 * (`crash` in src/cancelling.ts, `#failCycles` in src/core.ts); the
 * positions come from the inspector (src/inspect.ts).
 *
 * @module
 */

import { isGenerator } from "./coro.ts";
import { cycleError } from "./messages.ts";
import { inspectorAllowed, type Position, readPositions } from "./inspect.ts";
import { numbered, waitingFor } from "./snapshot.ts";
import { type Observer, type Run, Task } from "./task.ts";

/** At most this many frames are stitched in: the innermost waiters, as a stack trace keeps the innermost calls. */
const MAX_FRAMES = 64;

// The loop's own files: this module's directory (src/). A frame in them is
// the loop's, not the user's. Bundled (the module is not src/trace.ts), the
// loop's frames share one file with the user's code and cannot be told
// apart by file, so none is removed: the stack stays as the runtime wrote
// it, and stitched frames go at its end. Bun names a local file by its path
// in stack frames, not by its URL.
const here = import.meta.url;
const OWN: string | null = /\/src\/trace\.[cm]?[jt]s$/.test(here) ? new URL(".", here).href : null;
const OWN_PATH = OWN?.startsWith("file:") ? decodeURIComponent(new URL(OWN).pathname) : OWN;

/**
 * Removes the loop's frames from the stack of `error`, failing `run`, and,
 * given the failed coroutine's only waiter (`from`) and the inspector,
 * stitches in a frame per waiter up the chain, as long as each has one
 * waiter (a coroutine waiting through a `timeout` counts as its waiter), up
 * to 64. Returns undefined when done at once; else the promise of the
 * positions being read, which the driver waits for before it cancels the
 * waiters (a cancelled generator forgets where it was). A thrown value that
 * is not an Error is left alone.
 *
 * Only a loop's own run is stitched, not an `isolate`'s nested one: reading
 * positions pauses the whole loop, and a failing `isolate` in a retry loop
 * must stay cheap (measured: about 10 µs a failure, as in 0.1; stitched it
 * was 0.26 ms). And the stack is rewritten only when first read: formatting
 * it costs V8 (and Deno's source mapping) about 50 µs, for an error nobody
 * may look at.
 */
export function stitchTrace(
  run: Run,
  error: unknown,
  from: Task | Observer | null,
): Promise<void> | undefined {
  if (!(error instanceof Error)) return undefined;
  const chain: Task[] = [];
  if (run.core.host === null) {
    for (let w = from; w !== null && chain.length < MAX_FRAMES;) {
      const task = w instanceof Task ? w : w.owner ?? null;
      if (task === null) break;
      chain.push(task);
      w = task.moreWaiters === null ? task.waiter : null;
    }
  }
  const waiters = chain.filter((t) => isGenerator(t.gen)); // a library WaitOn has no frame
  if (waiters.length === 0 || !inspectorAllowed()) {
    rewriteStack(error, []);
    return undefined;
  }
  return readPositions(waiters.map((t) => t.gen)).then((positions) =>
    rewriteStack(error, framesOf(positions))
  );
}

/** The stack frames of the waiters at `positions`: a coroutine of the library (`fromPromise` …) has none. */
function framesOf(positions: Position[]): string[] {
  const frames: string[] = [];
  for (const { name, location, script } of positions) {
    if (OWN !== null && (script?.startsWith(OWN) || location?.startsWith(OWN))) continue;
    if (location === undefined) {
      if (name !== undefined) frames.push(`    at ${name} (unknown location)`);
    } else {
      frames.push(name === undefined ? `    at ${location}` : `    at ${name} (${location})`);
    }
  }
  return frames;
}

/**
 * Makes `error.stack` read without the loop's frames, with `frames` where
 * they were, from its first read on (V8 formats a stack only when read). A
 * stack that cannot be redefined (a frozen error) is left as it is.
 */
function rewriteStack(error: Error, frames: string[]): void {
  try {
    lazilyRewrite(error, frames);
  } catch {
    // an exotic error (a proxy, a throwing getter) keeps its stack
  }
}

function lazilyRewrite(error: Error, frames: string[]): void {
  const own = Object.getOwnPropertyDescriptor(error, "stack");
  if (own === undefined || !own.configurable) return;
  const settle = (target: object, stack: unknown) => {
    Object.defineProperty(target, "stack", {
      value: typeof stack === "string" ? rewritten(stack, frames) : stack,
      writable: true,
      configurable: true,
      enumerable: own.enumerable,
    });
  };
  if (own.get === undefined) return settle(error, own.value);
  const get = own.get;
  Object.defineProperty(error, "stack", {
    get() {
      settle(this, get.call(this));
      return this.stack;
    },
    set(value: unknown) {
      Object.defineProperty(this, "stack", { value, writable: true, configurable: true });
    },
    configurable: true,
    enumerable: own.enumerable,
  });
}

/**
 * `stack` without the loop's frames, with `frames` where they were (else at
 * the end). Below the loop's frames come those of whoever called the loop:
 * the code that called `run()` (in its first turn), which stays, or the
 * host's event loop (a timer, a promise job), which goes too.
 */
function rewritten(stack: string, frames: string[]): string {
  const lines = stack.split("\n");
  const kept: string[] = [];
  let at = -1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const own = isOwnFrame(line) || isNativeFrame(line) && callerIsOwn(lines, i);
    if (own || at >= 0 && isHostFrame(line)) {
      if (at < 0) at = kept.length;
      continue;
    }
    kept.push(line);
  }
  kept.splice(at < 0 ? kept.length : at, 0, ...frames);
  return kept.join("\n");
}

const FRAME = /^\s+at /;

function isOwnFrame(line: string): boolean {
  return OWN !== null && FRAME.test(line) && (line.includes(OWN) || line.includes(OWN_PATH!));
}

/** A frame of native code: `at leaf.next (<anonymous>)`, `at new Promise (<anonymous>)`. */
function isNativeFrame(line: string): boolean {
  return FRAME.test(line) && line.endsWith("(<anonymous>)");
}

/** A frame of the runtime itself: Deno's `ext:`, Node's `node:`, Bun's `native:`, or native code. */
function isHostFrame(line: string): boolean {
  return FRAME.test(line) &&
    (/\((ext|node|native):/.test(line) || /at (ext|node|native):/.test(line) ||
      line.endsWith("(<anonymous>)"));
}

/** True if the frame below line `i` (its caller), past native ones, is the loop's: the loop resumed a generator there. */
function callerIsOwn(lines: string[], i: number): boolean {
  let j = i + 1;
  while (j < lines.length && isNativeFrame(lines[j])) j++;
  return j < lines.length && isOwnFrame(lines[j]);
}

/**
 * The error for a waiting cycle (each task waits on the next, the last on
 * the first): it names each by id, with its name and location when the
 * inspector tells them (then a promise: the driver waits for it), and what
 * it waits for.
 */
export function cycleFailure(cycle: Task[]): Error | Promise<Error> {
  const { idOf } = numbered(cycle[0].run.core);
  const describe = (positions: (Position | undefined)[]) => {
    const error = cycleError(cycle.map((t, i) => {
      const { name, location } = positions[i] ?? {};
      return `#${idOf(t)}${name === undefined ? "" : ` ${name}`}${
        location === undefined ? "" : ` (at ${location})`
      } waits for ${waitingFor(t, idOf)}`;
    }));
    // Made by the loop, where no coroutine runs: its frames would say nothing.
    error.stack = `${error.name}: ${error.message}`;
    return error;
  };
  const generators = cycle.filter((t) => isGenerator(t.gen));
  if (generators.length === 0 || !inspectorAllowed()) return describe([]);
  return readPositions(generators.map((t) => t.gen)).then((positions) => {
    const at = new Map(generators.map((t, i) => [t, positions[i]]));
    return describe(cycle.map((t) => at.get(t)));
  }, () => describe([]));
}
