/**
 * What a failing run's error says: its stack without the loop's own frames,
 * stitched with one frame per coroutine up the chain of waiters (as Python
 * tinyio chains tracebacks), and the error of a waiting cycle, which names
 * the coroutines of the cycle. The core calls these when a run fails
 * (src/core.ts, `crash` and `#failCycles`); the positions come from the
 * inspector (src/inspect.ts).
 *
 * @module
 */

import { isGenerator } from "./coro.ts";
import { cycleError } from "./messages.ts";
import { inspectorAllowed, type Position, readPositions } from "./inspect.ts";
import { numbered, waitingFor } from "./snapshot.ts";
import { type Observer, Task } from "./task.ts";

/** At most this many frames are stitched in: the innermost waiters, as a stack trace keeps the innermost calls. */
const MAX_FRAMES = 64;

// The loop's own files: this module's directory (src/), or, bundled, this
// very file. A frame in them is the loop's, not the user's.
const here = import.meta.url;
const OWN = /\/src\/trace\.[cm]?[jt]s$/.test(here) ? new URL(".", here).href : here;

/**
 * Removes the loop's frames from `error.stack` and, given the failed
 * coroutine's only waiter (`from`) and the inspector, stitches in a frame per
 * waiter up the chain, as long as each has one waiter (a coroutine waiting
 * through a `timeout` counts as its waiter), up to 64. Returns undefined when
 * done at once; else the promise of the positions being read, which the
 * driver waits for before it cancels the waiters (a cancelled generator
 * forgets where it was). A thrown value that is not an Error is left alone.
 */
export function stitchTrace(
  error: unknown,
  from: Task | Observer | null,
): Promise<void> | undefined {
  if (!(error instanceof Error)) return undefined;
  const chain: Task[] = [];
  for (let w = from; w !== null && chain.length < MAX_FRAMES;) {
    const task = w instanceof Task ? w : w.owner ?? null;
    if (task === null) break;
    chain.push(task);
    w = task.moreWaiters === null ? task.waiter : null;
  }
  const waiters = chain.filter((t) => isGenerator(t.gen)); // a library WaitOn has no frame
  let stack: unknown;
  try {
    stack = error.stack;
  } catch {
    return undefined;
  }
  if (typeof stack !== "string") return undefined;
  if (waiters.length === 0 || !inspectorAllowed()) {
    writeStack(error, stack, []);
    return undefined;
  }
  return readPositions(waiters.map((t) => t.gen)).then((positions) =>
    writeStack(error, stack as string, positions)
  );
}

/** Sets `error.stack` to `stack` without the loop's frames, with `waiters`' frames where they were. */
function writeStack(error: Error, stack: string, waiters: Position[]): void {
  const lines = stack.split("\n");
  const kept: string[] = [];
  let at = -1; // where the loop's frames were: the stitched frames go there
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (isOwnFrame(line) || isNativeFrame(line) && callerIsOwn(lines, i)) {
      if (at < 0) at = kept.length;
      continue;
    }
    kept.push(line);
  }
  const frames: string[] = [];
  for (const { name, location } of waiters) {
    if (location?.startsWith(OWN)) continue; // a coroutine of the library (`fromPromise` …)
    if (location !== undefined) {
      frames.push(
        `    at ${name === undefined ? "" : `${name} (`}${location}${
          name === undefined ? "" : ")"
        }`,
      );
    } else if (name !== undefined) frames.push(`    at ${name} (unknown location)`);
  }
  kept.splice(at < 0 ? kept.length : at, 0, ...frames);
  const text = kept.join("\n");
  if (text === stack) return;
  try {
    error.stack = text;
  } catch {
    // a frozen error keeps its stack
  }
}

const FRAME = /^\s+at /;

function isOwnFrame(line: string): boolean {
  return FRAME.test(line) && line.includes(OWN);
}

/** A frame of native code: `at leaf.next (<anonymous>)`, `at new Promise (<anonymous>)`. */
function isNativeFrame(line: string): boolean {
  return FRAME.test(line) && line.endsWith("(<anonymous>)");
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
  });
}
