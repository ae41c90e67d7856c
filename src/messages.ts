/**
 * What the loop says to its users: the texts of usage errors (each says what
 * happened, names the value, and says the fix), the checks that throw them for
 * more than one primitive, and the texts of the run's own failures and
 * warnings. Kept here, apart from the code that raises them, so that the
 * loop reads as the algorithm and the texts read as one voice.
 *
 * @module
 */

import { isCoro, isGenerator, YIELD_HINT, type YieldHint } from "./coro.ts";

/** Names a value for an error message, with a hint for the common slips. */
export function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x === "function") {
    const kind = Object.getPrototypeOf(x)?.constructor?.name;
    return kind === "GeneratorFunction"
      ? `the generator function ${x.name || "(anonymous)"}`
      : `the function ${x.name || "(anonymous)"}`;
  }
  if (typeof x === "string") return JSON.stringify(x.length > 40 ? x.slice(0, 40) + "…" : x);
  if (typeof x !== "object") return `${String(x)} (${typeof x})`;
  if (isGenerator(x)) return "a generator object";
  if (isCoro(x)) return "a coroutine of the library";
  if (YIELD_HINT in x) {
    return `an instance of ${(x as { [YIELD_HINT]: YieldHint })[YIELD_HINT].name}`; // an Event, a Channel…
  }
  if (typeof (x as { then?: unknown }).then === "function") return "a Promise";
  if (Symbol.asyncIterator in x) return "an async generator";
  if (Array.isArray(x)) return `an array of length ${x.length}`;
  return `an object (${Object.prototype.toString.call(x)})`;
}

/** The fix for a common slip: a function not called, a promise, an async generator. */
export function hint(x: unknown): string {
  if (x === null) return " To pause, use a bare `yield`.";
  // A library object that is not a coroutine (an Event, a Channel…) says how to wait on it.
  const said = (x as { [YIELD_HINT]?: YieldHint } | undefined)?.[YIELD_HINT];
  if (said !== undefined) return ` ${said.text}`;
  if (typeof x === "function") {
    return Object.getPrototypeOf(x)?.constructor?.name === "GeneratorFunction"
      ? " Call it: `yield f()`."
      : " If it returns a coroutine, call it: `yield f()`.";
  }
  if (typeof x === "object" && typeof (x as { then?: unknown }).then === "function") {
    return " Wrap it: `yield fromPromise(p)`.";
  }
  if (typeof x === "object" && Symbol.asyncIterator in x) {
    return " Async generators are not coroutines: use `function*`, and `fromPromise` for promises.";
  }
  return "";
}

const ALLOWED = "A coroutine may yield: nothing (`yield`, to pause), a coroutine (`yield f()`), " +
  "an array of coroutines (`yield [f(), g()]`, to gather) or a Set of coroutines " +
  "(`yield new Set([f()])`, to start them in the background).";

/** A coroutine yielded `y`, which is none of what may be yielded. */
export function invalidYield(y: unknown): string {
  return `Invalid yield: a coroutine yielded ${describe(y)}.${hint(y)} ${ALLOWED}`;
}

/** Element `i` of a yielded array or Set (`what`) is not a coroutine. */
export function invalidElement(items: unknown[], i: number, what: string): string {
  const x = items[i];
  return `Invalid yield: element ${i} of ${what} of ${items.length} is ${describe(x)}, ` +
    `not a coroutine.${hint(x)} ${ALLOWED}`;
}

/** `coro` was handed to a loop other than the one that first saw it. */
export function foreign(coro: unknown): TypeError {
  return new TypeError(
    `This coroutine (${describe(coro)}) belongs to another loop: a coroutine is run by the ` +
      "first loop that sees it. To use its result here, yield a fresh coroutine made by " +
      "`yield* copy(coro)`.",
  );
}

/** `fn` (such as "isolate()") takes a coroutine and was given `x`. */
export function notACoroutine(fn: string, x: unknown): TypeError {
  return new TypeError(
    `${fn} takes a coroutine (a generator object, such as f() for function* f), ` +
      `got ${describe(x)}.`,
  );
}

/**
 * Checks a time in milliseconds given to `what`: a number, not negative, not
 * `NaN` (`Infinity` means forever).
 */
export function checkMs(what: string, ms: unknown): asserts ms is number {
  if (typeof ms !== "number") {
    throw new TypeError(`${what}: the time is ${describe(ms)}; give a number of milliseconds.`);
  }
  if (Number.isNaN(ms) || ms < 0) {
    throw new RangeError(
      `${what}: the time is ${ms}; give a number of milliseconds ≥ 0 (Infinity waits forever).`,
    );
  }
}

// --- The public face's usage errors (src/loop.ts) ---------------------------

/** `new Loop({ clock })` with a clock that is neither "real" nor "virtual". */
export function badClock(clock: unknown): TypeError {
  return new TypeError(
    `new Loop({ clock: ${describe(clock)} }): the clock is "real" or "virtual".`,
  );
}

/** `cancellable(coro, signal)` with something that is not an AbortSignal. */
export function badCancellableSignal(signal: unknown): TypeError {
  return new TypeError(
    `cancellable(coro, signal): the signal is ${describe(signal)}; give an AbortSignal ` +
      "(`new AbortController().signal`, or `AbortSignal.timeout(ms)`).",
  );
}

/** `race(coros)` with `coros` not a non-empty array of coroutines. */
export function badRace(coros: unknown): TypeError | RangeError {
  if (!Array.isArray(coros)) {
    return new TypeError(
      `race() takes an array of coroutines, got ${describe(coros)}: write ` +
        "`race([a(), b()])`.",
    );
  }
  if (coros.length === 0) {
    return new RangeError(
      "race([]): a race of no coroutines has no winner; give at least one coroutine.",
    );
  }
  const i = coros.findIndex((c) => !isCoro(c));
  return new TypeError(
    `race(): element ${i} of the array of ${coros.length} is ${describe(coros[i])}, not a ` +
      `coroutine.${hint(coros[i])}`,
  );
}

/** `run(coro, { exceptionGroup })` with a non-boolean. */
export function badExceptionGroup(group: unknown): TypeError {
  return new TypeError(
    `run(coro, { exceptionGroup }): exceptionGroup is ${describe(group)}; ` +
      "give true, false or leave it out.",
  );
}

/** `run(signal)` with something that is not an AbortSignal. */
export function badSignal(signal: unknown): TypeError {
  return new TypeError(
    `run(coro, { signal }): the signal is ${describe(signal)}; give an AbortSignal ` +
      "(from an AbortController, AbortSignal.timeout(ms) or a Request's signal).",
  );
}

/** `run(x)` with `x` not a coroutine. */
export function runNotACoroutine(x: unknown): TypeError {
  return new TypeError(
    `run() takes a coroutine (a generator object, such as main() for function* main), ` +
      `got ${describe(x)}.${hint(x)}`,
  );
}

/** `run` called on a loop that is running. */
export function alreadyRunning(): Error {
  return new Error(
    "This loop is already running: a loop runs one coroutine at a time. Yield the coroutine " +
      "from the running one instead, or run it on another `new Loop()`.",
  );
}

// --- The run's own failures ---------------------------------------------------

/**
 * The error that fails a run whose tasks wait on each other in a cycle: one
 * description per coroutine of it ("#3 fetchUser (at file:///…:4:3) waits for
 * coroutine 5"), each waiting for the next and the last for the first.
 */
export function cycleError(coroutines: string[]): Error {
  const n = coroutines.length;
  return new Error(
    `Cycle detected: ${
      n === 1 ? "a coroutine waits on itself" : `${n} coroutines wait on each other`
    }` +
      ` (a coroutine waits, directly or through others, on itself), so none can finish: ` +
      `${coroutines.join("; ")}. Cancelling the run.`,
  );
}

/** The message of the CancelledErrors of a run failing with `error`. */
export function crashMessage(error: unknown, aborted: boolean): string {
  return aborted
    ? `cancelled because the run's signal was aborted (${errorText(error)})`
    : `cancelled because another coroutine failed (${errorText(error)})`;
}

/** The message of a run's AggregateError, whose errors[0] is `error`. */
export function groupMessage(error: unknown): string {
  return `a coroutine failed (${
    errorText(error)
  }); errors[0] is that error, the rest came while cancelling`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The warning for a coroutine that did not throw the CancelledError it was given. */
export function misbehavedWarning(returned: boolean): string {
  return `tinyio: a coroutine did not respond properly to cancellation: it ${
    returned ? "returned" : "yielded something other than a shield"
  } instead of throwing the CancelledError it received (re-throw it: ` +
    "`if (e instanceof CancelledError) throw e`; to wait while cleaning up, " +
    "`yield* shield(...)`). It was closed with return(); a resource may have leaked.";
}

/**
 * The message of the CancelledError that a stop by `by` throws into a
 * coroutine it stops — the coroutine that `by` runs itself (`root`), or one
 * that coroutine started — which is also what yielding it later throws.
 */
export function stoppedMessage(by: "timeout" | "cancellable" | "race", root: boolean): string {
  const why = by === "timeout"
    ? "a timeout() around the coroutine that started it ran out"
    : by === "cancellable"
    ? root
      ? "the signal of the cancellable() around it was aborted"
      : "the signal of a cancellable() around the coroutine that started it was aborted"
    : root
    ? "another coroutine won the race() it was in"
    : "the coroutine that started it lost a race()";
  return `cancelled by ${by}(): ${why}, so it was stopped and has no result`;
}

/** The message of the CancelledError of shielded work whose wait failed with `cause` during a crash. */
export function waiterCancelledMessage(cause: unknown): string {
  return `cancelled because what it waited on failed or was cancelled while the run was ` +
    `being cancelled (${errorText(cause)})`;
}
